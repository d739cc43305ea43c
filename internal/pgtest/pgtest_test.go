package pgtest

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestWithDatabase(t *testing.T) {
	tests := []struct {
		dsn, want string
	}{
		{"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "postgres://postgres@127.0.0.1:5432/db1?sslmode=disable"},
		{"postgresql://u:p%40ss@host/other", "postgresql://u:p%40ss@host/db1"},
		{"postgres://host:5432", "postgres://host:5432/db1"},
		{"host=/tmp port=5433 user=postgres dbname=postgres", "host=/tmp port=5433 user=postgres dbname=postgres dbname=db1"},
	}
	for _, tt := range tests {
		got, err := withDatabase(tt.dsn, "db1")
		if err != nil || got != tt.want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", tt.dsn, got, err, tt.want)
		}
		cfg, err := pgx.ParseConfig(got)
		if err != nil || cfg.Database != "db1" {
			t.Errorf("withDatabase(%q) = %q, which names database %q (%v)", tt.dsn, got, cfg.Database, err)
		}
	}
}

// fakeTB records how Admin ends a test.
type fakeTB struct {
	testing.TB
	mu      sync.Mutex
	skipped []any
	fatal   []any
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Skip(args ...any) {
	f.mu.Lock()
	f.skipped = args
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Fatal(args ...any) {
	f.mu.Lock()
	f.fatal = args
	f.mu.Unlock()
	runtime.Goexit()
}

func TestAdminWithoutServer(t *testing.T) {
	const msg = "set EXTAUTHZ_TEST_DATABASE_URL to run PostgreSQL tests"
	tests := []struct {
		ci                 string
		wantSkip, wantFail bool
	}{
		{"", true, false},
		{"false", true, false},
		{"true", false, true},
	}
	for _, tt := range tests {
		t.Run("CI="+tt.ci, func(t *testing.T) {
			t.Setenv(EnvVar, "")
			t.Setenv("CI", tt.ci)
			f := &fakeTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				Admin(f)
				t.Error("Admin returned without a server")
			}()
			<-done
			if got := fmt.Sprint(f.skipped...); tt.wantSkip != (got == msg) {
				t.Errorf("skipped with %q, want skip %v with %q", got, tt.wantSkip, msg)
			}
			if got := fmt.Sprint(f.fatal...); tt.wantFail != (got == msg) {
				t.Errorf("failed with %q, want failure %v with %q", got, tt.wantFail, msg)
			}
		})
	}
}

func TestNewIsFreshMigratedAndDropped(t *testing.T) {
	admin := Admin(t)
	var names [2]string
	for i := range names {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			// conn is still open when the database is dropped (clean-ups
			// run last first): the drop must not wait for it.
			var conn *pgx.Conn
			t.Cleanup(func() {
				if conn != nil {
					conn.Close(context.Background())
				}
			})
			dsn := New(t)
			ctx := t.Context()
			var err error
			conn, err = pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			var n int
			err = conn.QueryRow(ctx, `SELECT current_database(), count(*) FROM upstream_tokens`).Scan(&names[i], &n)
			if err != nil || n != 0 {
				t.Fatalf("query the new database: %d rows, %v", n, err)
			}
		})
	}
	if names[0] == names[1] || names[0] == "" {
		t.Fatalf("databases %q and %q: want two distinct ones", names[0], names[1])
	}
	conn, err := pgx.Connect(context.Background(), admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var left int
	err = conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_database WHERE datname = ANY($1)`, names[:]).Scan(&left)
	if err != nil || left != 0 {
		t.Errorf("%d of the test databases left after their tests ended (%v)", left, err)
	}
}

// TestPgBouncer reaches a test database through PgBouncer, in transaction
// mode: two client connections open at once share one server session.
func TestPgBouncer(t *testing.T) {
	dsn := New(t)
	via := PgBouncer(t, dsn)
	if via == dsn {
		t.Fatalf("PgBouncer returned the direct URL")
	}
	ctx := t.Context()
	var pids [2]int
	var names [2]string
	for i := range pids {
		conn, err := pgx.Connect(ctx, via)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if conn.Config().DefaultQueryExecMode != pgx.QueryExecModeExec {
			t.Errorf("query exec mode %v, want exec", conn.Config().DefaultQueryExecMode)
		}
		if err := conn.QueryRow(ctx, `SELECT current_database(), pg_backend_pid()`).Scan(&names[i], &pids[i]); err != nil {
			t.Fatal(err)
		}
	}
	want, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if names[0] != want.Database || names[1] != want.Database {
		t.Errorf("through PgBouncer: databases %q, want %q", names, want.Database)
	}
	if pids[0] != pids[1] {
		t.Errorf("two idle clients had server sessions %d and %d: want one shared (transaction mode)", pids[0], pids[1])
	}
}
