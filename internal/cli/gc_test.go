package cli_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/cli"
	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/postgres"
	"github.com/extauthz/extauthz/tokencrypt"
)

// gcRun runs extauthz with args in-process, with an environment made only
// of envVars.
func gcRun(t *testing.T, envVars map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = cli.Run(t.Context(), args, cli.Env{
		Stdin:  strings.NewReader(""),
		Stdout: &out,
		Stderr: &errOut,
		Getenv: func(k string) string { return envVars[k] },
	})
	return code, out.String(), errOut.String()
}

// gcFill stores expired rows (two sessions, three rows), a live row and a
// row without a session expiry in the database at dsn, and returns the
// store.
func gcFill(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	st, err := postgres.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	past, future := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	for _, r := range []struct {
		session, provider string
		expires           time.Time
	}{
		{"gone-1", "github", past}, {"gone-1", "google", past}, {"gone-2", "github", past},
		{"live", "github", future}, {"never", "github", time.Time{}},
	} {
		err := st.Put(t.Context(), store.Row{
			SessionID: r.session, Provider: r.provider,
			Tokens:  store.Tokens{AccessToken: "at"},
			Subject: "sub", ClientID: "client", SessionExpiresAt: r.expires,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// gcLeft returns the sessions gcFill stored that are still there.
func gcLeft(t *testing.T, st *postgres.Store) []string {
	t.Helper()
	var left []string
	for _, id := range []string{"gone-1", "gone-2", "live", "never"} {
		rows, err := st.GetSession(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) > 0 {
			left = append(left, id)
		}
	}
	return left
}

var gcDeleted = regexp.MustCompile(`^gc: deleted (\d+) expired session rows in (\d+) batches \(.+\)\n$`)

// gcExpectDeleted fails unless the run exited 0 saying it deleted rows in
// batches.
func gcExpectDeleted(t *testing.T, code int, stdout, stderr string, rows, batches int) {
	t.Helper()
	m := gcDeleted.FindStringSubmatch(stdout)
	if code != cli.ExitOK || m == nil || m[1] != fmt.Sprint(rows) || m[2] != fmt.Sprint(batches) {
		t.Errorf("exit %d, stdout %q, stderr %q; want 0 and %d rows deleted in %d batches", code, stdout, stderr, rows, batches)
	}
}

func TestGCCommand(t *testing.T) {
	dsn := pgtest.New(t)
	st := gcFill(t, dsn)

	code, stdout, stderr := gcRun(t, nil, "gc", "--database-url", dsn, "--batch", "2")
	gcExpectDeleted(t, code, stdout, stderr, 3, 2)
	if left := gcLeft(t, st); strings.Join(left, ",") != "live,never" {
		t.Errorf("sessions left: %v, want live and never", left)
	}

	// Nothing left to delete; DATABASE_URL names the database.
	code, stdout, stderr = gcRun(t, map[string]string{"DATABASE_URL": dsn}, "gc")
	gcExpectDeleted(t, code, stdout, stderr, 0, 1)
}

// TestGCCommandConfig takes the database and gc.batch from --config.
func TestGCCommandConfig(t *testing.T) {
	dsn := pgtest.New(t)
	st := gcFill(t, dsn)
	path := filepath.Join(t.TempDir(), "config.yaml")
	text := fmt.Sprintf(`
database: {url: %q}
jwt: {issuer: https://as.example, audiences: [api], jwks_url: https://as.example/jwks}
providers:
  gh: {token_url: https://gh.example/token, client_id: c, auth_style: params}
default_providers: [gh]
encryption: {keys: [{id: k, key: %q}]}
gc: {batch: 1}
`, dsn, tokencrypt.GenerateKey())
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := gcRun(t, nil, "gc", "--config", path)
	gcExpectDeleted(t, code, stdout, stderr, 3, 4)
	if left := gcLeft(t, st); strings.Join(left, ",") != "live,never" {
		t.Errorf("sessions left: %v, want live and never", left)
	}
	// --batch overrides gc.batch.
	gcFill(t, dsn)
	code, stdout, stderr = gcRun(t, nil, "gc", "--config", path, "--batch", "10")
	gcExpectDeleted(t, code, stdout, stderr, 3, 1)
}

// TestGCCommandLockHeld: while another replica's pass holds the lock, gc
// deletes nothing, says so and exits 0.
func TestGCCommandLockHeld(t *testing.T) {
	dsn := pgtest.New(t)
	st := gcFill(t, dsn)
	tx := pgtest.Begin(t, dsn)
	var locked bool
	if err := tx.QueryRow(t.Context(), "SELECT pg_try_advisory_xact_lock($1)", postgres.GCLockKey).Scan(&locked); err != nil || !locked {
		t.Fatalf("taking the GC lock = %v, %v", locked, err)
	}

	code, stdout, stderr := gcRun(t, nil, "gc", "--database-url", dsn)
	if code != cli.ExitOK || stdout != "gc: skipped: another replica holds the GC lock and is collecting\n" {
		t.Errorf("gc while the lock is held: exit %d, stdout %q, stderr %q; want 0 and skipped", code, stdout, stderr)
	}
	if left := gcLeft(t, st); len(left) != 4 {
		t.Errorf("sessions left: %v, want all 4", left)
	}

	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = gcRun(t, nil, "gc", "--database-url", dsn)
	gcExpectDeleted(t, code, stdout, stderr, 3, 1)
}

func TestGCCommandErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"no database", nil, []string{"gc"}, cli.ExitUsage, "no database"},
		{"negative batch", nil, []string{"gc", "--database-url", "postgres://u@h/db", "--batch", "-1"}, cli.ExitUsage, "--batch must be positive"},
		{"argument", nil, []string{"gc", "now"}, cli.ExitUsage, "only flags are accepted"},
		{"unreachable", nil, []string{"gc", "--database-url", "postgres://u:hunter2@127.0.0.1:1/x?connect_timeout=1"}, cli.ExitFailure, "unavailable"},
		{"bad URL", map[string]string{"DATABASE_URL": "postgres://u:hunter2@h:port/db"}, []string{"gc"}, cli.ExitUsage, "cannot parse"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := gcRun(t, tt.env, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tt.code, tt.want)
			}
			if strings.Contains(stdout+stderr, "hunter2") {
				t.Errorf("output reveals the password: %q %q", stdout, stderr)
			}
		})
	}
}

func TestGCInUsage(t *testing.T) {
	code, stdout, _ := gcRun(t, nil, "help")
	if code != cli.ExitOK || !strings.Contains(stdout, "extauthz gc ") {
		t.Errorf("help: exit %d, %q; want gc listed", code, stdout)
	}
}
