package oauthclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/upstreamtoken"
)

// revocationURL is the revocation endpoint of e: its server, path /revoke.
func (e *tokenEndpoint) revocationURL() string { return e.srv.URL + "/revoke" }

// newRevokingClient is newClient with e's revocation endpoint configured.
func newRevokingClient(t *testing.T, e *tokenEndpoint, mutate func(*Provider), opts ...Option) *Client {
	t.Helper()
	return newClient(t, e.url(), func(p *Provider) {
		p.RevocationURL = e.revocationURL()
		if mutate != nil {
			mutate(p)
		}
	}, opts...)
}

func TestRevokeValidation(t *testing.T) {
	for _, tc := range []struct {
		name, url, want string
	}{
		{"https", "https://idp.example/oauth/revoke", ""},
		{"loopback http with query", "http://127.0.0.1:8080/revoke?x=1", ""},
		{"relative", "/revoke", "revocation_url must be an absolute http(s) URL"},
		{"ftp", "ftp://idp.example/revoke", "revocation_url must be an absolute http(s) URL"},
		{"credentials", "https://u:" + clientSecret + "@idp.example/revoke", "revocation_url must not carry credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Provider{TokenURL: "https://idp.example/token", ClientID: clientID, AuthMethod: ClientSecretBasic, RevocationURL: tc.url}
			err := p.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
			assertNoSecrets(t, err)
		})
	}
}

