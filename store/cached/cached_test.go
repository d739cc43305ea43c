package cached_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/cached"
	"github.com/extauthz/extauthz/store/memory"
	"github.com/extauthz/extauthz/store/storetest"
)

// forever is a Trust that does not run out during a test.
func forever() time.Time { return time.Now().Add(time.Hour) }

// The decorator keeps the whole store contract, cache in use.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		c := cached.New(memory.New(), cached.Options{Size: 100})
		c.Trust(forever())
		return c
	})
}

// counting counts the reads that reach the inner store; its hook, if set,
// runs in the middle of each read.
type counting struct {
	store.Store
	reads *atomic.Int64
	hook  func()
}

func newCounting() counting { return counting{Store: memory.New(), reads: new(atomic.Int64)} }

func (c counting) Get(ctx context.Context, sessionID, provider string) (store.Row, error) {
	c.reads.Add(1)
	r, err := c.Store.Get(ctx, sessionID, provider)
	if c.hook != nil {
		c.hook()
	}
	return r, err
}

func (c counting) GetSession(ctx context.Context, sessionID string) ([]store.Row, error) {
	c.reads.Add(1)
	rows, err := c.Store.GetSession(ctx, sessionID)
	if c.hook != nil {
		c.hook()
	}
	return rows, err
}

var t0 = time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)

func row(session, provider, access string, expires time.Time) store.Row {
	return store.Row{SessionID: session, Provider: provider, Subject: "alice", ClientID: "app",
		Tokens: store.Tokens{AccessToken: access, RefreshToken: "rt", ExpiresAt: expires}}
}

type fixture struct {
	inner counting
	c     *cached.Store
	clock *testutil.Clock
}

func newFixture(t *testing.T, size int) *fixture {
	t.Helper()
	f := &fixture{inner: newCounting(), clock: testutil.NewClock(t0)}
	f.c = cached.New(f.inner, cached.Options{Size: size, Skew: 30 * time.Second, Now: f.clock.Now})
	f.c.Trust(forever())
	return f
}

func (f *fixture) put(t *testing.T, r store.Row) {
	t.Helper()
	if err := f.inner.Store.Put(t.Context(), r); err != nil { // behind the cache's back
		t.Fatal(err)
	}
}

// get reads (session, provider) through the cache and returns the access
// token ("" when not found) and whether the inner store was read.
func (f *fixture) get(t *testing.T, session, provider string) (string, bool) {
	t.Helper()
	before := f.inner.reads.Load()
	r, err := f.c.Get(t.Context(), session, provider)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return r.AccessToken, f.inner.reads.Load() != before
}

func (f *fixture) expect(t *testing.T, session, provider, wantToken string, wantRead bool) {
	t.Helper()
	got, read := f.get(t, session, provider)
	if got != wantToken || read != wantRead {
		t.Fatalf("Get(%s, %s) = %q, read the store %v; want %q, %v", session, provider, got, read, wantToken, wantRead)
	}
}

