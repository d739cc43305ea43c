package oauthclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/upstreamtoken"
)

// Secrets that must never show up in an error message.
const (
	clientID     = "client-123"
	clientSecret = "cs-SECRET-never-shown"
	oldRT        = "rt-OLD-SECRET"
	newRT        = "rt-NEW-SECRET"
	newAT        = "at-NEW-SECRET"
	idToken      = "id-TOKEN-SECRET"
	bodyMarker   = "BODY-MARKER-7f3a"
)

var secrets = []string{clientSecret, oldRT, newRT, newAT, idToken, bodyMarker}

// fixedNow is the injected clock of every test client.
var fixedNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func now() time.Time { return fixedNow }

// seenRequest is what the fake token endpoint received.
type seenRequest struct {
	method      string
	path        string
	contentType string
	form        url.Values
	authz       string
	basicUser   string
	basicPass   string
	basicOK     bool
}

// tokenEndpoint is a fake provider token endpoint that records requests.
type tokenEndpoint struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []seenRequest
}

func newEndpoint(t testing.TB, h http.HandlerFunc) *tokenEndpoint {
	t.Helper()
	e := &tokenEndpoint{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		u, p, ok := r.BasicAuth()
		e.mu.Lock()
		e.reqs = append(e.reqs, seenRequest{
			method: r.Method, path: r.URL.Path, contentType: r.Header.Get("Content-Type"), form: form,
			authz: r.Header.Get("Authorization"), basicUser: u, basicPass: p, basicOK: ok,
		})
		e.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *tokenEndpoint) url() string { return e.srv.URL + "/token" }

func (e *tokenEndpoint) requests() []seenRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]seenRequest(nil), e.reqs...)
}

