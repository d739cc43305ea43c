//go:build unix

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// wantAllOK checks that every result is an OK with access(i), reporting at
// most a few failures.
func wantAllOK(t *testing.T, what string, res []result, access func(i int) string) {
	t.Helper()
	bad := 0
	for i, r := range res {
		if r.err == nil && r.status == 200 && r.headers["authorization"] == "Bearer "+access(i) {
			continue
		}
		if bad++; bad <= 3 {
			wantOK(t, fmt.Sprintf("%s %d", what, i), r, access(i))
		}
	}
	if bad > 3 {
		t.Errorf("%s: %d of %d Checks not OK with the rotated token", what, bad, len(res))
	}
}

// wantRotatedRow fails unless the row holds the provider's latest tokens for
// its session and is not marked.
func wantRotatedRow(t *testing.T, c *cluster, s session) {
	t.Helper()
	st := c.idp.session(s.id)
	r := c.row(t, s)
	if r.AccessToken != st.access || r.RefreshToken != st.refresh || r.NeedsReauth || time.Until(r.ExpiresAt) < 50*time.Minute {
		t.Errorf("row %s: latest tokens stored %v/%v, needs_reauth %v, expires in %v",
			s.id, r.AccessToken == st.access, r.RefreshToken == st.refresh, r.NeedsReauth, time.Until(r.ExpiresAt).Round(time.Second))
	}
}

// 1. 200 concurrent Checks on one expired session in one process.
func TestExactlyOnceInOneProcess(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a := c.start("a")
	s := c.seed(t, "s-one", "idp", true)

	res := parallel(200, func(int) result { return a.checkWithin(30*time.Second, s.jwt, "") })

	st := c.idp.session(s.id)
	if st.redemptions != 1 || st.reuses != 0 {
		t.Errorf("provider saw %d redemptions (%d reuses), want exactly 1 (0)", st.redemptions, st.reuses)
	}
	wantAllOK(t, "Check", res, func(int) string { return st.access })
	wantRotatedRow(t, c, s)
}

// 2. Two processes, 20 expired sessions, 20 concurrent Checks per session
// spread over both.
func TestExactlyOnceAcrossTwoProcesses(t *testing.T) {
	t.Parallel()
	forEachDatabase(t, exactlyOnceAcrossTwoProcesses)
}

func exactlyOnceAcrossTwoProcesses(t *testing.T, c *cluster) {
	procs := []*proc{c.start("a"), c.start("b")}
	const nSessions, perSession = 20, 20
	sessions := make([]session, nSessions)
	for i := range sessions {
		sessions[i] = c.seed(t, fmt.Sprintf("s-two-%02d", i), "idp", true)
	}

	res := parallel(nSessions*perSession, func(i int) result {
		return procs[i%2].checkWithin(30*time.Second, sessions[i/perSession].jwt, "")
	})

	total, unknown := c.idp.totals()
	if total != nSessions || unknown != 0 || c.idp.totalReuses() != 0 {
		t.Errorf("provider saw %d redemptions (%d of unknown tokens, %d reuses), want %d (0, 0)", total, unknown, c.idp.totalReuses(), nSessions)
	}
	latest := make([]string, nSessions)
	for i, s := range sessions {
		st := c.idp.session(s.id)
		if st.redemptions != 1 || st.revoked {
			t.Errorf("session %s: %d redemptions, family revoked %v; want 1, false", s.id, st.redemptions, st.revoked)
		}
		latest[i] = st.access
		wantRotatedRow(t, c, s)
	}
	wantAllOK(t, "Check", res, func(i int) string { return latest[i/perSession] })
}

// 3. A refresh storm of 2000 expired sessions (500 through PgBouncer) at a 20 ms provider does not
// starve the Checks of fresh sessions. Not parallel: it loads the machine,
// and the other tests need their timing (a hold must land within
// refresh.timeout).
//
// refresh.timeout is 5s here, not 1s: the fake provider runs in this (race
// instrumented) test process next to 200 concurrent clients, and on a loaded
// 2-core machine one of its answers can take over a second. A provider
// time-out is a documented 503 (and a request the provider still processed
// then leaves a used refresh token in the row), not what this test is about.
func TestRefreshStormDoesNotStarveFreshChecks(t *testing.T) {
	forEachDatabase(t, refreshStormDoesNotStarveFreshChecks)
}

