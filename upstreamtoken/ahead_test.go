package upstreamtoken

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"unsafe"

	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/memory"
)

// triggers records the trigger observer's calls and the wait observer's.
type triggers struct {
	mu     sync.Mutex
	seen   []string
	waited int
}

func (o *triggers) observe(provider, trigger, outcome string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seen = append(o.seen, provider+":"+trigger+":"+outcome)
}

func (o *triggers) wait(string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.waited++
}

func (o *triggers) get() ([]string, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.seen...), o.waited
}

var aheadCfg = Ahead{Window: 10 * time.Minute, Margin: 2 * time.Minute, Concurrency: 4, MaxEntries: 1000, Interval: time.Second}

func shutdown(t *testing.T, svcs ...*InProcessService) {
	t.Helper()
	for _, s := range svcs {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}
}

func TestCheckWaitsForRefreshAhead(t *testing.T) {
	// In a synctest bubble the provider's 100 s and the lease polling take
	// no real time. Replica a refreshes ahead; a Check arrives at a (in
	// process) and at replica b (through the lease) once the token has
	// expired for Checks, while a's background refresh is still redeeming.
	synctest.Test(t, func(t *testing.T) {
		st := memory.New()
		start := time.Now()
		if err := st.Put(context.Background(), row("gh", start.Add(90*time.Second), "rt")); err != nil {
			t.Fatal(err)
		}
		ref := &fakeRefresher{delay: 100 * time.Second, rotate: true}
		var oa, ob triggers
		opts := []Option{WithRefreshTimeout(3 * time.Minute), WithSkew(30 * time.Second)}
		a := NewInProcessService(st, ref, append(opts, WithOwner("a"), WithRefreshAhead(aheadCfg),
			WithTriggerObserver(oa.observe), WithWaitObserver(oa.wait))...)
		b := NewInProcessService(st, ref, append(opts, WithOwner("b"),
			WithTriggerObserver(ob.observe), WithWaitObserver(ob.wait))...)
		defer shutdown(t, a, b)
		if c, err := a.GetValidTokens(context.Background(), "s1", "gh"); err != nil || c.AccessToken != "gh-access-0" {
			t.Fatalf("first Check: served the stored token %v, %v", err == nil && c.AccessToken == "gh-access-0", err)
		}
		a.StartRefreshAhead()
		for ref.calls.Load() == 0 {
			time.Sleep(time.Second)
		}
		began := time.Now()
		// The token is now due for Checks too (within the 30 s skew).
		time.Sleep(max(time.Second, start.Add(61*time.Second).Sub(began)))
		if ref.calls.Load() != 1 || time.Since(began) >= ref.delay {
			t.Fatal("the background refresh should still be redeeming")
		}
		var wg sync.WaitGroup
		for _, svc := range []*InProcessService{a, b} {
			wg.Go(func() {
				c, err := svc.GetValidTokens(context.Background(), "s1", "gh")
				if err != nil || c.AccessToken != "gh-access-1" {
					t.Errorf("Check during the refresh ahead: served the new token %v, error %v", err == nil && c.AccessToken == "gh-access-1", err)
				}
			})
		}
		wg.Wait()
		if n := ref.calls.Load(); n != 1 {
			t.Errorf("refresh token redeemed %d times, want 1", n)
		}
		seenA, waitedA := oa.get()
		seenB, waitedB := ob.get()
		if fmt.Sprint(seenA) != "[gh:ahead:ok]" || fmt.Sprint(seenB) != "[gh:check:skipped]" {
			t.Errorf("triggers a %v, b %v; want [gh:ahead:ok] and [gh:check:skipped]", seenA, seenB)
		}
		if waitedA != 1 || waitedB != 1 {
			t.Errorf("Checks that waited: a %d, b %d; want 1 each", waitedA, waitedB)
		}
	})
}

