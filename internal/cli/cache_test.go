package cli

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/cached"
	"github.com/extauthz/extauthz/store/memory"
	"github.com/extauthz/extauthz/store/postgres"
	"github.com/extauthz/extauthz/tokencrypt"
)

// TestTokenCacheAcrossReplicas runs two servers on one database, each with
// its token cache and listener (the default configuration): a session that
// 'extauthz tokens delete' removes, or that replica A refreshes, changes on
// replica B within one second, although B had it cached.
func TestTokenCacheAcrossReplicas(t *testing.T) {
	key := e2eKey{ID: "k1", Secret: tokencrypt.GenerateKey()}
	// A's skew is longer than the token's life: A refreshes what B serves.
	a := startE2E(t, e2eOptions{keys: []e2eKey{key}, skew: "2h"})
	b := startE2E(t, e2eOptions{dsn: a.dsn, keys: []e2eKey{key}})
	const within = time.Second + 300*time.Millisecond

	// bearer returns what B's Check puts in authorization ("" when denied).
	bearer := func(session string) string {
		resp := b.check(t, map[string]string{"authorization": "Bearer " + b.jwt(t, session, nil)}, "")
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			return ""
		}
		return respHeaders(resp)["authorization"]
	}
	changes := func(what, session, from string) {
		t.Helper()
		start := time.Now()
		for bearer(session) == from {
			if time.Since(start) > within {
				t.Fatalf("%s: B still serves %q after %v", what, from, within)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("%s: B changed after %v", what, time.Since(start).Round(time.Millisecond))
	}

	a.putCLI(t, "s-del", "at-del", "", "", time.Now().Add(time.Hour))
	time.Sleep(100 * time.Millisecond) // let the put's notification pass
	b.checkBearer(t, "s-del", "Bearer at-del")
	b.checkBearer(t, "s-del", "Bearer at-del") // from B's cache
	code, stdout, stderr := a.run(t, "tokens", "delete", "--config", a.configPath, "--session", "s-del", "--provider", "gh")
	if code != ExitOK {
		t.Fatalf("tokens delete: exit %d\n%s\n%s", code, stdout, stderr)
	}
	changes("tokens delete", "s-del", "Bearer at-del")
	if got := bearer("s-del"); got != "" {
		t.Fatalf("after tokens delete B serves %q, want a deny", got)
	}

	a.putCLI(t, "s-ref", "at-old", "rt-1", "", time.Now().Add(time.Hour))
	time.Sleep(100 * time.Millisecond)
	b.checkBearer(t, "s-ref", "Bearer at-old")
	b.checkBearer(t, "s-ref", "Bearer at-old")
	a.checkBearer(t, "s-ref", "Bearer new-access-rt-1-1") // A refreshes
	changes("refresh on A", "s-ref", "Bearer at-old")
	b.checkBearer(t, "s-ref", "Bearer new-access-rt-1-1")
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
		"extauthz_token_cache_reads_total/bypass": 1, "extauthz_token_cache_rows": 0, "extauthz_token_cache_listener_up": 0,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("metrics = %v, want %v", got, want)
	}
}
