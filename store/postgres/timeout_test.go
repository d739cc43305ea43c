package postgres

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/store"
)

func TestMilliseconds(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{5 * time.Second, "5000ms"},
		{100 * time.Millisecond, "100ms"},
		{time.Nanosecond, "1ms"},
		{1500 * time.Microsecond, "2ms"},
		{1 << 62, "2147483647ms"},
	}
	for _, tt := range tests {
		if got := milliseconds(tt.d); got != tt.want {
			t.Errorf("milliseconds(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestStatementTimeoutSetting(t *testing.T) {
	dsn := pgtest.New(t)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	tests := []struct {
		name string
		dsn  string
		opts []Option
		want string
	}{
		{"default", dsn, nil, "5s"},
		{"option", dsn, []Option{WithStatementTimeout(100 * time.Millisecond)}, "100ms"},
		// Rounded up to the millisecond; long enough that SHOW itself is
		// never cancelled on a loaded machine.
		{"option rounded up", dsn, []Option{WithStatementTimeout(2*time.Second + 500*time.Microsecond)}, "2001ms"},
		{"option none", dsn, []Option{WithStatementTimeout(0)}, "0"},
		{"DSN parameter", dsn + sep + "statement_timeout=250ms", []Option{WithStatementTimeout(100 * time.Millisecond)}, "250ms"},
		{"DSN options", dsn + sep + "options=-c%20statement_timeout%3D300", nil, "300ms"},
		{"DSN options with dashes", dsn + sep + "options=--statement-timeout%3D400", nil, "400ms"},
		{"DSN options without it", dsn + sep + "options=-c%20lock_timeout%3D1s", nil, "5s"},
		{"pool config", dsn, []Option{WithPoolConfig(func(c *pgxpool.Config) {
			c.ConnConfig.RuntimeParams["statement_timeout"] = "7s"
		})}, "7s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(t.Context(), tt.dsn, tt.opts...)
			if err != nil {
				t.Fatalf("New = %v", err)
			}
			defer s.Close()
			var got string
			if err := s.pool.QueryRow(t.Context(), "SHOW statement_timeout").Scan(&got); err != nil {
				t.Fatalf("SHOW statement_timeout = %v", err)
			}
			if got != tt.want {
				t.Errorf("statement_timeout = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestStatementTimeoutCancels checks that the server cancels a slow
// statement, well before the caller's own deadline, and that the Store
// reports it as unavailable.
func TestStatementTimeoutCancels(t *testing.T) {
	s, err := New(t.Context(), pgtest.New(t), WithStatementTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err = s.pool.Exec(ctx, "SELECT pg_sleep(120)")
	if err == nil {
		t.Fatal("pg_sleep(120) succeeded, want it cancelled")
	}
	err = mapError(ctx, "sleep", err)
	if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "57014") {
		t.Errorf("pg_sleep(120) = %v, want ErrUnavailable naming SQLSTATE 57014 (query cancelled), not the caller's deadline", err)
	}
	// The connection is still usable afterwards.
	if _, err := s.Get(t.Context(), "s1", "github"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after the cancelled statement = %v, want ErrNotFound", err)
	}
}