func TestHitAndMiss(t *testing.T) {
	f := newFixture(t, 100)
	f.put(t, row("s1", "gh", "at1", t0.Add(time.Hour)))
	f.expect(t, "s1", "gh", "at1", true)
	f.expect(t, "s1", "gh", "at1", false)
	// A change behind the cache's back is not seen until invalidated...
	f.put(t, row("s1", "gh", "at2", t0.Add(time.Hour)))
	f.expect(t, "s1", "gh", "at1", false)
	// ... by the invalidation source.
	f.c.Invalidate("s1", "gh")
	f.expect(t, "s1", "gh", "at2", true)
	f.expect(t, "s1", "gh", "at2", false)
	f.put(t, row("s1", "gh", "at3", t0.Add(time.Hour)))
	f.c.InvalidateAll()
	f.expect(t, "s1", "gh", "at3", true)
	st := f.c.Stats()
	if st.Hits != 3 || st.Misses != 3 || st.Bypassed != 0 || st.Sessions != 1 || st.Rows != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestAbsentRowsAndSessions(t *testing.T) {
	f := newFixture(t, 100)
	f.expect(t, "s1", "gh", "", true)
	f.expect(t, "s1", "gh", "", false) // known absent
	rows, err := f.c.GetSession(t.Context(), "nobody")
	if err != nil || rows == nil || len(rows) != 0 {
		t.Fatalf("GetSession(unknown) = %v, %v; want an empty slice", rows, err)
	}
	before := f.inner.reads.Load()
	rows, err = f.c.GetSession(t.Context(), "nobody")
	if err != nil || rows == nil || len(rows) != 0 || f.inner.reads.Load() != before {
		t.Fatalf("GetSession(unknown) again = %v, %v, read %v; want an empty slice from the cache", rows, err, f.inner.reads.Load() != before)
	}
	f.expect(t, "nobody", "gh", "", false) // the whole session is known: absent
	// The row appears: a write through the cache invalidates.
	if err := f.c.Put(t.Context(), row("s1", "gh", "at1", t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	f.expect(t, "s1", "gh", "at1", true)
}

func TestGetSessionServesGet(t *testing.T) {
	f := newFixture(t, 100)
	f.put(t, row("s1", "gh", "at-gh", t0.Add(time.Hour)))
	f.put(t, row("s1", "google", "at-google", t0.Add(2*time.Hour)))
	rows, err := f.c.GetSession(t.Context(), "s1")
	if err != nil || len(rows) != 2 {
		t.Fatalf("GetSession = %v, %v", rows, err)
	}
	rows[0].AccessToken = "scribbled" // the caller's copy
	f.expect(t, "s1", "gh", "at-gh", false)
	f.expect(t, "s1", "google", "at-google", false)
	f.expect(t, "s1", "okta", "", false)
	before := f.inner.reads.Load()
	rows, err = f.c.GetSession(t.Context(), "s1")
	if err != nil || len(rows) != 2 || rows[0].Provider != "gh" || rows[1].Provider != "google" || f.inner.reads.Load() != before {
		t.Fatalf("GetSession again = %v, %v", rows, err)
	}
	// Rows read one by one do not make a complete session.
	f2 := newFixture(t, 100)
	f2.put(t, row("s1", "gh", "at-gh", t0.Add(time.Hour)))
	f2.put(t, row("s1", "google", "at-google", t0.Add(time.Hour)))
	f2.expect(t, "s1", "gh", "at-gh", true)
	f2.expect(t, "s1", "google", "at-google", true)
	f2.expect(t, "s1", "gh", "at-gh", false)
	before = f2.inner.reads.Load()
	if rows, err := f2.c.GetSession(t.Context(), "s1"); err != nil || len(rows) != 2 || f2.inner.reads.Load() == before {
		t.Fatalf("GetSession after two Gets = %v, %v, read %v; want both rows, read from the store", rows, err, f2.inner.reads.Load() != before)
	}
}

// TestExpiry checks that a row is served until its token's expiry minus the
// skew, and that any entry is served at most MaxAge.
func TestExpiry(t *testing.T) {
	f := newFixture(t, 100)
	exp := t0.Add(4 * time.Minute)
	f.put(t, row("s1", "gh", "at1", exp))
	f.put(t, row("s2", "gh", "forever", time.Time{}))
	f.expect(t, "s1", "gh", "at1", true)
	f.expect(t, "s2", "gh", "forever", true)
	f.clock.Advance(exp.Add(-30*time.Second - time.Nanosecond).Sub(f.clock.Now()))
	f.expect(t, "s1", "gh", "at1", false)
	f.clock.Advance(time.Nanosecond) // now within the skew
	f.expect(t, "s1", "gh", "at1", true)
	f.expect(t, "s1", "gh", "at1", true) // and never cached again
	// The token that never expires is bounded by MaxAge (5 min).
	f.expect(t, "s2", "gh", "forever", false)
	f.clock.Advance(t0.Add(cached.DefaultMaxAge - time.Nanosecond).Sub(f.clock.Now()))
	f.expect(t, "s2", "gh", "forever", false)
	f.clock.Advance(time.Nanosecond)
	f.expect(t, "s2", "gh", "forever", true)
	f.expect(t, "s2", "gh", "forever", false)
	// An expired row is never cached, even as part of a session.
	f.put(t, row("s3", "gh", "old", t0))
	f.put(t, row("s3", "google", "fresh", f.clock.Now().Add(time.Hour)))
	for range 2 {
		before := f.inner.reads.Load()
		if _, err := f.c.GetSession(t.Context(), "s3"); err != nil || f.inner.reads.Load() == before {
			t.Fatalf("GetSession of a session with an expired row: %v, read %v; want read from the store", err, f.inner.reads.Load() != before)
		}
	}
}

// TestWritesInvalidate checks that every write through the cache makes the
// next read go to the store.
func TestWritesInvalidate(t *testing.T) {
	ctx := context.Background()
	writes := []struct {
		name  string
		write func(t *testing.T, s store.Store)
	}{
		{"Put", func(t *testing.T, s store.Store) {
			if err := s.Put(ctx, row("s1", "gh", "new", t0.Add(time.Hour))); err != nil {
				t.Fatal(err)
			}
		}},
		{"Delete", func(t *testing.T, s store.Store) {
			if err := s.Delete(ctx, "s1", "gh"); err != nil {
				t.Fatal(err)
			}
		}},
		{"DeleteSession", func(t *testing.T, s store.Store) {
			if err := s.Delete(ctx, "s1", ""); err != nil {
				t.Fatal(err)
			}
		}},
		{"CompleteRefresh", func(t *testing.T, s store.Store) {
			c, err := s.ClaimRefresh(ctx, "s1", "gh", "me", time.Minute)
			if err != nil || !c.Held {
				t.Fatal(c, err)
			}
			if _, err := s.CompleteRefresh(ctx, "s1", "gh", c.Lease, store.Tokens{AccessToken: "new", ExpiresAt: t0.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}},
		{"ReleaseRefreshReauth", func(t *testing.T, s store.Store) {
			c, err := s.ClaimRefresh(ctx, "s1", "gh", "me", time.Minute)
			if err != nil || !c.Held {
				t.Fatal(c, err)
			}
			if err := s.ReleaseRefresh(ctx, "s1", "gh", c.Lease, true); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			c := cached.New(memory.New(), cached.Options{Size: 10, Now: func() time.Time { return t0 }})
			c.Trust(forever())
			if err := c.Put(ctx, row("s1", "gh", "old", t0.Add(time.Hour))); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Get(ctx, "s1", "gh"); err != nil {
				t.Fatal(err)
			}
			if c.Stats().Sessions != 1 {
				t.Fatalf("not cached: %+v", c.Stats())
			}
			w.write(t, c)
			if n := c.Stats().Sessions; n != 0 {
				t.Errorf("after %s the session is still cached", w.name)
			}
		})
	}
	// ClaimRefresh and a plain release change nothing cached, and a claim
	// always reaches the store.
	f := newFixture(t, 10)
	f.put(t, row("s1", "gh", "at", t0.Add(time.Hour)))
	f.expect(t, "s1", "gh", "at", true)
	c, err := f.c.ClaimRefresh(ctx, "s1", "gh", "me", time.Minute)
	if err != nil || !c.Held {
		t.Fatal(c, err)
	}
	if c2, err := f.c.ClaimRefresh(ctx, "s1", "gh", "other", time.Minute); err != nil || c2.Held {
		t.Fatalf("second claim = %+v, %v; want the lease refused", c2, err)
	}
	if err := f.c.ReleaseRefresh(ctx, "s1", "gh", c.Lease, false); err != nil {
		t.Fatal(err)
	}
	f.expect(t, "s1", "gh", "at", false)
}

func TestBypassedUntilTrusted(t *testing.T) {
	// In a bubble the clock moves only when every goroutine waits, so the
	// trust runs out exactly when it should, not roughly.
	synctest.Test(t, func(t *testing.T) {
		inner := newCounting()
		c := cached.New(inner, cached.Options{Size: 10})
		if err := inner.Store.Put(t.Context(), row("s1", "gh", "at", time.Now().Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
		read := func() int64 {
			before := inner.reads.Load()
			if _, err := c.Get(t.Context(), "s1", "gh"); err != nil {
				t.Fatal(err)
			}
			return inner.reads.Load() - before
		}
		for range 3 {
			if read() != 1 {
				t.Fatal("untrusted cache served a read")
			}
		}
		if st := c.Stats(); st.Bypassed != 3 || st.Sessions != 0 {
			t.Fatalf("Stats = %+v; want 3 bypassed, nothing cached", st)
		}
		c.Trust(time.Now().Add(200 * time.Millisecond))
		if read() != 1 || read() != 0 {
			t.Fatal("trusted cache not used")
		}
		time.Sleep(200 * time.Millisecond) // trust runs out by itself, exactly then
		if c.Trusted() || read() != 1 {
			t.Fatal("cache used after its trust ran out")
		}
		c.Trust(forever())
		if read() != 0 {
			t.Fatal("entry lost while trust lapsed without an invalidation")
		}
		c.Trust(time.Time{})
		if read() != 1 {
			t.Fatal("cache used after Trust(zero)")
		}
	})
}

// TestInvalidationDuringReadWins checks that a read which an invalidation
// overtakes does not cache what it read.
func TestInvalidationDuringReadWins(t *testing.T) {
	for _, all := range []bool{false, true} {
		t.Run(fmt.Sprintf("all=%v", all), func(t *testing.T) {
			inner := newCounting()
			var c *cached.Store
			var once sync.Once
			inner.hook = func() {
				once.Do(func() {
					// The row changes after the read saw it, and the
					// notification arrives before the read returns.
					if err := inner.Store.Put(context.Background(), row("s1", "gh", "new", time.Now().Add(time.Hour))); err != nil {
						t.Error(err)
					}
					if all {
						c.InvalidateAll()
					} else {
						c.Invalidate("s1", "gh")
					}
				})
			}
			c = cached.New(inner, cached.Options{Size: 10})
			c.Trust(forever())
			if err := inner.Store.Put(t.Context(), row("s1", "gh", "old", time.Now().Add(time.Hour))); err != nil {
				t.Fatal(err)
			}
			r, err := c.Get(t.Context(), "s1", "gh")
			if err != nil || r.AccessToken != "old" {
				t.Fatalf("first Get = %q, %v", r.AccessToken, err)
			}
			r, err = c.Get(t.Context(), "s1", "gh")
			if err != nil || r.AccessToken != "new" {
				t.Fatalf("second Get = %q, %v; want new: the overtaken read was cached", r.AccessToken, err)
			}
		})
	}
}

func TestBounded(t *testing.T) {
	const size = 50
	f := newFixture(t, size)
	for i := range 10 * size {
		s := fmt.Sprintf("s%d", i)
		f.put(t, row(s, "gh", "at-"+s, t0.Add(time.Hour)))
		f.put(t, row(s, "google", "at-"+s, t0.Add(time.Hour)))
		if _, err := f.c.GetSession(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		f.expect(t, s, "gh", "at-"+s, false)
		if st := f.c.Stats(); st.Rows > size {
			t.Fatalf("cache holds %d rows, more than its size %d", st.Rows, size)
		}
	}
	// The least recently used sessions went; the last ones are there.
	f.expect(t, "s0", "gh", "at-s0", true)
	last := fmt.Sprintf("s%d", 10*size-1)
	f.expect(t, last, "gh", "at-"+last, false)
}

func TestConcurrentUse(t *testing.T) {
	st := cached.New(memory.New(), cached.Options{Size: 16})
	st.Trust(forever())
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 300 {
				s := fmt.Sprintf("s%d", (g*7+i)%24)
				switch i % 5 {
				case 0:
					if err := st.Put(ctx, row(s, "gh", fmt.Sprintf("at-%d", i), time.Now().Add(time.Hour))); err != nil {
						t.Error(err)
					}
				case 1:
					st.Invalidate(s, "gh")
				case 2:
					if _, err := st.GetSession(ctx, s); err != nil {
						t.Error(err)
					}
				default:
					if _, err := st.Get(ctx, s, "gh"); err != nil && !errors.Is(err, store.ErrNotFound) {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	// Whatever the interleaving, the cache agrees with the store now.
	for i := range 24 {
		s := fmt.Sprintf("s%d", i)
		want, werr := st.Get(ctx, s, "gh")
		st.InvalidateAll()
		got, gerr := st.Get(ctx, s, "gh")
		if want.AccessToken != got.AccessToken || (werr == nil) != (gerr == nil) {
			t.Errorf("%s: cached %q (%v), store %q (%v)", s, want.AccessToken, werr, got.AccessToken, gerr)
		}
	}
}

func BenchmarkGetHit(b *testing.B) {
	c := cached.New(memory.New(), cached.Options{Size: 1000})
	c.Trust(time.Now().Add(time.Hour))
	ctx := context.Background()
	if err := c.Put(ctx, row("s1", "gh", "at", time.Now().Add(time.Hour))); err != nil {
		b.Fatal(err)
	}
	if _, err := c.Get(ctx, "s1", "gh"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(ctx, "s1", "gh"); err != nil {
			b.Fatal(err)
		}
	}
}

// decrypting returns rows whose tokens are fresh strings, as the
// decryption below the cache in the service does.
type decrypting struct{ store.Store }

func (d decrypting) Get(ctx context.Context, sessionID, provider string) (store.Row, error) {
	r, err := d.Store.Get(ctx, sessionID, provider)
	r.AccessToken, r.RefreshToken, r.IDToken = strings.Clone(r.AccessToken), strings.Clone(r.RefreshToken), strings.Clone(r.IDToken)
	return r, err
}

// TestMemoryStaysBounded fills a cache of 10 000 rows with twice as many
// sessions of realistic size (a 1 KiB ID token, shorter access and refresh
// tokens) and checks that the heap it holds stays well within the 64 MiB the
// issue allows 10 000 cached sessions.
func TestMemoryStaysBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a large cache")
	}
	const size = 10000
	inner := memory.New()
	c := cached.New(decrypting{inner}, cached.Options{Size: size})
	c.Trust(forever())
	ctx := context.Background()
	pad := func(prefix string, n int) string { return prefix + string(make([]byte, n-len(prefix))) }
	heap := func() uint64 {
		b, _ := testutil.LiveHeap()
		return b
	}
	expires := time.Now().Add(time.Hour)
	for i := range 2 * size {
		s := fmt.Sprintf("session-%06d", i)
		r := row(s, "gh", pad("at-"+s, 200), expires)
		r.RefreshToken, r.IDToken = pad("rt-"+s, 200), pad("id-"+s, 1024)
		if err := inner.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	base := heap()
	for i := range 2 * size {
		if _, err := c.Get(ctx, fmt.Sprintf("session-%06d", i), "gh"); err != nil {
			t.Fatal(err)
		}
		if i == size-1 {
			t.Logf("%d sessions cached: heap +%.1f MiB", size, float64(heap()-base)/(1<<20))
		}
	}
	st := c.Stats()
	grown := heap() - base
	t.Logf("after %d sessions: %d cached, heap +%.1f MiB", 2*size, st.Sessions, float64(grown)/(1<<20))
	if st.Rows > size {
		t.Errorf("%d rows cached, more than %d", st.Rows, size)
	}
	if grown > 64<<20 {
		t.Errorf("the cache grew the heap by %d MiB", grown>>20)
	}
	runtime.KeepAlive(c)
}

// TestHoldsItsSize is the bound as a whole: a cache holds as many rows as its
// size however the sessions spread over its shards, so a working set of
// exactly that many rows, read in turn, always hits. (With a fixed share per
// shard, the shards that drew more than their share evicted their own
// sessions, and about half the reads missed.)
func TestHoldsItsSize(t *testing.T) {
	const sessions = 6000
	inner := newCounting()
	ctx := t.Context()
	expires := time.Now().Add(time.Hour)
	// Sessions of one row read with Get, of two rows read with GetSession,
	// and without a row: 1, 2 and 1 rows in the cache.
	size := 0
	for i := range sessions {
		s := fmt.Sprintf("session-%d", i)
		switch i % 3 {
		case 0:
			size++
		case 1:
			if err := inner.Store.Put(ctx, row(s, "gh", "at-"+s, expires)); err != nil {
				t.Fatal(err)
			}
			size++
		case 2:
			for _, p := range []string{"gh", "google"} {
				if err := inner.Store.Put(ctx, row(s, p, "at-"+s, expires)); err != nil {
					t.Fatal(err)
				}
			}
			size += 2
		}
	}
	c := cached.New(inner, cached.Options{Size: size})
	c.Trust(forever())
	read := func(i int) {
		s := fmt.Sprintf("session-%d", i)
		var err error
		if i%3 == 2 {
			_, err = c.GetSession(ctx, s)
		} else {
			_, err = c.Get(ctx, s, "gh")
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
	}
	for i := range sessions {
		read(i)
	}
	if st := c.Stats(); st.Rows != size || st.Sessions != sessions {
		t.Fatalf("after the first pass: %d sessions, %d rows cached; want %d, %d", st.Sessions, st.Rows, sessions, size)
	}
	before := inner.reads.Load()
	for i := range sessions {
		read(i)
		if n := inner.reads.Load() - before; n != 0 {
			st := c.Stats()
			t.Fatalf("session %d missed in the second pass; the cache of %d rows holds %d sessions, %d rows", i, size, st.Sessions, st.Rows)
		}
	}
	// More sessions than the size: the bound holds, and the least recently
	// used go.
	for i := range sessions {
		s := fmt.Sprintf("more-%d", i)
		if _, err := c.Get(ctx, s, "gh"); !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		if st := c.Stats(); st.Rows > size {
			t.Fatalf("cache holds %d rows, more than its size %d", st.Rows, size)
		}
	}
	// (A session of two rows may have made room for one of one.)
	if st := c.Stats(); st.Rows < size-1 {
		t.Fatalf("cache holds %d rows; want %d", st.Rows, size)
	}
	before = inner.reads.Load()
	read(0)
	if inner.reads.Load() == before {
		t.Error("the least recently used session survived")
	}
}

// TestBoundConcurrent: concurrent fills over every shard, with invalidations,
// never leave the cache above its size, and its count of rows matches what
// it holds.
func TestBoundConcurrent(t *testing.T) {
	inner := memory.New()
	ctx := t.Context()
	expires := time.Now().Add(time.Hour)
	for i := range 500 {
		for _, p := range []string{"gh", "google"}[:1+i%2] {
			if err := inner.Put(ctx, row(fmt.Sprintf("s%d", i), p, "at", expires)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, size := range []int{1, 7, 100, 1000} {
		c := cached.New(inner, cached.Options{Size: size})
		c.Trust(forever())
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 2000 {
					s := fmt.Sprintf("s%d", (g*131+i)%700) // some absent
					var err error
					switch i % 4 {
					case 0:
						_, err = c.GetSession(ctx, s)
					case 1:
						c.Invalidate(s, "")
					default:
						_, err = c.Get(ctx, s, "gh")
					}
					if err != nil && !errors.Is(err, store.ErrNotFound) {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if st := c.Stats(); st.Rows > size || st.Sessions > st.Rows {
			t.Errorf("size %d: cache holds %d sessions, %d rows", size, st.Sessions, st.Rows)
		}
		c.InvalidateAll()
		if st := c.Stats(); st.Rows != 0 || st.Sessions != 0 {
			t.Errorf("size %d: after InvalidateAll, %d sessions, %d rows", size, st.Sessions, st.Rows)
		}
	}
}

func TestEntryNotServedPastSessionExpiry(t *testing.T) {
	clk := t0
	now := func() time.Time { return clk }
	mem := memory.New(memory.WithClock(now))
	r := store.Row{SessionID: "s1", Provider: "gh", Subject: "alice", ClientID: "app",
		Tokens: store.Tokens{AccessToken: "at", ExpiresAt: t0.Add(time.Hour)}, SessionExpiresAt: t0.Add(time.Minute)}
	if err := mem.Put(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	c := cached.New(mem, cached.Options{Size: 16, MaxAge: time.Hour, Now: now})
	c.Trust(time.Now().Add(time.Hour))
	for range 2 {
		if _, err := c.Get(context.Background(), "s1", "gh"); err != nil {
			t.Fatal(err)
		}
	}
	clk = t0.Add(time.Minute)
	before := c.Stats()
	if _, err := c.Get(context.Background(), "s1", "gh"); err != nil {
		t.Fatal(err)
	}
	if got := c.Stats(); got.Hits != before.Hits || got.Misses != before.Misses+1 {
		t.Errorf("read at the session's expiry: hits %d→%d, misses %d→%d; want a miss", before.Hits, got.Hits, before.Misses, got.Misses)
	}
}
