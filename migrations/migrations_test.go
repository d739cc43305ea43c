package migrations_test

import (
	"bytes"
	"context"
	"database/sql"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/migrations"
	"github.com/extauthz/extauthz/store"
)

// column is one column of upstream_tokens as information_schema describes it.
type column struct {
	name, dataType, nullable, collation string
	hasDefault                          bool
}

var wantColumns = []column{
	{"session_id", "text", "NO", "C", false},
	{"provider", "text", "NO", "C", false},
	{"access_token", "text", "NO", "", false},
	{"refresh_token", "text", "NO", "", true},
	{"id_token", "text", "NO", "", true},
	{"token_type", "text", "NO", "", true},
	{"expires_at", "timestamp with time zone", "YES", "", false},
	{"subject", "text", "NO", "", false},
	{"client_id", "text", "NO", "", false},
	{"upstream_subject", "text", "NO", "", true},
	{"session_expires_at", "timestamp with time zone", "YES", "", false},
	{"needs_reauth", "boolean", "NO", "", true},
	{"created_at", "timestamp with time zone", "NO", "", true},
	{"updated_at", "timestamp with time zone", "NO", "", true},
	{"version", "bigint", "NO", "", true},
	{"lease_owner", "text", "YES", "", false},
	{"lease_until", "timestamp with time zone", "YES", "", false},
}