func TestRevokeRequest(t *testing.T) {
	for _, tc := range []struct {
		name      string
		style     AuthMethod
		secret    string
		hint      TokenTypeHint
		scopes    []string
		sameURL   bool // the revocation URL is the token URL
		wantBasic bool
	}{
		{name: "header refresh token", style: ClientSecretBasic, secret: clientSecret, hint: HintRefreshToken, wantBasic: true},
		{name: "header access token", style: ClientSecretBasic, secret: clientSecret, hint: HintAccessToken, wantBasic: true},
		{name: "header secret needing escapes", style: ClientSecretBasic, secret: "s3cr:t/+&=", hint: HintRefreshToken, wantBasic: true},
		{name: "params refresh token", style: ClientSecretPost, secret: clientSecret, hint: HintRefreshToken},
		{name: "params access token", style: ClientSecretPost, secret: clientSecret, hint: HintAccessToken},
		{name: "params public client", style: ClientSecretPost, hint: HintRefreshToken},
		{name: "header public client", style: ClientSecretBasic, hint: HintRefreshToken},
		{name: "scopes are not sent", style: ClientSecretPost, secret: clientSecret, hint: HintRefreshToken, scopes: []string{"openid"}},
		{name: "scopes are not sent to a shared endpoint", style: ClientSecretBasic, secret: clientSecret, hint: HintAccessToken,
			scopes: []string{"openid"}, sameURL: true, wantBasic: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEndpoint(t, respond(200, "", ""))
			c := newRevokingClient(t, e, func(p *Provider) {
				p.AuthMethod, p.ClientSecret, p.Scopes = tc.style, tc.secret, tc.scopes
				if tc.sameURL {
					p.RevocationURL = p.TokenURL
				}
			})
			if err := c.Revoke(context.Background(), "idp", oldRT, tc.hint); err != nil {
				t.Fatalf("Revoke: %v", err)
			}
			reqs := e.requests()
			if len(reqs) != 1 {
				t.Fatalf("endpoint saw %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			wantPath := "/revoke"
			if tc.sameURL {
				wantPath = "/token"
			}
			if r.method != http.MethodPost || r.path != wantPath || r.contentType != "application/x-www-form-urlencoded" {
				t.Errorf("request %s %s (%s), want POST %s (application/x-www-form-urlencoded)", r.method, r.path, r.contentType, wantPath)
			}
			if r.form.Get("token") != oldRT {
				t.Errorf("token sent: %v, want the given token", r.form.Get("token") != "")
			}
			if got := r.form.Get("token_type_hint"); got != string(tc.hint) {
				t.Errorf("token_type_hint = %q, want %q", got, tc.hint)
			}
			for _, k := range []string{"scope", "grant_type", "refresh_token"} {
				if _, ok := r.form[k]; ok {
					t.Errorf("form carries %s", k)
				}
			}
			_, secretInForm := r.form["client_secret"]
			if tc.wantBasic {
				u, _ := url.QueryUnescape(r.basicUser)
				p, _ := url.QueryUnescape(r.basicPass)
				if !r.basicOK || u != clientID || p != tc.secret {
					t.Errorf("Basic credentials ok=%v, user match=%v, secret match=%v", r.basicOK, u == clientID, p == tc.secret)
				}
				if _, ok := r.form["client_id"]; ok || secretInForm {
					t.Errorf("credentials also in the form: client_id=%v client_secret=%v", ok, secretInForm)
				}
				return
			}
			if r.authz != "" {
				t.Errorf("Authorization header sent (%d bytes), want none", len(r.authz))
			}
			if r.form.Get("client_id") != clientID {
				t.Errorf("client_id = %q, want %q", r.form.Get("client_id"), clientID)
			}
			switch {
			case tc.secret == "" && secretInForm:
				t.Error("client_secret sent for a public client")
			case tc.secret != "" && r.form.Get("client_secret") != tc.secret:
				t.Error("client_secret in the form is not the configured secret")
			}
		})
	}
}

func TestRevokeOutcome(t *testing.T) {
	desc := errorDesc
	for _, tc := range []struct {
		name      string
		h         http.HandlerFunc
		kind      string // "" = revoked
		sentinels []error
		status    int
		code      string
		cause     string
		retry     time.Duration
	}{
		{name: "200 empty", h: respond(200, "", "")},
		{name: "200 with a body", h: respondJSON(200, `{}`)},
		{name: "200 whatever the body says", h: respondJSON(200, `{"error":"invalid_token",`+desc+`}`)},
		{name: "204", h: respond(204, "", "")},
		{name: "400 unsupported_token_type", h: respondJSON(400, `{"error":"unsupported_token_type",`+desc+`}`),
			kind: KindUnsupportedTokenType, sentinels: []error{ErrUnsupportedTokenType}, status: 400, code: "unsupported_token_type"},
		{name: "400 unsupported_token_type form-encoded", h: respond(400, "application/x-www-form-urlencoded",
			"error=unsupported_token_type&error_description="+url.QueryEscape(bodyMarker+" "+oldRT)),
			kind: KindUnsupportedTokenType, sentinels: []error{ErrUnsupportedTokenType}, status: 400, code: "unsupported_token_type"},
		{name: "503 Retry-After seconds", h: respond(503, "text/html", "<p>"+bodyMarker, "Retry-After", "30"),
			kind: KindUnavailable, sentinels: []error{upstreamtoken.ErrUpstreamUnavailable}, status: 503, retry: 30 * time.Second},
		{name: "503 Retry-After date", h: respondJSON(503, `{"error":"temporarily_unavailable"}`, "Retry-After", retryDate),
			kind: KindUnavailable, sentinels: []error{upstreamtoken.ErrUpstreamUnavailable}, status: 503, code: "temporarily_unavailable", retry: 90 * time.Second},
		{name: "503 without Retry-After", h: respond(503, "", ""),
			kind: KindUnavailable, sentinels: []error{upstreamtoken.ErrUpstreamUnavailable}, status: 503},
		{name: "500 unsupported_token_type is not trusted", h: respondJSON(500, `{"error":"unsupported_token_type"}`),
			kind: KindUnavailable, sentinels: []error{upstreamtoken.ErrUpstreamUnavailable}, status: 500, code: "unsupported_token_type"},
		{name: "429", h: respond(429, "", "", "Retry-After", "5"),
			kind: KindUnavailable, sentinels: []error{upstreamtoken.ErrUpstreamUnavailable}, status: 429, retry: 5 * time.Second},
		{name: "401 invalid_client", h: respondJSON(401, `{"error":"invalid_client",`+desc+`}`),
			kind: KindMisconfigured, sentinels: []error{upstreamtoken.ErrUpstreamUnavailable, upstreamtoken.ErrProviderMisconfigured}, status: 401, code: "invalid_client"},
		{name: "400 unauthorized_client", h: respondJSON(400, `{"error":"unauthorized_client"}`),
			kind: KindMisconfigured, sentinels: []error{upstreamtoken.ErrUpstreamUnavailable, upstreamtoken.ErrProviderMisconfigured}, status: 400, code: "unauthorized_client"},
		{name: "400 invalid_request", h: respondJSON(400, `{"error":"invalid_request",`+desc+`}`),
			kind: KindRefused, sentinels: []error{ErrRevocationRefused}, status: 400, code: "invalid_request"},
		{name: "400 invalid_grant", h: respondJSON(400, `{"error":"invalid_grant"}`),
			kind: KindRefused, sentinels: []error{ErrRevocationRefused}, status: 400, code: "invalid_grant"},
		{name: "400 unknown code", h: respondJSON(400, `{"error":"something_new",`+desc+`}`),
			kind: KindRefused, sentinels: []error{upstreamtoken.ErrUpstreamUnavailable, upstreamtoken.ErrUnknownRefusal}, status: 400, code: "something_new"},
		{name: "400 without code", h: respondJSON(400, `{`+desc+`}`),
			kind: KindUnavailable, sentinels: []error{upstreamtoken.ErrUpstreamUnavailable}, status: 400},
		{name: "400 malformed code", h: respondJSON(400, `{"error":"`+bodyMarker+` `+oldRT+`"}`),
			kind: KindUnavailable, sentinels: []error{upstreamtoken.ErrUpstreamUnavailable}, status: 400, cause: "malformed OAuth error code"},
		{name: "400 code not a string", h: respondJSON(400, `{"error":7}`),
			kind: KindUnavailable, sentinels: []error{upstreamtoken.ErrUpstreamUnavailable}, status: 400},
		{name: "404 html", h: respond(404, "text/html", bodyMarker),
			kind: KindUnavailable, sentinels: []error{upstreamtoken.ErrUpstreamUnavailable}, status: 404},
		{name: "307 redirect not followed", h: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		}, kind: KindUnavailable, sentinels: []error{upstreamtoken.ErrUpstreamUnavailable}, status: 307, cause: "redirect not followed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEndpoint(t, tc.h)
			c := newRevokingClient(t, e, nil)
			err := c.Revoke(context.Background(), "idp", oldRT, HintRefreshToken)
			if n := len(e.requests()); n != 1 {
				t.Errorf("endpoint saw %d requests, want 1", n)
			}
			if got := RevocationKind(err); got != tc.kind {
				t.Errorf("RevocationKind = %q, want %q (err %v)", got, tc.kind, err)
			}
			if tc.kind == "" {
				if err != nil {
					t.Errorf("Revoke = %v, want success", err)
				}
				return
			}
			for _, s := range tc.sentinels {
				if !errors.Is(err, s) {
					t.Errorf("err %v does not wrap %v", err, s)
				}
			}
			for _, s := range []error{upstreamtoken.ErrRefreshFailed, ErrRevocationRefused, ErrUnsupportedTokenType, upstreamtoken.ErrUpstreamUnavailable} {
				if errors.Is(err, s) && !containsErr(tc.sentinels, s) {
					t.Errorf("err %v wraps %v too", err, s)
				}
			}
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("err %T is not an *Error", err)
			}
			if re.Provider != "idp" || re.Status != tc.status || re.Code != tc.code || re.Retry != tc.retry {
				t.Errorf("Error{Provider:%q Status:%d Code:%q Retry:%v}, want {idp %d %q %v}", re.Provider, re.Status, re.Code, re.Retry, tc.status, tc.code, tc.retry)
			}
			if tc.cause != "" && re.Cause != tc.cause {
				t.Errorf("Cause = %q, want %q", re.Cause, tc.cause)
			}
			assertNoSecrets(t, err)
		})
	}
}