// respond answers with status, content type and body, plus header pairs.
func respond(status int, contentType, body string, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func respondJSON(status int, body string, header ...string) http.HandlerFunc {
	return respond(status, "application/json", body, header...)
}

func newClient(t testing.TB, tokenURL string, mutate func(*Provider), opts ...Option) *Client {
	t.Helper()
	p := Provider{TokenURL: tokenURL, ClientID: clientID, ClientSecret: clientSecret, AuthMethod: ClientSecretBasic}
	if mutate != nil {
		mutate(&p)
	}
	c, err := New(map[string]Provider{"idp": p}, append([]Option{WithNow(now)}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func assertNoSecrets(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, msg := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
		for _, s := range secrets {
			if strings.Contains(msg, s) {
				t.Errorf("error text %q contains secret %q", msg, s)
			}
		}
	}
}

func TestParseAuthMethod(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want AuthMethod
		ok   bool
	}{
		{"client_secret_basic", ClientSecretBasic, true},
		{"client_secret_post", ClientSecretPost, true},
		{"private_key_jwt", PrivateKeyJWT, true},
		{"tls_client_auth", TLSClientAuth, true},
		{"", 0, false},
		{"header", 0, false},
		{"params", 0, false},
		{"Client_Secret_Basic", 0, false},
		{"client_secret_jwt", 0, false},
		{"self_signed_tls_client_auth", 0, false},
	} {
		got, err := ParseAuthMethod(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseAuthMethod(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok {
			if got.String() != tc.in {
				t.Errorf("String() = %q, want %q", got.String(), tc.in)
			}
			var m AuthMethod
			if err := m.UnmarshalText([]byte(tc.in)); err != nil || m != tc.want {
				t.Errorf("UnmarshalText(%q) = %v, %v", tc.in, m, err)
			}
			if b, err := m.MarshalText(); err != nil || string(b) != tc.in {
				t.Errorf("MarshalText() = %q, %v", b, err)
			}
		}
	}
	if _, err := AuthMethod(0).MarshalText(); err == nil {
		t.Error("MarshalText of the zero AuthMethod succeeded")
	}
}

func TestNewValidation(t *testing.T) {
	good := Provider{TokenURL: "https://idp.example/token", ClientID: "c", ClientSecret: clientSecret, AuthMethod: ClientSecretPost}
	for _, tc := range []struct {
		name    string
		mutate  func(*Provider)
		key     string
		wantErr []string // substrings of the error; none: no error
	}{
		{name: "valid", mutate: func(*Provider) {}},
		{name: "valid http, no secret, scopes", mutate: func(p *Provider) {
			p.TokenURL, p.ClientSecret, p.Scopes = "http://127.0.0.1:8080/oauth/token?x=1", "", []string{"openid", "offline_access"}
		}},
		{name: "empty name", key: "-", mutate: func(*Provider) {}, wantErr: []string{"provider name is empty"}},
		{name: "empty token URL", mutate: func(p *Provider) { p.TokenURL = "" }, wantErr: []string{"token_url is required (or issuer"}},
		{name: "issuer instead of token URL", mutate: func(p *Provider) { p.TokenURL, p.Issuer = "", "https://idp.example" }},
		{name: "bad issuer", mutate: func(p *Provider) { p.Issuer = "idp.example" }, wantErr: []string{"issuer must be an absolute http(s) URL"}},
		{name: "bad authorization URL", mutate: func(p *Provider) { p.AuthorizationURL = "/authorize" }, wantErr: []string{"authorization_url must be an absolute http(s) URL"}},
		{name: "relative token URL", mutate: func(p *Provider) { p.TokenURL = "/token" }, wantErr: []string{"token_url must be an absolute http(s) URL"}},
		{name: "ftp token URL", mutate: func(p *Provider) { p.TokenURL = "ftp://idp.example/token" }, wantErr: []string{"token_url must be an absolute http(s) URL"}},
		{name: "no host", mutate: func(p *Provider) { p.TokenURL = "https:///token" }, wantErr: []string{"token_url must be an absolute http(s) URL"}},
		{name: "unparseable", mutate: func(p *Provider) { p.TokenURL = "https://idp.example/%zz" }, wantErr: []string{"token_url must be an absolute http(s) URL"}},
		{name: "credentials in URL", mutate: func(p *Provider) { p.TokenURL = "https://u:" + clientSecret + "@idp.example/token" }, wantErr: []string{"token_url must not carry credentials"}},
		{name: "no client ID", mutate: func(p *Provider) { p.ClientID = "" }, wantErr: []string{"client_id is required"}},
		{name: "auth method unset", mutate: func(p *Provider) { p.AuthMethod = 0 }, wantErr: []string{`token_endpoint_auth must be client_secret_basic, client_secret_post, private_key_jwt or tls_client_auth`}},
		{name: "auth method unknown", mutate: func(p *Provider) { p.AuthMethod = 7 }, wantErr: []string{`token_endpoint_auth must be`}},
		{name: "bad scope", mutate: func(p *Provider) { p.Scopes = []string{"openid", "two words"} }, wantErr: []string{`scopes: "two words" is not a scope-token`}},
		{name: "empty scope", mutate: func(p *Provider) { p.Scopes = []string{""} }, wantErr: []string{`scopes: "" is not a scope-token`}},
		{name: "all at once", mutate: func(p *Provider) { *p = Provider{TokenURL: "x"} }, wantErr: []string{
			`provider "idp": token_url must be an absolute`, "client_id is required", "token_endpoint_auth must be",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := good
			tc.mutate(&p)
			key := "idp"
			if tc.key == "-" {
				key = ""
			}
			c, err := New(map[string]Provider{key: p})
			if len(tc.wantErr) == 0 {
				if err != nil || c == nil {
					t.Fatalf("New = %v, %v; want a client", c, err)
				}
				return
			}
			if err == nil {
				t.Fatal("New succeeded, want an error")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			assertNoSecrets(t, err)
		})
	}
}

func TestNewDoesNotAliasScopes(t *testing.T) {
	e := newEndpoint(t, respondJSON(200, `{"access_token":"a"}`))
	scopes := []string{"openid"}
	c := newClient(t, e.url(), func(p *Provider) { p.Scopes = scopes })
	scopes[0] = "changed"
	if _, err := c.Refresh(context.Background(), "idp", oldRT); err != nil {
		t.Fatal(err)
	}
	if got := e.requests()[0].form.Get("scope"); got != "openid" {
		t.Errorf("scope = %q, want %q", got, "openid")
	}
}

func TestRefreshSuccess(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
		want store.Tokens
	}{
		{
			name: "rotated refresh token",
			h:    respondJSON(200, `{"access_token":"`+newAT+`","token_type":"bearer","refresh_token":"`+newRT+`","expires_in":3600}`),
			want: store.Tokens{AccessToken: newAT, RefreshToken: newRT, TokenType: "Bearer", ExpiresAt: fixedNow.Add(time.Hour)},
		},
		{
			name: "no rotation keeps the old refresh token",
			h:    respondJSON(200, `{"access_token":"`+newAT+`","token_type":"Bearer","expires_in":60}`),
			want: store.Tokens{AccessToken: newAT, RefreshToken: oldRT, TokenType: "Bearer", ExpiresAt: fixedNow.Add(time.Minute)},
		},
		{
			name: "id_token passed through",
			h:    respondJSON(200, `{"access_token":"`+newAT+`","token_type":"Bearer","refresh_token":"`+newRT+`","id_token":"`+idToken+`","expires_in":300}`),
			want: store.Tokens{AccessToken: newAT, RefreshToken: newRT, IDToken: idToken, TokenType: "Bearer", ExpiresAt: fixedNow.Add(5 * time.Minute)},
		},
		{
			name: "no expires_in: zero expiry",
			h:    respondJSON(200, `{"access_token":"`+newAT+`","token_type":"Bearer"}`),
			want: store.Tokens{AccessToken: newAT, RefreshToken: oldRT, TokenType: "Bearer"},
		},
		{
			name: "expires_in 0: zero expiry",
			h:    respondJSON(200, `{"access_token":"`+newAT+`","expires_in":0}`),
			want: store.Tokens{AccessToken: newAT, RefreshToken: oldRT, TokenType: "Bearer"},
		},
		{
			name: "negative expires_in: zero expiry",
			h:    respondJSON(200, `{"access_token":"`+newAT+`","expires_in":-5}`),
			want: store.Tokens{AccessToken: newAT, RefreshToken: oldRT, TokenType: "Bearer"},
		},
		{
			name: "expires_in as a string",
			h:    respondJSON(200, `{"access_token":"`+newAT+`","expires_in":"120"}`),
			want: store.Tokens{AccessToken: newAT, RefreshToken: oldRT, TokenType: "Bearer", ExpiresAt: fixedNow.Add(2 * time.Minute)},
		},
		{
			name: "no token_type defaults to Bearer",
			h:    respondJSON(200, `{"access_token":"`+newAT+`"}`),
			want: store.Tokens{AccessToken: newAT, RefreshToken: oldRT, TokenType: "Bearer"},
		},
		{
			name: "other token_type kept",
			h:    respondJSON(200, `{"access_token":"`+newAT+`","token_type":"DPoP"}`),
			want: store.Tokens{AccessToken: newAT, RefreshToken: oldRT, TokenType: "DPoP"},
		},
		{
			name: "form-encoded response (GitHub without Accept)",
			h: respond(200, "application/x-www-form-urlencoded",
				"access_token="+newAT+"&token_type=bearer&refresh_token="+newRT+"&expires_in=28800&id_token="+idToken),
			want: store.Tokens{AccessToken: newAT, RefreshToken: newRT, IDToken: idToken, TokenType: "Bearer", ExpiresAt: fixedNow.Add(8 * time.Hour)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEndpoint(t, tc.h)
			c := newClient(t, e.url(), nil)
			got, err := c.Refresh(context.Background(), "idp", oldRT)
			if err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			if !got.ExpiresAt.Equal(tc.want.ExpiresAt) {
				t.Errorf("ExpiresAt = %v, want %v", got.ExpiresAt, tc.want.ExpiresAt)
			}
			got.ExpiresAt, tc.want.ExpiresAt = time.Time{}, time.Time{}
			if got != tc.want {
				t.Errorf("Refresh = %+v, want %+v", got, tc.want)
			}
			if n := len(e.requests()); n != 1 {
				t.Errorf("token endpoint saw %d requests, want 1", n)
			}
		})
	}
}

// The Client has no notion of a still-valid token: every call asks the
// provider, even right after a refresh returned a token valid for an hour.
func TestRefreshAlwaysAsksProvider(t *testing.T) {
	e := newEndpoint(t, respondJSON(200, `{"access_token":"`+newAT+`","expires_in":3600}`))
	c := newClient(t, e.url(), nil)
	for i := 1; i <= 3; i++ {
		got, err := c.Refresh(context.Background(), "idp", oldRT)
		if err != nil {
			t.Fatal(err)
		}
		if got.Expired(fixedNow, time.Minute) {
			t.Fatalf("token expired: %+v", got)
		}
		if n := len(e.requests()); n != i {
			t.Fatalf("after %d calls the endpoint saw %d requests", i, n)
		}
	}
}

func TestRefreshRequest(t *testing.T) {
	for _, tc := range []struct {
		name   string
		style  AuthMethod
		secret string
		scopes []string
	}{
		{name: "header", style: ClientSecretBasic, secret: clientSecret},
		{name: "params", style: ClientSecretPost, secret: clientSecret},
		{name: "header with scopes", style: ClientSecretBasic, secret: clientSecret, scopes: []string{"openid", "offline_access", "repo:read"}},
		{name: "params with scopes", style: ClientSecretPost, secret: clientSecret, scopes: []string{"openid"}},
		{name: "params public client", style: ClientSecretPost},
		{name: "header secret needing escapes", style: ClientSecretBasic, secret: "s3cr:t/+&="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEndpoint(t, respondJSON(200, `{"access_token":"a"}`))
			c := newClient(t, e.url(), func(p *Provider) {
				p.AuthMethod, p.ClientSecret, p.Scopes = tc.style, tc.secret, tc.scopes
			})
			if _, err := c.Refresh(context.Background(), "idp", oldRT); err != nil {
				t.Fatal(err)
			}
			reqs := e.requests()
			if len(reqs) != 1 {
				t.Fatalf("endpoint saw %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.method != http.MethodPost || r.path != "/token" || r.contentType != "application/x-www-form-urlencoded" {
				t.Errorf("request %s %s (%s)", r.method, r.path, r.contentType)
			}
			if g := r.form.Get("grant_type"); g != "refresh_token" {
				t.Errorf("grant_type = %q", g)
			}
			if g := r.form.Get("refresh_token"); g != oldRT {
				t.Errorf("refresh_token = %q", g)
			}
			if tc.scopes == nil {
				if _, ok := r.form["scope"]; ok {
					t.Errorf("scope sent without configured scopes: %q", r.form["scope"])
				}
			} else if g, w := r.form["scope"], strings.Join(tc.scopes, " "); len(g) != 1 || g[0] != w {
				t.Errorf("scope = %q, want [%q]", g, w)
			}

			_, idInForm := r.form["client_id"]
			_, secretInForm := r.form["client_secret"]
			switch tc.style {
			case ClientSecretBasic:
				// x/oauth2 form-encodes the credentials before Basic
				// encoding them (RFC 6749 section 2.3.1).
				u, _ := url.QueryUnescape(r.basicUser)
				p, _ := url.QueryUnescape(r.basicPass)
				if !r.basicOK || u != clientID || p != tc.secret {
					t.Errorf("Basic credentials = %q:%q (ok=%v), want %q:%q", u, p, r.basicOK, clientID, tc.secret)
				}
				if idInForm || secretInForm {
					t.Errorf("credentials also in the form: %v", r.form)
				}
			case ClientSecretPost:
				if r.authz != "" {
					t.Errorf("Authorization header %q sent with auth style params", r.authz)
				}
				if r.form.Get("client_id") != clientID {
					t.Errorf("client_id = %q", r.form.Get("client_id"))
				}
				if tc.secret == "" && secretInForm {
					t.Errorf("empty client_secret sent")
				}
				if tc.secret != "" && r.form.Get("client_secret") != tc.secret {
					t.Errorf("client_secret = %q", r.form.Get("client_secret"))
				}
			}
		})
	}
}

// x/oauth2's auto-detection would retry a failed request with the other
// authentication method and so redeem the token twice; an explicit method never does.
func TestNoRetryWithOtherAuthMethod(t *testing.T) {
	for _, style := range []AuthMethod{ClientSecretBasic, ClientSecretPost} {
		t.Run(style.String(), func(t *testing.T) {
			e := newEndpoint(t, respondJSON(401, `{"error":"invalid_client"}`))
			c := newClient(t, e.url(), func(p *Provider) { p.AuthMethod = style })
			_, err := c.Refresh(context.Background(), "idp", oldRT)
			if !errors.Is(err, upstreamtoken.ErrProviderMisconfigured) {
				t.Errorf("err = %v, want ErrProviderMisconfigured", err)
			}
			if n := len(e.requests()); n != 1 {
				t.Errorf("endpoint saw %d requests, want exactly 1", n)
			}
		})
	}
}

type class int

const (
	permanent class = iota + 1
	transient
	misconfigured
	unknownRefusal
)

func checkClass(t *testing.T, err error, want class) {
	t.Helper()
	is := func(target error) bool { return errors.Is(err, target) }
	var ok bool
	switch want {
	case permanent:
		ok = is(upstreamtoken.ErrRefreshFailed) && !is(upstreamtoken.ErrUpstreamUnavailable) && !is(upstreamtoken.ErrProviderMisconfigured)
	case transient:
		ok = is(upstreamtoken.ErrUpstreamUnavailable) && !is(upstreamtoken.ErrRefreshFailed) && !is(upstreamtoken.ErrProviderMisconfigured)
	case misconfigured:
		ok = is(upstreamtoken.ErrUpstreamUnavailable) && is(upstreamtoken.ErrProviderMisconfigured) && !is(upstreamtoken.ErrRefreshFailed)
	case unknownRefusal:
		ok = is(upstreamtoken.ErrUpstreamUnavailable) && is(upstreamtoken.ErrUnknownRefusal) && !is(upstreamtoken.ErrProviderMisconfigured) && !is(upstreamtoken.ErrRefreshFailed)
	}
	if want != unknownRefusal && is(upstreamtoken.ErrUnknownRefusal) {
		ok = false
	}
	if !ok {
		t.Errorf("err = %v: refused=%v unavailable=%v misconfigured=%v; want class %d", err,
			is(upstreamtoken.ErrRefreshFailed), is(upstreamtoken.ErrUpstreamUnavailable), is(upstreamtoken.ErrProviderMisconfigured), want)
	}
}

// errorDesc is a JSON error_description member carrying the marker and the
// secrets: an error body with it checks that none of the body reaches the
// error text.
const errorDesc = `"error_description":"` + bodyMarker + " " + oldRT + " " + clientSecret + `"`

// retryDate is a Retry-After HTTP-date 90 s after fixedNow.
var retryDate = fixedNow.Add(90 * time.Second).Format(http.TimeFormat)

func TestRefreshFailureClassification(t *testing.T) {
	desc := errorDesc
	for _, tc := range []struct {
		name      string
		h         http.HandlerFunc
		class     class
		status    int
		code      string
		cause     string
		retry     time.Duration
		wantInMsg []string
	}{
		{name: "400 invalid_grant", h: respondJSON(400, `{"error":"invalid_grant",`+desc+`}`), class: permanent, status: 400, code: "invalid_grant",
			wantInMsg: []string{`provider "idp"`, "HTTP 400", `"invalid_grant"`, "re-authentication required"}},
		{name: "400 invalid_request (reuse)", h: respondJSON(400, `{"error":"invalid_request",`+desc+`}`), class: permanent, status: 400, code: "invalid_request"},
		{name: "200 bad_refresh_token (GitHub JSON)", h: respondJSON(200, `{"error":"bad_refresh_token",`+desc+`}`), class: permanent, status: 200, code: "bad_refresh_token"},
		{name: "200 bad_refresh_token (GitHub form)", h: respond(200, "application/x-www-form-urlencoded",
			"error=bad_refresh_token&error_description="+url.QueryEscape(bodyMarker+" "+oldRT)), class: permanent, status: 200, code: "bad_refresh_token"},
		{name: "400 INVALID_GRANT upper case", h: respondJSON(400, `{"error":"INVALID_GRANT"}`), class: permanent, status: 400, code: "INVALID_GRANT"},
		{name: "401 invalid_client", h: respondJSON(401, `{"error":"invalid_client",`+desc+`}`), class: misconfigured, status: 401, code: "invalid_client",
			wantInMsg: []string{"rejected our client configuration", "HTTP 401", `"invalid_client"`}},
		{name: "400 unauthorized_client", h: respondJSON(400, `{"error":"unauthorized_client",`+desc+`}`), class: misconfigured, status: 400, code: "unauthorized_client"},
		{name: "400 unsupported_grant_type", h: respondJSON(400, `{"error":"unsupported_grant_type"}`), class: misconfigured, status: 400, code: "unsupported_grant_type"},
		{name: "400 invalid_scope (consent narrowed)", h: respondJSON(400, `{"error":"invalid_scope"}`), class: permanent, status: 400, code: "invalid_scope"},
		{name: "400 interaction_required (Entra)", h: respondJSON(400, `{"error":"interaction_required",`+desc+`}`), class: permanent, status: 400, code: "interaction_required"},
		{name: "400 consent_required", h: respondJSON(400, `{"error":"consent_required"}`), class: permanent, status: 400, code: "consent_required"},
		{name: "400 login_required", h: respondJSON(400, `{"error":"login_required"}`), class: permanent, status: 400, code: "login_required"},
		{name: "500 no body", h: respond(500, "", ""), class: transient, status: 500, wantInMsg: []string{"unavailable", "HTTP 500"}},
		{name: "500 html", h: respond(500, "text/html", "<html>"+bodyMarker+"</html>"), class: transient, status: 500},
		{name: "500 with invalid_grant is not trusted", h: respondJSON(500, `{"error":"invalid_grant"}`), class: transient, status: 500, code: "invalid_grant"},
		{name: "502 server_error", h: respondJSON(502, `{"error":"server_error",`+desc+`}`), class: transient, status: 502, code: "server_error"},
		{name: "503 Retry-After seconds", h: respondJSON(503, `{"error":"temporarily_unavailable",`+desc+`}`, "Retry-After", "7"),
			class: transient, status: 503, code: "temporarily_unavailable", retry: 7 * time.Second, wantInMsg: []string{"retry after 7s"}},
		{name: "429 Retry-After date", h: respond(429, "text/plain", bodyMarker, "Retry-After", retryDate), class: transient, status: 429, retry: 90 * time.Second},
		{name: "429 with invalid_grant is not trusted", h: respondJSON(429, `{"error":"invalid_grant"}`), class: transient, status: 429, code: "invalid_grant"},
		{name: "429 huge Retry-After capped", h: respond(429, "", "", "Retry-After", "99999999999999999999999"), class: transient, status: 429, retry: MaxRetryAfter},
		{name: "400 temporarily_unavailable", h: respondJSON(400, `{"error":"temporarily_unavailable"}`), class: transient, status: 400, code: "temporarily_unavailable"},
		{name: "400 slow_down", h: respondJSON(400, `{"error":"slow_down"}`), class: transient, status: 400, code: "slow_down"},
		{name: "400 unknown code", h: respondJSON(400, `{"error":"something_new",`+desc+`}`), class: unknownRefusal, status: 400, code: "something_new",
			wantInMsg: []string{"unknown error code", `"something_new"`}},
		{name: "403 unknown code", h: respondJSON(403, `{"error":"access_denied"}`), class: unknownRefusal, status: 403, code: "access_denied"},
		{name: "200 unknown code", h: respondJSON(200, `{"error":"something_new"}`), class: unknownRefusal, status: 200, code: "something_new"},
		{name: "400 without code", h: respondJSON(400, `{`+desc+`}`), class: transient, status: 400},
		{name: "400 code with digits", h: respondJSON(400, `{"error":"`+bodyMarker+`"}`), class: transient, status: 400, cause: "malformed OAuth error code"},
		{name: "400 malformed code", h: respondJSON(400, `{"error":"`+bodyMarker+` `+oldRT+`"}`), class: transient, status: 400, cause: "malformed OAuth error code"},
		{name: "404 html", h: respond(404, "text/html", bodyMarker), class: transient, status: 404},
		{name: "307 redirect not followed", h: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		}, class: transient, status: 307, cause: "redirect not followed"},
		{name: "200 garbage", h: respondJSON(200, "<html>"+bodyMarker+" "+newAT), class: transient, status: 200, cause: "unparseable response"},
		{name: "200 without access_token", h: respondJSON(200, `{"token_type":"Bearer","refresh_token":"`+newRT+`","id_token":"`+idToken+`"}`),
			class: transient, status: 200, cause: "response without access_token"},
		{name: "200 empty body", h: respond(200, "application/json", ""), class: transient, status: 200, cause: "unparseable response"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEndpoint(t, tc.h)
			c := newClient(t, e.url(), nil)
			got, err := c.Refresh(context.Background(), "idp", oldRT)
			if err == nil {
				t.Fatalf("Refresh = %+v, want an error", got)
			}
			if got != (store.Tokens{}) {
				t.Errorf("tokens returned with an error: %+v", got)
			}
			checkClass(t, err, tc.class)
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("err %T is not an *Error", err)
			}
			if re.Provider != "idp" || re.Status != tc.status || re.Code != tc.code {
				t.Errorf("Error{Provider:%q Status:%d Code:%q}, want {idp %d %q}", re.Provider, re.Status, re.Code, tc.status, tc.code)
			}
			if tc.cause != "" && re.Cause != tc.cause {
				t.Errorf("Cause = %q, want %q", re.Cause, tc.cause)
			}
			if re.RetryAfter() != tc.retry {
				t.Errorf("RetryAfter() = %v, want %v", re.RetryAfter(), tc.retry)
			}
			if tc.retry > 0 {
				if got := upstreamtoken.RetryAfter(err); got != tc.retry {
					t.Errorf("upstreamtoken.RetryAfter = %v, want %v", got, tc.retry)
				}
			}
			for _, w := range tc.wantInMsg {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q does not contain %q", err, w)
				}
			}
			assertNoSecrets(t, err)
			if n := len(e.requests()); n != 1 {
				t.Errorf("endpoint saw %d requests, want 1", n)
			}
		})
	}
}

