package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
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
	storetest.Run(t, func(t *testing.T) store.Store {
		dsn := pgtest.New(t)
		return replicated{newStore(t, dsn), dsn}
	})
}

// replicated is a Store that can open another, with a pool of its own, on
// the same database: a second replica for the collection lock tests.
type replicated struct {
	*postgres.Store
	dsn string
}

var _ storetest.Replicator = replicated{}

func (r replicated) Replica(t *testing.T) store.Store { return newStore(t, r.dsn) }

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
		{"Delete", func() error { return s.Delete(ctx, "s1", "") }},
		{"ClaimRefresh", func() error { _, err := s.ClaimRefresh(ctx, "s1", "github", "owner", time.Minute); return err }},
		{"CompleteRefresh", func() error {
			_, err := s.CompleteRefresh(ctx, "s1", "github", store.Lease{Owner: "owner", Version: 1}, r.Tokens)
			return err
		}},
		{"ReleaseRefresh", func() error {
			return s.ReleaseRefresh(ctx, "s1", "github", store.Lease{Owner: "owner", Version: 1}, true)
		}},
		{"Scan", func() error { _, err := s.Scan(ctx, store.Key{}, 10); return err }},
		{"RewriteTokens", func() error { return s.RewriteTokens(ctx, "s1", "github", 1, r.Tokens) }},
		{"DeleteExpired", func() error { _, err := s.DeleteExpired(ctx, 10); return err }},
		{"RunExclusive", func() error {
			_, err := s.RunExclusive(ctx, func(context.Context) error { return nil })
			return err
		}},
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

// TestLeaseAcrossStores plays two replicas, each with its own pool, on one
// database: they agree on one holder, the lease lives in the row, timed by
// the database's clock, and no connection is held while it is.
func TestLeaseAcrossStores(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := t.Context()
	pools := make([]*pgxpool.Pool, 2)
	stores := make([]*postgres.Store, 2)
	for i := range pools {
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		pools[i] = pool
		stores[i] = postgres.NewFromPool(pool)
	}
	if err := stores[0].Put(ctx, row("s1", "github")); err != nil {
		t.Fatal(err)
	}

	const claimers = 20
	var (
		wg     sync.WaitGroup
		claims [claimers]store.Claim
		errs   [claimers]error
	)
	for i := range claimers {
		wg.Go(func() {
			claims[i], errs[i] = stores[i%2].ClaimRefresh(ctx, "s1", "github", fmt.Sprintf("owner-%d", i), time.Minute)
		})
	}
	wg.Wait()
	holders := 0
	var lease store.Lease
	for i := range claims {
		if errs[i] != nil {
			t.Fatalf("claimer %d: %v", i, errs[i])
		}
		if claims[i].Held {
			holders++
			lease = claims[i].Lease
		}
	}
	if holders != 1 {
		t.Fatalf("%d holders across two stores, want 1", holders)
	}
	for i, pool := range pools {
		if n := pool.Stat().AcquiredConns(); n != 0 {
			t.Errorf("pool %d: %d connections acquired while the lease is held, want 0", i, n)
		}
	}

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var (
		owner    *string
		leftSecs float64
	)
	err = conn.QueryRow(ctx, `SELECT lease_owner, extract(epoch FROM lease_until - now())::float8 FROM upstream_tokens`).Scan(&owner, &leftSecs)
	if err != nil {
		t.Fatal(err)
	}
	if owner == nil || *owner != lease.Owner || leftSecs <= 0 || leftSecs > 60 {
		t.Errorf("lease columns: owner %v, %vs left by the database's clock; want %q, in (0, 60]", owner, leftSecs, lease.Owner)
	}

	// The database's clock decides: move the lease into the past and
	// another replica takes over at once.
	if _, err := conn.Exec(ctx, `UPDATE upstream_tokens SET lease_until = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	other := stores[0]
	if c, err := other.ClaimRefresh(ctx, "s1", "github", "taker", time.Minute); err != nil || !c.Held {
		t.Fatalf("ClaimRefresh after the lease ended by the database's clock = %+v, %v; want held", c, err)
	}
	if _, err := stores[1].CompleteRefresh(ctx, "s1", "github", lease, row("s1", "github").Tokens); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("CompleteRefresh by the replaced holder = %v, want ErrLeaseLost", err)
	}

	if _, err := stores[1].CompleteRefresh(ctx, "s1", "github", store.Lease{Owner: "taker", Version: lease.Version}, store.Tokens{AccessToken: "at-new"}); err != nil {
		t.Fatalf("CompleteRefresh by the taker = %v", err)
	}
	var cleared bool
	if err := conn.QueryRow(ctx, `SELECT lease_owner IS NULL AND lease_until IS NULL FROM upstream_tokens`).Scan(&cleared); err != nil || !cleared {
		t.Errorf("lease columns cleared after CompleteRefresh: %v (%v), want true", cleared, err)
	}
}