func containsErr(errs []error, target error) bool {
	for _, e := range errs {
		if e == target {
			return true
		}
	}
	return false
}

func TestRevokeNoRequest(t *testing.T) {
	e := newEndpoint(t, respond(200, "", ""))
	c, err := New(map[string]Provider{
		"idp":       {TokenURL: e.url(), ClientID: clientID, ClientSecret: clientSecret, AuthMethod: ClientSecretBasic, RevocationURL: e.revocationURL()},
		"norevoke":  {TokenURL: e.url(), ClientID: clientID, ClientSecret: clientSecret, AuthMethod: ClientSecretBasic},
		"otherwise": {TokenURL: e.url(), ClientID: clientID, AuthMethod: ClientSecretPost, RevocationURL: e.revocationURL()},
	}, WithNow(now))
	if err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name     string
		ctx      context.Context
		provider string
		token    string
		hint     TokenTypeHint
		want     []error
		kind     string
	}{
		{"unknown provider", context.Background(), "nope", oldRT, HintRefreshToken, []error{ErrUnknownProvider}, KindUnknownProvider},
		{"no revocation URL", context.Background(), "norevoke", oldRT, HintRefreshToken, []error{ErrRevocationUnsupported}, KindNotConfigured},
		{"empty token", context.Background(), "idp", "", HintRefreshToken, []error{ErrInvalidRevocation}, KindNoToken},
		{"no hint", context.Background(), "idp", oldRT, "", []error{ErrInvalidRevocation}, KindNoToken},
		{"unknown hint", context.Background(), "idp", oldRT, "id_token", []error{ErrInvalidRevocation}, KindNoToken},
		{"canceled", canceled, "idp", oldRT, HintAccessToken, []error{upstreamtoken.ErrUpstreamUnavailable, context.Canceled}, KindUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Revoke(tc.ctx, tc.provider, tc.token, tc.hint)
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("err = %v, want it to wrap %v", err, w)
				}
			}
			if got := RevocationKind(err); got != tc.kind {
				t.Errorf("RevocationKind = %q, want %q", got, tc.kind)
			}
			assertNoSecrets(t, err)
		})
	}
	if n := len(e.requests()); n != 0 {
		t.Errorf("endpoint saw %d requests, want none", n)
	}
}