func TestRefreshTimeout(t *testing.T) {
	slow := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		respondJSON(200, `{"access_token":"`+newAT+`"}`)(w, r)
	}
	t.Run("context deadline", func(t *testing.T) {
		e := newEndpoint(t, slow)
		c := newClient(t, e.url(), nil)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.Refresh(ctx, "idp", oldRT)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Refresh took %v", d)
		}
		checkClass(t, err, transient)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want it to wrap context.DeadlineExceeded", err)
		}
		var re *Error
		if !errors.As(err, &re) || re.Cause != "timeout" || re.Status != 0 {
			t.Errorf("err = %#v, want cause timeout and no status", err)
		}
		assertNoSecrets(t, err)
		if n := len(e.requests()); n != 1 {
			t.Errorf("endpoint saw %d requests, want 1", n)
		}
	})
	t.Run("http client timeout", func(t *testing.T) {
		e := newEndpoint(t, slow)
		c := newClient(t, e.url(), nil, WithHTTPClient(&http.Client{Timeout: 100 * time.Millisecond}))
		_, err := c.Refresh(context.Background(), "idp", oldRT)
		checkClass(t, err, transient)
		var re *Error
		if !errors.As(err, &re) || re.Cause != "timeout" {
			t.Errorf("err = %v, want cause timeout", err)
		}
		if n := len(e.requests()); n != 1 {
			t.Errorf("endpoint saw %d requests, want 1", n)
		}
	})
}