func columns(t *testing.T, conn *pgx.Conn) []column {
	t.Helper()
	rows, err := conn.Query(t.Context(), `
		SELECT column_name, data_type, is_nullable, coalesce(collation_name, ''), column_default IS NOT NULL
		FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'upstream_tokens'
		ORDER BY ordinal_position`)
	if err != nil {
		t.Fatal(err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (column, error) {
		var c column
		err := r.Scan(&c.name, &c.dataType, &c.nullable, &c.collation, &c.hasDefault)
		return c, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return cols
}

func TestUpConcurrentlyThenAgain(t *testing.T) {
	dsn := pgtest.NewEmpty(t)
	ctx := t.Context()

	var (
		wg   sync.WaitGroup
		logs [2]bytes.Buffer
		errs [2]error
	)
	for i := range 2 {
		wg.Go(func() { errs[i] = migrations.Up(ctx, dsn, &logs[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Up #%d = %v", i, err)
		}
	}
	// Exactly one of the two applied the migration; the other found it done.
	applied := 0
	for i := range logs {
		if strings.Contains(logs[i].String(), "00001_upstream_tokens.sql") {
			applied++
		}
	}
	if applied != 1 {
		t.Errorf("migration applied by %d runs, want 1; logs:\n%s\n%s", applied, &logs[0], &logs[1])
	}

	var again bytes.Buffer
	if err := migrations.Up(ctx, dsn, &again); err != nil {
		t.Fatalf("third Up = %v", err)
	}
	if !strings.Contains(again.String(), "up to date") {
		t.Errorf("third Up logged %q, want it to report the schema up to date", &again)
	}
	if err := migrations.Up(ctx, dsn, nil); err != nil {
		t.Fatalf("Up with a nil log writer = %v", err)
	}

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	var tables int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 'upstream_tokens'`).Scan(&tables); err != nil || tables != 1 {
		t.Errorf("upstream_tokens tables = %d (%v), want 1", tables, err)
	}
	got := columns(t, conn)
	if len(got) != len(wantColumns) {
		t.Fatalf("columns = %+v\nwant %+v", got, wantColumns)
	}
	for i := range got {
		if got[i] != wantColumns[i] {
			t.Errorf("column %d = %+v, want %+v", i, got[i], wantColumns[i])
		}
	}

	var pk string
	err = conn.QueryRow(ctx, `
		SELECT string_agg(a.attname, ',' ORDER BY k.ord)
		FROM pg_index i
		CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = 'upstream_tokens'::regclass AND i.indisprimary`).Scan(&pk)
	if err != nil || pk != "session_id,provider" {
		t.Errorf("primary key = %q (%v), want session_id,provider", pk, err)
	}
	var indexed bool
	err = conn.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM pg_indexes
		WHERE tablename = 'upstream_tokens' AND indexdef LIKE '%(session_expires_at)%')`).Scan(&indexed)
	if err != nil || !indexed {
		t.Errorf("index on session_expires_at: %v (%v), want one", indexed, err)
	}
	var keyLen int
	if err := conn.QueryRow(ctx, `SELECT octet_length(key) FROM extauthz_notify_key`).Scan(&keyLen); err != nil || keyLen != 32 {
		t.Errorf("notification key: %d bytes (%v), want one row of 32", keyLen, err)
	}
	for _, v := range []int{1, 2, 3, 4} {
		var versions int
		err = conn.QueryRow(ctx, `SELECT count(*) FROM `+migrations.VersionTable+` WHERE version_id = $1`, v).Scan(&versions)
		if err != nil || versions != 1 {
			t.Errorf("version %d recorded %d times (%v), want once", v, versions, err)
		}
	}
}

// TestRefreshLeaseOnExistingRows checks that 00002 gives rows written under
// 00001 version 1 and no lease, and that a lease is all or nothing.
func TestRefreshLeaseOnExistingRows(t *testing.T) {
	dsn := pgtest.NewEmpty(t)
	ctx := t.Context()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS,
		goose.WithTableName(migrations.VersionTable), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 1); err != nil {
		t.Fatalf("UpTo(1) = %v", err)
	}
	_, err = db.ExecContext(ctx, `INSERT INTO upstream_tokens (session_id, provider, access_token, subject, client_id)
		VALUES ('s1', 'github', 'at', 'sub', 'client')`)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrations.Up(ctx, dsn, nil); err != nil {
		t.Fatalf("Up = %v", err)
	}
	var (
		version int64
		free    bool
	)
	err = db.QueryRowContext(ctx, `SELECT version, lease_owner IS NULL AND lease_until IS NULL FROM upstream_tokens`).Scan(&version, &free)
	if err != nil || version != 1 || !free {
		t.Errorf("existing row after 00002: version %d, no lease %v (%v); want 1, true", version, free, err)
	}
	for _, set := range []string{"lease_owner = 'x'", "lease_until = now()"} {
		if _, err := db.ExecContext(ctx, `UPDATE upstream_tokens SET `+set); err == nil {
			t.Errorf("UPDATE SET %s alone succeeded; want the lease check to refuse half a lease", set)
		}
	}
}

// TestDownUp checks that every migration can be rolled back and applied again.
func TestDownUp(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := t.Context()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS,
		goose.WithTableName(migrations.VersionTable), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 0); err != nil {
		t.Fatalf("DownTo(0) = %v", err)
	}
	if exists := tableExists(t, db, "upstream_tokens"); exists {
		t.Errorf("upstream_tokens still exists after DownTo(0)")
	}
	if err := migrations.Up(ctx, dsn, nil); err != nil {
		t.Fatalf("Up after DownTo(0) = %v", err)
	}
	if exists := tableExists(t, db, "upstream_tokens"); !exists {
		t.Errorf("upstream_tokens missing after Up")
	}
}

func tableExists(t *testing.T, db *sql.DB, name string) bool {
	t.Helper()
	var exists bool
	if err := db.QueryRowContext(t.Context(), `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	return exists
}

func TestUpErrorsHideThePassword(t *testing.T) {
	for _, dsn := range []string{
		"postgres://user:hunter2@host:notaport/db",
		"postgres://user:hunter2@127.0.0.1:1/db?sslmode=disable&connect_timeout=2",
	} {
		err := migrations.Up(t.Context(), dsn, nil)
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Up(%q) = %v; want an error without the password", dsn, err)
		}
	}
}

func TestFSHoldsNumberedMigrations(t *testing.T) {
	entries, err := migrations.FS.ReadDir(".")
	if err != nil || len(entries) == 0 {
		t.Fatalf("FS: %d entries, %v", len(entries), err)
	}
	for _, e := range entries {
		b, err := migrations.FS.ReadFile(e.Name())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "-- +goose Up") || !strings.Contains(string(b), "-- +goose Down") {
			t.Errorf("%s lacks a goose Up or Down section", e.Name())
		}
	}
	// Collecting the migrations needs no connection.
	cfg, err := pgx.ParseConfig("postgres://127.0.0.1:1/none")
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatalf("goose cannot collect the migrations: %v", err)
	}
	if got := len(p.ListSources()); got != len(entries) {
		t.Errorf("goose collected %d migrations from %d files", got, len(entries))
	}
}

// TestChangeNotifications checks the trigger of 00003: every change to what
// a Check could serve notifies with the row's key (never a token), a lease
// claim or release alone does not, and TRUNCATE and over-long keys notify
// "*".
func TestChangeNotifications(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := t.Context()
	listener, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(context.Background())
	if _, err := listener.Exec(ctx, "LISTEN extauthz_tokens"); err != nil {
		t.Fatal(err)
	}
	writer, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close(context.Background())

	// received returns the payloads that arrive within a short wait.
	received := func() []string {
		var got []string
		for {
			wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			n, err := listener.WaitForNotification(wctx)
			cancel()
			if err != nil {
				return got
			}
			got = append(got, n.Payload)
		}
	}
	var key []byte
	if err := writer.QueryRow(ctx, `SELECT key FROM extauthz_notify_key`).Scan(&key); err != nil {
		t.Fatal(err)
	}
	tag := func(session string) string { return store.NotifyTag(key, session).String() }
	long := strings.Repeat("x", 8000)
	steps := []struct {
		sql  string
		want []string
	}{
		{`INSERT INTO upstream_tokens (session_id, provider, access_token, subject, client_id)
			VALUES ('s1', 'gh', 'secret-access', 'sub', 'client'), ('s"2', 'gh', 'secret-access', 'sub', 'client')`,
			[]string{tag("s1"), tag(`s"2`)}},
		{`UPDATE upstream_tokens SET lease_owner = 'me', lease_until = now() + interval '1 minute' WHERE session_id = 's1'`, nil},
		{`UPDATE upstream_tokens SET lease_owner = NULL, lease_until = NULL WHERE session_id = 's1'`, nil},
		{`UPDATE upstream_tokens SET access_token = access_token WHERE session_id = 's1'`, nil},
		{`UPDATE upstream_tokens SET access_token = 'secret-2' WHERE session_id = 's1'`, []string{tag("s1")}},
		{`UPDATE upstream_tokens SET needs_reauth = true, lease_owner = NULL WHERE session_id = 's1'`, []string{tag("s1")}},
		{`UPDATE upstream_tokens SET version = version + 1 WHERE session_id = 's1'`, []string{tag("s1")}},
		// The cache forgets whole sessions: a new provider is the same one.
		{`UPDATE upstream_tokens SET provider = 'github' WHERE session_id = 's1'`, []string{tag("s1")}},
		{`UPDATE upstream_tokens SET session_id = 's3' WHERE session_id = 's1'`, []string{tag("s1"), tag("s3")}},
		{`DELETE FROM upstream_tokens WHERE session_id = 's3'`, []string{tag("s3")}},
		{`INSERT INTO upstream_tokens (session_id, provider, access_token, subject, client_id)
			VALUES ('` + long + `', 'gh', 'secret', 'sub', 'client')`, []string{tag(long)}},
		{`INSERT INTO upstream_tokens (session_id, provider, access_token, subject, client_id)
			VALUES ('sess-ünï', 'gh', 'secret', 'sub', 'client')`, []string{tag("sess-ünï")}},
		{`TRUNCATE upstream_tokens`, []string{"*"}},
	}
	for _, s := range steps {
		if _, err := writer.Exec(ctx, s.sql); err != nil {
			t.Fatalf("%s: %v", s.sql, err)
		}
		got := received()
		if !slices.Equal(got, s.want) {
			t.Errorf("%.80s\nnotified %q, want %q", s.sql, got, s.want)
		}
		for _, p := range got {
			if strings.Contains(p, "secret") || strings.Contains(p, "s1") || strings.Contains(p, "xxxx") {
				t.Errorf("a notification carries a token or a session ID: %.80q", p)
			}
		}
	}
}
