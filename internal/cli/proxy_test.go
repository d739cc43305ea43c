package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extauthz/extauthz/jwtauth/jwttest"
	"github.com/extauthz/extauthz/store"
)

// proxyBinary returns the reverse proxy binary named by envVar (scripts/test
// installs the proxy and sets it). Without it the test is skipped, or failed
// when CI is "true".
func proxyBinary(t *testing.T, envVar string) string {
	t.Helper()
	bin := os.Getenv(envVar)
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set (scripts/test sets it)", envVar)
		}
		t.Skipf("%s is not set: no proxy to test with (scripts/test installs and sets it)", envVar)
	}
	return bin
}

// proxyConfig returns what "extauthz proxy-config KIND --backend BACKEND"
// prints for s's configuration.
func proxyConfig(t *testing.T, s *httpServer, kind, backend string) string {
	t.Helper()
	var out, errs bytes.Buffer
	code := Run(context.Background(), []string{"proxy-config", kind, "--config", s.configPath, "--backend", backend},
		Env{Stdout: &out, Stderr: &errs, Getenv: s.getenv})
	if code != ExitOK {
		t.Fatalf("proxy-config %s: exit %d: %s", kind, code, errs.String())
	}
	return out.String()
}

// runProxy starts cmd, a reverse proxy that listens on addr, stops it with
// stop when t ends (killing it after 10 s), and returns its URL once it
// accepts connections. exited describes, for the failure message, why the
// proxy exited early.
func runProxy(t *testing.T, cmd *exec.Cmd, addr string, stop os.Signal, exited func() string) string {
	t.Helper()
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(stop)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return "http://" + addr
		}
		select {
		case <-done:
			t.Fatalf("%s exited: %s\n%s", cmd.Path, out, exited())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not listen on %s: %s", cmd.Path, addr, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// echoBackend records the header lines of every request it receives.
type echoBackend struct {
	mu   sync.Mutex
	seen []http.Header
}

func (b *echoBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.seen = append(b.seen, r.Header.Clone())
	b.mu.Unlock()
	fmt.Fprint(w, "backend")
}

func (b *echoBackend) take() []http.Header {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.seen
	b.seen = nil
	return out
}

// The upstream tokens of proxyWorld's sessions.
const (
	proxyGHToken     = "gho_proxy_upstream"
	proxyGoogleToken = "ya29_proxy_upstream"
	// proxyRefreshed is what the token endpoint answers first for the
	// refresh token "rt-refresh" (see tokenEndpoint).
	proxyRefreshed = "new-access-rt-refresh-1"
)

// proxyWatched are the backend's request headers a proxy case checks: every
// header the configuration could set, and the headers only a proxy may set.
var proxyWatched = []string{"Authorization", "X-Google-Id-Token", "X-Google-Token", "X-Extauthz-Providers", "X-Extauthz-Required-Scopes"}

// proxyWorld is what a proxy test puts behind the proxy: extauthz's HTTP
// front on a fixed address (the generated proxy configuration names it),
// with startHTTPServe's providers and routes, an echo backend, and the
// sessions of alice's client app that proxyCases use:
//
//	s1          gh and google, fresh, no ID token
//	s-idt       google, fresh, with an ID token
//	s-gh-only   gh, fresh
//	s-refresh   gh, expired, refresh token "rt-refresh" (refreshed)
//	s-refused   gh, expired, refresh token "refused-rt" (invalid_grant)
//	s-marked    gh, expired, marked for re-authentication
//	s-no-rt     gh, expired, no refresh token
//	s-ended     gh, fresh, the session expired
//	s-outage    google, expired, refresh token "busy-rt" (the provider answers 503)
//	s-unsafe    gh, fresh, a token with a line break
type proxyWorld struct {
	s          *httpServer
	backend    *echoBackend
	backendURL string
	jwt        string // for s1, with scope read
	idToken    string // s-idt's
}

func newProxyWorld(t *testing.T) *proxyWorld {
	t.Helper()
	w := &proxyWorld{s: startHTTPServe(t, freeTCPAddr(t)), backend: &echoBackend{}}
	bsrv := httptest.NewServer(w.backend)
	t.Cleanup(bsrv.Close)
	w.backendURL = bsrv.URL
	w.jwt = w.s.jwt(t, "s1", "read")
	w.idToken = jwttest.NewSigner(t).Sign(t, map[string]any{"iss": "https://accounts.google.test", "sub": "g-alice", "aud": "g",
		"exp": time.Now().Add(time.Hour).Unix()})

	fresh, expired := time.Now().Add(time.Hour), time.Now().Add(-time.Hour)
	ctx := context.Background()
	for _, r := range []store.Row{
		{SessionID: "s1", Provider: "gh", Tokens: store.Tokens{AccessToken: proxyGHToken, ExpiresAt: fresh}},
		{SessionID: "s1", Provider: "google", Tokens: store.Tokens{AccessToken: proxyGoogleToken, ExpiresAt: fresh}},
		{SessionID: "s-idt", Provider: "google", Tokens: store.Tokens{AccessToken: proxyGoogleToken, IDToken: w.idToken, ExpiresAt: fresh}},
		{SessionID: "s-gh-only", Provider: "gh", Tokens: store.Tokens{AccessToken: proxyGHToken, ExpiresAt: fresh}},
		{SessionID: "s-refresh", Provider: "gh", Tokens: store.Tokens{AccessToken: "old", RefreshToken: "rt-refresh", ExpiresAt: expired}},
		{SessionID: "s-refused", Provider: "gh", Tokens: store.Tokens{AccessToken: "old", RefreshToken: "refused-rt", ExpiresAt: expired}},
		{SessionID: "s-marked", Provider: "gh", Tokens: store.Tokens{AccessToken: "old", RefreshToken: "rt-marked", ExpiresAt: expired}},
		{SessionID: "s-no-rt", Provider: "gh", Tokens: store.Tokens{AccessToken: "old", ExpiresAt: expired}},
		{SessionID: "s-ended", Provider: "gh", Tokens: store.Tokens{AccessToken: proxyGHToken, ExpiresAt: fresh}, SessionExpiresAt: time.Now().Add(-time.Minute)},
		{SessionID: "s-outage", Provider: "google", Tokens: store.Tokens{AccessToken: "old", RefreshToken: "busy-rt", ExpiresAt: expired}},
		{SessionID: "s-unsafe", Provider: "gh", Tokens: store.Tokens{AccessToken: "gho_unsafe\r\nX-Injected: 1", ExpiresAt: fresh}},
	} {
		r.Subject, r.ClientID = "alice", "app"
		if err := w.s.store.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// The re-authentication mark, as a refused refresh leaves it.
	claim, err := w.s.store.ClaimRefresh(ctx, "s-marked", "gh", "proxy-test", time.Minute)
	if err != nil || !claim.Held {
		t.Fatalf("claim: %v, held %v", err, claim.Held)
	}
	if err := w.s.store.ReleaseRefresh(ctx, "s-marked", "gh", claim.Lease, true); err != nil {
		t.Fatal(err)
	}
	return w
}

// clientHeaders returns request headers with Authorization "Bearer jwt" (none when
// jwt is empty) and the further header names and values in kv.
func clientHeaders(jwt string, kv ...string) http.Header {
	h := http.Header{}
	if jwt != "" {
		h.Set("Authorization", "Bearer "+jwt)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// get sends a GET for path on host api.test through the proxy at base and
// returns the answer with its body read.
func (w *proxyWorld) get(t *testing.T, base, path string, headers http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "api.test"
	req.Header = headers
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// assertNoTokensLogged fails if extauthz logged an upstream token or a JWT.
func (w *proxyWorld) assertNoTokensLogged(t *testing.T) {
	t.Helper()
	for _, secret := range []string{proxyGHToken, proxyGoogleToken, proxyRefreshed, w.idToken, w.jwt} {
		if strings.Contains(w.s.logs.String(), secret) {
			t.Error("a token is in the logs")
		}
	}
}

// proxyRunner runs one kind of reverse proxy in front of a proxyWorld.
type proxyRunner struct {
	// name is the proxy's name in proxy-config and in proxyCase.behind.
	name string
	// envVar names the proxy's binary (see proxyBinary).
	envVar string
	// start runs bin in front of w, configured with exactly what
	// "extauthz proxy-config <name>" prints, and returns its URL.
	start func(t *testing.T, bin string, w *proxyWorld) string
	// ownDenyBody is set when the proxy answers a deny with a body of its
	// own instead of extauthz's JSON.
	ownDenyBody bool
}

// clientView is what the client sees of an answer.
type clientView struct {
	status int
	// challenge is WWW-Authenticate ("" when absent); retryAfter whether
	// Retry-After is present.
	challenge  string
	retryAfter bool
	// errorCode is the "error" of the JSON body of a deny, when the proxy
	// passes extauthz's body on.
	errorCode string
	// link is whether the deny's connect link (Link, rel="connect")
	// reaches the client.
	link bool
}

// proxyCase is a request sent through each proxy, and what must come of it.
type proxyCase struct {
	name   string
	path   string
	header func(t *testing.T, w *proxyWorld) http.Header
	// times is how often the request is sent (default once); every answer
	// must be as wanted.
	times int
	// want is what the client sees through a proxy that passes extauthz's
	// answer on as it is (Caddy); behind replaces it for the proxies it
	// names.
	want   clientView
	behind map[string]clientView
	// backend, for an allowed request, gives the values the backend must
	// see of the proxyWatched headers, one line each; the others must be
	// absent. A denied request never reaches the backend.
	backend func(w *proxyWorld) map[string]string
	// after, when set, checks what else must hold once the requests are done.
	after func(t *testing.T, w *proxyWorld)
}

// Challenges of the deny table (realm "api").
const (
	challengeNoToken = `Bearer realm="api"`
	challengeInvalid = `Bearer realm="api", error="invalid_token", error_description="the access token is invalid"`
	challengeSession = `Bearer realm="api", error="invalid_token", error_description="the token's session is not valid for this resource"`
	challengeReauth  = `Bearer realm="api", error="invalid_token", error_description="upstream authorization has expired; re-authentication required"`
	challengeScope   = `Bearer realm="api", error="insufficient_scope", scope="admin"`
)

// Answers as a pass-through proxy shows them, and as nginx does: it passes
// 401 with its challenge, 403 without, and turns any other status into 500.
var (
	allowed       = clientView{status: 200}
	noToken       = clientView{status: 401, challenge: challengeNoToken, errorCode: "unauthorized"}
	invalidToken  = clientView{status: 401, challenge: challengeInvalid, errorCode: "invalid_token"}
	sessionDenied = clientView{status: 401, challenge: challengeSession, errorCode: "invalid_token"}
	reauth        = clientView{status: 401, challenge: challengeReauth, errorCode: "invalid_token"}
	// With the connect link: a grant the user can link again.
	sessionLinked = clientView{status: 401, challenge: challengeSession, errorCode: "invalid_token", link: true}
	reauthLinked  = clientView{status: 401, challenge: challengeReauth, errorCode: "invalid_token", link: true}
	scopeDenied   = clientView{status: 403, challenge: challengeScope, errorCode: "insufficient_scope"}
	nginx403      = map[string]clientView{"nginx": {status: 403}}
	nginx500      = map[string]clientView{"nginx": {status: 500}}
)

// ghOnly is what the backend sees on a gh route: Authorization, the
// upstream token, and nothing else watched.
func ghOnly(*proxyWorld) map[string]string {
	return map[string]string{"Authorization": "Bearer " + proxyGHToken}
}

// googleOnly is what the backend sees on the google route for a session
// without an ID token.
func googleOnly(*proxyWorld) map[string]string {
	return map[string]string{"X-Google-Token": "Bearer " + proxyGoogleToken}
}

// jwtFor returns a header function sending alice's JWT for session with
// scopes, its claims changed by edit (may be nil), and the header names
// and values in kv.
func jwtFor(session, scopes string, edit func(map[string]any), kv ...string) func(*testing.T, *proxyWorld) http.Header {
	return func(t *testing.T, w *proxyWorld) http.Header {
		return clientHeaders(w.s.jwtWith(t, session, scopes, edit), kv...)
	}
}

// s1 is jwtFor session s1 with scope read.
func s1(kv ...string) func(*testing.T, *proxyWorld) http.Header {
	return jwtFor("s1", "read", nil, kv...)
}

// calls returns an after function that checks the token endpoint was asked
// n times to redeem refresh token rt.
func calls(rt string, n int) func(*testing.T, *proxyWorld) {
	return func(t *testing.T, w *proxyWorld) {
		if got := w.s.tokens.count(rt); got != n {
			t.Errorf("token endpoint redeemed %q %d times, want %d", rt, got, n)
		}
	}
}

// proxyCases is every case that runs through every proxy: the allowed
// requests and what their backend sees, the refresh, each row of the deny
// table, required scopes, and the smuggling attempts.
var proxyCases = []proxyCase{
	// Allowed, and what reaches the backend.
	{name: "allow: the backend sees one Authorization, the upstream token", path: "/repos?page=2", header: s1(),
		want: allowed, backend: ghOnly},
	{name: "allow: a route's required scope", path: "/admin/users", header: jwtFor("s1", "read admin", nil),
		want: allowed, backend: ghOnly},
	{name: "allow: a route whose provider writes its own header and the ID token", path: "/google/calendars",
		header: jwtFor("s-idt", "read", nil), want: allowed, backend: func(w *proxyWorld) map[string]string {
			return map[string]string{"X-Google-Token": "Bearer " + proxyGoogleToken, "X-Google-Id-Token": w.idToken}
		}},
	{name: "refresh on expiry: the backend sees the new token, redeemed once for two requests", path: "/repos",
		header: jwtFor("s-refresh", "read", nil), times: 2, want: allowed,
		backend: func(*proxyWorld) map[string]string {
			return map[string]string{"Authorization": "Bearer " + proxyRefreshed}
		},
		after: calls("rt-refresh", 1)},

	// Smuggling past an allow.
	{name: "smuggling: the caller's JWT does not reach the backend on a route that sets no Authorization",
		path: "/google/calendars", header: s1(), want: allowed, backend: googleOnly},
	{name: "smuggling: forged provider headers on a route that does not set them are gone", path: "/repos",
		header: s1("X-Google-Token", "Bearer forged", "X-Google-Id-Token", "forged"), want: allowed, backend: ghOnly},
	{name: "smuggling: a header the route sets but the answer left out is gone", path: "/google/calendars",
		header: s1("X-Google-Id-Token", "forged"), want: allowed, backend: googleOnly},
	{name: "smuggling: a client's X-Extauthz-Providers does not choose the providers", path: "/repos",
		header: s1("X-Extauthz-Providers", "google"), want: allowed, backend: ghOnly},
	{name: "smuggling: a client's copy of the proxy's own header is not the answer's", path: "/google/calendars",
		header: s1("X-Extauthz-Copy-Authorization", "Bearer forged", "X-Extauthz-Copy-X-Google-Id-Token", "forged"),
		want:   allowed, backend: googleOnly},

	// Smuggling past a deny.
	{name: "smuggling: a client's X-Extauthz-Providers does not skip the route's scopes", path: "/admin/users",
		header: s1("X-Extauthz-Providers", "gh"), want: scopeDenied, behind: nginx403},
	{name: "smuggling: a client's X-Extauthz-Required-Scopes does not replace the route's", path: "/admin/users",
		header: s1("X-Extauthz-Required-Scopes", "read"), want: scopeDenied, behind: nginx403},
	{name: "smuggling: a client's X-Original-Uri does not name the path", path: "/admin/users",
		header: s1("X-Original-Uri", "/repos"), want: scopeDenied, behind: nginx403},
	{name: "smuggling: a client's X-Forwarded-Uri does not name the path", path: "/admin/users",
		header: s1("X-Forwarded-Uri", "/repos"), want: scopeDenied, behind: nginx403},
	{name: "smuggling: two Authorization headers", path: "/repos",
		header: func(t *testing.T, w *proxyWorld) http.Header {
			return http.Header{"Authorization": {"Bearer forged", "Bearer " + w.jwt}}
		},
		// nginx refuses the request itself, before auth_request.
		want: invalidToken, behind: map[string]clientView{"nginx": {status: 400}}},

	// The deny table.
	{name: "deny: no Authorization", path: "/repos", header: func(*testing.T, *proxyWorld) http.Header { return http.Header{} },
		want: noToken},
	{name: "deny: a scheme other than Bearer", path: "/repos",
		header: func(*testing.T, *proxyWorld) http.Header { return http.Header{"Authorization": {"Basic YWxpY2U6cHc="}} },
		want:   noToken},
	{name: "deny: not a JWT", path: "/repos", header: func(*testing.T, *proxyWorld) http.Header { return clientHeaders("not-a-jwt") },
		want: invalidToken},
	{name: "deny: an expired JWT", path: "/repos", header: jwtFor("s1", "read", func(c map[string]any) {
		c["iat"], c["exp"] = time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
	}), want: invalidToken},
	{name: "deny: a JWT for another audience", path: "/repos",
		header: jwtFor("s1", "read", func(c map[string]any) { c["aud"] = "other-api" }), want: invalidToken},
	{name: "deny: a JWT of another issuer", path: "/repos",
		header: jwtFor("s1", "read", func(c map[string]any) { c["iss"] = "https://other-as.test" }), want: invalidToken},
	{name: "deny: a JWT signed with another key", path: "/repos", header: func(t *testing.T, w *proxyWorld) http.Header {
		return clientHeaders(jwttest.NewSigner(t).Sign(t, map[string]any{"iss": "https://as.test", "aud": "api", "sub": "alice",
			"client_id": "app", "tsid": "s1", "scope": "read", "exp": time.Now().Add(time.Hour).Unix()}))
	}, want: invalidToken},
	{name: "deny: a JWT without tsid", path: "/repos",
		header: jwtFor("s1", "read", func(c map[string]any) { delete(c, "tsid") }), want: invalidToken},
	{name: "deny: an unknown session", path: "/repos", header: jwtFor("s-none", "read", nil), want: sessionLinked},
	{name: "deny: the route's provider has no row in the session", path: "/google/calendars",
		header: jwtFor("s-gh-only", "read", nil), want: sessionLinked},
	{name: "deny: binding: another subject's JWT", path: "/repos",
		header: jwtFor("s1", "read", func(c map[string]any) { c["sub"] = "bob" }), want: sessionDenied},
	{name: "deny: binding: another client's JWT", path: "/repos",
		header: jwtFor("s1", "read", func(c map[string]any) { c["client_id"] = "other-app" }), want: sessionDenied},
	{name: "deny: the session expired", path: "/repos", header: jwtFor("s-ended", "read", nil), want: reauth},
	{name: "deny: no refresh token", path: "/repos", header: jwtFor("s-no-rt", "read", nil), want: reauthLinked},
	{name: "deny: the grant refused (invalid_grant), then the re-authentication mark: redeemed once for two requests",
		path: "/repos", header: jwtFor("s-refused", "read", nil), times: 2, want: reauthLinked, after: calls("refused-rt", 1)},
	{name: "deny: the re-authentication mark", path: "/repos", header: jwtFor("s-marked", "read", nil),
		want: reauthLinked, after: calls("rt-marked", 0)},
	{name: "deny: insufficient scope on a route with required_scopes", path: "/admin/users", header: s1(),
		want: scopeDenied, behind: nginx403},
	{name: "deny: provider unavailable, 503 with Retry-After", path: "/google/calendars", header: jwtFor("s-outage", "read", nil),
		want: clientView{status: 503, retryAfter: true, errorCode: "temporarily_unavailable"}, behind: nginx500},
	{name: "deny: an upstream token that cannot be a header value, 502", path: "/repos", header: jwtFor("s-unsafe", "read", nil),
		want: clientView{status: 502, errorCode: "server_error"}, behind: nginx500},
}

// runProxyCases runs every proxy case through one proxy of kind p, in front
// of one extauthz.
func runProxyCases(t *testing.T, p proxyRunner) {
	bin := proxyBinary(t, p.envVar)
	w := newProxyWorld(t)
	base := p.start(t, bin, w)
	for _, tc := range proxyCases {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if v, ok := tc.behind[p.name]; ok {
				want = v
			}
			for range max(tc.times, 1) {
				headers := tc.header(t, w)
				clientAuth := headers.Values("Authorization")
				resp, body := w.get(t, base, tc.path, headers)
				seen := w.backend.take()
				p.checkAnswer(t, want, resp, body)
				if want.status != http.StatusOK {
					if len(seen) != 0 {
						t.Errorf("a denied request reached the backend %d times", len(seen))
					}
					continue
				}
				if len(seen) != 1 {
					t.Fatalf("the backend got %d requests, want 1", len(seen))
				}
				checkBackend(t, seen[0], tc.backend(w), clientAuth)
			}
			if tc.after != nil {
				tc.after(t, w)
			}
		})
	}
	w.assertNoTokensLogged(t)
}

// checkAnswer compares what the client got with want. It reports statuses
// and header presence, never a value that could hold a token.
func (p proxyRunner) checkAnswer(t *testing.T, want clientView, resp *http.Response, body string) {
	t.Helper()
	if resp.StatusCode != want.status {
		t.Fatalf("status %d, want %d", resp.StatusCode, want.status)
	}
	if got := resp.Header.Get("WWW-Authenticate"); got != want.challenge {
		t.Errorf("WWW-Authenticate %q, want %q", got, want.challenge)
	}
	if got := strings.HasSuffix(resp.Header.Get("Link"), `; rel="connect"`); got != want.link {
		t.Errorf("connect link present: %v, want %v", got, want.link)
	}
	if got := resp.Header.Get("Retry-After") != ""; got != want.retryAfter {
		t.Errorf("Retry-After present: %v, want %v", got, want.retryAfter)
	}
	switch {
	case want.status == http.StatusOK:
		if body != "backend" {
			t.Errorf("the body is not the backend's (%d bytes)", len(body))
		}
	case want.errorCode != "" && !p.ownDenyBody:
		var deny struct {
			Error string `json:"error"`
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q, want application/json", ct)
		}
		if err := json.Unmarshal([]byte(body), &deny); err != nil || deny.Error != want.errorCode {
			t.Errorf("body error %q (%v), want %q", deny.Error, err, want.errorCode)
		}
	}
}

// checkBackend compares the proxyWatched headers the backend saw with want,
// and checks that no header carries the client's Authorization value or a
// proxy's unfilled placeholder. It reports counts and booleans only.
func checkBackend(t *testing.T, seen http.Header, want map[string]string, clientAuth []string) {
	t.Helper()
	for _, name := range proxyWatched {
		got := seen.Values(name)
		v, ok := want[name]
		switch {
		case !ok && len(got) != 0:
			t.Errorf("%s reached the backend (%d lines), want none", name, len(got))
		case ok && (len(got) != 1 || got[0] != v):
			t.Errorf("%s: %d lines at the backend, the expected value: %v; want 1", name, len(got), len(got) == 1 && got[0] == v)
		}
	}
	for name, values := range seen {
		for _, v := range values {
			if strings.Contains(v, "{") {
				t.Errorf("%s at the backend holds a placeholder's text", name)
			}
			for _, a := range clientAuth {
				if strings.Contains(v, strings.TrimPrefix(a, "Bearer ")) {
					t.Errorf("%s at the backend holds the client's Authorization", name)
				}
			}
		}
	}
}
