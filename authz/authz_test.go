package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extauthz/extauthz/jwtauth"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/memory"
	"github.com/extauthz/extauthz/upstreamtoken"
)

var now = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// staticVerifier maps raw tokens to claims; anything else is invalid.
type staticVerifier map[string]jwtauth.Claims

func (v staticVerifier) Verify(_ context.Context, raw string) (jwtauth.Claims, error) {
	if raw == "keys-down" {
		return jwtauth.Claims{}, fmt.Errorf("%w: fetch failed", jwtauth.ErrKeysUnavailable)
	}
	c, ok := v[raw]
	if !ok {
		return jwtauth.Claims{}, fmt.Errorf("%w: bad signature", jwtauth.ErrInvalidToken)
	}
	return c, nil
}

// scriptedRefresher answers per refresh token.
type scriptedRefresher map[string]error

func (r scriptedRefresher) Refresh(_ context.Context, provider, rt string) (store.Tokens, error) {
	if err := r[rt]; err != nil {
		return store.Tokens{}, err
	}
	return store.Tokens{AccessToken: provider + "-refreshed", ExpiresAt: now.Add(time.Hour)}, nil
}

type retryHint struct{ d time.Duration }

func (r retryHint) Error() string             { return "provider busy" }
func (r retryHint) RetryAfter() time.Duration { return r.d }

func fixture(t *testing.T) (*Decider, *memory.Store) {
	t.Helper()
	return fixtureWith(t, nil, nil)
}