func TestRefreshAheadSkipsSessionsOutsideTheWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := memory.New()
		start := time.Now()
		expires := start.Add(20 * time.Minute)
		for _, id := range []string{"s1", "s2"} {
			r := row("gh", expires, "rt-"+id)
			r.SessionID = id
			if err := st.Put(context.Background(), r); err != nil {
				t.Fatal(err)
			}
		}
		ref := &fakeRefresher{rotate: true}
		svc := NewInProcessService(st, ref, WithSkew(30*time.Second), WithRefreshAhead(aheadCfg))
		defer shutdown(t, svc)
		svc.StartRefreshAhead()
		serve := func(ids ...string) {
			for _, id := range ids {
				if _, err := svc.GetValidTokens(context.Background(), id, "gh"); err != nil {
					t.Fatal(err)
				}
			}
		}
		serve("s1", "s2")
		time.Sleep(9 * time.Minute)
		serve("s1") // s2 was last served 9 minutes ago
		// Every lead is at most the 2 min margin: nothing is due before 18
		// minutes, when s2 has been out of the 10 min window for 8.
		time.Sleep(11*time.Minute - 20*time.Second)
		ref.mu.Lock()
		seen := fmt.Sprint(ref.seen)
		ref.mu.Unlock()
		if seen != "[rt-s1]" {
			t.Errorf("refresh tokens redeemed ahead: %v, want only s1's [rt-s1]", seen)
		}
		for id, want := range map[string]bool{"s1": true, "s2": false} {
			r, err := st.Get(context.Background(), id, "gh")
			if err != nil {
				t.Fatal(err)
			}
			if got := r.AccessToken != "gh-access-0"; got != want {
				t.Errorf("%s refreshed ahead: %v, want %v", id, got, want)
			}
		}
	})
}

func TestRefreshAheadJitter(t *testing.T) {
	const skew, n = 30 * time.Second, 10000
	tests := []struct {
		name   string
		margin time.Duration
	}{
		{"2 min margin", 2 * time.Minute},
		{"10 min margin", 10 * time.Minute},
		{"margin at the skew", skew},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &ahead{cfg: Ahead{Margin: tc.margin}, skew: skew}
			perSecond := map[time.Duration]int{}
			for i := range n {
				lead := a.lead(fmt.Sprintf("session-%d", i), "gh")
				if lead < skew || (lead >= tc.margin && tc.margin > skew) {
					t.Fatalf("lead %v outside [%v, %v)", lead, skew, tc.margin)
				}
				perSecond[lead.Truncate(time.Second)]++
			}
			if tc.margin <= skew {
				return
			}
			// Tokens that all expire in the same second are refreshed over
			// the whole spread: no second gets more than twice its share.
			seconds := int((tc.margin - skew) / time.Second)
			share := n / seconds
			if len(perSecond) < seconds*9/10 {
				t.Errorf("%d tokens fell in %d distinct seconds of %d", n, len(perSecond), seconds)
			}
			for s, c := range perSecond {
				if c > 2*share+5 {
					t.Errorf("%d tokens due in second %v, share %d", c, s, share)
				}
			}
		})
	}
}

// The record of served sessions is bounded, over all its shards: the least
// recently served go first.
func TestRefreshAheadRecordBounded(t *testing.T) {
	for _, tc := range []struct{ max, served int }{{2, 5}, {1000, 5000}, {5000, 20000}} {
		t.Run(fmt.Sprint(tc.max), func(t *testing.T) {
			cfg := aheadCfg
			cfg.MaxEntries = tc.max
			svc := newService(newStore(t), nil, WithRefreshAhead(cfg))
			for i := range tc.served {
				svc.ahead.served(store.Row{SessionID: fmt.Sprint(i), Provider: "gh", Tokens: store.Tokens{RefreshToken: "rt", ExpiresAt: t0}}, t0)
			}
			if n := svc.ahead.seen.Len(); n != tc.max {
				t.Errorf("record holds %d entries over %d shards, want %d", n, svc.ahead.seen.Shards(), tc.max)
			}
			gh, _ := svc.ahead.providers.id("gh")
			last := aheadKey{fmt.Sprint(tc.served - 1), gh}
			_, sh := svc.ahead.shard(last.session)
			sh.Lock()
			_, ok := sh.Peek(last)
			sh.Unlock()
			if !ok {
				t.Error("the session served last was evicted")
			}
		})
	}
}

// shortRefresher issues tokens that live for life from the (bubble's) now.
type shortRefresher struct {
	life  time.Duration
	calls atomic.Int32
}

func (r *shortRefresher) Refresh(ctx context.Context, provider, rt string) (store.Tokens, error) {
	n := r.calls.Add(1)
	return store.Tokens{AccessToken: fmt.Sprintf("%s-access-%d", provider, n), RefreshToken: rt, ExpiresAt: time.Now().Add(r.life)}, nil
}