func TestRefreshCanceled(t *testing.T) {
	e := newEndpoint(t, respondJSON(200, `{"access_token":"a"}`))
	c := newClient(t, e.url(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Refresh(ctx, "idp", oldRT)
	checkClass(t, err, transient)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want it to wrap context.Canceled", err)
	}
	if n := len(e.requests()); n != 0 {
		t.Errorf("endpoint saw %d requests for a canceled context", n)
	}
}

func TestRefreshConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	tokenURL := srv.URL + "/token"
	srv.Close()
	c := newClient(t, tokenURL, nil)
	_, err := c.Refresh(context.Background(), "idp", oldRT)
	checkClass(t, err, transient)
	var re *Error
	if !errors.As(err, &re) || re.Cause != "connection refused" || re.Status != 0 {
		t.Errorf("err = %v, want cause connection refused", err)
	}
	if strings.Contains(err.Error(), tokenURL) {
		t.Errorf("message %q repeats the token URL", err)
	}
	assertNoSecrets(t, err)
}

func TestRefreshNoRequest(t *testing.T) {
	e := newEndpoint(t, respondJSON(200, `{"access_token":"a"}`))
	c := newClient(t, e.url(), nil)
	if _, err := c.Refresh(context.Background(), "nope", oldRT); !errors.Is(err, ErrUnknownProvider) {
		t.Errorf("unknown provider: err = %v, want ErrUnknownProvider", err)
	} else {
		assertNoSecrets(t, err)
	}
	if _, err := c.Refresh(context.Background(), "idp", ""); !errors.Is(err, upstreamtoken.ErrNoRefreshToken) {
		t.Errorf("empty refresh token: err = %v, want ErrNoRefreshToken", err)
	}
	if n := len(e.requests()); n != 0 {
		t.Errorf("endpoint saw %d requests", n)
	}
}

