package connect_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/connect"
	"github.com/extauthz/extauthz/internal/browsertest"
	"github.com/extauthz/extauthz/internal/connecttest"
	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/internal/testop"
	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/encrypted"
	"github.com/extauthz/extauthz/store/memory"
	"github.com/extauthz/extauthz/store/postgres"
	"github.com/extauthz/extauthz/upstreamtoken"
)

// One Chromium for the whole test binary (browser_test.go).
func TestMain(m *testing.M) { os.Exit(browsertest.Main(m)) }

// The accounts at the test provider. alice is the subject the links are
// made for; bob is someone else who got hold of one.
var (
	alice = testop.User{Subject: "alice-sub", Username: "alice", Password: "alice-password", Email: "alice@example.test"}
	bob   = testop.User{Subject: "bob-sub", Username: "bob", Password: "bob-password"}
)

// The clients at the provider: the login client (the primary authorization
// server's) and extauthz's client at the provider "github" (the same
// provider plays both parts, with a client each).
const (
	loginClient    = "extauthz-login"
	providerClient = "extauthz-github"
	providerName   = "github"
	sessionID      = "session-1"
	asClientID     = "mcp-app"
)

// world is a running flow: a test provider, the handler on 127.0.0.1 and
// its parts.
type world struct {
	op        *testop.OP
	base      string // the public URL
	tickets   *connect.Tickets
	sessions  connect.Sessions
	exchanger *connecttest.Exchanger
	clock     *testutil.Clock      // the tickets' clock
	logs      *testutil.SyncBuffer // the handler's log
	raw       *postgres.Store      // with worldOptions.postgres: the rows as stored
}

// worldOptions vary a world.
type worldOptions struct {
	uses     connect.UseRecorder // nil: in memory
	sessions connect.Sessions    // nil: store/memory
	// exchange, when set, replaces the provider's answer (after the real
	// exchange).
	exchange func(store.Tokens, error) (store.Tokens, error)
	// postgres stores rows sealed (store/encrypted) in real PostgreSQL, and
	// records redeemed tickets there.
	postgres bool
}

