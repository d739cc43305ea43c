package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extauthz/extauthz/store"
)

// Replicator is implemented by a store under test that can open a second
// handle on its data, as another replica would: for PostgreSQL, a Store with
// a connection pool of its own on the same database. The store.Collector
// lock tests run between the two handles; for a store that is not a
// Replicator, they run two passes on the one handle.
type Replicator interface {
	Replica(t *testing.T) store.Store
}

// collector returns s as a store.Collector, or skips the test if it is not
// one.
func collector(t *testing.T, s store.Store) store.Collector {
	t.Helper()
	c, ok := s.(store.Collector)
	if !ok {
		t.Skipf("%T does not implement store.Collector", s)
	}
	return c
}

// replicas returns two collectors on the data of s: s and its Replica if it
// is a Replicator, s twice otherwise.
func replicas(t *testing.T, s store.Store) (a, b store.Collector) {
	t.Helper()
	a = collector(t, s)
	if r, ok := s.(Replicator); ok {
		return a, collector(t, r.Replica(t))
	}
	return a, a
}

// sessionRow returns a row whose session expires at expires (never, for the
// zero time).
func sessionRow(sessionID, provider string, expires time.Time) store.Row {
	r := fullRow(sessionID, provider)
	r.SessionExpiresAt = expires
	return r
}

// present reports whether the row (sessionID, provider) is in s.
func present(t *testing.T, s store.Store, sessionID, provider string) bool {
	t.Helper()
	_, err := s.Get(t.Context(), sessionID, provider)
	switch {
	case err == nil:
		return true
	case errors.Is(err, store.ErrNotFound):
		return false
	}
	t.Fatalf("Get(%q, %q) = %v", sessionID, provider, err)
	return false
}

func mustDeleteExpired(t *testing.T, c store.Collector, limit int) int {
	t.Helper()
	n, err := c.DeleteExpired(t.Context(), limit)
	if err != nil {
		t.Fatalf("DeleteExpired(%d) = %v", limit, err)
	}
	return n
}

func testDeleteExpired(t *testing.T, s store.Store) {
	c := collector(t, s)
	past, longPast, future := timeIn(2001, time.May, 6), timeIn(1999, time.June, 7), timeIn(2099, time.July, 8)
	rows := []struct {
		row  store.Row
		kept bool
	}{
		{sessionRow("gone", "github", past), false},
		{sessionRow("gone", "google", longPast), false},
		{sessionRow("gone-too", "github", past), false},
		{sessionRow("live", "github", future), true},
		{sessionRow("never", "github", time.Time{}), true},
		// Rows are collected one by one: a session's live row stays.
		{sessionRow("mixed", "github", past), false},
		{sessionRow("mixed", "google", future), true},
	}
	want := 0
	for _, r := range rows {
		mustPut(t, s, r.row)
		if !r.kept {
			want++
		}
	}
	// A refresh lease or a re-authentication mark does not save a row.
	mustHold(t, s, "gone", "github", "holder", longTTL)
	markReauth(t, s, "gone-too", "github")

	if n := mustDeleteExpired(t, c, 100); n != want {
		t.Errorf("DeleteExpired = %d, want %d", n, want)
	}
	for _, r := range rows {
		if got := present(t, s, r.row.SessionID, r.row.Provider); got != r.kept {
			t.Errorf("row (%q, %q) present = %v, want %v", r.row.SessionID, r.row.Provider, got, r.kept)
		}
	}
	if d := diff(rows[3].row, mustGet(t, s, "live", "github")); d != "" {
		t.Errorf("live row changed: %s", d)
	}
	if n := mustDeleteExpired(t, c, 100); n != 0 {
		t.Errorf("DeleteExpired again = %d, want 0", n)
	}
}

func testDeleteExpiredLimit(t *testing.T, s store.Store) {
	c := collector(t, s)
	const expired = 7
	for i := range expired {
		mustPut(t, s, sessionRow(fmt.Sprintf("gone-%d", i), "github", timeIn(2001, time.May, 1+i)))
	}
	mustPut(t, s, sessionRow("live", "github", timeIn(2099, time.May, 6)))
	mustPut(t, s, sessionRow("never", "github", time.Time{}))

	for i, want := range []int{3, 3, 1, 0} {
		if n := mustDeleteExpired(t, c, 3); n != want {
			t.Errorf("DeleteExpired(3) call %d = %d, want %d", i+1, n, want)
		}
	}
	for i := range expired {
		if present(t, s, fmt.Sprintf("gone-%d", i), "github") {
			t.Errorf("expired row gone-%d still present", i)
		}
	}
	if !present(t, s, "live", "github") || !present(t, s, "never", "github") {
		t.Errorf("a live row was deleted")
	}

	for _, limit := range []int{0, -1} {
		if _, err := c.DeleteExpired(t.Context(), limit); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("DeleteExpired(%d) = %v, want ErrInvalid", limit, err)
		}
	}
}

