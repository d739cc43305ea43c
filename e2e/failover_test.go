//go:build unix

package e2e

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/migrations"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/postgres"
)

// staleness is the listener's bound (postgres.DefaultStaleness): a change
// committed at t is not served from a cache after t plus it.
const staleness = postgres.DefaultStaleness

// TestFailover runs two replicas against a primary and its synchronous
// streaming standby, named together in database.url with
// target_session_attrs=read-write; kills the primary under load and promotes
// the standby; and shows that cached Checks keep being answered, uncached
// ones answer 503 with Retry-After until the new primary is reached (no
// restart), the LISTEN connections and the caches recover without serving
// anything stale, and no refresh token is redeemed twice. It reports the
// time to recover.
func TestFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("long test (a primary, a standby and a failover): run without -short")
	}
	t.Parallel()
	primary := pgtest.Stoppable(t)
	standby := pgtest.Standby(t, primary)
	synchronous(t, primary.DSN())
	dsn := bothHosts(t, primary.DSN(), standby.DSN())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// What `extauthz migrate` does, through the two-host URL: already done
	// on the primary, so a no-op that must still find it.
	if err := migrations.Up(ctx, dsn, nil); err != nil {
		t.Fatalf("migrate through the two-host URL: %v", err)
	}

	c := newClusterOn(t, dsn)
	// Access tokens issued by refreshes are due again 2s later (skew 30s):
	// the rolling sessions refresh all through the failover.
	c.idp.setLifetime(32 * time.Second)
	a, b := c.start("a", withMetrics), c.start("b", withMetrics)
	procs := []*proc{a, b}
	for _, p := range procs {
		waitLogged(t, p, listening, 1)
	}

	warm := make([]session, 6)
	for i := range warm {
		warm[i] = c.seed(t, fmt.Sprintf("s-warm-%d", i), "idp", false)
	}
	rolling := make([]session, 3)
	for i := range rolling {
		rolling[i] = c.seed(t, fmt.Sprintf("s-rolling-%d", i), "idp", true)
	}
	cold := make([]session, len(procs))
	for i := range cold {
		cold[i] = c.seed(t, fmt.Sprintf("s-cold-%d", i), "idp", false)
	}
	// Warm the caches: a read while the listener is late is not cached,
	// so read until every warm row is.
	for _, p := range procs {
		deadline := time.Now().Add(time.Minute)
		for p.metric(t, cacheRows) < float64(len(warm)) {
			for _, s := range warm {
				wantOK(t, p.name+" warming "+s.id, p.checkWithin(10*time.Second, s.jwt, ""), s.access)
			}
			if t.Failed() || time.Now().After(deadline) {
				t.Fatalf("%s: the warm sessions are not all cached after a minute", p.name)
			}
		}
	}

	load := startLoad(procs, warm, rolling)
	time.Sleep(time.Second) // load before the failure

	if err := primary.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	for i, p := range procs {
		want503(t, p.name+": an uncached Check with the primary gone", p.checkWithin(10*time.Second, cold[i].jwt, ""))
		wantOK(t, p.name+": a cached Check with the primary gone", p.checkWithin(10*time.Second, warm[i].jwt, ""), warm[i].access)
	}
	// An orchestrator takes a moment to decide; the cache carries the load.
	time.Sleep(time.Until(killed.Add(2 * time.Second)))
	if err := standby.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()

	// The uncached Checks answer 503 until each replica reaches the new
	// primary, then OK, with no restart.
	recovered := make([]time.Time, len(procs))
	for i, p := range procs {
		for {
			r := p.checkWithin(10*time.Second, cold[i].jwt, "")
			if r.status == 200 {
				wantOK(t, p.name+": the uncached Check after the failover", r, cold[i].access)
				recovered[i] = time.Now()
				break
			}
			want503(t, p.name+": an uncached Check before the new primary is reached", r)
			if time.Since(promoted) > time.Minute || t.Failed() {
				t.Fatalf("%s: uncached Checks not answered a minute after the promotion", p.name)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, p := range procs {
		waitLogged(t, p, listening, 2)
	}
	listened := time.Now()

	// Another writer changes a cached row on the new primary: no replica
	// serves the old one past the staleness bound.
	changed := warm[0]
	newAccess := newAccessToken()
	put := func() error {
		return c.store.Put(ctx, store.Row{SessionID: changed.id, Provider: changed.provider, Subject: subject, ClientID: asClient,
			Tokens: store.Tokens{AccessToken: newAccess, RefreshToken: changed.refresh, TokenType: "Bearer", ExpiresAt: time.Now().Add(time.Hour)}})
	}
	for err := put(); err != nil; err = put() {
		if time.Since(promoted) > time.Minute {
			t.Fatalf("the test's writer cannot write to the new primary: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.idp.mu.Lock()
	c.idp.issued = append(c.idp.issued, newAccess) // for the log check
	c.idp.mu.Unlock()
	written := time.Now()
	time.Sleep(time.Until(written.Add(staleness)))
	for _, p := range procs {
		wantOK(t, p.name+": the row changed after the failover", p.checkWithin(10*time.Second, changed.jwt, ""), newAccess)
	}
	time.Sleep(2 * time.Second) // load after recovery
	results := load.stop()

	// What the load saw.
	var warmOK, warm503, rollingOK, rolling503, staleAfter int
	for _, r := range results {
		switch {
		case r.err != nil || r.status != 200 && r.status != 503:
			t.Errorf("%s %s at +%v: %v, want OK or 503", r.proc, r.session, r.start.Sub(killed).Round(time.Millisecond), r.result)
		case r.rolling && r.status == 200:
			rollingOK++
		case r.rolling:
			rolling503++
		case r.status == 200:
			warmOK++
			if r.session == changed.id && r.start.After(written.Add(staleness)) && r.headers["authorization"] != "Bearer "+newAccess {
				staleAfter++
			}
		default:
			warm503++
			t.Errorf("%s %s at +%v: a cached Check answered %v", r.proc, r.session, r.start.Sub(killed).Round(time.Millisecond), r.result)
		}
	}
	if staleAfter > 0 {
		t.Errorf("%d Checks served the changed row's old token more than %v after the change", staleAfter, staleness)
	}
	if rollingOK == 0 {
		t.Error("the rolling sessions were never answered OK")
	}
	if n := c.idp.totalReuses(); n != 0 {
		t.Errorf("the provider saw %d reuses of a spent refresh token, want 0", n)
	}
	redeemed := 0
	for _, s := range rolling {
		st := c.idp.session(s.id)
		redeemed += st.rotations
		if st.revoked {
			t.Errorf("%s: its token family was revoked at the provider", s.id)
		}
		if r := c.row(t, s); r.RefreshToken != st.refresh || r.NeedsReauth {
			t.Errorf("%s: the stored row does not hold the provider's latest refresh token (needs_reauth %v)", s.id, r.NeedsReauth)
		}
	}
	stale := 0.0
	for _, p := range procs {
		stale += p.metric(t, staleReads)
	}
	if stale == 0 {
		t.Error(`no read was answered as stale (extauthz_token_cache_reads_total{result="stale"})`)
	}
	for _, p := range procs {
		select {
		case <-p.exited:
			t.Errorf("%s exited: %v", p.name, p.waitErr)
		default:
		}
	}
	t.Logf("failover: uncached Checks answered again %v and %v after the kill (%v and %v after the promotion, which took %v); "+
		"both listeners back %v after the kill; cached Checks during the run: %d OK (%v reads answered stale), %d 503; rolling sessions: %d OK, %d 503, %d refreshes, 0 reuses",
		recovered[0].Sub(killed).Round(time.Millisecond), recovered[1].Sub(killed).Round(time.Millisecond),
		recovered[0].Sub(promoted).Round(time.Millisecond), recovered[1].Sub(promoted).Round(time.Millisecond),
		promoted.Sub(killed.Add(2*time.Second)).Round(time.Millisecond), listened.Sub(killed).Round(time.Millisecond),
		warmOK, stale, warm503, rollingOK, rolling503, redeemed)
}

// listening is what a process logs each time its cache's listener has
// (re)connected and listens.
const listening = "cache invalidation listener: listening"

// The token cache's metrics read by TestFailover.
const (
	cacheRows  = "extauthz_token_cache_rows"
	staleReads = `extauthz_token_cache_reads_total{result="stale"}`
)

// waitLogged waits until p has logged msg at least n times.
func waitLogged(t *testing.T, p *proc, msg string, n int) {
	t.Helper()
	testutil.Eventually(t, time.Minute, fmt.Sprintf("%s logs %q %d times", p.name, msg, n), func() bool {
		return strings.Count(p.logs.String(), msg) >= n
	})
}

// synchronous makes the primary at dsn wait for its standby on every
// commit, and waits until the standby is synchronous: a failover then loses
// no acknowledged write (a refresh lease, a rotated token). Set after the
// standby was copied, so that the standby, once promoted, does not wait for
// a standby of its own.
func synchronous(t *testing.T, dsn string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, sql := range []string{`ALTER SYSTEM SET synchronous_standby_names = '*'`, `SELECT pg_reload_conf()`} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	testutil.Eventually(t, time.Minute, "the standby is synchronous", func() bool {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	})
}

// bothHosts returns the URL that names the servers of primary and standby
// (URLs from localpg) in that order, for read-write sessions only.
func bothHosts(t *testing.T, primary, standby string) string {
	t.Helper()
	p, err1 := url.Parse(primary)
	s, err2 := url.Parse(standby)
	if err1 != nil || err2 != nil {
		t.Fatalf("localpg URLs: %v, %v", err1, err2)
	}
	p.Host += "," + s.Host
	q := p.Query()
	q.Set("target_session_attrs", "read-write")
	p.RawQuery = q.Encode()
	return p.String()
}

// loadResult is one Check of the load.
type loadResult struct {
	result
	proc, session string
	rolling       bool
	start         time.Time
}

// load sends Checks for its sessions to every process, two at a time per
// process, until stopped.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	out    []loadResult
}

func startLoad(procs []*proc, warm, rolling []session) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	sessions := append(append([]session(nil), warm...), rolling...)
	for _, p := range procs {
		for w := range 2 {
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				for i := w; ctx.Err() == nil; i++ {
					s := sessions[i%len(sessions)]
					start := time.Now()
					r := p.checkWithin(10*time.Second, s.jwt, "")
					if ctx.Err() != nil {
						return
					}
					l.mu.Lock()
					l.out = append(l.out, loadResult{result: r, proc: p.name, session: s.id, rolling: i%len(sessions) >= len(warm), start: start})
					l.mu.Unlock()
					time.Sleep(20 * time.Millisecond)
				}
			}()
		}
	}
	return l
}

// stop ends the load and returns what it saw.
func (l *load) stop() []loadResult {
	l.cancel()
	l.wg.Wait()
	return l.out
}