type countingTransport struct {
	n    atomic.Int32
	base http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

func TestWithHTTPClientTransportIsUsed(t *testing.T) {
	e := newEndpoint(t, respondJSON(200, `{"access_token":"a"}`))
	ct := &countingTransport{base: http.DefaultTransport}
	c := newClient(t, e.url(), func(p *Provider) { p.Scopes = []string{"s1"} }, WithHTTPClient(&http.Client{Transport: ct}))
	if _, err := c.Refresh(context.Background(), "idp", oldRT); err != nil {
		t.Fatal(err)
	}
	if ct.n.Load() != 1 {
		t.Errorf("custom transport saw %d requests, want 1", ct.n.Load())
	}
	if got := e.requests()[0].form.Get("scope"); got != "s1" {
		t.Errorf("scope = %q", got)
	}
}

func TestTransportRefusesSecondRequest(t *testing.T) {
	e := newEndpoint(t, respondJSON(200, `{"access_token":"a"}`))
	tr := &transport{base: http.DefaultTransport}
	ctx := context.WithValue(context.Background(), attemptKey{}, &attempt{})
	for i := 0; i < 2; i++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url(), strings.NewReader("a=b"))
		resp, err := tr.RoundTrip(req)
		if i == 0 {
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		} else if !errors.Is(err, errSecondRequest) {
			t.Errorf("second RoundTrip: err = %v, want errSecondRequest", err)
		}
	}
	if n := len(e.requests()); n != 1 {
		t.Errorf("endpoint saw %d requests, want 1", n)
	}
}

