package authz

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extauthz/extauthz/jwtauth"
	"github.com/extauthz/extauthz/jwtauth/jwttest"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/memory"
	"github.com/extauthz/extauthz/upstreamtoken"
)

// countingSource is a CredentialSource that counts its Lookups and passes
// them on to next (when set) or answers "<provider>-access" for every
// provider asked.
type countingSource struct {
	lookups atomic.Int64
	next    CredentialSource
}

func (s *countingSource) Lookup(ctx context.Context, sessionID string, b upstreamtoken.Binding, providers ...string) (upstreamtoken.Result, error) {
	s.lookups.Add(1)
	if s.next != nil {
		return s.next.Lookup(ctx, sessionID, b, providers...)
	}
	var res upstreamtoken.Result
	for _, p := range providers {
		res.SetCredential(p, upstreamtoken.UpstreamCredential{AccessToken: p + "-access"})
	}
	return res, nil
}

// countingRefresher refreshes every token and counts the refreshes.
type countingRefresher struct{ n atomic.Int64 }

func (r *countingRefresher) Refresh(_ context.Context, provider, _ string) (store.Tokens, error) {
	r.n.Add(1)
	return store.Tokens{AccessToken: provider + "-refreshed", ExpiresAt: now.Add(time.Hour)}, nil
}

const scopeChallenge = challenge + `, error="insufficient_scope", scope=`

