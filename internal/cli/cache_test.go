package cli

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/cached"
	"github.com/extauthz/extauthz/store/memory"
	"github.com/extauthz/extauthz/store/postgres"
	"github.com/extauthz/extauthz/tokencrypt"
)

// TestTokenCacheAcrossReplicas runs two servers on one database, each with
// its token cache and listener (the default configuration): a session that B
// serves from its cache changes on B within the listener's staleness bound
// when 'extauthz tokens delete' removes it, or when replica A refreshes it;
// directly, and through PgBouncer with LISTEN on database.direct_url.
func TestTokenCacheAcrossReplicas(t *testing.T) {
	pgtest.Routes(t, tokenCacheAcrossReplicas)
}

func tokenCacheAcrossReplicas(t *testing.T, pgbouncer bool) {
	key := e2eKey{ID: "k1", Secret: tokencrypt.GenerateKey()}
	// A's skew is longer than the token's life: A refreshes what B serves,
	// when a Check asks A (refresh ahead, off, would refresh it without).
	a := startE2E(t, e2eOptions{keys: []e2eKey{key}, skew: "2h", noAhead: true, pgbouncer: pgbouncer})
	b := startE2E(t, e2eOptions{dsn: a.dsn, keys: []e2eKey{key}, pgbouncer: pgbouncer})
	const within = postgres.DefaultStaleness + 300*time.Millisecond

	// bearer returns what B's Check puts in authorization ("" when denied).
	bearer := func(session string) string {
		resp := b.check(t, map[string]string{"authorization": "Bearer " + b.jwt(t, session, nil)}, "")
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			return ""
		}
		return respHeaders(resp)["authorization"]
	}
	// unreported runs put with the table's triggers off, so that no replica
	// hears of the change.
	unreported := func(r store.Row) {
		t.Helper()
		a.sqlExec(t, "ALTER TABLE upstream_tokens DISABLE TRIGGER USER")
		defer a.sqlExec(t, "ALTER TABLE upstream_tokens ENABLE TRIGGER USER")
		a.put(t, r)
	}
	// cachedOnB stores r under a new session, has B read it, then changes
	// its access token unreported: B still serving the first token proves
	// that B serves the session from its cache, where (the token expiring in
	// an hour) only a notification can end it. While B's listener does not
	// vouch for the cache yet, B reads through it; so a new session is tried
	// until B caches one.
	cachedOnB := func(prefix string, r store.Row) (session string) {
		t.Helper()
		want := "Bearer " + r.Tokens.AccessToken
		n := 0
		testutil.Eventually(t, 10*time.Second, "B serving a session from its cache", func() bool {
			n++
			session = fmt.Sprintf("%s-%d", prefix, n)
			r.SessionID = session
			unreported(r)
			if got := bearer(session); got != want {
				t.Fatalf("%s: B serves %q, want %q", session, got, want)
			}
			changed := r
			changed.Tokens.AccessToken = "unreported-" + session
			unreported(changed)
			return bearer(session) == want
		})
		return session
	}
	changes := func(what, session, from string) {
		t.Helper()
		took := testutil.Eventually(t, within, what+": B stops serving "+from, func() bool { return bearer(session) != from })
		t.Logf("%s: B changed after %v", what, took.Round(time.Millisecond))
	}
	hour := time.Now().Add(time.Hour)

	del := cachedOnB("s-del", store.Row{Provider: "gh", Tokens: store.Tokens{AccessToken: "at-del", ExpiresAt: hour}})
	code, stdout, stderr := a.run(t, "tokens", "delete", "--config", a.configPath, "--session", del, "--provider", "gh")
	if code != ExitOK {
		t.Fatalf("tokens delete: exit %d\n%s\n%s", code, stdout, stderr)
	}
	changes("tokens delete", del, "Bearer at-del")
	if got := bearer(del); got != "" {
		t.Fatalf("after tokens delete B serves %q, want a deny", got)
	}

	ref := cachedOnB("s-ref", store.Row{Provider: "gh", Tokens: store.Tokens{AccessToken: "at-old", RefreshToken: "rt-1", ExpiresAt: hour}})
	a.checkBearer(t, ref, "Bearer new-access-rt-1-1") // A refreshes
	changes("refresh on A", ref, "Bearer at-old")
	b.checkBearer(t, ref, "Bearer new-access-rt-1-1")
	if n := a.tokens.count("rt-1") + b.tokens.count("rt-1"); n != 1 {
		t.Errorf("refresh token redeemed %d times, want once", n)
	}
}

func TestTokenCacheMetrics(t *testing.T) {
	c := cached.New(memory.New(), cached.Options{Size: 10})
	l, err := postgres.NewListener("postgres://127.0.0.1:1/none", c)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := registerCacheMetrics(reg, c, l); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(t.Context(), "s", "gh"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, lp := range m.GetLabel() {
				name += "/" + lp.GetValue()
			}
			got[name] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{
		"extauthz_token_cache_reads_total/hit": 0, "extauthz_token_cache_reads_total/miss": 0,
		"extauthz_token_cache_reads_total/bypass": 1, "extauthz_token_cache_reads_total/stale": 0, "extauthz_token_cache_rows": 0, "extauthz_token_cache_listener_up": 0,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("metrics = %v, want %v", got, want)
	}
}