func TestRefreshAheadShortLivedTokens(t *testing.T) {
	// The provider's tokens live 90 s, less than the 2 min margin: each
	// refreshed token is due again only after half its life, not at once.
	synctest.Test(t, func(t *testing.T) {
		st := memory.New()
		if err := st.Put(context.Background(), row("gh", time.Now().Add(time.Hour), "rt")); err != nil {
			t.Fatal(err)
		}
		ref := &shortRefresher{life: 90 * time.Second}
		svc := NewInProcessService(st, ref, WithSkew(30*time.Second), WithRefreshAhead(aheadCfg))
		defer shutdown(t, svc)
		svc.StartRefreshAhead()
		// The session is in use, served every 30 s, for 65 minutes: the
		// first refresh comes within the margin of the hour.
		for range 130 {
			if _, err := svc.GetValidTokens(context.Background(), "s1", "gh"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(30 * time.Second)
		}
		// At most 7 minutes of 90 s tokens, each refreshed at most 45 s
		// before expiry: about one refresh a minute, far from one a second.
		if n := ref.calls.Load(); n < 2 || n > 12 {
			t.Errorf("%d refreshes in 65 minutes, want between 2 and 12", n)
		}
	})
}

// slowRefresher answers after latency with a token living an hour.
type slowRefresher struct {
	latency time.Duration
	calls   atomic.Int32
}

func (r *slowRefresher) Refresh(ctx context.Context, provider, rt string) (store.Tokens, error) {
	time.Sleep(r.latency)
	n := r.calls.Add(1)
	return store.Tokens{AccessToken: fmt.Sprintf("%s-access-%d", provider, n), RefreshToken: rt, ExpiresAt: time.Now().Add(time.Hour)}, nil
}

func TestRefreshAheadOutpacesTheScan(t *testing.T) {
	// 40 rows come due together, 2 refreshes at a time, the provider
	// answering in 100 ms: each worker takes the next row as soon as it is
	// done, so all are refreshed within about 2 s, not at the scan's pace
	// of 2 rows a second (20 s).
	synctest.Test(t, func(t *testing.T) {
		st := memory.New()
		const rows = 40
		for i := range rows {
			r := row("gh", time.Now().Add(2*time.Second), "rt")
			r.SessionID = fmt.Sprint(i)
			if err := st.Put(context.Background(), r); err != nil {
				t.Fatal(err)
			}
		}
		ref := &slowRefresher{latency: 100 * time.Millisecond}
		cfg := aheadCfg
		cfg.Concurrency, cfg.Margin = 2, 10*time.Minute
		svc := NewInProcessService(st, ref, WithSkew(time.Second), WithRefreshAhead(cfg))
		defer shutdown(t, svc)
		for i := range rows {
			if _, err := svc.GetValidTokens(context.Background(), fmt.Sprint(i), "gh"); err != nil {
				t.Fatal(err)
			}
		}
		svc.StartRefreshAhead()
		time.Sleep(5 * time.Second)
		if n := ref.calls.Load(); n != rows {
			t.Errorf("%d refreshes ahead within 5 s, want %d (each row once)", n, rows)
		}
	})
}

// The scan skips a shard until its wake time: every way a row comes due
// must wake its shard in time. Each step scans at a time and expects the
// sessions queued then (taking them off the queue: a refresh that gets the
// given expiry, or a pause that drops them).
func TestRefreshAheadScanWakesShards(t *testing.T) {
	const window = 10 * time.Minute
	cfg := Ahead{Window: window, Margin: 2 * time.Minute, MaxEntries: 1000, Concurrency: 1}
	svc := newService(newStore(t), nil, WithRefreshAhead(cfg))
	a := svc.ahead
	if a.seen.Shards() < 2 {
		t.Fatalf("%d shards: the test needs several", a.seen.Shards())
	}
	serve := func(session string, expires, now time.Time) {
		a.served(store.Row{SessionID: session, Provider: "gh", Tokens: store.Tokens{RefreshToken: "rt", ExpiresAt: expires}}, now)
	}
	dueAt := func(session string, expires time.Time) time.Time { return expires.Add(-a.lead(session, "gh")) }
	var paused bool
	scan := func(now time.Time) (queued []string) {
		t.Helper()
		a.due(now, func(string) bool { return paused })
		for {
			j, ok := a.next("gh", false)
			if !ok {
				return queued
			}
			queued = append(queued, j.key.session)
			a.finish(j, time.Time{}, now) // forgotten unless a test step serves it again
		}
	}
	expect := func(step string, got []string, want ...string) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: queued %v, want %v", step, got, want)
		}
	}

	// s2 shares s1's shard, so that the scans for s1 recompute the
	// shard's wake time with s2 in it.
	s2 := ""
	for i := 0; s2 == ""; i++ {
		s, _ := a.shard("s1")
		if c, _ := a.shard(fmt.Sprint("s2-", i)); c == s {
			s2 = fmt.Sprint("s2-", i)
		}
	}
	exp := t0.Add(5 * time.Minute)
	serve("s1", exp, t0)
	serve(s2, t0.Add(time.Hour), t0)
	expect("at the start", scan(t0))
	expect("just before s1 is due", scan(dueAt("s1", exp).Add(-time.Nanosecond)))
	expect("when s1 is due", scan(dueAt("s1", exp)), "s1")

	// A provider's pause keeps a due row recorded; the scan after it
	// queues the row.
	serve("s1", exp, dueAt("s1", exp))
	paused = true
	expect("paused", scan(dueAt("s1", exp).Add(time.Second)))
	paused = false
	expect("after the pause", scan(dueAt("s1", exp).Add(2*time.Second)), "s1")

	// A queued row that a pause drops from the queue is queued again at
	// the next scan.
	now := dueAt("s1", exp).Add(3 * time.Second)
	serve("s1", exp, now)
	a.due(now, func(string) bool { return false })
	if _, ok := a.next("gh", true); ok {
		t.Fatal("next on a paused provider handed out a row")
	}
	expect("after the queue was dropped", scan(now.Add(time.Second)), "s1")

	// A refresh ahead's new expiry wakes the shard when the row comes due
	// again.
	now = now.Add(2 * time.Second)
	serve("s1", exp, now)
	a.due(now, func(string) bool { return false })
	j, ok := a.next("gh", false)
	if !ok {
		t.Fatal("s1 not queued")
	}
	renewed := now.Add(4 * time.Minute)
	a.finish(j, renewed, now)
	a.next("gh", false) // frees the worker slot
	expect("before the renewed token is due", scan(now.Add(time.Second)))
	expect("when the renewed token is due", scan(dueAt("s1", renewed)), "s1")

	// A row served with an earlier expiry than recorded wakes its shard
	// earlier.
	serve("s3", t0.Add(time.Hour), now)
	expect("s3 far from due", scan(now.Add(time.Second)))
	sooner := now.Add(3 * time.Minute)
	serve("s3", sooner, now.Add(2*time.Second))
	expect("s3 due sooner", scan(dueAt("s3", sooner)), "s3")

	// An entry not served within the window is forgotten at the first
	// scan after it.
	before := a.seen.Len()
	expect("s2 stale", scan(t0.Add(window+time.Nanosecond)))
	if a.seen.Len() != before-1 {
		t.Errorf("record holds %d entries after s2 went stale, want %d", a.seen.Len(), before-1)
	}
}