// TestRequiredScopes signs real JWTs (so that "scope" and "scp" are parsed
// by jwtauth) for a session whose token has expired: an allowed Check reads
// the store and refreshes, a 403 must do neither.
func TestRequiredScopes(t *testing.T) {
	signer := jwttest.NewSigner(t)
	verifier, err := jwtauth.New(t.Context(), jwtauth.Config{
		Issuer: hostileIssuer, Audiences: []string{hostileAudience},
		JWKSFile: signer.WriteJWKSFile(t), Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	tok := func(kv ...any) string { return "Bearer " + signer.Sign(t, hostileClaims(kv...)) }

	tests := []struct {
		name   string
		auth   string
		ext    map[string]string
		status int
		reason string
		www    string // exact WWW-Authenticate, "" = none
	}{
		{"scope claim string has all", tok("scope", "admin repo read:org"),
			map[string]string{ContextKeyRequiredScopes: "repo read:org"}, 200, "ok", ""},
		{"scp array has all", tok("scp", []string{"read:org", "repo"}),
			map[string]string{ContextKeyRequiredScopes: "repo read:org"}, 200, "ok", ""},
		{"scp string has all", tok("scp", "repo read:org"),
			map[string]string{ContextKeyRequiredScopes: "repo read:org"}, 200, "ok", ""},
		{"scope claim missing one", tok("scope", "repo"),
			map[string]string{ContextKeyRequiredScopes: "repo read:org"}, 403, "insufficient_scope", scopeChallenge + `"repo read:org"`},
		{"scp array missing one", tok("scp", []string{"read:org"}),
			map[string]string{ContextKeyRequiredScopes: "repo read:org"}, 403, "insufficient_scope", scopeChallenge + `"repo read:org"`},
		{"no scope claim at all", tok(),
			map[string]string{ContextKeyRequiredScopes: "repo"}, 403, "insufficient_scope", scopeChallenge + `"repo"`},
		{"scopes are case-sensitive", tok("scope", "REPO"),
			map[string]string{ContextKeyRequiredScopes: "repo"}, 403, "insufficient_scope", scopeChallenge + `"repo"`},
		{"scope wins over scp", tok("scope", "read:org", "scp", []string{"repo", "read:org"}),
			map[string]string{ContextKeyRequiredScopes: "repo"}, 403, "insufficient_scope", scopeChallenge + `"repo"`},
		{"repeated and extra spaces", tok("scope", "read"),
			map[string]string{ContextKeyRequiredScopes: "  repo  repo read "}, 403, "insufficient_scope", scopeChallenge + `"repo read"`},
		{"with providers", tok("scope", "read"),
			map[string]string{ContextKeyProviders: "gh", ContextKeyRequiredScopes: "repo"}, 403, "insufficient_scope", scopeChallenge + `"repo"`},
		{"empty required_scopes requires nothing", tok(),
			map[string]string{ContextKeyRequiredScopes: ""}, 200, "ok", ""},
		{"malformed required_scopes: tab", tok("scope", "repo read"),
			map[string]string{ContextKeyRequiredScopes: "repo\tread"}, 500, "route_misconfigured", ""},
		{"malformed required_scopes: quote", tok("scope", `re"po`),
			map[string]string{ContextKeyRequiredScopes: `re"po`}, 500, "route_misconfigured", ""},
		{"malformed required_scopes: non-ASCII", tok("scope", "répo"),
			map[string]string{ContextKeyRequiredScopes: "répo"}, 500, "route_misconfigured", ""},
		{"no token comes first", "",
			map[string]string{ContextKeyRequiredScopes: "repo"}, 401, "no_token", challenge},
		{"token verified before scopes", "Bearer not-a-jwt",
			map[string]string{ContextKeyRequiredScopes: "repo"}, 401, "invalid_token",
			challenge + `, error="invalid_token", error_description="the access token is invalid"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := memory.New()
			err := st.Put(t.Context(), store.Row{SessionID: "session-1", Provider: "gh", Subject: "user-1", ClientID: "client-1",
				Tokens: store.Tokens{AccessToken: "gh-old", RefreshToken: "rt", ExpiresAt: now.Add(-time.Hour)}})
			if err != nil {
				t.Fatal(err)
			}
			ref := &countingRefresher{}
			src := &countingSource{next: upstreamtoken.NewInProcessService(st, ref, upstreamtoken.WithClock(func() time.Time { return now }))}
			d := New(Config{
				Providers:        map[string]Provider{"gh": {}},
				DefaultProviders: []string{"gh"},
				Realm:            "api",
				ResourceMetadata: "https://api.example/.well-known/oauth-protected-resource",
			}, verifier, src, nil)

			req := Request{Headers: map[string]string{}, ContextExtensions: tc.ext}
			if tc.auth != "" {
				req.Headers["authorization"] = tc.auth
			}
			resp := d.Check(t.Context(), req)
			if resp.Status != tc.status || resp.Reason != tc.reason {
				t.Fatalf("got status %d reason %q, want %d %q (%s)", resp.Status, resp.Reason, tc.status, tc.reason, resp.Body)
			}
			h := headerMap(resp.Headers)
			if !resp.Allowed && h["www-authenticate"] != tc.www {
				t.Errorf("WWW-Authenticate = %q\nwant %q", h["www-authenticate"], tc.www)
			}
			wantTouches := int64(0)
			if resp.Allowed {
				wantTouches = 1
				if h["authorization"] != "Bearer gh-refreshed" {
					t.Errorf("authorization = %q", h["authorization"])
				}
			}
			if n, r := src.lookups.Load(), ref.n.Load(); n != wantTouches || r != wantTouches {
				t.Errorf("store lookups %d, refreshes %d; want %d of each", n, r, wantTouches)
			}
			if tc.status == 403 {
				var body map[string]string
				if err := json.Unmarshal([]byte(resp.Body), &body); err != nil ||
					body["error"] != "insufficient_scope" || body["error_description"] != descScope || h["content-type"] != "application/json" {
					t.Errorf("403 body = %s (content-type %q)", resp.Body, h["content-type"])
				}
				if resp.Result() != "denied" {
					t.Errorf("Result = %q, want denied", resp.Result())
				}
			}
		})
	}
}

// TestRoutes checks route selection by host and path, and its precedence
// against context extensions. The outcome is "ok:<providers>" (from the
// headers set) or "<status>:<scope challenge attribute>".
func TestRoutes(t *testing.T) {
	v := staticVerifier{}
	for name, scopes := range map[string][]string{"none": nil, "repo": {"repo"}, "admin": {"repo", "admin"}, "read": {"read"}} {
		v["jwt-"+name] = jwtauth.Claims{Subject: "alice", ClientID: "app", SessionID: "s", Scopes: scopes}
	}
	src := &countingSource{}
	d := New(Config{
		Providers: map[string]Provider{
			"gh":     {},
			"google": {Header: "x-google-token"},
			"okta":   {Header: "x-okta-token"},
		},
		DefaultProviders: []string{"okta"},
		Routes: []Route{
			{PathPrefix: "/github/", Providers: []string{"gh"}, RequiredScopes: []string{"repo"}},
			{PathPrefix: "/github/admin/", Providers: []string{"gh"}, RequiredScopes: []string{"admin"}},
			{Host: "API.example.com", PathPrefix: "/github/", Providers: []string{"google"}},
			{PathPrefix: "/google/", Providers: []string{"google", "okta"}},
			{PathPrefix: "/scoped/", RequiredScopes: []string{"read"}},
			{Host: "::1", PathPrefix: "/github/", Providers: []string{"okta"}},
		},
		Realm: "api",
	}, v, src, nil)

	tests := []struct {
		name, token, host, path string
		ext                     map[string]string
		want                    string
	}{
		{"host-less route", "repo", "other.example", "/github/repos", nil, "ok:gh"},
		{"host-less route, scope missing", "none", "other.example", "/github/repos", nil, `403:scope="repo"`},
		{"host-specific beats host-less on equal prefix", "none", "api.example.com", "/github/repos", nil, "ok:google"},
		{"host case-insensitive, port ignored", "none", "API.Example.COM:8443", "/github/repos", nil, "ok:google"},
		{"host trailing dot ignored", "none", "api.example.com.", "/github/repos", nil, "ok:google"},
		{"IPv6 literal with port", "none", "[::1]:8080", "/github/repos", nil, "ok:okta"},
		{"longest prefix wins over host-specific shorter", "repo", "api.example.com", "/github/admin/users", nil, `403:scope="admin"`},
		{"longest prefix", "admin", "other.example", "/github/admin/users", nil, "ok:gh"},
		{"query string ignored", "none", "x", "/google/a?next=/github/admin/", nil, "ok:google,okta"},
		{"query string on a prefix", "repo", "x", "/github/?scope=admin", nil, "ok:gh"},
		{"prefix is a plain string prefix", "none", "x", "/github", nil, "ok:okta"},
		{"fragment ignored", "none", "x", "/google/#/github/admin/", nil, "ok:google,okta"},
		{"encoded unreserved decoded", "repo", "x", "/%67ithub/%61dmin/x", nil, `403:scope="admin"`},
		{"dot-segments removed", "repo", "x", "/public/../github/./admin/x", nil, `403:scope="admin"`},
		{"encoded dot-segments removed", "repo", "x", "/public/%2E%2e/github/admin/x", nil, `403:scope="admin"`},
		{"encoded slash not decoded", "repo", "x", "/github/admin%2fx", nil, "ok:gh"},
		{"route without providers uses the default", "read", "x", "/scoped/x", nil, "ok:okta"},
		{"route without providers still requires its scopes", "repo", "x", "/scoped/x", nil, `403:scope="read"`},
		{"no match: default providers, no scopes", "none", "x", "/elsewhere", nil, "ok:okta"},
		{"no host or path (another front)", "none", "", "", nil, "ok:okta"},
		{"upstream_providers wins over routes", "none", "x", "/github/admin/x",
			map[string]string{ContextKeyProviders: "google"}, "ok:google"},
		{"required_scopes alone is authoritative for both", "read", "x", "/github/admin/x",
			map[string]string{ContextKeyRequiredScopes: "read"}, "ok:okta"},
		{"required_scopes alone, missing", "repo", "x", "/github/x",
			map[string]string{ContextKeyRequiredScopes: "read"}, `403:scope="read"`},
		{"present but empty upstream_providers: no route", "none", "x", "/github/x",
			map[string]string{ContextKeyProviders: ""}, "ok:okta"},
		{"other extensions do not disable routes", "none", "x", "/github/x",
			map[string]string{"unrelated": "1"}, `403:scope="repo"`},
		{"path prefix case-insensitive by default", "none", "other.example", "/GITHUB/user", nil, `403:scope="repo"`},
		{"mixed case, longest prefix", "repo", "other.example", "/GitHub/Admin/users", nil, `403:scope="admin"`},
		{"encoded upper-case letters", "repo", "x", "/%47ITHUB/%41DMIN/x", nil, `403:scope="admin"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := src.lookups.Load()
			resp := d.Check(t.Context(), Request{
				Headers:           map[string]string{"authorization": "Bearer jwt-" + tc.token},
				ContextExtensions: tc.ext, Host: tc.host, Path: tc.path,
			})
			var got string
			if resp.Allowed {
				var ps []string
				for _, h := range resp.Headers {
					ps = append(ps, strings.TrimSuffix(strings.TrimPrefix(h.Value, "Bearer "), "-access"))
				}
				sort.Strings(ps)
				got = "ok:" + strings.Join(ps, ",")
			} else {
				_, scope, _ := strings.Cut(headerMap(resp.Headers)["www-authenticate"], "insufficient_scope\", ")
				got = fmt.Sprintf("%d:%s", resp.Status, scope)
			}
			if got != tc.want {
				t.Errorf("got %s, want %s (%s)", got, tc.want, resp.Body)
			}
			if lookups := src.lookups.Load() - before; (lookups == 1) != resp.Allowed {
				t.Errorf("%d store lookups for allowed=%v", lookups, resp.Allowed)
			}
		})
	}
}

// TestRouteAllocatesNothing: a Check that uses a configured route or the
// default providers finds its policy resolved at New.
func TestRouteAllocatesNothing(t *testing.T) {
	d := New(Config{
		Providers:        map[string]Provider{"gh": {}, "google": {Header: "x-google-token"}},
		DefaultProviders: []string{"gh"},
		Routes:           []Route{{PathPrefix: "/cal/", Providers: []string{"google"}, RequiredScopes: []string{"calendar", "calendar"}}},
	}, staticVerifier{}, &countingSource{}, nil)
	for _, path := range []string{"/v1/items?limit=20", "/cal/x", "/CAL/x"} {
		req := Request{Host: "api.example.com", Path: path}
		var providers, scopes []string
		allocs := testing.AllocsPerRun(100, func() {
			p := d.route(req)
			if p.err != nil {
				t.Fatal(p.err)
			}
			providers, scopes = p.providers, p.scopes
		})
		if allocs != 0 {
			t.Errorf("%s: route allocates %.0f times", path, allocs)
		}
		cal := strings.EqualFold(path, "/cal/x")
		if cal && (strings.Join(providers, ",") != "google" || strings.Join(scopes, ",") != "calendar") {
			t.Errorf("%s: providers %q, scopes %q", path, providers, scopes)
		}
		if !cal && (strings.Join(providers, ",") != "gh" || scopes != nil) {
			t.Errorf("%s: providers %q, scopes %q", path, providers, scopes)
		}
		if cap(providers) != len(providers) {
			t.Errorf("%s: shared providers slice has spare capacity: an append would write into it", path)
		}
	}
}

// policyOutcome renders a decision as "ok:<providers>" (from the headers
// set) or "<status>:<scope challenge attribute>".
func policyOutcome(resp Response) string {
	if resp.Allowed {
		var ps []string
		for _, h := range resp.Headers {
			ps = append(ps, strings.TrimSuffix(strings.TrimPrefix(h.Value, "Bearer "), "-access"))
		}
		sort.Strings(ps)
		return "ok:" + strings.Join(ps, ",")
	}
	_, scope, _ := strings.Cut(headerMap(resp.Headers)["www-authenticate"], "insufficient_scope\", ")
	return fmt.Sprintf("%d:%s", resp.Status, scope)
}

// TestRouteCaseSensitivity: a route's path_prefix ignores the case of ASCII
// letters unless the route says case_sensitive; a case-sensitive route wins
// over a case-insensitive one with the same prefix length.
func TestRouteCaseSensitivity(t *testing.T) {
	v := staticVerifier{}
	for name, scopes := range map[string][]string{"none": nil, "repo": {"repo"}, "exact": {"exact"}} {
		v["jwt-"+name] = jwtauth.Claims{Subject: "alice", ClientID: "app", SessionID: "s", Scopes: scopes}
	}
	d := New(Config{
		Providers:        map[string]Provider{"gh": {}, "okta": {Header: "x-okta-token"}},
		DefaultProviders: []string{"okta"},
		Routes: []Route{
			{PathPrefix: "/GitHub/", Providers: []string{"gh"}, RequiredScopes: []string{"repo"}},
			{PathPrefix: "/Exact/", CaseSensitive: true, RequiredScopes: []string{"exact"}},
			{PathPrefix: "/files/", Providers: []string{"gh"}},
			{PathPrefix: "/FILES/", CaseSensitive: true, RequiredScopes: []string{"exact"}},
			{PathPrefix: "/caf\xc3\xa9/", RequiredScopes: []string{"repo"}},
		},
	}, v, &countingSource{}, nil)
	for _, tc := range []struct{ token, path, want string }{
		{"none", "/github/x", `403:scope="repo"`},
		{"none", "/GITHUB/x", `403:scope="repo"`},
		{"none", "/gItHuB/x", `403:scope="repo"`},
		{"repo", "/GITHUB/x", "ok:gh"},
		{"none", "/githubx", "ok:okta"},
		{"none", "/Exact/x", `403:scope="exact"`},
		{"none", "/exact/x", "ok:okta"},
		{"none", "/EXACT/x", "ok:okta"},
		{"none", "/Files/x", "ok:gh"},
		{"none", "/FILES/x", `403:scope="exact"`},
		// Only ASCII letters fold: non-ASCII bytes compare exactly.
		{"none", "/CAF\xc3\xa9/x", `403:scope="repo"`},
		{"none", "/caf\xc3\x89/x", "ok:okta"},
	} {
		resp := d.Check(t.Context(), Request{Headers: map[string]string{"authorization": "Bearer jwt-" + tc.token}, Host: "x", Path: tc.path})
		if got := policyOutcome(resp); got != tc.want {
			t.Errorf("%s with %s: got %s, want %s", tc.path, tc.token, got, tc.want)
		}
	}
}

// TestDefaultRoute: a request that matches no route gets the default route's
// required scopes and providers (else default_providers); a route without
// providers still uses default_providers, not the default route's.
func TestDefaultRoute(t *testing.T) {
	v := staticVerifier{}
	for name, scopes := range map[string][]string{"none": nil, "base": {"api"}, "repo": {"repo"}} {
		v["jwt-"+name] = jwtauth.Claims{Subject: "alice", ClientID: "app", SessionID: "s", Scopes: scopes}
	}
	providers := map[string]Provider{"gh": {}, "okta": {Header: "x-okta-token"}, "google": {Header: "x-google-token"}}
	routes := []Route{{PathPrefix: "/github/", Providers: []string{"gh"}, RequiredScopes: []string{"repo"}}, {PathPrefix: "/open/"}}
	tests := []struct {
		name         string
		defaultRoute Route
		token, path  string
		want         string
	}{
		{"zero default route: default providers, no scopes", Route{}, "none", "/elsewhere", "ok:okta"},
		{"scopes required where no route matches", Route{RequiredScopes: []string{"api"}}, "none", "/elsewhere", `403:scope="api"`},
		{"scopes held", Route{RequiredScopes: []string{"api"}}, "base", "/elsewhere", "ok:okta"},
		{"a matching route is not the default", Route{RequiredScopes: []string{"api"}}, "repo", "/github/x", "ok:gh"},
		{"default route's providers", Route{Providers: []string{"google"}}, "none", "/elsewhere", "ok:google"},
		{"route without providers keeps default_providers", Route{Providers: []string{"google"}}, "none", "/open/x", "ok:okta"},
		{"no host or path (another front)", Route{RequiredScopes: []string{"api"}}, "none", "", `403:scope="api"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := New(Config{Providers: providers, DefaultProviders: []string{"okta"}, Routes: routes, DefaultRoute: tc.defaultRoute}, v, &countingSource{}, nil)
			resp := d.Check(t.Context(), Request{Headers: map[string]string{"authorization": "Bearer jwt-" + tc.token}, Host: "x", Path: tc.path})
			if got := policyOutcome(resp); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
	var logs strings.Builder
	d := New(Config{Providers: providers, DefaultProviders: []string{"okta"}, DefaultRoute: Route{RequiredScopes: []string{"two words"}}},
		v, &countingSource{}, slog.New(slog.NewTextHandler(&logs, nil)))
	if resp := d.Check(t.Context(), Request{Headers: map[string]string{"authorization": "Bearer jwt-none"}}); resp.Status != 500 || resp.Reason != "route_misconfigured" {
		t.Errorf("malformed default route: got %d %s, want 500 route_misconfigured", resp.Status, resp.Reason)
	}
	if !strings.Contains(logs.String(), "default_route.required_scopes") {
		t.Errorf("the log must name the default route:\n%s", logs.String())
	}
}

// TestRoutesOnly: with RoutesOnly, context extensions cannot choose a
// provider or drop a route's scopes.
func TestRoutesOnly(t *testing.T) {
	v := staticVerifier{}
	for name, scopes := range map[string][]string{"none": nil, "repo": {"repo"}, "base": {"api"}} {
		v["jwt-"+name] = jwtauth.Claims{Subject: "alice", ClientID: "app", SessionID: "s", Scopes: scopes}
	}
	cfg := Config{
		Providers:        map[string]Provider{"gh": {}, "okta": {Header: "x-okta-token"}, "google": {Header: "x-google-token"}},
		DefaultProviders: []string{"okta"},
		Routes:           []Route{{PathPrefix: "/github/", Providers: []string{"gh"}, RequiredScopes: []string{"repo"}}},
		DefaultRoute:     Route{RequiredScopes: []string{"api"}},
	}
	tests := []struct {
		name        string
		token, path string
		ext         map[string]string
		want        string // without RoutesOnly
		wantOnly    string // with RoutesOnly
	}{
		{"extension picks another provider", "repo", "/github/x", map[string]string{ContextKeyProviders: "google"}, "ok:google", "ok:gh"},
		{"extension drops the route's scopes", "none", "/github/x", map[string]string{ContextKeyRequiredScopes: ""}, "ok:okta", `403:scope="repo"`},
		{"extension drops the default route's scopes", "none", "/elsewhere", map[string]string{ContextKeyProviders: "gh", ContextKeyRequiredScopes: ""}, "ok:gh", `403:scope="api"`},
		{"extension naming an unknown provider", "base", "/elsewhere", map[string]string{ContextKeyProviders: "nope"}, "500:", "ok:okta"},
		{"malformed extension scopes", "base", "/elsewhere", map[string]string{ContextKeyRequiredScopes: "a\tb"}, "500:", "ok:okta"},
		{"no extensions", "repo", "/github/x", nil, "ok:gh", "ok:gh"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, only := range []bool{false, true} {
				c := cfg
				c.RoutesOnly = only
				d := New(c, v, &countingSource{}, nil)
				resp := d.Check(t.Context(), Request{Headers: map[string]string{"authorization": "Bearer jwt-" + tc.token},
					ContextExtensions: tc.ext, Host: "x", Path: tc.path})
				want := tc.want
				if only {
					want = tc.wantOnly
				}
				if got := policyOutcome(resp); got != want {
					t.Errorf("RoutesOnly=%v: got %s, want %s", only, got, want)
				}
			}
		})
	}
}

func TestRouteMisconfiguredAtCheckTime(t *testing.T) {
	// config refuses these at load; the Decider still fails closed.
	d := New(Config{
		Providers:        map[string]Provider{"gh": {}, "gitlab": {}},
		DefaultProviders: []string{"gh"},
		Routes: []Route{
			{PathPrefix: "/bad-scope/", RequiredScopes: []string{"two words"}},
			{PathPrefix: "/two-writers/", Providers: []string{"gh", "gitlab"}},
			{PathPrefix: "/unknown/", Providers: []string{"nope"}},
		},
	}, staticVerifier{"jwt": {Subject: "a", ClientID: "b", SessionID: "s"}}, &countingSource{}, nil)
	for _, path := range []string{"/bad-scope/x", "/two-writers/x", "/unknown/x"} {
		resp := d.Check(t.Context(), Request{Headers: map[string]string{"authorization": "Bearer jwt"}, Path: path})
		if resp.Status != 500 || resp.Reason != "route_misconfigured" {
			t.Errorf("%s: got %d %s, want 500 route_misconfigured", path, resp.Status, resp.Reason)
		}
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"":                     "",
		"/":                    "/",
		"/a/b?c=d#e":           "/a/b",
		"/a#b?c":               "/a",
		"/%7euser/%41%2d%5F":   "/~user/A-_",
		"/a%2fb%2Fc":           "/a%2Fb%2Fc",
		"/a%25%32%66":          "/a%252f",
		"/a%zz%4":              "/a%25zz%254",
		"/%%370":               "/%2570",
		"/%252F":               "/%252F",
		"/a/./b/../c":          "/a/c",
		"/a/b/..":              "/a/",
		"/a/b/.":               "/a/b/",
		"/../../a":             "/a",
		"/a//b/../c":           "/a//c",
		"//a":                  "//a",
		"/a/.../b":             "/a/.../b",
		"/a/..b/.c":            "/a/..b/.c",
		"/%2e%2E/admin":        "/admin",
		"*":                    "*",
		"http://h/a/../b":      "http://h/a/../b",
		"/\xff/%C3%A9":         "/\xff/%C3%A9",
		"/public/%2e%2e%2fadm": "/public/..%2Fadm",
	} {
		if got := CleanPath(in); got != want {
			t.Errorf("CleanPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCleanHost(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "",
		"API.Example.com":       "api.example.com",
		"api.example.com:8443":  "api.example.com",
		"api.example.com.":      "api.example.com",
		"api.example.com.:443":  "api.example.com",
		"[::1]:8080":            "::1",
		"[2001:DB8::1]":         "2001:db8::1",
		"2001:db8::1":           "2001:db8::1",
		" spaced.example.com ":  "spaced.example.com",
		"10.0.0.1:80":           "10.0.0.1",
		"api.example.com:":      "api.example.com",
		"[unterminated:80":      "[unterminated:80",
		"user@api.example.com":  "user@api.example.com",
		"api.example.com:80:80": "api.example.com:80:80",
	} {
		if got := cleanHost(in); got != want {
			t.Errorf("cleanHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzCleanPath: CleanPath is idempotent (nothing is decoded twice), never
// yields a query or a dot-segment for an absolute path and keeps a leading
// "/".
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "/%2e%2E/x?y", "/a%2f%7e", "//a/./b/..", "%", "/%4", "/a/b/.", "*", "%%370"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		c := CleanPath(p)
		if again := CleanPath(c); again != c {
			t.Fatalf("CleanPath(%q) = %q, but CleanPath of that = %q", p, c, again)
		}
		if strings.ContainsAny(c, "?#") {
			t.Fatalf("CleanPath(%q) = %q", p, c)
		}
		if strings.HasPrefix(p, "/") != strings.HasPrefix(c, "/") {
			t.Fatalf("CleanPath(%q) = %q changed the leading slash", p, c)
		}
		if strings.HasPrefix(c, "/") {
			for _, seg := range strings.Split(c, "/") {
				if seg == "." || seg == ".." {
					t.Fatalf("CleanPath(%q) = %q keeps a dot-segment", p, c)
				}
			}
		}
	})
}