func TestRevokeNetworkFailure(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		revocationURL := srv.URL + "/revoke"
		srv.Close()
		c := newClient(t, "https://idp.example/token", func(p *Provider) { p.RevocationURL = revocationURL })
		err := c.Revoke(context.Background(), "idp", oldRT, HintRefreshToken)
		var re *Error
		if !errors.As(err, &re) || re.Cause != "connection refused" || !errors.Is(err, upstreamtoken.ErrUpstreamUnavailable) {
			t.Errorf("err = %v, want an unavailable *Error, cause connection refused", err)
		}
		if strings.Contains(err.Error(), revocationURL) {
			t.Errorf("message %q repeats the revocation URL", err)
		}
		assertNoSecrets(t, err)
	})
	t.Run("http client timeout", func(t *testing.T) {
		e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		})
		c := newRevokingClient(t, e, nil, WithHTTPClient(&http.Client{Timeout: 100 * time.Millisecond}))
		err := c.Revoke(context.Background(), "idp", oldRT, HintRefreshToken)
		var re *Error
		if !errors.As(err, &re) || re.Cause != "timeout" || RevocationKind(err) != KindUnavailable {
			t.Errorf("err = %v, want an unavailable *Error, cause timeout", err)
		}
		if n := len(e.requests()); n != 1 {
			t.Errorf("endpoint saw %d requests, want 1", n)
		}
	})
}

// fakeRevoker answers Revoke from a table keyed by provider and hint and
// records what it was asked.
type fakeRevoker struct {
	answers map[string]error // "provider/hint"; missing: success
	mu      sync.Mutex
	calls   []string // "provider/hint/token"
}

func (f *fakeRevoker) Revoke(_ context.Context, provider, token string, hint TokenTypeHint) error {
	f.mu.Lock()
	f.calls = append(f.calls, provider+"/"+string(hint)+"/"+token)
	f.mu.Unlock()
	return f.answers[provider+"/"+string(hint)]
}