func newWorld(t *testing.T, wo worldOptions) *world {
	t.Helper()
	ln, base := connecttest.Listen(t)
	op := testop.Start(t, testop.Options{
		Users: []testop.User{alice, bob},
		Clients: []testop.Client{
			{ID: loginClient, Secret: "login-secret", RedirectURIs: []string{base + connect.PathLoginCallback}},
			{ID: providerClient, Secret: "provider-secret", AuthMethod: testop.ClientSecretPost,
				RedirectURIs: []string{base + connect.PathProviderCallback}},
		},
	})
	keys := keyring(t, "k1")
	var raw *postgres.Store
	if wo.postgres {
		var err error
		raw, err = postgres.New(context.Background(), pgtest.New(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(raw.Close)
		wo.uses, wo.sessions = raw, encrypted.New(raw, keys)
	}
	if wo.uses == nil {
		wo.uses = &memoryUses{}
	}
	if wo.sessions == nil {
		wo.sessions = memory.New()
	}
	w := &world{op: op, base: base, sessions: wo.sessions, clock: testutil.NewClock(time.Now()), logs: &testutil.SyncBuffer{}, raw: raw}
	w.tickets = connect.NewTickets(keys, wo.uses, 0, connect.WithClock(w.clock.Now))
	w.exchanger = &connecttest.Exchanger{HTTPClient: op.HTTPClient(), TokenURL: op.TokenURL(),
		ClientID: providerClient, ClientSecret: "provider-secret", Replace: wo.exchange}
	h, err := connect.NewHandler(connect.Options{
		PublicURL: base,
		Tickets:   w.tickets,
		Keys:      keys,
		Login:     connect.Login{Issuer: op.Issuer, ClientID: loginClient, ClientSecret: "login-secret", Scopes: []string{"profile"}},
		Providers: map[string]connect.Provider{providerName: {
			AuthorizationURL: op.AuthorizationURL(), ClientID: providerClient, Issuer: op.Issuer,
			Scopes:     []string{"openid", "email", "offline_access"},
			AuthParams: map[string]string{"access_type": "offline"},
		}},
		Exchanger:  w.exchanger,
		Sessions:   wo.sessions,
		ReturnURL:  "https://app.example.test/",
		HTTPClient: op.HTTPClient(),
		Logger:     slog.New(slog.NewTextHandler(w.logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	connecttest.Serve(t, ln, h)
	return w
}

// link returns a connect link for alice's session at the provider, as a
// deny would carry.
func (w *world) link(t *testing.T) string {
	t.Helper()
	links, err := connect.NewLinks(w.base, w.tickets)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := links.ConnectLink(ctx, targetFor(alice.Subject))
	if err != nil {
		t.Fatal(err)
	}
	return l.URI
}

// stored returns the session's row at the provider, if any.
func (w *world) stored(t *testing.T) (store.Row, bool) {
	t.Helper()
	rows, err := w.sessions.GetSession(context.Background(), sessionID)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Provider == providerName {
			return r, true
		}
	}
	return store.Row{}, false
}

// browser is a plain HTTP client with cookies that follows redirects: it
// signs in at the test provider's HTML forms by posting them.
type browser struct {
	t *testing.T
	c *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, c: &http.Client{Jar: jar, Timeout: 2 * time.Minute}}
}

// answer is a page the browser ended on.
type answer struct {
	status int
	url    *url.URL
	header http.Header
	body   string
}

func (b *browser) do(req func() (*http.Response, error)) answer {
	b.t.Helper()
	resp, err := req()
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return answer{status: resp.StatusCode, url: resp.Request.URL, header: resp.Header, body: sb.String()}
}

func (b *browser) get(u string) answer {
	b.t.Helper()
	return b.do(func() (*http.Response, error) { return b.c.Get(u) })
}

// signIn answers the login form and the consent page the browser is on
// (a) as user, pressing decision ("allow" or "deny").
func (b *browser) signIn(op *testop.OP, a answer, user testop.User, decision string) answer {
	b.t.Helper()
	if a.url.Path != "/login" {
		b.t.Fatalf("expected the login form, at %s (%d): %s", a.url.Path, a.status, a.body)
	}
	id := a.url.Query().Get("id")
	a = b.do(func() (*http.Response, error) {
		return b.c.PostForm(op.Issuer+"/login", url.Values{"id": {id}, "username": {user.Username}, "password": {user.Password}})
	})
	if a.url.Path != "/consent" {
		b.t.Fatalf("expected the consent page, at %s (%d): %s", a.url.Path, a.status, a.body)
	}
	return b.do(func() (*http.Response, error) {
		return b.c.PostForm(op.Issuer+"/consent", url.Values{"id": {id}, "decision": {decision}})
	})
}

// follow follows link and signs in once per step (the primary
// authorization server's, then the provider's), and returns the page the
// flow ended on.
func (b *browser) follow(w *world, link string, steps ...step) answer {
	b.t.Helper()
	a := b.get(link)
	for _, s := range steps {
		a = b.signIn(w.op, a, s.user, s.decision)
	}
	return a
}

type step struct {
	user     testop.User
	decision string
}

var (
	aliceAllows = step{alice, "allow"}
	aliceDenies = step{alice, "deny"}
	bobAllows   = step{bob, "allow"}
)

// A link followed by the user it was made for, with both consents given,
// ends on the success page and stores the provider's tokens bound to the
// ticket's subject and client ID, with the ID token's sub as the upstream
// subject.
func TestFlowLinksAnAccount(t *testing.T) {
	w := newWorld(t, worldOptions{})
	b := newBrowser(t)
	link := w.link(t)
	a := b.follow(w, link, aliceAllows, aliceAllows)
	if a.status != http.StatusOK || !strings.Contains(a.body, "Your github account alice@example.test is now linked.") {
		t.Fatalf("ended with %d at %s: %s", a.status, a.url, a.body)
	}
	if !strings.Contains(a.body, `href="https://app.example.test/"`) || strings.Contains(a.body, "<script") {
		t.Errorf("success page: want the way back and no script: %s", a.body)
	}
	checkPageHeaders(t, a)
	row, ok := w.stored(t)
	switch {
	case !ok:
		t.Fatal("nothing stored")
	case row.Subject != alice.Subject || row.ClientID != asClientID || row.UpstreamSubject != alice.Subject:
		t.Errorf("binding %q/%q, upstream subject %q", row.Subject, row.ClientID, row.UpstreamSubject)
	case row.AccessToken == "" || row.RefreshToken == "" || row.IDToken == "" || row.ExpiresAt.IsZero():
		t.Errorf("stored tokens incomplete: access %v, refresh %v, ID %v, expiry %v",
			row.AccessToken != "", row.RefreshToken != "", row.IDToken != "", !row.ExpiresAt.IsZero())
	}
	logs := w.logs.String()
	ticket := mustURL(t, link).Query().Get("ticket")
	if !strings.Contains(logs, "connect linked an account") {
		t.Errorf("no log line for the link: %s", logs)
	}
	for name, secret := range map[string]string{"ticket": ticket, "session ID": sessionID, "access token": row.AccessToken,
		"refresh token": row.RefreshToken, "ID token": row.IDToken} {
		if secret != "" && strings.Contains(logs, secret) {
			t.Errorf("the log shows the %s", name)
		}
	}
	for _, c := range b.c.Jar.Cookies(mustURL(t, w.base)) {
		if c.Name == connect.DevCookieName {
			t.Error("the flow cookie outlived the flow")
		}
	}
}

// Every way a flow can go wrong ends on a page that says so, with the
// status that fits, and stores nothing.
func TestFlowFailures(t *testing.T) {
	tests := []struct {
		name   string
		wo     worldOptions
		before func(t *testing.T, w *world) // prepares the world
		run    func(t *testing.T, w *world, b *browser) answer
		status int
		says   string
		// exchanges is how many code exchanges at the provider happen.
		exchanges int
	}{
		{
			name:   "another user signs in at the authorization server",
			run:    func(t *testing.T, w *world, b *browser) answer { return b.follow(w, w.link(t), bobAllows) },
			status: http.StatusForbidden, says: "not the one this link was made for",
		},
		{
			name:   "consent denied at the authorization server",
			run:    func(t *testing.T, w *world, b *browser) answer { return b.follow(w, w.link(t), aliceDenies) },
			status: http.StatusForbidden, says: "The sign-in was cancelled or refused",
		},
		{
			name: "consent denied at the provider",
			run: func(t *testing.T, w *world, b *browser) answer {
				return b.follow(w, w.link(t), aliceAllows, aliceDenies)
			},
			status: http.StatusForbidden, says: "provider was declined",
		},
		{
			name: "ticket used before",
			run: func(t *testing.T, w *world, b *browser) answer {
				link := w.link(t)
				if a := b.follow(w, link, aliceAllows, aliceAllows); a.status != http.StatusOK {
					t.Fatalf("first use: %d %s", a.status, a.body)
				}
				if err := w.sessions.(*memory.Store).Delete(context.Background(), sessionID, ""); err != nil {
					t.Fatal(err)
				}
				return newBrowser(t).follow(w, link, aliceAllows, aliceAllows)
			},
			status: http.StatusGone, says: "This link has been used already", exchanges: 1,
		},
		{
			name: "ticket expired",
			run: func(t *testing.T, w *world, b *browser) answer {
				link := w.link(t)
				w.clock.Advance(connect.DefaultTicketTTL)
				return b.get(link)
			},
			status: http.StatusGone, says: "This link has expired.",
		},
		{
			name: "ticket expires during the sign-in",
			run: func(t *testing.T, w *world, b *browser) answer {
				a := b.get(w.link(t))
				w.clock.Advance(connect.DefaultTicketTTL)
				return b.signIn(w.op, a, alice, "allow")
			},
			status: http.StatusGone, says: "This link has expired.",
		},
		{
			name: "ticket altered",
			run: func(t *testing.T, w *world, b *browser) answer {
				link := w.link(t)
				return b.get(link[:len(link)-3] + "AAA")
			},
			status: http.StatusBadRequest, says: "This link is damaged",
		},
		{
			name:   "no ticket",
			run:    func(t *testing.T, w *world, b *browser) answer { return b.get(w.base + connect.PathConnect) },
			status: http.StatusBadRequest, says: "This link carries no connect ticket.",
		},
		{
			name: "callback without the flow cookie",
			run: func(t *testing.T, w *world, b *browser) answer {
				return b.get(w.base + connect.PathLoginCallback + "?code=x&state=y")
			},
			status: http.StatusBadRequest, says: "This browser did not start this sign-in",
		},
		{
			name: "callback with another state",
			run: func(t *testing.T, w *world, b *browser) answer {
				b.get(w.link(t))
				return b.get(w.base + connect.PathLoginCallback + "?code=x&state=forged")
			},
			status: http.StatusBadRequest, says: "does not belong to the sign-in this browser started",
		},
		{
			name: "provider callback while the sign-in is under way",
			run: func(t *testing.T, w *world, b *browser) answer {
				b.get(w.link(t))
				return b.get(w.base + connect.PathProviderCallback + "?code=x&state=y")
			},
			status: http.StatusBadRequest, says: "This browser did not start this sign-in",
		},
		{
			name: "code exchange refused",
			wo: worldOptions{exchange: func(store.Tokens, error) (store.Tokens, error) {
				return store.Tokens{}, errors.New("invalid_grant")
			}},
			run: func(t *testing.T, w *world, b *browser) answer {
				return b.follow(w, w.link(t), aliceAllows, aliceAllows)
			},
			status: http.StatusBadGateway, says: "did not hand out access", exchanges: 1,
		},
		{
			name: "provider unreachable",
			wo: worldOptions{exchange: func(store.Tokens, error) (store.Tokens, error) {
				return store.Tokens{}, upstreamtoken.ErrUpstreamUnavailable
			}},
			run: func(t *testing.T, w *world, b *browser) answer {
				return b.follow(w, w.link(t), aliceAllows, aliceAllows)
			},
			status: http.StatusServiceUnavailable, says: "could not be reached", exchanges: 1,
		},
		{
			name: "provider's ID token missing",
			wo: worldOptions{exchange: func(tok store.Tokens, err error) (store.Tokens, error) {
				tok.IDToken = ""
				return tok, err
			}},
			run: func(t *testing.T, w *world, b *browser) answer {
				return b.follow(w, w.link(t), aliceAllows, aliceAllows)
			},
			status: http.StatusBadGateway, says: "could not be verified", exchanges: 1,
		},
		{
			name: "provider's ID token altered",
			wo: worldOptions{exchange: func(tok store.Tokens, err error) (store.Tokens, error) {
				tok.IDToken = tok.IDToken[:len(tok.IDToken)-4] + "AAAA"
				return tok, err
			}},
			run: func(t *testing.T, w *world, b *browser) answer {
				return b.follow(w, w.link(t), aliceAllows, aliceAllows)
			},
			status: http.StatusBadGateway, says: "could not be verified", exchanges: 1,
		},
		{
			name: "session bound to another subject",
			before: func(t *testing.T, w *world) {
				err := w.sessions.Put(context.Background(), store.Row{SessionID: sessionID, Provider: "google",
					Tokens: store.Tokens{AccessToken: "other"}, Subject: "mallory", ClientID: asClientID})
				if err != nil {
					t.Fatal(err)
				}
			},
			run: func(t *testing.T, w *world, b *browser) answer {
				return b.follow(w, w.link(t), aliceAllows, aliceAllows)
			},
			status: http.StatusConflict, says: "bound to another account", exchanges: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, tt.wo)
			if tt.before != nil {
				tt.before(t, w)
			}
			a := tt.run(t, w, newBrowser(t))
			if a.status != tt.status || !strings.Contains(a.body, tt.says) {
				t.Errorf("ended with %d at %s: %s\nwant %d saying %q", a.status, a.url.Path, a.body, tt.status, tt.says)
			}
			if !strings.Contains(a.body, "go back to the application and repeat") {
				t.Errorf("no fresh-start hint: %s", a.body)
			}
			checkPageHeaders(t, a)
			if _, ok := w.stored(t); ok {
				t.Error("a row was stored")
			}
			if got := w.exchanger.Calls(); got != tt.exchanges {
				t.Errorf("%d code exchanges at the provider, want %d", got, tt.exchanges)
			}
		})
	}
}

// A refused flow does not use the ticket up: after bob's refused sign-in,
// alice can still follow the same link.
func TestFlowWrongUserLeavesTicket(t *testing.T) {
	w := newWorld(t, worldOptions{})
	link := w.link(t)
	if a := newBrowser(t).follow(w, link, bobAllows); a.status != http.StatusForbidden {
		t.Fatalf("bob: %d %s", a.status, a.body)
	}
	if a := newBrowser(t).follow(w, link, aliceAllows, aliceAllows); a.status != http.StatusOK {
		t.Fatalf("alice: %d %s", a.status, a.body)
	}
}

// checkPageHeaders checks the headers every page carries.
func checkPageHeaders(t *testing.T, a answer) {
	t.Helper()
	want := map[string]string{
		"Cache-Control":           "no-store",
		"X-Frame-Options":         "DENY",
		"Content-Security-Policy": "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
		"Referrer-Policy":         "no-referrer",
		"Content-Type":            "text/html; charset=utf-8",
	}
	for k, v := range want {
		if got := a.header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// targetFor is the deny's target for subject: alice's session at the
// provider.
func targetFor(subject string) authz.ConnectTarget {
	return authz.ConnectTarget{SessionID: sessionID, Subject: subject, ClientID: asClientID, Provider: providerName}
}

// NewHandler refuses options it cannot work with, naming the problem.
// fixedEndpoints is a connect.Endpoints that finds one endpoint for every
// provider.
type fixedEndpoints struct{}

func (fixedEndpoints) AuthorizationEndpoint(context.Context, string) (string, error) {
	return "https://idp.example.test/authorize", nil
}

func TestNewHandlerOptions(t *testing.T) {
	keys := keyring(t, "k1")
	valid := func() connect.Options {
		return connect.Options{
			PublicURL: "https://api.example.test/.extauthz",
			Tickets:   connect.NewTickets(keys, &memoryUses{}, 0),
			Keys:      keys,
			Login:     connect.Login{Issuer: "https://as.example.test", ClientID: "login"},
			Providers: map[string]connect.Provider{"github": {
				AuthorizationURL: "https://github.example.test/login/oauth/authorize", ClientID: "gh"}},
			Exchanger: &connecttest.Exchanger{},
			Sessions:  memory.New(),
		}
	}
	tests := []struct {
		name   string
		change func(*connect.Options)
		want   string // in the error; "" means accepted
	}{
		{"valid", func(*connect.Options) {}, ""},
		{"http on loopback", func(o *connect.Options) { o.PublicURL = "http://127.0.0.1:8080/x" }, ""},
		{"http on localhost", func(o *connect.Options) { o.PublicURL = "http://localhost:8080" }, ""},
		{"http elsewhere", func(o *connect.Options) { o.PublicURL = "http://api.example.test" }, "must be https"},
		{"public URL with query", func(o *connect.Options) { o.PublicURL = "https://api.example.test/?a=b" }, "without query"},
		{"no tickets", func(o *connect.Options) { o.Tickets = nil }, "are required"},
		{"no sessions", func(o *connect.Options) { o.Sessions = nil }, "are required"},
		{"login without issuer", func(o *connect.Options) { o.Login.Issuer = "" }, "the login needs"},
		{"login without client", func(o *connect.Options) { o.Login.ClientID = "" }, "the login needs"},
		{"provider without authorization URL", func(o *connect.Options) {
			o.Providers["github"] = connect.Provider{ClientID: "gh"}
		}, `provider "github" needs`},
		{"OIDC provider without authorization URL, found by Endpoints", func(o *connect.Options) {
			o.Providers["github"] = connect.Provider{ClientID: "gh", Issuer: "https://github.example.test"}
			o.Endpoints = fixedEndpoints{}
		}, ""},
		{"OIDC provider without authorization URL nor Endpoints", func(o *connect.Options) {
			o.Providers["github"] = connect.Provider{ClientID: "gh", Issuer: "https://github.example.test"}
		}, `provider "github" needs`},
		{"provider with a bad issuer", func(o *connect.Options) {
			p := o.Providers["github"]
			p.Issuer = "github.example.test"
			o.Providers["github"] = p
		}, `provider "github" needs`},
		{"parameter that is the flow's own", func(o *connect.Options) {
			p := o.Providers["github"]
			p.AuthParams = map[string]string{"access_type": "offline", "state": "fixed"}
			o.Providers["github"] = p
		}, `"state" is the flow's own`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid()
			tt.change(&o)
			_, err := connect.NewHandler(o)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
}

// The start of a flow sends the browser to the authorization server with
// the whole request (code, PKCE S256, state, nonce), sets the flow cookie
// and caches nothing; the handler answers only GET and HEAD on its paths.
func TestFlowStartRequest(t *testing.T) {
	w := newWorld(t, worldOptions{})
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout: 2 * time.Minute}
	resp, err := c.Get(w.link(t))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Cache-Control") != "no-store" ||
		resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("start: %d, headers %v", resp.StatusCode, resp.Header)
	}
	to, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	q := to.Query()
	if !strings.HasPrefix(to.String(), w.op.AuthorizationURL()+"?") || q.Get("response_type") != "code" ||
		q.Get("client_id") != loginClient || q.Get("redirect_uri") != w.base+connect.PathLoginCallback ||
		q.Get("scope") != "openid profile" || q.Get("code_challenge_method") != "S256" ||
		len(q.Get("code_challenge")) != 43 || len(q.Get("state")) < 32 || len(q.Get("nonce")) < 32 {
		t.Errorf("authorization request %s", to.Redacted())
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == connect.DevCookieName {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" || cookie.MaxAge <= 0 {
		t.Errorf("flow cookie %+v", cookie)
	} else if strings.Contains(cookie.Value, q.Get("state")) {
		t.Error("the cookie shows the state in the clear")
	}

	for _, tt := range []struct {
		method, path string
		status       int
	}{
		{http.MethodPost, connect.PathConnect, http.StatusMethodNotAllowed},
		{http.MethodGet, "/other", http.StatusNotFound},
		{http.MethodGet, connect.PathConnect + "/more", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(tt.method, w.base+tt.path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, resp.StatusCode, tt.status)
		}
	}
}
