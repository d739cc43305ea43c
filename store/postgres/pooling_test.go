package postgres_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/postgres"
)

// TestProbePooling probes a database directly and through PgBouncer 1.18
// in transaction mode, with and without default_query_exec_mode=exec.
func TestProbePooling(t *testing.T) {
	dsn := pgtest.New(t)
	bouncer := pgtest.PgBouncer(t, dsn) // with default_query_exec_mode=exec
	tests := []struct {
		name, dsn string
		want      postgres.Pooling
		prepares  bool
	}{
		{"direct", dsn, postgres.Pooling{ExecMode: pgx.QueryExecModeCacheStatement}, true},
		{"pgbouncer exec", bouncer, postgres.Pooling{Pooled: true, SharedSessions: true, SharedPreparedStatements: true,
			ExecMode: pgx.QueryExecModeExec}, false},
		{"pgbouncer default mode", strings.Replace(bouncer, "default_query_exec_mode=exec", "default_query_exec_mode=cache_statement", 1),
			postgres.Pooling{Pooled: true, SharedSessions: true, SharedPreparedStatements: true, ExecMode: pgx.QueryExecModeCacheStatement}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := postgres.ProbePooling(t.Context(), tt.dsn)
			if err != nil || got != tt.want || got.PreparesStatements() != tt.prepares {
				t.Errorf("ProbePooling = %+v (prepares statements %v), %v; want %+v (%v)", got, got.PreparesStatements(), err, tt.want, tt.prepares)
			}
		})
	}
}

func TestProbePoolingErrors(t *testing.T) {
	tests := []struct {
		name, dsn string
		want      error
	}{
		{"unparsable", "postgres://user:hunter2@host:notaport/db", store.ErrInvalid},
		{"unreachable", "postgres://user:hunter2@127.0.0.1:1/db?connect_timeout=2", store.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := postgres.ProbePooling(t.Context(), tt.dsn)
			if !errors.Is(err, tt.want) || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("ProbePooling = %v, want %v without the password", err, tt.want)
			}
		})
	}
}

// TestPreparedStatementsBehindPgBouncer shows what pgx's default mode meets
// behind PgBouncer 1.18 in transaction mode, and that the error says which
// setting avoids it: the second replica to prepare a statement finds it
// already on the server session that the first left behind.
func TestPreparedStatementsBehindPgBouncer(t *testing.T) {
	dsn := pgtest.New(t)
	preparing := strings.Replace(pgtest.PgBouncer(t, dsn), "default_query_exec_mode=exec", "default_query_exec_mode=cache_statement", 1)
	var errs []error
	for range 2 {
		s := newStore(t, preparing)
		_, err := s.Get(t.Context(), "s", "p")
		if !errors.Is(err, store.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		t.Fatal("two replicas each prepared the same statement behind PgBouncer without an error")
	}
	for _, err := range errs {
		if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "add default_query_exec_mode=exec") {
			t.Errorf("Get = %v, want ErrUnavailable naming default_query_exec_mode=exec", err)
		}
	}
}