// testDeleteExpiredByStoreClock checks that expiry is judged by the store's
// clock (which stamps CreatedAt), not by the caller's.
func testDeleteExpiredByStoreClock(t *testing.T, s store.Store) {
	c := collector(t, s)
	const ahead = 2 * time.Second
	mustPut(t, s, fullRow("probe", "github"))
	now := mustGet(t, s, "probe", "github").CreatedAt
	mustPut(t, s, sessionRow("soon", "github", now.Add(ahead)))

	if n := mustDeleteExpired(t, c, 10); n != 0 || !present(t, s, "soon", "github") {
		t.Fatalf("DeleteExpired before the session expires = %d; want 0 and the row kept", n)
	}
	pass(s, ahead+100*time.Millisecond)
	if n := mustDeleteExpired(t, c, 10); n != 1 || present(t, s, "soon", "github") {
		t.Errorf("DeleteExpired once the session has expired = %d; want 1 and the row gone", n)
	}
}

var errPass = errors.New("storetest: the pass failed")

// testRunExclusive holds the collection lock in one pass and checks that
// another pass, from this replica or another, is refused until it is
// released.
func testRunExclusive(t *testing.T, s store.Store) {
	a, b := replicas(t, s)
	ctx := t.Context()

	entered, release := make(chan struct{}), make(chan struct{})
	type result struct {
		ran bool
		err error
	}
	done := make(chan result, 1)
	go func() {
		ran, err := a.RunExclusive(ctx, func(context.Context) error {
			close(entered)
			<-release
			return errPass
		})
		done <- result{ran, err}
	}()
	select {
	case <-entered:
	case r := <-done:
		t.Fatalf("first RunExclusive = %v, %v without running its pass", r.ran, r.err)
	case <-time.After(30 * time.Second):
		t.Fatal("first RunExclusive did not start its pass")
	}

	for name, other := range map[string]store.Collector{"another replica": b, "the same replica": a} {
		called := false
		ran, err := other.RunExclusive(ctx, func(context.Context) error { called = true; return nil })
		if ran || err != nil || called {
			t.Errorf("RunExclusive by %s while a pass runs = %v, %v (pass called: %v); want false, nil, not called",
				name, ran, err, called)
		}
	}

	close(release)
	if r := <-done; !r.ran || !errors.Is(r.err, errPass) {
		t.Errorf("first RunExclusive = %v, %v; want true and the pass's error", r.ran, r.err)
	}
	// The lock is free again, even after a failed pass, for either replica.
	for _, c := range []store.Collector{b, a} {
		called := false
		ran, err := c.RunExclusive(ctx, func(context.Context) error { called = true; return nil })
		if !ran || err != nil || !called {
			t.Errorf("RunExclusive after the first pass ended = %v, %v (pass called: %v); want true, nil, called", ran, err, called)
		}
	}

	if _, err := a.RunExclusive(ctx, nil); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("RunExclusive(nil) = %v, want ErrInvalid", err)
	}
}

// testConcurrentPasses starts passes on two replicas at once, again and
// again, and checks that no two ever run together.
func testConcurrentPasses(t *testing.T, s store.Store) {
	a, b := replicas(t, s)
	const rounds = 10
	var (
		inFlight, most atomic.Int32
		ran, skipped   atomic.Int32
		wg             sync.WaitGroup
	)
	fn := func(context.Context) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
		return nil
	}
	for range rounds {
		start := make(chan struct{})
		for _, c := range []store.Collector{a, b, a, b} {
			wg.Go(func() {
				<-start
				ok, err := c.RunExclusive(t.Context(), fn)
				switch {
				case err != nil:
					t.Errorf("RunExclusive = %v", err)
				case ok:
					ran.Add(1)
				default:
					skipped.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
	}
	if m := most.Load(); m != 1 {
		t.Errorf("%d passes ran at once, want 1", m)
	}
	if ran.Load() < rounds {
		t.Errorf("%d passes ran in %d rounds, want at least one a round", ran.Load(), rounds)
	}
	t.Logf("%d passes ran, %d skipped", ran.Load(), skipped.Load())
}

func testCollectorCancelledContext(t *testing.T, s store.Store) {
	c := collector(t, s)
	mustPut(t, s, sessionRow("gone", "github", timeIn(2001, time.May, 6)))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.DeleteExpired(ctx, 10); !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("DeleteExpired = %v, want an error wrapping ErrUnavailable and context.Canceled", err)
	}
	called := false
	ran, err := c.RunExclusive(ctx, func(context.Context) error { called = true; return nil })
	if ran || called || !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("RunExclusive = %v, %v (pass called: %v); want false, ErrUnavailable and context.Canceled, not called", ran, err, called)
	}
	if !present(t, s, "gone", "github") {
		t.Errorf("row deleted by a call with a cancelled context")
	}
}