func TestRefreshConcurrent(t *testing.T) {
	var n atomic.Int32
	e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		respondJSON(200, fmt.Sprintf(`{"access_token":"at-%d","refresh_token":"rt-%d","expires_in":60}`, i, i))(w, r)
	})
	c := newClient(t, e.url(), func(p *Provider) { p.Scopes = []string{"openid"} })
	const calls = 16
	var wg sync.WaitGroup
	seen := make(chan string, calls)
	for range calls {
		wg.Go(func() {
			tok, err := c.Refresh(context.Background(), "idp", oldRT)
			if err != nil {
				t.Error(err)
				return
			}
			seen <- tok.AccessToken
		})
	}
	wg.Wait()
	close(seen)
	distinct := map[string]bool{}
	for s := range seen {
		distinct[s] = true
	}
	if len(distinct) != calls || len(e.requests()) != calls {
		t.Errorf("%d distinct tokens from %d requests, want %d", len(distinct), len(e.requests()), calls)
	}
}

func TestParseRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"7", 7 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"-3", 0},
		{"1.5", 0},
		{"soon", 0},
		{"3601", MaxRetryAfter},
		{"184467440737095516160", MaxRetryAfter},
		{fixedNow.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{fixedNow.Add(-time.Minute).Format(http.TimeFormat), 0},
		{fixedNow.Add(48 * time.Hour).Format(http.TimeFormat), MaxRetryAfter},
		{"Wed, 01 Jan 7000 00:00:00 GMT", MaxRetryAfter},
		{fixedNow.Add(30 * time.Second).Format(time.RFC850), 30 * time.Second},
	} {
		if got := parseRetryAfter(tc.in, fixedNow); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"", "7", "-1", "99999999999999999999", "Wed, 02 Jan 2030 03:05:00 GMT", "Monday, 02-Jan-30 03:04:05 GMT"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d := parseRetryAfter(s, fixedNow); d < 0 || d > MaxRetryAfter {
			t.Errorf("parseRetryAfter(%q) = %v", s, d)
		}
	})
}

