package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/postgres"
	"github.com/extauthz/extauthz/store/storetest"
)

func newStore(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.New(t.Context(), dsn)
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestConformance(t *testing.T) {
	pgtest.Admin(t) // skip once, not in every subtest
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t, pgtest.New(t)) })
}

func row(sessionID, provider string) store.Row {
	return store.Row{
		SessionID: sessionID, Provider: provider,
		Tokens:  store.Tokens{AccessToken: "secret-access-token", RefreshToken: "secret-refresh-token"},
		Subject: "sub", ClientID: "client",
	}
}

func TestNewRefusesBadDSNWithoutEchoingIt(t *testing.T) {
	for _, dsn := range []string{
		"postgres://user:hunter2@host:notaport/db",
		"postgres://user:hunter2@[::1/db",
		"host=h password=hunter2 port=x",
	} {
		s, err := postgres.New(t.Context(), dsn)
		if err == nil {
			s.Close()
			t.Errorf("New(%q) = nil error", dsn)
			continue
		}
		if !errors.Is(err, store.ErrInvalid) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("New(%q) = %q; want ErrInvalid without the password", dsn, err)
		}
	}
}

func TestUnreachableDatabase(t *testing.T) {
	// New does not connect: it succeeds while the database is down.
	s := newStore(t, "postgres://user:hunter2@127.0.0.1:1/db?sslmode=disable&connect_timeout=5")
	ctx := t.Context()
	r := row("s1", "github")
	calls := []struct {
		name string
		call func() error
	}{
		{"Ping", func() error { return s.Ping(ctx) }},
		{"Get", func() error { _, err := s.Get(ctx, "s1", "github"); return err }},
		{"GetSession", func() error { _, err := s.GetSession(ctx, "s1"); return err }},
		{"Put", func() error { return s.Put(ctx, r) }},
		{"UpdateTokens", func() error { _, err := s.UpdateTokens(ctx, "s1", "github", r.Tokens); return err }},
		{"MarkReauth", func() error { return s.MarkReauth(ctx, "s1", "github") }},
		{"Delete", func() error { return s.Delete(ctx, "s1", "") }},
	}
	for _, tt := range calls {
		err := tt.call()
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s = %v, want ErrUnavailable", tt.name, err)
			continue
		}
		for _, secret := range []string{"hunter2", r.AccessToken, r.RefreshToken} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s = %q, which contains a secret", tt.name, err)
			}
		}
	}
}

func TestDeadline(t *testing.T) {
	s := newStore(t, pgtest.New(t))
	ctx, cancel := context.WithTimeout(t.Context(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	_, err := s.Get(ctx, "s1", "github")
	if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get = %v, want ErrUnavailable and DeadlineExceeded", err)
	}
}

func TestServerErrors(t *testing.T) {
	t.Run("value refused", func(t *testing.T) {
		s := newStore(t, pgtest.New(t))
		r := row("s1", "github")
		r.AccessToken = "secret-access-token\x00"
		err := s.Put(t.Context(), r)
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Put with a NUL byte = %v, want ErrInvalid", err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("Put = %q, which contains the token", err)
		}
	})
	t.Run("schema missing", func(t *testing.T) {
		s := newStore(t, pgtest.NewEmpty(t))
		_, err := s.Get(t.Context(), "s1", "github")
		if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "42P01") {
			t.Errorf("Get without migrations = %v, want ErrUnavailable naming SQLSTATE 42P01", err)
		}
	})
}

func TestNullsAndUTC(t *testing.T) {
	dsn := pgtest.New(t)
	s := newStore(t, dsn)
	ctx := t.Context()
	r := row("s1", "github")
	if err := s.Put(ctx, r); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var expiresNull, sessionNull bool
	err = conn.QueryRow(ctx, `SELECT expires_at IS NULL, session_expires_at IS NULL FROM upstream_tokens`).Scan(&expiresNull, &sessionNull)
	if err != nil || !expiresNull || !sessionNull {
		t.Errorf("zero times stored as NULL: %v, %v (%v); want true, true", expiresNull, sessionNull, err)
	}

	// Rows written by an operator with infinities read as "never" and "long past".
	if _, err := conn.Exec(ctx, `UPDATE upstream_tokens SET expires_at = '-infinity', session_expires_at = 'infinity'`); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "s1", "github")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Expired(time.Now(), 0) || !got.SessionExpiresAt.IsZero() {
		t.Errorf("ExpiresAt = %v, SessionExpiresAt = %v; want expired, zero", got.ExpiresAt, got.SessionExpiresAt)
	}
	if got.CreatedAt.Location() != time.UTC || got.UpdatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt, UpdatedAt = %v, %v; want UTC", got.CreatedAt, got.UpdatedAt)
	}
}

func TestNewFromPoolLeavesPoolOpen(t *testing.T) {
	pool, err := pgxpool.New(t.Context(), pgtest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s := postgres.NewFromPool(pool)
	if err := s.Put(t.Context(), row("s1", "github")); err != nil {
		t.Fatalf("Put = %v", err)
	}
	s.Close()
	if err := pool.Ping(t.Context()); err != nil {
		t.Errorf("pool.Ping after Store.Close = %v, want the caller's pool still open", err)
	}
}