// A recorded session ID is the record's own copy: a row's session ID that
// is part of a larger string does not keep that string alive.
func TestRefreshAheadRecordCopiesSessionID(t *testing.T) {
	svc := newService(newStore(t), nil, WithRefreshAhead(aheadCfg))
	big := strings.Repeat("x", 4096) + "session-1"
	id := big[4096:]
	for range 2 { // recorded, then served again with a new expiry
		for i := range 2 {
			svc.ahead.served(store.Row{SessionID: id, Provider: "gh",
				Tokens: store.Tokens{RefreshToken: "rt", ExpiresAt: t0.Add(time.Duration(i+1) * time.Hour)}}, t0.Add(time.Duration(i)*time.Minute))
		}
	}
	_, sh := svc.ahead.shard(id)
	sh.Lock()
	defer sh.Unlock()
	n := 0
	for k := range sh.All() {
		if k.session != id {
			continue
		}
		n++
		p := uintptr(unsafe.Pointer(unsafe.StringData(k.session)))
		start := uintptr(unsafe.Pointer(unsafe.StringData(big)))
		if p >= start && p < start+uintptr(len(big)) {
			t.Error("the recorded session ID points into the row's larger string")
		}
	}
	if n != 1 {
		t.Fatalf("session recorded %d times, want once", n)
	}
}