func refreshStormDoesNotStarveFreshChecks(t *testing.T, c *cluster) {
	a := c.start("a", withRefreshTimeout(5*time.Second))
	defer func() {
		if t.Failed() {
			t.Logf("outcomes in the server's log: %v", outcomes(a.logs.String()))
		}
	}()
	const nFresh = 50
	nStorm, inFlight := 2000, 200
	if c.pgbouncer {
		// Through PgBouncer every statement costs one more hop and a
		// parse (default_query_exec_mode=exec). Under the whole suite's
		// load on a shared 2-core machine, the full storm once queued 10
		// of its 2000 Checks for 24 s, past their deadline (503,
		// store_unavailable; no refresh token redeemed twice). A quarter
		// of it at half the concurrency still has every Check of a
		// session race for its one refresh through the pooler.
		nStorm, inFlight = 500, 100
	}

	storm := make([]session, nStorm)
	fresh := make([]session, nFresh)
	seedStart := time.Now()
	var seedErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	jobs := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				var s session
				var err error
				if i < nStorm {
					s, err = c.seedRow(fmt.Sprintf("s-storm-%04d", i), "idp", true)
					storm[i] = s
				} else {
					s, err = c.seedRow(fmt.Sprintf("s-fresh-%02d", i-nStorm), "idp", false)
					fresh[i-nStorm] = s
				}
				if err != nil {
					mu.Lock()
					seedErr = err
					mu.Unlock()
				}
			}
		}()
	}
	for i := range nStorm + nFresh {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if seedErr != nil {
		t.Fatal(seedErr)
	}
	for i := range storm {
		storm[i].jwt = c.jwt(t, storm[i].id)
	}
	for i := range fresh {
		fresh[i].jwt = c.jwt(t, fresh[i].id)
	}
	t.Logf("seeded %d rows in %v", nStorm+nFresh, time.Since(seedStart).Round(time.Millisecond))
	c.idp.setLatency(20 * time.Millisecond)

	stormStart := time.Now()
	stormDone := make(chan struct{})
	stormRes := make([]result, nStorm)
	work := make(chan int)
	var swg sync.WaitGroup
	for range inFlight {
		swg.Add(1)
		go func() {
			defer swg.Done()
			for i := range work {
				stormRes[i] = a.checkWithin(30*time.Second, storm[i].jwt, "")
			}
		}()
	}

	type freshResult struct {
		session int
		result
		duringStorm bool
	}
	var fmu sync.Mutex
	var freshRes []freshResult
	var fwg sync.WaitGroup
	const freshWorkers = 5
	// The storm's last jobs wait until nFresh fresh Checks have completed, so
	// that the overlap does not depend on timing.
	freshPass := make(chan struct{})
	for w := range freshWorkers {
		fwg.Add(1)
		go func() {
			defer fwg.Done()
			for {
				for j := w; j < nFresh; j += freshWorkers {
					r := a.checkWithin(30*time.Second, fresh[j].jwt, "")
					during := false
					select {
					case <-stormDone:
					default:
						during = true
					}
					fmu.Lock()
					freshRes = append(freshRes, freshResult{j, r, during})
					if len(freshRes) == nFresh {
						close(freshPass)
					}
					fmu.Unlock()
				}
				select {
				case <-stormDone:
					return
				default:
				}
			}
		}()
	}
	for i := range nStorm {
		if i == nStorm-inFlight {
			select {
			case <-freshPass:
			case <-time.After(2 * time.Minute):
				t.Errorf("%d fresh Checks did not complete within 2 minutes of storm", nFresh)
			}
		}
		work <- i
	}
	close(work)
	swg.Wait()
	stormTime := time.Since(stormStart)
	close(stormDone)
	fwg.Wait()

	// Fresh sessions: every Check OK with the stored token, none refreshed.
	during, bad := 0, 0
	var lat []time.Duration
	for _, f := range freshRes {
		if f.duringStorm {
			during++
			lat = append(lat, f.elapsed)
		}
		if f.err != nil || f.status != 200 || f.headers["authorization"] != "Bearer "+fresh[f.session].access {
			if bad++; bad <= 3 {
				t.Errorf("fresh Check on %s during the storm: %v, want OK with its stored token", fresh[f.session].id, f.result)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d fresh Checks failed", bad, len(freshRes))
	}
	if during < nFresh {
		t.Errorf("only %d fresh Checks completed while the storm ran, want at least %d", during, nFresh)
	}
	for _, s := range fresh {
		if n := c.idp.session(s.id).redemptions; n != 0 {
			t.Errorf("fresh session %s was redeemed %d times", s.id, n)
		}
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		t.Logf("storm of %d refreshes took %v; %d fresh Checks during it: median %v, p99 %v, max %v", nStorm,
			stormTime.Round(time.Millisecond), len(lat), lat[len(lat)/2].Round(time.Microsecond),
			lat[len(lat)*99/100].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	}

	// Storm sessions: exactly one redemption each, every Check OK with it.
	total, unknown := c.idp.totals()
	if total != nStorm || unknown != 0 || c.idp.totalReuses() != 0 {
		t.Errorf("provider saw %d redemptions (%d of unknown tokens, %d reuses), want %d (0, 0)", total, unknown, c.idp.totalReuses(), nStorm)
	}
	latest := make([]string, nStorm)
	for i, s := range storm {
		latest[i] = c.idp.session(s.id).access
	}
	wantAllOK(t, "storm Check", stormRes, func(i int) string { return latest[i] })
	var slowest time.Duration
	for _, r := range stormRes {
		slowest = max(slowest, r.elapsed)
	}
	t.Logf("slowest storm Check: %v", slowest.Round(time.Millisecond))

	// Every row holds its rotated tokens.
	rows := make(chan int)
	var rwg sync.WaitGroup
	var stale []string
	for range 8 {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for i := range rows {
				r, err := c.store.Get(context.Background(), storm[i].id, "idp")
				if err != nil || r.AccessToken != latest[i] || r.NeedsReauth {
					mu.Lock()
					stale = append(stale, storm[i].id)
					mu.Unlock()
				}
			}
		}()
	}
	for i := range nStorm {
		rows <- i
	}
	close(rows)
	rwg.Wait()
	if len(stale) > 0 {
		t.Errorf("%d rows do not hold their rotated tokens, e.g. %s", len(stale), stale[0])
	}
}

// 4. A caller cancelled while the provider works on its refresh: the
// refresh completes and is stored; the next Check is served from the store.
func TestCallerCancelledMidRefresh(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a := c.start("a")
	s := c.seed(t, "s-cancel", "idp", true)
	h := c.idp.holdNext(s.id, holdAfterProcessing)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() { done <- a.check(ctx, s.jwt, "") }()
	h.waitArrived(t, 10*time.Second)
	cancel()
	select {
	case r := <-done:
		if status.Code(r.err) != codes.Canceled {
			t.Errorf("cancelled Check: %v, want a Canceled gRPC error", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the cancelled Check did not return")
	}
	h.Release(true)
	h.waitHandled(t, 10*time.Second)

	deadline := time.Now().Add(10 * time.Second)
	for {
		r := c.row(t, s)
		if r.AccessToken == h.issuedAccess {
			if r.RefreshToken != h.issuedRefresh || r.NeedsReauth {
				t.Errorf("row: new access token stored, rotated refresh token stored %v, needs_reauth %v", r.RefreshToken == h.issuedRefresh, r.NeedsReauth)
			}
			break
		}
		if r.AccessToken != s.access || time.Now().After(deadline) {
			t.Fatalf("the refresh of the cancelled caller was not stored within 10s (row holds the seeded token: %v)", r.AccessToken == s.access)
		}
		time.Sleep(50 * time.Millisecond)
	}
	wantOK(t, "Check after the cancelled one", a.checkWithin(10*time.Second, s.jwt, ""), h.issuedAccess)
	if st := c.idp.session(s.id); st.redemptions != 1 {
		t.Errorf("provider saw %d redemptions, want 1", st.redemptions)
	}
}

// 5. A replica SIGKILLed while it owns a refresh, after the provider got
// its request and rotated: the others do not hang; within the lease one of
// them redeems the old token, the provider sees reuse and refuses, and the
// session needs re-authentication (401), for good.
func TestReplicaKilledAfterProviderRotated(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a, b, d := c.start("a"), c.start("b"), c.start("c")
	s := c.seed(t, "s-kill-rotated", "idp", true)
	h := c.idp.holdNext(s.id, holdAfterProcessing)

	go a.checkWithin(30*time.Second, s.jwt, "") // dies with a
	h.waitArrived(t, 10*time.Second)
	a.kill(t)
	h.Release(true) // the provider finishes its redemption; nobody hears the answer
	h.waitHandled(t, 10*time.Second)
	if st := c.idp.session(s.id); st.rotations != 1 {
		t.Fatalf("provider rotated %d times before the takeover, want 1", st.rotations)
	}

	res := parallel(2, func(i int) result { return []*proc{b, d}[i].checkWithin(takeoverBound, s.jwt, "") })
	for i, r := range res {
		wantReauth(t, fmt.Sprintf("replica %d after the kill", i+1), r)
	}
	t.Logf("survivors answered %v and %v after the kill (lock_timeout %v)", res[0].elapsed.Round(time.Millisecond), res[1].elapsed.Round(time.Millisecond), lockTimeout)

	st := c.idp.session(s.id)
	if st.redemptions != 2 || st.reuses != 1 || !st.revoked {
		t.Errorf("provider: %d redemptions, %d reuses, revoked %v; want 2, 1, true", st.redemptions, st.reuses, st.revoked)
	}
	r := c.row(t, s)
	if !r.NeedsReauth || r.AccessToken != s.access || r.RefreshToken != s.refresh {
		t.Errorf("row: needs_reauth %v, seeded tokens kept %v/%v; want marked with its tokens", r.NeedsReauth, r.AccessToken == s.access, r.RefreshToken == s.refresh)
	}

	res = parallel(6, func(i int) result { return []*proc{b, d}[i%2].checkWithin(10*time.Second, s.jwt, "") })
	for i, r := range res {
		wantReauth(t, fmt.Sprintf("later Check %d", i), r)
	}
	if n := c.idp.session(s.id).redemptions; n != 2 {
		t.Errorf("later Checks redeemed again: %d redemptions, want 2", n)
	}
}

// 5b. A replica SIGKILLed while its token request had not been processed by
// the provider (held before processing, then dropped): another replica takes
// over within the lease and refreshes normally.
func TestReplicaKilledBeforeProviderProcessed(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a, b := c.start("a"), c.start("b")
	s := c.seed(t, "s-kill-unsent", "idp", true)
	h := c.idp.holdNext(s.id, holdBeforeProcessing)

	go a.checkWithin(30*time.Second, s.jwt, "")
	h.waitArrived(t, 10*time.Second)
	a.kill(t)
	h.Release(false)
	h.waitHandled(t, 10*time.Second)

	r := b.checkWithin(takeoverBound, s.jwt, "")
	st := c.idp.session(s.id)
	wantOK(t, "Check on the survivor", r, st.access)
	t.Logf("survivor answered after %v (lock_timeout %v)", r.elapsed.Round(time.Millisecond), lockTimeout)
	if st.redemptions != 1 || st.dropped != 1 || st.reuses != 0 {
		t.Errorf("provider: %d redemptions, %d dropped, %d reuses; want 1, 1, 0", st.redemptions, st.dropped, st.reuses)
	}
	wantRotatedRow(t, c, s)
}

// 6. A replica SIGSTOPped while the provider holds its (processed) request:
// its lease lapses, another replica redeems the same token, the provider
// sees reuse and revokes. Resumed, the first replica must not write its
// (now revoked) tokens: the row keeps the other replica's outcome.
//
// The provider's answer is written while the replica is stopped, so that on
// SIGCONT it may read the tokens before its refresh deadline fires and reach
// CompleteRefresh with a lost lease; which of the two happens first in the
// resumed process is not under the test's control, so three sessions are
// held at once and the log says which path each took.
func TestReplicaStoppedAfterProviderRotatedDoesNotOverwrite(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a, b := c.start("a"), c.start("b")
	const n = 3
	sessions := make([]session, n)
	holds := make([]*hold, n)
	aRes := make(chan result, n)
	for i := range n {
		sessions[i] = c.seed(t, fmt.Sprintf("s-stop-rotated-%d", i), "idp", true)
		holds[i] = c.idp.holdNext(sessions[i].id, holdAfterProcessing)
	}
	for i := range n {
		go func() { aRes <- a.checkWithin(60*time.Second, sessions[i].jwt, "") }()
	}
	for _, h := range holds {
		h.waitArrived(t, 10*time.Second)
	}
	a.stop(t)
	for _, h := range holds {
		h.Release(true) // answered into the stopped process's socket
		h.waitHandled(t, 10*time.Second)
	}

	res := parallel(n, func(i int) result { return b.checkWithin(takeoverBound, sessions[i].jwt, "") })
	versions := make([]int64, n)
	for i, r := range res {
		wantReauth(t, "takeover "+sessions[i].id, r)
		st := c.idp.session(sessions[i].id)
		if st.redemptions != 2 || st.reuses != 1 || !st.revoked {
			t.Errorf("%s: provider %d redemptions, %d reuses, revoked %v; want 2, 1, true", sessions[i].id, st.redemptions, st.reuses, st.revoked)
		}
		row := c.row(t, sessions[i])
		versions[i] = row.Version
		if !row.NeedsReauth {
			t.Errorf("%s: not marked for re-authentication after the takeover", sessions[i].id)
		}
	}

	a.signal(syscall.SIGCONT)
	for range n {
		select {
		case r := <-aRes:
			if r.err != nil || r.status != 503 {
				t.Errorf("resumed replica's Check: %v, want 503", r)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the resumed replica's Checks did not return within 20s")
		}
	}
	for i, s := range sessions {
		row := c.row(t, s)
		if row.Version != versions[i] || !row.NeedsReauth || row.AccessToken != s.access || row.RefreshToken != s.refresh ||
			row.AccessToken == holds[i].issuedAccess || row.RefreshToken == holds[i].issuedRefresh {
			t.Errorf("%s: the resumed replica changed the row: version %d (was %d), needs_reauth %v, seeded tokens kept %v/%v, its own tokens stored %v/%v",
				s.id, row.Version, versions[i], row.NeedsReauth, row.AccessToken == s.access, row.RefreshToken == s.refresh,
				row.AccessToken == holds[i].issuedAccess, row.RefreshToken == holds[i].issuedRefresh)
		}
		wantReauth(t, "resumed replica, later Check on "+s.id, a.checkWithin(10*time.Second, s.jwt, ""))
		if st := c.idp.session(s.id); st.redemptions != 2 {
			t.Errorf("%s: %d redemptions after the resume, want 2", s.id, st.redemptions)
		}
	}
	logs := a.logs.String()
	t.Logf("resumed replica: %d refreshes rejected by CompleteRefresh (lease lost), %d ended by its refresh deadline",
		strings.Count(logs, `"outcome":"superseded"`), strings.Count(logs, `"outcome":"unavailable"`))
}

// 6b. A replica SIGSTOPped before the provider processed its request (held,
// then dropped: as if the stop came before the call): another replica
// refreshes; resumed, the first neither redeems nor overwrites the newer row.
func TestReplicaStoppedBeforeProviderProcessedDoesNotOverwrite(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a, b := c.start("a"), c.start("b")
	s := c.seed(t, "s-stop-unsent", "idp", true)
	h := c.idp.holdNext(s.id, holdBeforeProcessing)

	aRes := make(chan result, 1)
	go func() { aRes <- a.checkWithin(60*time.Second, s.jwt, "") }()
	h.waitArrived(t, 10*time.Second)
	a.stop(t)

	r := b.checkWithin(takeoverBound, s.jwt, "")
	st := c.idp.session(s.id)
	wantOK(t, "takeover", r, st.access)
	wantRotatedRow(t, c, s)
	version := c.row(t, s).Version

	h.Release(false)
	h.waitHandled(t, 10*time.Second)
	a.signal(syscall.SIGCONT)
	select {
	case r := <-aRes:
		if r.err != nil || r.status != 503 {
			t.Errorf("resumed replica's Check: %v, want 503", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the resumed replica's Check did not return within 20s")
	}
	row := c.row(t, s)
	if row.Version != version || row.AccessToken != st.access || row.RefreshToken != st.refresh || row.NeedsReauth {
		t.Errorf("the resumed replica changed the row: version %d (was %d), takeover's tokens kept %v/%v, needs_reauth %v",
			row.Version, version, row.AccessToken == st.access, row.RefreshToken == st.refresh, row.NeedsReauth)
	}
	wantOK(t, "resumed replica, later Check", a.checkWithin(10*time.Second, s.jwt, ""), st.access)
	if st := c.idp.session(s.id); st.redemptions != 1 || st.dropped != 1 || st.reuses != 0 {
		t.Errorf("provider: %d redemptions, %d dropped, %d reuses; want 1, 1, 0", st.redemptions, st.dropped, st.reuses)
	}
}

// 7. Provider failures are classified: invalid_grant is permanent,
// invalid_client and 5xx and time-outs are transient.
func TestProviderFailuresClassified(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a, b := c.start("a"), c.start("b")
	both := []*proc{a, b}

	t.Run("invalid_grant: 401, marked, never redeemed again", func(t *testing.T) {
		t.Parallel()
		s := c.seed(t, "s-grant", "grant", true)
		c.idp.setScript(s.id, answerInvalidGrant)
		wantReauth(t, "first Check", a.checkWithin(10*time.Second, s.jwt, "grant"))
		res := parallel(6, func(i int) result { return both[i%2].checkWithin(10*time.Second, s.jwt, "grant") })
		for i, r := range res {
			wantReauth(t, fmt.Sprintf("later Check %d on %s", i, both[i%2].name), r)
		}
		if n := c.idp.session(s.id).redemptions; n != 1 {
			t.Errorf("provider saw %d redemptions, want 1", n)
		}
		r := c.row(t, s)
		if !r.NeedsReauth || r.AccessToken != s.access || r.RefreshToken != s.refresh {
			t.Errorf("row: needs_reauth %v, tokens kept %v/%v; want marked, tokens kept", r.NeedsReauth, r.AccessToken == s.access, r.RefreshToken == s.refresh)
		}
	})

	t.Run("invalid_client: 503, rows intact, error logged", func(t *testing.T) {
		t.Parallel()
		s := c.seed(t, "s-client", "client", true)
		c.idp.setScript(s.id, answerInvalidClient)
		v := c.row(t, s).Version
		want503(t, "Check on a", a.checkWithin(10*time.Second, s.jwt, "client"))
		want503(t, "Check on b", b.checkWithin(10*time.Second, s.jwt, "client"))
		wantRowUnchanged(t, c, s, v)
		if n := c.idp.session(s.id).redemptions; n != 2 {
			t.Errorf("provider saw %d requests, want 2 (one per replica)", n)
		}
		found := false
		for _, line := range strings.Split(a.logs.String(), "\n") {
			if strings.Contains(line, `"level":"ERROR"`) && strings.Contains(line, "invalid_client") {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no ERROR log line names invalid_client")
		}
	})

	t.Run("503 with Retry-After: 503, row unchanged, back-off, recovery", func(t *testing.T) {
		t.Parallel()
		s := c.seed(t, "s-busy", "busy", true)
		c.idp.setScript(s.id, answerUnavailable)
		v := c.row(t, s).Version
		r := a.checkWithin(10*time.Second, s.jwt, "busy")
		failedAt := time.Now()
		secs := want503(t, "Check while the provider fails", r)
		t.Logf("Retry-After: %d", secs)
		wantRowUnchanged(t, c, s, v)
		// Inside the back-off (the provider asked for 2s) the provider is not
		// asked again. Asserted only if this second Check surely fell inside it.
		r = a.checkWithin(10*time.Second, s.jwt, "busy")
		if time.Since(failedAt) < 1500*time.Millisecond {
			want503(t, "Check during the back-off", r)
			if n := c.idp.session(s.id).redemptions; n != 1 {
				t.Errorf("provider asked %d times during the back-off, want 1", n)
			}
		}
		wantRowUnchanged(t, c, s, v)

		c.idp.setScript(s.id, answerRotate) // the provider recovers
		deadline := time.Now().Add(15 * time.Second)
		for {
			r = a.checkWithin(10*time.Second, s.jwt, "busy")
			if r.status != 503 || time.Now().After(deadline) {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		st := c.idp.session(s.id)
		wantOK(t, "Check after the provider recovered", r, st.access)
		if st.rotations != 1 || st.reuses != 0 {
			t.Errorf("provider: %d rotations, %d reuses; want 1, 0", st.rotations, st.reuses)
		}
		wantRotatedRow(t, c, s)
	})

	t.Run("slower than refresh.timeout: 503, row unchanged", func(t *testing.T) {
		t.Parallel()
		s := c.seed(t, "s-slow", "slow", true)
		c.idp.setScript(s.id, answerSlow)
		v := c.row(t, s).Version
		r := a.checkWithin(15*time.Second, s.jwt, "slow")
		want503(t, "Check", r)
		t.Logf("answered after %v (refresh.timeout %v)", r.elapsed.Round(time.Millisecond), refreshTimeout)
		wantRowUnchanged(t, c, s, v)
	})
}
