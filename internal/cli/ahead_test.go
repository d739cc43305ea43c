package cli

import (
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/store"
)

// A session served once is refreshed in the background before it expires,
// through PostgreSQL's lease: the next Check is served the new token without
// waiting on the provider, and the refresh token is redeemed once.
func TestServeRefreshesAhead(t *testing.T) {
	o := newOpsEnv(t, pgtest.New(t))
	c := o.config()
	c.aheadMargin = "10m" // every lead is between the 30s skew and 10m
	a := o.start(t, c)
	// Fresh for Checks for 60 s, due ahead within those 60 s whatever the
	// session's jittered lead.
	a.put(t, store.Row{SessionID: "sess-ahead", Provider: "gh", Tokens: store.Tokens{AccessToken: "tok-ahead-old", RefreshToken: "rt-ahead", ExpiresAt: time.Now().Add(90 * time.Second)}})
	before := a.scrape(t)
	a.checkBearer(t, "sess-ahead", "Bearer tok-ahead-old")

	ahead := series("extauthz_refresh_by_trigger_total", "outcome", "ok", "provider", "gh", "trigger", "ahead")
	deadline := time.Now().Add(3 * time.Minute)
	for a.scrape(t)[ahead] == before[ahead] {
		if time.Now().After(deadline) {
			t.Fatalf("no refresh ahead within 3 minutes\n%s", a.logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	a.checkBearer(t, "sess-ahead", "Bearer new-access-rt-ahead-1")
	after := a.scrape(t)
	if n := a.tokens.count("rt-ahead"); n != 1 {
		t.Errorf("refresh token redeemed %d times, want 1", n)
	}
	waits := series("extauthz_check_refresh_waits_total", "provider", "gh")
	check := series("extauthz_refresh_by_trigger_total", "outcome", "ok", "provider", "gh", "trigger", "check")
	if after[waits] != before[waits] || after[check] != before[check] || after[ahead] != before[ahead]+1 {
		t.Errorf("waits %v -> %v, check refreshes %v -> %v, ahead %v -> %v; want no wait, no check refresh, one ahead",
			before[waits], after[waits], before[check], after[check], before[ahead], after[ahead])
	}
}