// fixtureWith is fixture with its Config changed by edit (when not nil) and
// decisions logged to log (nil discards them).
func fixtureWith(t *testing.T, edit func(*Config), log *slog.Logger) (*Decider, *memory.Store) {
	t.Helper()
	st := memory.New()
	put := func(session, provider, access, rt string, exp time.Time, sub, client string) {
		t.Helper()
		err := st.Put(context.Background(), store.Row{SessionID: session, Provider: provider, Subject: sub, ClientID: client,
			Tokens: store.Tokens{AccessToken: access, RefreshToken: rt, IDToken: provider + "-id", ExpiresAt: exp}})
		if err != nil {
			t.Fatal(err)
		}
	}
	fresh, expired := now.Add(time.Hour), now.Add(-time.Hour)
	put("s-ok", "gh", "gh-access", "", fresh, "alice", "app")
	put("s-ok", "google", "google-access", "", fresh, "alice", "app")
	put("s-expired", "gh", "gh-old", "rt-good", expired, "alice", "app")
	put("s-norefresh", "gh", "gh-old", "", expired, "alice", "app")
	put("s-refused", "gh", "gh-old", "rt-refused", expired, "alice", "app")
	put("s-busy", "gh", "gh-old", "rt-busy", expired, "alice", "app")
	put("s-mixed", "gh", "gh-old", "rt-busy", expired, "alice", "app")
	put("s-mixed", "google", "g-old", "rt-refused", expired, "alice", "app")
	put("s-crlf", "gh", "evil\r\nx-injected: 1", "", fresh, "alice", "app")
	put("s-nul", "gh", "evil\x00", "", fresh, "alice", "app")
	if err := st.Put(context.Background(), store.Row{SessionID: "s-over", Provider: "gh", Subject: "alice", ClientID: "app",
		Tokens: store.Tokens{AccessToken: "gh-access", ExpiresAt: fresh}, SessionExpiresAt: now.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(context.Background(), store.Row{SessionID: "s-crlf-id", Provider: "google", Subject: "alice", ClientID: "app",
		Tokens: store.Tokens{AccessToken: "google-access", IDToken: "evil\r\nx-injected: 1", ExpiresAt: fresh}}); err != nil {
		t.Fatal(err)
	}
	ref := scriptedRefresher{
		"rt-refused": fmt.Errorf("%w: invalid_grant", upstreamtoken.ErrRefreshFailed),
		"rt-busy":    fmt.Errorf("%w: %w", upstreamtoken.ErrUpstreamUnavailable, retryHint{7 * time.Second}),
	}
	svc := upstreamtoken.NewInProcessService(st, ref, upstreamtoken.WithClock(func() time.Time { return now }))
	claims := func(session, sub string) jwtauth.Claims {
		return jwtauth.Claims{Subject: sub, ClientID: "app", SessionID: session}
	}
	v := staticVerifier{}
	for _, s := range []string{"s-ok", "s-expired", "s-norefresh", "s-refused", "s-busy", "s-mixed", "s-crlf", "s-nul", "s-crlf-id", "s-unknown", "s-over"} {
		v["jwt-"+s] = claims(s, "alice")
	}
	v["jwt-mallory"] = claims("s-ok", "mallory")
	cfg := Config{
		Providers: map[string]Provider{
			"gh":     {},
			"gitlab": {},
			"google": {Header: "x-google-token", IDTokenHeader: "x-google-id"},
		},
		DefaultProviders: []string{"gh"},
		Realm:            "api",
		ResourceMetadata: "https://api.example/.well-known/oauth-protected-resource",
	}
	if edit != nil {
		edit(&cfg)
	}
	return New(cfg, v, svc, log), st
}

const challenge = `Bearer realm="api", resource_metadata="https://api.example/.well-known/oauth-protected-resource"`

func TestCheckDenyTable(t *testing.T) {
	d, _ := fixture(t)
	tests := []struct {
		name      string
		auth      string
		providers string
		status    int
		reason    string
		www       string // exact WWW-Authenticate, "" = none
		retry     string // exact Retry-After, "" = none
		errCode   string
	}{
		{"no authorization header", "", "", 401, "no_token", challenge, "", "unauthorized"},
		{"basic scheme", "Basic YWxpY2U6cHc=", "", 401, "no_token", challenge, "", "unauthorized"},
		{"empty bearer", "Bearer ", "", 401, "invalid_token", challenge + `, error="invalid_token", error_description="the access token is invalid"`, "", "invalid_token"},
		{"not a valid JWT", "Bearer garbage", "", 401, "invalid_token", challenge + `, error="invalid_token", error_description="the access token is invalid"`, "", "invalid_token"},
		{"scheme is case-insensitive", "bEaReR garbage", "", 401, "invalid_token", challenge + `, error="invalid_token", error_description="the access token is invalid"`, "", "invalid_token"},
		{"session unknown", "Bearer jwt-s-unknown", "", 401, "session_not_found", challenge + `, error="invalid_token", error_description="` + descSession + `"`, "", "invalid_token"},
		{"session expired: re-authentication", "Bearer jwt-s-over", "", 401, "session_not_found", challenge + `, error="invalid_token", error_description="` + descReauth + `"`, "", "invalid_token"},
		{"provider missing from session", "Bearer jwt-s-expired", "gh,google", 401, "session_not_found", challenge + `, error="invalid_token", error_description="` + descSession + `"`, "", "invalid_token"},
		{"binding mismatch", "Bearer jwt-mallory", "", 401, "binding_mismatch", challenge + `, error="invalid_token", error_description="` + descSession + `"`, "", "invalid_token"},
		{"no refresh token", "Bearer jwt-s-norefresh", "", 401, "no_refresh_token", challenge + `, error="invalid_token", error_description="` + descReauth + `"`, "", "invalid_token"},
		{"refresh refused", "Bearer jwt-s-refused", "", 401, "refresh_failed", challenge + `, error="invalid_token", error_description="` + descReauth + `"`, "", "invalid_token"},
		{"provider unavailable", "Bearer jwt-s-busy", "", 503, "provider_unavailable", "", "7", "temporarily_unavailable"},
		{"permanent wins over transient", "Bearer jwt-s-mixed", "gh,google", 401, "refresh_failed", challenge + `, error="invalid_token", error_description="` + descReauth + `"`, "", "invalid_token"},
		{"keys unavailable", "Bearer keys-down", "", 503, "keys_unavailable", "", "1", "temporarily_unavailable"},
		{"unknown provider on route", "Bearer jwt-s-ok", "gh,nope", 500, "route_misconfigured", "", "", "server_error"},
		{"two providers on a route write one header", "Bearer jwt-s-ok", "gh,gitlab", 500, "route_misconfigured", "", "", "server_error"},
		{"bearer with a tab", "Bearer\tgarbage", "", 401, "invalid_token", challenge + `, error="invalid_token", error_description="the access token is invalid"`, "", "invalid_token"},
		{"token with CR LF fails closed", "Bearer jwt-s-crlf", "", 502, "unsafe_token", "", "", "server_error"},
		{"token with NUL fails closed", "Bearer jwt-s-nul", "", 502, "unsafe_token", "", "", "server_error"},
		{"ID token with CR LF fails closed", "Bearer jwt-s-crlf-id", "google", 502, "unsafe_token", "", "", "server_error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := Request{Headers: map[string]string{}, ContextExtensions: map[string]string{}}
			if tc.auth != "" {
				req.Headers["authorization"] = tc.auth
			}
			if tc.providers != "" {
				req.ContextExtensions[ContextKeyProviders] = tc.providers
			}
			resp := d.Check(context.Background(), req)
			if resp.Allowed || resp.Status != tc.status || resp.Reason != tc.reason {
				t.Fatalf("got allowed=%v status=%d reason=%q, want status %d reason %q", resp.Allowed, resp.Status, resp.Reason, tc.status, tc.reason)
			}
			h := headerMap(resp.Headers)
			if h["www-authenticate"] != tc.www {
				t.Errorf("WWW-Authenticate = %q\nwant %q", h["www-authenticate"], tc.www)
			}
			if h["retry-after"] != tc.retry {
				t.Errorf("Retry-After = %q, want %q", h["retry-after"], tc.retry)
			}
			if h["content-type"] != "application/json" {
				t.Errorf("content-type = %q", h["content-type"])
			}
			var body struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if err := json.Unmarshal([]byte(resp.Body), &body); err != nil || body.Error != tc.errCode || body.Description == "" {
				t.Errorf("body = %s (%v), want error %q with a description", resp.Body, err, tc.errCode)
			}
			if strings.Contains(resp.Body, "evil") || strings.Contains(resp.Body, "gh-old") {
				t.Errorf("deny body leaks a token: %s", resp.Body)
			}
		})
	}
}

func TestCheckAllow(t *testing.T) {
	d, st := fixture(t)
	tests := []struct {
		name      string
		auth      string
		providers string
		set       map[string]string
		remove    []string
	}{
		{"default provider", "Bearer jwt-s-ok", "",
			map[string]string{"authorization": "Bearer gh-access"},
			[]string{"x-google-id", "x-google-token"}},
		{"custom header provider only: authorization removed", "Bearer jwt-s-ok", "google",
			map[string]string{"x-google-token": "Bearer google-access", "x-google-id": "google-id"},
			[]string{"authorization"}},
		{"two providers on one route, repeats ignored", "Bearer jwt-s-ok", " gh , google,gh ",
			map[string]string{"authorization": "Bearer gh-access", "x-google-token": "Bearer google-access", "x-google-id": "google-id"},
			nil},
		{"expired token refreshed", "Bearer jwt-s-expired", "gh",
			map[string]string{"authorization": "Bearer gh-refreshed"},
			[]string{"x-google-id", "x-google-token"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := Request{
				Headers:           map[string]string{"authorization": tc.auth, "x-google-token": "Bearer forged", "x-google-id": "forged"},
				ContextExtensions: map[string]string{ContextKeyProviders: tc.providers},
			}
			resp := d.Check(context.Background(), req)
			if !resp.Allowed || resp.Status != 200 || resp.Reason != "ok" {
				t.Fatalf("got %+v, want allowed", resp)
			}
			if got := headerMap(resp.Headers); !reflect.DeepEqual(got, tc.set) {
				t.Errorf("set headers = %v, want %v", got, tc.set)
			}
			if !reflect.DeepEqual(resp.RemoveHeaders, tc.remove) {
				t.Errorf("removed headers = %v, want %v", resp.RemoveHeaders, tc.remove)
			}
			for _, h := range resp.Headers {
				for _, r := range resp.RemoveHeaders {
					if h.Name == r {
						t.Errorf("header %q both set and removed", r)
					}
				}
			}
		})
	}
	row, err := st.Get(context.Background(), "s-expired", "gh")
	if err != nil || row.AccessToken != "gh-refreshed" {
		t.Errorf("refreshed token not persisted: %v %v", row.AccessToken, err)
	}
}

func TestIDTokenHeaderRemovedWhenNoIDToken(t *testing.T) {
	d, st := fixture(t)
	err := st.Put(context.Background(), store.Row{SessionID: "s-ok", Provider: "google", Subject: "alice", ClientID: "app",
		Tokens: store.Tokens{AccessToken: "g2", ExpiresAt: now.Add(time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	resp := d.Check(context.Background(), Request{
		Headers:           map[string]string{"authorization": "Bearer jwt-s-ok", "x-google-id": "forged"},
		ContextExtensions: map[string]string{ContextKeyProviders: "google"},
	})
	if !resp.Allowed {
		t.Fatalf("denied: %+v", resp)
	}
	if !reflect.DeepEqual(resp.RemoveHeaders, []string{"authorization", "x-google-id"}) {
		t.Errorf("removed = %v: a forged ID token header must be removed when there is no ID token", resp.RemoveHeaders)
	}
}

func TestAuthorizationRemovedWhenNoProviderWritesIt(t *testing.T) {
	// No provider anywhere in the configuration writes authorization: the
	// client's own bearer JWT must still not reach the backend.
	f, _ := fixture(t)
	d := New(Config{
		Providers:        map[string]Provider{"google": {Header: "x-google-token", IDTokenHeader: "x-google-id"}},
		DefaultProviders: []string{"google"},
	}, f.verifier, f.source, nil)
	resp := d.Check(context.Background(), Request{Headers: map[string]string{"authorization": "Bearer jwt-s-ok"}})
	if !resp.Allowed {
		t.Fatalf("denied: %+v", resp)
	}
	want := map[string]string{"x-google-token": "Bearer google-access", "x-google-id": "google-id"}
	if got := headerMap(resp.Headers); !reflect.DeepEqual(got, want) {
		t.Errorf("set headers = %v, want %v", got, want)
	}
	if !reflect.DeepEqual(resp.RemoveHeaders, []string{"authorization"}) {
		t.Errorf("removed = %v, want [authorization]", resp.RemoveHeaders)
	}
}

func TestRetryAfterWholeSecondsRoundedUp(t *testing.T) {
	for _, tc := range []struct {
		retry time.Duration
		want  string
	}{
		{0, ""},
		{time.Millisecond, "1"},
		{time.Second, "1"},
		{1500 * time.Millisecond, "2"},
		{7 * time.Second, "7"},
		{7*time.Second + time.Nanosecond, "8"},
	} {
		resp := failure(503, "provider_unavailable", "temporarily_unavailable", "retry later", tc.retry)
		if got := headerMap(resp.Headers)["retry-after"]; got != tc.want {
			t.Errorf("retry %v: Retry-After = %q, want %q", tc.retry, got, tc.want)
		}
	}
}

func TestStoreDownIs503(t *testing.T) {
	d, st := fixture(t)
	st.SetUnavailable(true)
	resp := d.Check(context.Background(), Request{Headers: map[string]string{"authorization": "Bearer jwt-s-ok"}})
	if resp.Status != 503 || headerMap(resp.Headers)["retry-after"] != "1" || resp.Reason != "store_unavailable" {
		t.Fatalf("got %+v, want 503 store_unavailable with Retry-After: 1", resp)
	}
}

func TestQuote(t *testing.T) {
	if got := quote(`a "b" \c`); got != `"a \"b\" \\c"` {
		t.Errorf("quote = %s", got)
	}
}

func headerMap(hs []Header) map[string]string {
	m := map[string]string{}
	for _, h := range hs {
		m[h.Name] = h.Value
	}
	return m
}

func TestUnavailableReason(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("%w: %w", upstreamtoken.ErrUpstreamUnavailable, store.ErrUnavailable), "store_unavailable"},
		{fmt.Errorf("%w: %w", upstreamtoken.ErrUpstreamUnavailable, store.ErrUnreadable), "store_unavailable"},
		{fmt.Errorf("%w: 503", upstreamtoken.ErrUpstreamUnavailable), "provider_unavailable"},
		{errors.Join(upstreamtoken.ErrUpstreamUnavailable, upstreamtoken.ErrProviderMisconfigured), "provider_misconfigured"},
		// Several providers: misconfiguration, then the store, then the provider.
		{errors.Join(fmt.Errorf("%w: 503", upstreamtoken.ErrUpstreamUnavailable), fmt.Errorf("%w: %w", upstreamtoken.ErrUpstreamUnavailable, store.ErrUnavailable)), "store_unavailable"},
		{errors.Join(fmt.Errorf("%w: %w", upstreamtoken.ErrUpstreamUnavailable, store.ErrUnavailable), upstreamtoken.ErrProviderMisconfigured), "provider_misconfigured"},
	}
	for _, tc := range tests {
		if got := unavailableReason(tc.err); got != tc.want {
			t.Errorf("unavailableReason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

type recordingObserver struct {
	mu        sync.Mutex
	decisions []Response
}

func (o *recordingObserver) Decision(r Response, elapsed time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if elapsed < 0 {
		panic("negative duration")
	}
	o.decisions = append(o.decisions, r)
}

func TestObserverSeesEachDecisionOnce(t *testing.T) {
	d, _ := fixture(t)
	obs := &recordingObserver{}
	d.cfg.Observer = obs
	for _, tc := range []struct{ auth, providers, reason, result string }{
		{"", "", "no_token", "denied"},
		{"Bearer jwt-s-ok", "", "ok", "ok"},
		{"Bearer jwt-s-busy", "", "provider_unavailable", "error"},
		{"Bearer jwt-s-ok", "gh,nope", "route_misconfigured", "error"},
		{"Bearer jwt-mallory", "", "binding_mismatch", "denied"},
	} {
		obs.decisions = nil
		req := Request{Headers: map[string]string{}, ContextExtensions: map[string]string{ContextKeyProviders: tc.providers}}
		if tc.auth != "" {
			req.Headers["authorization"] = tc.auth
		}
		resp := d.Check(context.Background(), req)
		if len(obs.decisions) != 1 || obs.decisions[0].Reason != tc.reason || obs.decisions[0].Result() != tc.result || resp.Reason != tc.reason {
			t.Errorf("%s: observed %+v, want one decision %s/%s", tc.reason, obs.decisions, tc.result, tc.reason)
		}
	}
}

// TestRouteRemovalsMatchPerCheck checks the headers a configured route's
// allow removes (computed once, at New) against those of the same providers
// named by a context extension (computed when the extension is first seen)
// and against the removals worked out from the allow's own headers (as a
// Check does when its providers send some of their ID tokens), whether the
// route's providers send all, none or some of their ID tokens.
func TestRouteRemovalsMatchPerCheck(t *testing.T) {
	d, st := fixtureWith(t, func(c *Config) {
		c.Providers["okta"] = Provider{Header: "x-okta", IDTokenHeader: "x-okta-id"}
		c.Routes = []Route{
			{PathPrefix: "/gh/", Providers: []string{"gh"}},
			{PathPrefix: "/google/", Providers: []string{"google"}},
			{PathPrefix: "/okta/", Providers: []string{"okta"}},
			{PathPrefix: "/both/", Providers: []string{"google", "okta"}},
			{PathPrefix: "/all/", Providers: []string{"gh", "google", "okta"}},
		}
	}, nil)
	// okta's row has no ID token: its ID-token header is removed.
	if err := st.Put(context.Background(), store.Row{SessionID: "s-ok", Provider: "okta", Subject: "alice", ClientID: "app",
		Tokens: store.Tokens{AccessToken: "okta-access", ExpiresAt: now.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, providers string }{
		{"/gh/x", "gh"},
		{"/google/x", "google"},
		{"/okta/x", "okta"},
		{"/both/x", "google,okta"},
		{"/all/x", "gh,google,okta"},
		{"/other", "gh"}, // the default route
	} {
		t.Run(tc.path, func(t *testing.T) {
			headers := map[string]string{"authorization": "Bearer jwt-s-ok"}
			byRoute := d.Check(context.Background(), Request{Headers: headers, Path: tc.path})
			byExt := d.Check(context.Background(), Request{Headers: headers, Path: tc.path,
				ContextExtensions: map[string]string{ContextKeyProviders: tc.providers}})
			if !byRoute.Allowed || !byExt.Allowed {
				t.Fatalf("denied: %s, %s", byRoute.Reason, byExt.Reason)
			}
			if !reflect.DeepEqual(headerMap(byRoute.Headers), headerMap(byExt.Headers)) {
				t.Errorf("set by route %v, by context extension %v", headerMap(byRoute.Headers), headerMap(byExt.Headers))
			}
			if !reflect.DeepEqual(byRoute.RemoveHeaders, byExt.RemoveHeaders) {
				t.Errorf("removed by route %v, by context extension %v", byRoute.RemoveHeaders, byExt.RemoveHeaders)
			}
			if want := d.removals(byRoute.Headers); !reflect.DeepEqual(byRoute.RemoveHeaders, want) {
				t.Errorf("removed by route %v, worked out from the headers set %v", byRoute.RemoveHeaders, want)
			}
			seen := map[string]int{}
			for _, h := range byRoute.Headers {
				seen[h.Name]++
			}
			for _, n := range byRoute.RemoveHeaders {
				seen[n]++
			}
			for _, n := range []string{"authorization", "x-google-id", "x-google-token", "x-okta", "x-okta-id"} {
				if seen[n] != 1 {
					t.Errorf("header %s set or removed %d times, want once", n, seen[n])
				}
			}
		})
	}
}

// Policies from context extensions are kept for the first maxExtPolicies
// sets of values; the others are resolved on every Check, alike.
func TestContextExtensionPoliciesKept(t *testing.T) {
	d, _ := fixture(t)
	check := func(providers string) Response {
		return d.Check(context.Background(), Request{Headers: map[string]string{"authorization": "Bearer jwt-s-ok"},
			ContextExtensions: map[string]string{ContextKeyProviders: providers}})
	}
	for i := range maxExtPolicies + 10 {
		providers := strings.Repeat(" ", i) + "google" // the same policy, spelt differently
		for range 2 {                                  // resolved, then kept (but for the last ten)
			resp := check(providers)
			want := map[string]string{"x-google-token": "Bearer google-access", "x-google-id": "google-id"}
			if got := headerMap(resp.Headers); !resp.Allowed || !reflect.DeepEqual(got, want) || !reflect.DeepEqual(resp.RemoveHeaders, []string{"authorization"}) {
				t.Fatalf("spelling %d: allowed %v, set %v, removed %v", i, resp.Allowed, got, resp.RemoveHeaders)
			}
		}
	}
	for range 2 {
		if resp := check("nonesuch"); resp.Status != 500 {
			t.Errorf("unknown provider: status %d, want 500", resp.Status)
		}
	}
	if n := len(*d.extPolicies.Load()); n != maxExtPolicies {
		t.Errorf("%d policies kept, want %d", n, maxExtPolicies)
	}
}
