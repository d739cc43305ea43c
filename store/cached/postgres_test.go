package cached_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/cached"
	"github.com/extauthz/extauthz/store/postgres"
	"github.com/extauthz/extauthz/upstreamtoken"
)

// staleness is the bound the issue sets: a change on one replica is seen by
// the others within one second. Tests wait for it with a small margin for
// the test's own polling.
const (
	staleness = time.Second
	margin    = 200 * time.Millisecond
)

// queryCounter counts the statements a pool runs and the statements it
// prepares: together, its round trips to the server.
type queryCounter struct {
	queries, prepares atomic.Int64
}

func (q *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	q.queries.Add(1)
	return ctx
}

func (q *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (q *queryCounter) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	q.prepares.Add(1)
	return ctx
}

func (q *queryCounter) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}

func (q *queryCounter) roundTrips() int64 { return q.queries.Load() + q.prepares.Load() }

// replica is one extauthz process's store stack on the shared database:
// PostgreSQL, the cache above it, and the listener that keeps the cache
// honest.
type replica struct {
	name     string
	pg       *postgres.Store
	counter  *queryCounter
	cache    *cached.Store
	listener *postgres.Listener
	svc      *upstreamtoken.InProcessService
}

type replicaOptions struct {
	size      int
	skew      time.Duration
	backoff   time.Duration // reconnect back-off of the listener (default 100ms)
	refresher upstreamtoken.Refresher
}

func newReplica(t *testing.T, name, dsn string, o replicaOptions) *replica {
	t.Helper()
	if o.size == 0 {
		o.size = 1000
	}
	if o.skew == 0 {
		o.skew = 30 * time.Second
	}
	if o.backoff == 0 {
		o.backoff = 100 * time.Millisecond
	}
	r := &replica{name: name, counter: &queryCounter{}}
	pg, err := postgres.New(t.Context(), dsn, postgres.WithPoolConfig(func(c *pgxpool.Config) {
		c.ConnConfig.Tracer = r.counter
		c.MaxConns = 1 // one connection: statements are prepared once, then reused
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	r.pg = pg
	r.cache = cached.New(pg, cached.Options{Size: o.size, Skew: o.skew})
	r.listener, err = postgres.NewListener(dsn, r.cache, postgres.WithReconnectBackoff(o.backoff, o.backoff))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.listener.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	r.svc = upstreamtoken.NewInProcessService(r.cache, o.refresher, upstreamtoken.WithSkew(o.skew))
	testutil.Eventually(t, 10*time.Second, name+" listening", func() bool { return r.listener.Up() && r.cache.Trusted() })
	return r
}

// access returns the access token r serves for (session, provider) through
// the Check's data path, or the error.
func (r *replica) access(t *testing.T, session, provider string) (string, error) {
	t.Helper()
	res, err := r.svc.Lookup(t.Context(), session, upstreamtoken.Binding{Subject: "alice", ClientID: "app"}, provider)
	if err != nil {
		return "", err
	}
	if err := res.Failures[provider]; err != nil {
		return "", err
	}
	c, _ := res.Credential(provider)
	return c.AccessToken, nil
}

// served asserts that r serves want for (session, provider) and reports how
// many round trips that cost.
func (r *replica) served(t *testing.T, session, provider, want string) int64 {
	t.Helper()
	before := r.counter.roundTrips()
	got, err := r.access(t, session, provider)
	if err != nil || got != want {
		t.Fatalf("%s serves %q, %v; want %q", r.name, got, err, want)
	}
	return r.counter.roundTrips() - before
}

// changesWithin waits until r stops serving old for (session, provider)
// and fails unless that happened within the staleness bound.
func (r *replica) changesWithin(t *testing.T, session, provider, old string) {
	t.Helper()
	took := testutil.Eventually(t, staleness+margin, r.name+" stops serving the old token", func() bool {
		got, err := r.access(t, session, provider)
		return err != nil || got != old
	})
	t.Logf("%s saw the change after %v", r.name, took.Round(time.Millisecond))
}

// settle waits until r has been told of every change committed so far, so
// that a notification still in flight cannot evict what the test caches
// next.
func (r *replica) settle(t *testing.T) {
	t.Helper()
	now := time.Now()
	testutil.Eventually(t, 5*time.Second, r.name+" synced", func() bool { return r.listener.Synced(now) })
}

func pgRow(session, provider, access string) store.Row {
	return row(session, provider, access, time.Now().Add(time.Hour))
}

func sqlExec(t *testing.T, dsn, sql string, args ...any) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), sql, args...); err != nil {
		t.Fatal(err)
	}
}