func TestRevokeSession(t *testing.T) {
	unsupported := &Error{Provider: "p", Status: 400, Code: "unsupported_token_type", errs: []error{ErrUnsupportedTokenType}}
	unavailable := &Error{Provider: "p", Status: 503, Retry: 7 * time.Second, errs: []error{upstreamtoken.ErrUpstreamUnavailable}}
	notConfigured := fmt.Errorf("x: %w", ErrRevocationUnsupported)
	row := func(provider, refresh, access string) store.Row {
		return store.Row{SessionID: "s", Provider: provider, Tokens: store.Tokens{RefreshToken: refresh, AccessToken: access}}
	}
	for _, tc := range []struct {
		name    string
		row     store.Row
		answers map[string]error
		want    Revocation
		calls   []string
	}{
		{name: "refresh token revoked", row: row("p", "rt", "at"),
			want: Revocation{Provider: "p", Revoked: true, TokenType: HintRefreshToken}, calls: []string{"p/refresh_token/rt"}},
		{name: "access token when there is no refresh token", row: row("p", "", "at"),
			want: Revocation{Provider: "p", Revoked: true, TokenType: HintAccessToken}, calls: []string{"p/access_token/at"}},
		{name: "access token when refresh tokens are not revoked", row: row("p", "rt", "at"),
			answers: map[string]error{"p/refresh_token": unsupported},
			want:    Revocation{Provider: "p", Revoked: true, TokenType: HintAccessToken}, calls: []string{"p/refresh_token/rt", "p/access_token/at"}},
		{name: "neither type revoked", row: row("p", "rt", "at"),
			answers: map[string]error{"p/refresh_token": unsupported, "p/access_token": unsupported},
			want:    Revocation{Provider: "p", TokenType: HintAccessToken, Kind: KindUnsupportedTokenType, Err: unsupported},
			calls:   []string{"p/refresh_token/rt", "p/access_token/at"}},
		{name: "refresh token unsupported and no access token", row: row("p", "rt", ""),
			answers: map[string]error{"p/refresh_token": unsupported},
			want:    Revocation{Provider: "p", TokenType: HintRefreshToken, Kind: KindUnsupportedTokenType, Err: unsupported},
			calls:   []string{"p/refresh_token/rt"}},
		{name: "unavailable is not retried with the access token", row: row("p", "rt", "at"),
			answers: map[string]error{"p/refresh_token": unavailable},
			want:    Revocation{Provider: "p", TokenType: HintRefreshToken, Kind: KindUnavailable, RetryAfter: 7 * time.Second, Err: unavailable},
			calls:   []string{"p/refresh_token/rt"}},
		{name: "no revocation URL", row: row("p", "rt", "at"),
			answers: map[string]error{"p/refresh_token": notConfigured},
			want:    Revocation{Provider: "p", Kind: KindNotConfigured, Err: notConfigured}, calls: []string{"p/refresh_token/rt"}},
		{name: "no token", row: row("p", "", ""),
			want: Revocation{Provider: "p", Kind: KindNoToken, Err: ErrInvalidRevocation}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeRevoker{answers: tc.answers}
			got := RevokeSession(context.Background(), f, []store.Row{tc.row})
			if len(got) != 1 {
				t.Fatalf("%d results, want 1", len(got))
			}
			g := got[0]
			if (g.Err == nil) != (tc.want.Err == nil) || (tc.want.Err != nil && !errors.Is(g.Err, tc.want.Err)) {
				t.Errorf("Err = %v, want %v", g.Err, tc.want.Err)
			}
			g.Err, tc.want.Err = nil, nil
			if g != tc.want {
				t.Errorf("RevokeSession = %+v, want %+v", g, tc.want)
			}
			if strings.Join(f.calls, " ") != strings.Join(tc.calls, " ") {
				t.Errorf("calls = %q, want %q", f.calls, tc.calls)
			}
		})
	}
}