// FuzzRefreshResponse feeds arbitrary token endpoint answers to Refresh:
// it must never panic, always send exactly one request, classify every
// failure, and never repeat the body marker.
func FuzzRefreshResponse(f *testing.F) {
	f.Add(200, "application/json", `{"access_token":"a","expires_in":5}`)
	f.Add(400, "application/json", `{"error":"invalid_grant","error_description":"`+bodyMarker+`"}`)
	f.Add(200, "application/x-www-form-urlencoded", "error=bad_refresh_token&x="+bodyMarker)
	f.Add(200, "application/json", `{"error":"`+bodyMarker+`"}`)
	f.Add(503, "text/html", "<p>"+bodyMarker)
	f.Add(200, "text/plain", "%zz"+bodyMarker)
	f.Fuzz(func(t *testing.T, status int, contentType, body string) {
		e, _ := fuzzEndpoint(t, status, contentType, body)
		c := newClient(t, e.url(), nil)
		tok, err := c.Refresh(context.Background(), "idp", oldRT)
		checkFuzzCall(t, e, body, err)
		if err == nil {
			if tok.AccessToken == "" || tok.TokenType == "" || tok.RefreshToken == "" {
				t.Fatalf("incomplete tokens %+v", tok)
			}
			return
		}
		refused := errors.Is(err, upstreamtoken.ErrRefreshFailed)
		unavailable := errors.Is(err, upstreamtoken.ErrUpstreamUnavailable)
		if refused == unavailable {
			t.Fatalf("err %v: refused=%v unavailable=%v", err, refused, unavailable)
		}
	})
}

// fuzzEndpoint is an endpoint answering with status (folded into 200-599,
// which it returns), contentType and body, for the fuzz tests.
func fuzzEndpoint(t *testing.T, status int, contentType, body string) (*tokenEndpoint, int) {
	t.Helper()
	if status < 200 || status > 599 {
		status = 200 + (status%400+400)%400
	}
	return newEndpoint(t, respond(status, contentType, body)), status
}

// checkFuzzCall fails a fuzz test unless e saw exactly one request and
// err's message, if any, repeats neither the body marker of body nor a
// secret.
func checkFuzzCall(t *testing.T, e *tokenEndpoint, body string, err error) {
	t.Helper()
	if n := len(e.requests()); n != 1 {
		t.Fatalf("endpoint saw %d requests", n)
	}
	if err == nil {
		return
	}
	if strings.Contains(body, bodyMarker) && strings.Contains(err.Error(), bodyMarker) {
		t.Fatalf("message %q repeats the body", err)
	}
	if strings.Contains(err.Error(), oldRT) || strings.Contains(err.Error(), clientSecret) {
		t.Fatalf("message %q contains a secret", err)
	}
}
