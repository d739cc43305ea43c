// Package pgtest gives tests a PostgreSQL database of their own.
//
// The server is named by the environment variable EXTAUTHZ_TEST_DATABASE_URL,
// a connection URL with the right to create databases (scripts/test starts a
// throwaway server and sets it). Without it, tests that need PostgreSQL are
// skipped, except on CI (CI=true), where they fail: a CI run must not pass by
// skipping them. PgBouncer, PgBouncerEnvVar, Routes and Route reach the same
// databases through PgBouncer in transaction mode.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/extauthz/extauthz/internal/localpg"
	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/migrations"
)

// EnvVar is the environment variable that names the test server.
const EnvVar = "EXTAUTHZ_TEST_DATABASE_URL"

// PgBouncerEnvVar is the environment variable that names a PgBouncer in
// transaction mode in front of the test server, which passes every database
// name through to it (scripts/test starts one and sets it).
const PgBouncerEnvVar = "EXTAUTHZ_TEST_PGBOUNCER_URL"

// timeout bounds every administrative step (connect, create, migrate, drop).
const timeout = 2 * time.Minute

// Admin returns the connection URL of the test server, from EnvVar. Without
// it, Admin skips the test, or fails it when the environment variable CI is
// "true".
func Admin(t testing.TB) string {
	t.Helper()
	return fromEnv(t, EnvVar, "PostgreSQL")
}

// fromEnv returns the value of the environment variable name. Without it,
// the test is skipped, or failed when CI is "true".
func fromEnv(t testing.TB, name, what string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		msg := "set " + name + " to run " + what + " tests"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return v
}

// PgBouncer returns the connection URL that reaches the database of dsn (a
// database of New or NewEmpty) through the PgBouncer of PgBouncerEnvVar,
// with the client setting that transaction mode needs on PgBouncer 1.18:
// default_query_exec_mode=exec (no named prepared statements). Without the
// variable, the test is skipped, or failed when CI is "true". Statements
// that need a session of their own (LISTEN, session advisory locks,
// migrations) must keep using dsn.
func PgBouncer(t testing.TB, dsn string) string {
	t.Helper()
	bouncer := fromEnv(t, PgBouncerEnvVar, "PgBouncer")
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("pgtest: PgBouncer: %v", errInvalidURL)
	}
	via, err := withDatabase(bouncer, cfg.Database)
	if err != nil {
		t.Fatalf("pgtest: %s: %v", PgBouncerEnvVar, err)
	}
	if strings.HasPrefix(via, "postgres://") || strings.HasPrefix(via, "postgresql://") {
		u, _ := url.Parse(via) // withDatabase has parsed it
		q := u.Query()
		q.Set("default_query_exec_mode", "exec")
		u.RawQuery = q.Encode()
		return u.String()
	}
	return via + " default_query_exec_mode=exec"
}

// New returns the connection URL of a new database, created for t on the
// test server, with the migrations applied. The database is dropped when t
// ends, even while connections to it are still open.
func New(t testing.TB) string {
	t.Helper()
	dsn := NewEmpty(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := migrations.Up(ctx, dsn, nil); err != nil {
		t.Fatalf("pgtest: migrate the test database: %v", err)
	}
	return dsn
}

// NewEmpty is New without the migrations: the database has no tables.
func NewEmpty(t testing.TB) string {
	t.Helper()
	admin := Admin(t)

	var b [8]byte
	_, _ = rand.Read(b[:])
	name := "extauthz_test_" + hex.EncodeToString(b[:])
	ident := pgx.Identifier{name}.Sanitize()

	if err := exec(admin, "CREATE DATABASE "+ident); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := exec(admin, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	dsn, err := withDatabase(admin, name)
	if err != nil {
		t.Fatalf("pgtest: %s: %v", EnvVar, err)
	}
	return dsn
}

// exec runs one statement on its own connection to the server at dsn.
func exec(dsn, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect to the test server (%s): %w", EnvVar, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// Begin opens a connection of its own to dsn and begins a transaction on
// it, for a test that holds something (a lock, a server session) while the
// code under test runs. The transaction is rolled back (unless the test has
// ended it) and the connection closed when t ends.
func Begin(t testing.TB, dsn string) pgx.Tx {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	tx, err := conn.Begin(t.Context())
	if err != nil {
		t.Fatalf("pgtest: begin: %v", err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx
}

// withDatabase returns dsn with its database replaced by name. dsn is either
// a URL or a keyword/value connection string.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			// url.Error quotes the URL, password included.
			return "", errInvalidURL
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	// In a keyword/value string, the last setting of a keyword wins.
	return dsn + " dbname=" + name, nil
}

// Routes runs body as two subtests: "direct", with pgbouncer false, and
// "pgbouncer", with pgbouncer true, in which body has the code under test
// reach its database through PgBouncer (see Route). A test of what replicas
// do together runs both, so that what works directly is shown to work
// behind PgBouncer in transaction mode too.
func Routes(t *testing.T, body func(t *testing.T, pgbouncer bool)) {
	for _, via := range []string{"direct", "pgbouncer"} {
		t.Run(via, func(t *testing.T) { body(t, via == "pgbouncer") })
	}
}

// Route returns dsn, or with pgbouncer PgBouncer(t, dsn).
func Route(t testing.TB, dsn string, pgbouncer bool) string {
	t.Helper()
	if pgbouncer {
		return PgBouncer(t, dsn)
	}
	return dsn
}

var errInvalidURL = errors.New("cannot parse the URL")

// Stoppable starts a PostgreSQL server of t's own from the system's
// PostgreSQL binaries, migrated, for tests that stop and restart the
// database under the service (Cluster.Stop, Cluster.Restart). It is stopped
// when t ends. Without the binaries the test is skipped, or failed when the
// environment variable CI is "true".
func Stoppable(t testing.TB) *localpg.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	logs := &testutil.SyncBuffer{}
	c, err := localpg.Start(ctx, filepath.Join(reachableTempDir(t), "pg"), logs)
	if errors.Is(err, localpg.ErrNotInstalled) && os.Getenv("CI") != "true" {
		t.Skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
	}
	if err != nil {
		t.Fatalf("localpg: %v\n%s", err, logs.String())
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop PostgreSQL: %v", err)
		}
	})
	if err := migrations.Up(ctx, c.DSN(), nil); err != nil {
		t.Fatal(err)
	}
	return c
}

// reachableTempDir returns a new temporary directory for t that the
// PostgreSQL OS user can enter: when the test runs as root, PostgreSQL runs
// as another user, which must reach its data folder.
func reachableTempDir(t testing.TB) string {
	dir := t.TempDir()
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if strings.HasPrefix(d, os.TempDir()+"/") {
			_ = os.Chmod(d, 0o755)
		}
	}
	return dir
}

// Standby starts a streaming standby of primary (a server from Stoppable)
// for t, with primary's databases and migrations, on a port of its own
// (Cluster.DSN); it is stopped when t ends. Cluster.Kill on primary and
// Cluster.Promote on the standby then play a failover. Without
// pg_basebackup the test is skipped, or failed when the environment
// variable CI is "true".
func Standby(t testing.TB, primary *localpg.Cluster) *localpg.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	logs := &testutil.SyncBuffer{}
	c, err := primary.StartStandby(ctx, filepath.Join(reachableTempDir(t), "standby"), logs)
	if errors.Is(err, localpg.ErrNotInstalled) && os.Getenv("CI") != "true" {
		t.Skipf("localpg: %v", err)
	}
	if err != nil {
		t.Fatalf("localpg: %v\n%s", err, logs.String())
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop the PostgreSQL standby: %v", err)
		}
	})
	return c
}