// RevokeSession against a real Client and endpoint: one result per row, in
// order, each provider asked with its own token.
func TestRevokeSessionClient(t *testing.T) {
	ok := newEndpoint(t, respond(200, "", ""))
	down := newEndpoint(t, respond(503, "", "", "Retry-After", "9"))
	c, err := New(map[string]Provider{
		"ok":       {TokenURL: ok.url(), ClientID: clientID, ClientSecret: clientSecret, AuthMethod: ClientSecretBasic, RevocationURL: ok.revocationURL()},
		"down":     {TokenURL: down.url(), ClientID: clientID, AuthMethod: ClientSecretPost, RevocationURL: down.revocationURL()},
		"norevoke": {TokenURL: ok.url(), ClientID: clientID, AuthMethod: ClientSecretPost},
	}, WithNow(now))
	if err != nil {
		t.Fatal(err)
	}
	rows := []store.Row{
		{SessionID: "s", Provider: "down", Tokens: store.Tokens{AccessToken: newAT}},
		{SessionID: "s", Provider: "gone", Tokens: store.Tokens{AccessToken: newAT}},
		{SessionID: "s", Provider: "norevoke", Tokens: store.Tokens{AccessToken: newAT, RefreshToken: oldRT}},
		{SessionID: "s", Provider: "ok", Tokens: store.Tokens{AccessToken: newAT, RefreshToken: oldRT}},
	}
	got := RevokeSession(context.Background(), c, rows)
	want := []struct {
		provider string
		revoked  bool
		kind     string
		hint     TokenTypeHint
		retry    time.Duration
	}{
		{"down", false, KindUnavailable, HintAccessToken, 9 * time.Second},
		{"gone", false, KindUnknownProvider, "", 0},
		{"norevoke", false, KindNotConfigured, "", 0},
		{"ok", true, "", HintRefreshToken, 0},
	}
	if len(got) != len(want) {
		t.Fatalf("%d results, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Provider != w.provider || g.Revoked != w.revoked || g.Kind != w.kind || g.TokenType != w.hint || g.RetryAfter != w.retry {
			t.Errorf("result %d = {%s revoked=%v kind=%q hint=%q retry=%v}, want %+v", i, g.Provider, g.Revoked, g.Kind, g.TokenType, g.RetryAfter, w)
		}
		assertNoSecrets(t, g.Err)
	}
	if r := ok.requests(); len(r) != 1 || r[0].form.Get("token") != oldRT {
		t.Errorf("ok endpoint: %d requests, refresh token sent: %v", len(r), len(r) == 1 && r[0].form.Get("token") == oldRT)
	}
	if r := down.requests(); len(r) != 1 || r[0].form.Get("token") != newAT {
		t.Errorf("down endpoint: %d requests, access token sent: %v", len(r), len(r) == 1 && r[0].form.Get("token") == newAT)
	}
}

// FuzzRevokeResponse feeds arbitrary revocation endpoint answers to Revoke:
// it must never panic, always send exactly one request, succeed only on
// 2xx (a malformed header may fail one), give every failure a kind, and
// never repeat the body marker or a secret.
func FuzzRevokeResponse(f *testing.F) {
	f.Add(200, "", "")
	f.Add(400, "application/json", `{"error":"unsupported_token_type","error_description":"`+bodyMarker+`"}`)
	f.Add(400, "application/x-www-form-urlencoded", "error=invalid_request&x="+bodyMarker)
	f.Add(400, "application/json", `{"error":"`+bodyMarker+`"}`)
	f.Add(503, "text/html", "<p>"+bodyMarker)
	f.Add(401, "text/plain", "error=invalid_client%zz"+bodyMarker)
	f.Fuzz(func(t *testing.T, status int, contentType, body string) {
		e, status := fuzzEndpoint(t, status, contentType, body)
		c := newRevokingClient(t, e, nil)
		err := c.Revoke(context.Background(), "idp", oldRT, HintRefreshToken)
		checkFuzzCall(t, e, body, err)
		if err == nil && status >= 300 {
			t.Fatalf("status %d: success", status)
		}
		if k := RevocationKind(err); err != nil && (k == "" || k == KindFailed) {
			t.Fatalf("err %v has kind %q", err, k)
		}
	})
}