// TestDeleteOnOneReplicaStopsTheOther covers a delete through the store (as
// 'extauthz tokens delete' does it) and by SQL, of one row and of a
// session, and garbage collection.
func TestDeleteOnOneReplicaStopsTheOther(t *testing.T) {
	dsn := pgtest.New(t)
	a := newReplica(t, "A", dsn, replicaOptions{})
	b := newReplica(t, "B", dsn, replicaOptions{})
	deletes := []struct {
		name string
		del  func(t *testing.T, session string)
	}{
		{"store delete on A", func(t *testing.T, s string) {
			if err := a.cache.Delete(t.Context(), s, "gh"); err != nil {
				t.Fatal(err)
			}
		}},
		{"session delete on A", func(t *testing.T, s string) {
			if err := a.cache.Delete(t.Context(), s, ""); err != nil {
				t.Fatal(err)
			}
		}},
		{"SQL delete", func(t *testing.T, s string) {
			sqlExec(t, dsn, `DELETE FROM upstream_tokens WHERE session_id = $1`, s)
		}},
		{"SQL truncate", func(t *testing.T, _ string) {
			sqlExec(t, dsn, `TRUNCATE upstream_tokens`)
		}},
		{"garbage collection", func(t *testing.T, s string) {
			sqlExec(t, dsn, `UPDATE upstream_tokens SET session_expires_at = now() - interval '1 hour' WHERE session_id = $1`, s)
			if _, err := a.pg.DeleteExpired(t.Context(), 100); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for i, d := range deletes {
		t.Run(d.name, func(t *testing.T) {
			s := fmt.Sprintf("del-%d", i)
			if err := a.cache.Put(t.Context(), pgRow(s, "gh", "at-"+s)); err != nil {
				t.Fatal(err)
			}
			b.settle(t)
			b.served(t, s, "gh", "at-"+s)
			if n := b.served(t, s, "gh", "at-"+s); n != 0 {
				t.Fatalf("a cache hit on B cost %d round trips, want 0", n)
			}
			d.del(t, s)
			b.changesWithin(t, s, "gh", "at-"+s)
			if _, err := b.access(t, s, "gh"); !errors.Is(err, upstreamtoken.ErrSessionNotFound) {
				t.Fatalf("after the delete B answers %v, want ErrSessionNotFound", err)
			}
		})
	}
}

// stubRefresher hands out numbered access tokens.
type stubRefresher struct{ n atomic.Int64 }

func (s *stubRefresher) Refresh(_ context.Context, _, refreshToken string) (store.Tokens, error) {
	n := s.n.Add(1)
	return store.Tokens{AccessToken: fmt.Sprintf("refreshed-%d", n), RefreshToken: refreshToken + "+",
		ExpiresAt: time.Now().Add(2 * time.Hour)}, nil
}

// TestRefreshOnOneReplicaServedByTheOther: A refreshes a token (its skew
// is larger, so it finds the token due while B still caches it); B serves
// the refreshed token within the bound.
func TestRefreshOnOneReplicaServedByTheOther(t *testing.T) {
	dsn := pgtest.New(t)
	refresher := &stubRefresher{}
	a := newReplica(t, "A", dsn, replicaOptions{skew: 90 * time.Minute, refresher: refresher})
	b := newReplica(t, "B", dsn, replicaOptions{})
	if err := a.cache.Put(t.Context(), pgRow("s1", "gh", "original")); err != nil {
		t.Fatal(err)
	}
	b.settle(t)
	b.served(t, "s1", "gh", "original")
	if n := b.served(t, "s1", "gh", "original"); n != 0 {
		t.Fatalf("a cache hit on B cost %d round trips, want 0", n)
	}
	a.served(t, "s1", "gh", "refreshed-1")
	b.changesWithin(t, "s1", "gh", "original")
	b.settle(t)
	b.served(t, "s1", "gh", "refreshed-1")
	if n := b.served(t, "s1", "gh", "refreshed-1"); n != 0 {
		t.Fatalf("B does not cache the refreshed token: a read cost %d round trips", n)
	}
	// And a new login by 'tokens put' (an upsert on A) likewise.
	if err := a.cache.Put(t.Context(), pgRow("s1", "gh", "new-login")); err != nil {
		t.Fatal(err)
	}
	b.changesWithin(t, "s1", "gh", "refreshed-1")
	b.served(t, "s1", "gh", "new-login")
}

// TestClaimsDoNotNotify: a claim and a plain release change only the lease
// and must not flush the other replicas' caches; a release with reauth
// must.
func TestClaimsDoNotNotify(t *testing.T) {
	dsn := pgtest.New(t)
	a := newReplica(t, "A", dsn, replicaOptions{})
	b := newReplica(t, "B", dsn, replicaOptions{})
	if err := a.cache.Put(t.Context(), pgRow("s1", "gh", "at")); err != nil {
		t.Fatal(err)
	}
	b.settle(t)
	b.served(t, "s1", "gh", "at")
	c, err := a.cache.ClaimRefresh(t.Context(), "s1", "gh", "owner", time.Minute)
	if err != nil || !c.Held {
		t.Fatal(c, err)
	}
	if err := a.cache.ReleaseRefresh(t.Context(), "s1", "gh", c.Lease, false); err != nil {
		t.Fatal(err)
	}
	b.settle(t)
	if n := b.served(t, "s1", "gh", "at"); n != 0 {
		t.Fatalf("a lease claim flushed B's cache (%d round trips)", n)
	}
	c, err = a.cache.ClaimRefresh(t.Context(), "s1", "gh", "owner", time.Minute)
	if err != nil || !c.Held {
		t.Fatal(c, err)
	}
	if err := a.cache.ReleaseRefresh(t.Context(), "s1", "gh", c.Lease, true); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, staleness+margin, "B sees the re-authentication mark", func() bool {
		r, err := b.cache.Get(t.Context(), "s1", "gh")
		return err == nil && r.NeedsReauth
	})
}

// TestListenerKilledBypassesCache cuts B's listening connection: B must
// stop trusting its cache at once, serve a change made meanwhile (whose
// notification it missed) from the database, and use its cache again once
// it listens again.
func TestListenerKilledBypassesCache(t *testing.T) {
	dsn := pgtest.New(t)
	a := newReplica(t, "A", dsn, replicaOptions{})
	// A long reconnect back-off keeps B's listener down while the test
	// changes the row.
	b := newReplica(t, "B", dsn, replicaOptions{backoff: 3 * time.Second})
	if err := a.cache.Put(t.Context(), pgRow("s1", "gh", "before")); err != nil {
		t.Fatal(err)
	}
	b.settle(t)
	b.served(t, "s1", "gh", "before")
	if n := b.served(t, "s1", "gh", "before"); n != 0 {
		t.Fatalf("hit cost %d round trips", n)
	}

	pid := b.listener.BackendPID()
	if pid == 0 {
		t.Fatal("no listener backend")
	}
	sqlExec(t, dsn, `SELECT pg_terminate_backend($1)`, int32(pid))
	testutil.Eventually(t, staleness, "B notices its listener is gone", func() bool { return !b.listener.Up() })
	if b.cache.Trusted() {
		t.Fatal("B still trusts its cache with its listener down")
	}
	// A change B is not told about.
	sqlExec(t, dsn, `UPDATE upstream_tokens SET access_token = 'during' WHERE session_id = 's1'`)
	before := b.cache.Stats()
	for range 3 {
		if n := b.served(t, "s1", "gh", "during"); n != 1 {
			t.Fatalf("with its listener down B made %d round trips for a read, want 1 (cache bypassed)", n)
		}
	}
	if st := b.cache.Stats(); st.Bypassed-before.Bypassed != 3 || st.Hits != before.Hits || st.Misses != before.Misses || st.Stale != before.Stale {
		t.Fatalf("with its listener down B's reads were %+v, then %+v: want 3 more bypassed, nothing else", before, st)
	}

	testutil.Eventually(t, 10*time.Second, "B listens again", func() bool { return b.listener.Up() && b.cache.Trusted() })
	if b.listener.BackendPID() == pid {
		t.Fatal("same backend after the reconnection")
	}
	b.settle(t)
	b.served(t, "s1", "gh", "during")
	if n := b.served(t, "s1", "gh", "during"); n != 0 {
		t.Fatalf("after the reconnection B does not cache: %d round trips", n)
	}
	// And invalidations flow again.
	if err := a.cache.Put(t.Context(), pgRow("s1", "gh", "after")); err != nil {
		t.Fatal(err)
	}
	b.changesWithin(t, "s1", "gh", "during")
}

// TestRoundTripsPerCheck: on a miss the Check's read is one statement (the
// statement prepared once per connection, then reused), on a hit none, for
// one provider (Get) and for several (GetSession).
func TestRoundTripsPerCheck(t *testing.T) {
	dsn := pgtest.New(t)
	r := newReplica(t, "R", dsn, replicaOptions{size: 100})
	ctx := t.Context()
	for i := range 10 {
		s := fmt.Sprintf("s%d", i)
		for _, p := range []string{"gh", "google"} {
			if err := r.pg.Put(ctx, pgRow(s, p, "at-"+s+"-"+p)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Prepare both statements on the pool's connection.
	r.served(t, "s0", "gh", "at-s0-gh")
	if _, err := r.svc.Lookup(ctx, "s0", upstreamtoken.Binding{Subject: "alice", ClientID: "app"}, "gh", "google"); err != nil {
		t.Fatal(err)
	}
	prepared := r.counter.prepares.Load()
	for i := 1; i < 10; i++ {
		s := fmt.Sprintf("s%d", i)
		if i%2 == 0 {
			if n := r.served(t, s, "gh", "at-"+s+"-gh"); n != 1 {
				t.Errorf("miss (one provider): %d round trips, want 1", n)
			}
			if n := r.served(t, s, "gh", "at-"+s+"-gh"); n != 0 {
				t.Errorf("hit (one provider): %d round trips, want 0", n)
			}
			continue
		}
		for j := range 2 {
			before := r.counter.roundTrips()
			res, err := r.svc.Lookup(ctx, s, upstreamtoken.Binding{Subject: "alice", ClientID: "app"}, "gh", "google")
			if err != nil || res.NumCredentials() != 2 {
				t.Fatalf("Lookup = %d credentials, %v", res.NumCredentials(), err)
			}
			want := int64(1 - j)
			if n := r.counter.roundTrips() - before; n != want {
				t.Errorf("%s (two providers): %d round trips, want %d", map[int]string{0: "miss", 1: "hit"}[j], n, want)
			}
		}
	}
	if n := r.counter.prepares.Load() - prepared; n != 0 {
		t.Errorf("%d statements prepared again: the statement cache is not used", n)
	}
}

// TestMemoryBound reads more sessions than the cache holds, on a replica
// whose listener is live.
func TestMemoryBound(t *testing.T) {
	dsn := pgtest.New(t)
	const size = 100
	r := newReplica(t, "R", dsn, replicaOptions{size: size})
	for i := range 3 * size {
		s := fmt.Sprintf("s%d", i)
		if err := r.pg.Put(t.Context(), pgRow(s, "gh", "at-"+s)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 * size {
		s := fmt.Sprintf("s%d", i)
		r.served(t, s, "gh", "at-"+s)
		if st := r.cache.Stats(); st.Rows > size {
			t.Fatalf("the cache holds %d rows, more than its size %d", st.Rows, size)
		}
	}
	if st := r.cache.Stats(); st.Rows < size/2 {
		t.Errorf("the cache holds only %d rows of %d", st.Rows, size)
	}
}
