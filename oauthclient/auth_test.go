package oauthclient

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/extauthz/extauthz/discovery"
	"github.com/extauthz/extauthz/internal/tlsreload/tlstest"
	"github.com/extauthz/extauthz/upstreamtoken"
)

const (
	testCode     = "code-SECRET-abc"
	testVerifier = "verifier-0123456789-0123456789-0123456789-abcdef"
	testRedirect = "https://api.example/.extauthz/callback"
	testKID      = "key-2030-01"
	clientCN     = "extauthz-client"
)

// Keys are generated once per test binary: RSA generation is slow.
var (
	keysOnce sync.Once
	testKeys map[string]crypto.Signer
)

func signingKeys(t *testing.T) map[string]crypto.Signer {
	t.Helper()
	keysOnce.Do(func() {
		r, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		e256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		e384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		_, ed, _ := ed25519.GenerateKey(rand.Reader)
		testKeys = map[string]crypto.Signer{"RS256": r, "ES256": e256, "ES384": e384, "EdDSA": ed}
	})
	return testKeys
}

// writeKey writes key as a PKCS #8 PEM file and returns its path.
func writeKey(t *testing.T, key crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "client-key.pem")
	tlstest.WriteFile(t, path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	return path
}

// authServer is an RFC-conformant authorization server for one client: a
// token endpoint (refresh_token and authorization_code with PKCE, RFC 6749
// and 7636), a revocation endpoint (RFC 7009) and a discovery document,
// over TLS with an optional client certificate. It authenticates every
// request by the client's registered method, verifying client assertions
// (RFC 7523: signature with the registered public key, kid, iss, sub, aud,
// exp, iat, a jti never seen before) and client certificates (RFC 8705:
// verified against the client CA, subject common name registered), and
// answers invalid_client to anything else.
type authServer struct {
	srv      *httptest.Server
	ca       *tlstest.CA
	caFile   string
	method   AuthMethod
	pub      crypto.PublicKey
	alg      jose.SignatureAlgorithm
	aud      string // the expected assertion aud
	keyFile  string // the client's private key
	noRevoke bool   // discovery names no revocation endpoint

	mu       sync.Mutex
	jtis     map[string]bool
	failures []string // why requests were refused
	hits     map[string]int
	disc     atomic.Bool // discovery answers 503 when set
}

func newAuthServer(t *testing.T, method AuthMethod) *authServer {
	t.Helper()
	as := &authServer{method: method, jtis: map[string]bool{}, hits: map[string]int{}, ca: tlstest.NewCA(t, "test IdP CA")}
	mux := http.NewServeMux()
	mux.HandleFunc("/token", as.token)
	mux.HandleFunc("/token2", as.token)
	mux.HandleFunc("/revoke", as.revoke)
	mux.HandleFunc(discovery.WellKnownPath, func(w http.ResponseWriter, r *http.Request) {
		as.count(discovery.WellKnownPath)
		if as.disc.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		doc := map[string]any{
			"issuer":                 as.srv.URL,
			"authorization_endpoint": as.srv.URL + "/authorize",
			"token_endpoint":         as.srv.URL + "/token",
			"jwks_uri":               as.srv.URL + "/jwks",
		}
		if !as.noRevoke {
			doc["revocation_endpoint"] = as.srv.URL + "/revoke"
		}
		_ = json.NewEncoder(w).Encode(doc)
	})
	as.srv = httptest.NewUnstartedServer(mux)
	leaf := as.ca.Server(t, "idp")
	as.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{leaf.TLSCertificate(t)},
		ClientCAs:    as.ca.Pool(),
		ClientAuth:   tls.VerifyClientCertIfGiven,
		MinVersion:   tls.VersionTLS12,
	}
	as.srv.StartTLS()
	t.Cleanup(as.srv.Close)
	as.caFile = filepath.Join(t.TempDir(), "ca.pem")
	tlstest.WriteFile(t, as.caFile, as.ca.PEM)
	as.aud = as.srv.URL + "/token"
	return as
}

func (as *authServer) count(path string) {
	as.mu.Lock()
	as.hits[path]++
	as.mu.Unlock()
}

func (as *authServer) hitsOf(path string) int {
	as.mu.Lock()
	defer as.mu.Unlock()
	return as.hits[path]
}

func (as *authServer) refused() []string {
	as.mu.Lock()
	defer as.mu.Unlock()
	return append([]string(nil), as.failures...)
}

func (as *authServer) fail(w http.ResponseWriter, why string) {
	as.mu.Lock()
	as.failures = append(as.failures, why)
	as.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
}

// authenticate checks the client authentication of r (whose form is
// parsed) and returns why it fails, "" when it passes.
func (as *authServer) authenticate(r *http.Request) string {
	_, _, basic := r.BasicAuth()
	switch as.method {
	case ClientSecretBasic:
		id, secret, ok := r.BasicAuth()
		if !ok || id != clientID || secret != clientSecret || r.PostForm.Has("client_secret") {
			return "client_secret_basic: bad Authorization header"
		}
		return ""
	case ClientSecretPost:
		if basic || r.PostForm.Get("client_id") != clientID || r.PostForm.Get("client_secret") != clientSecret {
			return "client_secret_post: bad form credentials"
		}
		return ""
	case TLSClientAuth:
		switch {
		case basic || r.PostForm.Has("client_secret") || r.PostForm.Has("client_assertion"):
			return "tls_client_auth: other credentials sent"
		case r.PostForm.Get("client_id") != clientID:
			return "tls_client_auth: no client_id"
		case r.TLS == nil || len(r.TLS.VerifiedChains) == 0:
			return "tls_client_auth: no verified client certificate"
		case r.TLS.PeerCertificates[0].Subject.CommonName != clientCN:
			return "tls_client_auth: certificate of another client"
		}
		return ""
	case PrivateKeyJWT:
		if basic || r.PostForm.Has("client_secret") {
			return "private_key_jwt: a secret was sent"
		}
		return as.checkAssertion(r.PostForm.Get("client_assertion_type"), r.PostForm.Get("client_assertion"), r.PostForm.Get("client_id"))
	}
	return "unknown method"
}

// checkAssertion verifies a client assertion as RFC 7523 sections 2.2 and 3
// require of an authorization server.
func (as *authServer) checkAssertion(typ, assertion, formClientID string) string {
	if typ != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		return "wrong client_assertion_type"
	}
	tok, err := jwt.ParseSigned(assertion, []jose.SignatureAlgorithm{as.alg})
	if err != nil {
		return "assertion does not parse with the registered algorithm: " + err.Error()
	}
	if len(tok.Headers) != 1 || tok.Headers[0].KeyID != testKID {
		return "wrong kid"
	}
	var claims jwt.Claims
	if err := tok.Claims(as.pub, &claims); err != nil {
		return "signature not verified by the registered key"
	}
	n := now()
	if err := claims.ValidateWithLeeway(jwt.Expected{Issuer: clientID, Subject: clientID, AnyAudience: jwt.Audience{as.aud}, Time: n}, 0); err != nil {
		return "claims: " + err.Error()
	}
	switch {
	case len(claims.Audience) != 1:
		return "aud has more than one value"
	case claims.Expiry == nil || claims.IssuedAt == nil:
		return "no exp or iat"
	case claims.IssuedAt.Time().After(n) || claims.Expiry.Time().Sub(claims.IssuedAt.Time()) > 10*time.Minute:
		return "iat in the future or lifetime too long"
	case claims.ID == "":
		return "no jti"
	case formClientID != "" && formClientID != clientID:
		return "client_id does not match the assertion"
	}
	as.mu.Lock()
	defer as.mu.Unlock()
	if as.jtis[claims.ID] {
		return "jti replayed"
	}
	as.jtis[claims.ID] = true
	return ""
}

// admit counts r, parses its form and authenticates its client; it answers
// and returns false when r is refused.
func (as *authServer) admit(w http.ResponseWriter, r *http.Request) bool {
	as.count(r.URL.Path)
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
		http.Error(w, "bad request", http.StatusBadRequest)
		return false
	}
	if why := as.authenticate(r); why != "" {
		as.fail(w, why)
		return false
	}
	return true
}

func (as *authServer) token(w http.ResponseWriter, r *http.Request) {
	if !as.admit(w, r) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	f := r.PostForm
	switch f.Get("grant_type") {
	case "refresh_token":
		if f.Get("refresh_token") != oldRT {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
			return
		}
	case "authorization_code":
		if f.Get("code") != testCode || f.Get("redirect_uri") != testRedirect || f.Get("code_verifier") != testVerifier || f.Has("scope") {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
			return
		}
	default:
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"unsupported_grant_type"}`))
		return
	}
	fmt.Fprintf(w, `{"access_token":%q,"refresh_token":%q,"id_token":%q,"token_type":"Bearer","expires_in":3600}`, newAT, newRT, idToken)
}

func (as *authServer) revoke(w http.ResponseWriter, r *http.Request) {
	if !as.admit(w, r) {
		return
	}
	if r.PostForm.Get("token") != oldRT {
		as.fail(w, "wrong token revoked")
		return
	}
	w.WriteHeader(http.StatusOK)
}

// provider returns a Provider registered at as with its method's
// credentials, its endpoints set by hand and as's CA in ca_file.
func (as *authServer) provider(t *testing.T) Provider {
	t.Helper()
	p := Provider{TokenURL: as.srv.URL + "/token", RevocationURL: as.srv.URL + "/revoke", ClientID: clientID,
		AuthMethod: as.method, CAFile: as.caFile}
	switch as.method {
	case ClientSecretBasic, ClientSecretPost:
		p.ClientSecret = clientSecret
	case PrivateKeyJWT:
		if as.pub == nil {
			as.useKey(t, "ES256")
		}
		p.PrivateKeyFile, p.KeyID = as.keyFile, testKID
	case TLSClientAuth:
		dir := t.TempDir()
		p.ClientCertFile, p.ClientKeyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
		as.ca.Client(t, clientCN).WriteFiles(t, p.ClientCertFile, p.ClientKeyFile)
	}
	return p
}

// useKey registers the test key of alg as the client's.
func (as *authServer) useKey(t *testing.T, alg string) {
	t.Helper()
	key := signingKeys(t)[alg]
	as.pub, as.alg, as.keyFile = key.Public(), jose.SignatureAlgorithm(alg), writeKey(t, key)
}

func newAuthClient(t *testing.T, p Provider, opts ...Option) *Client {
	t.Helper()
	c, err := New(map[string]Provider{"idp": p}, append([]Option{WithNow(now)}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// calls are the three requests of the package, each sent twice (so that
// a reused jti would be refused).
var calls = []struct {
	name string
	do   func(*Client) error
}{
	{"refresh", func(c *Client) error {
		tok, err := c.Refresh(context.Background(), "idp", oldRT)
		if err == nil && (tok.AccessToken != newAT || tok.RefreshToken != newRT || tok.IDToken != idToken) {
			err = errors.New("wrong tokens")
		}
		return err
	}},
	{"exchange", func(c *Client) error {
		tok, err := c.Exchange(context.Background(), "idp", testCode, testRedirect, testVerifier)
		if err == nil && (tok.AccessToken != newAT || tok.RefreshToken != newRT || tok.IDToken != idToken ||
			!tok.ExpiresAt.Equal(fixedNow.Add(time.Hour))) {
			err = errors.New("wrong tokens")
		}
		return err
	}},
	{"revoke", func(c *Client) error { return c.Revoke(context.Background(), "idp", oldRT, HintRefreshToken) }},
}

func TestAuthMethods(t *testing.T) {
	for _, tc := range []struct {
		name     string
		method   AuthMethod
		alg      string
		audience Audience
	}{
		{name: "client_secret_basic", method: ClientSecretBasic},
		{name: "client_secret_post", method: ClientSecretPost},
		{name: "tls_client_auth", method: TLSClientAuth},
		{name: "private_key_jwt RS256", method: PrivateKeyJWT, alg: "RS256"},
		{name: "private_key_jwt ES256", method: PrivateKeyJWT, alg: "ES256"},
		{name: "private_key_jwt ES384", method: PrivateKeyJWT, alg: "ES384"},
		{name: "private_key_jwt EdDSA", method: PrivateKeyJWT, alg: "EdDSA"},
		{name: "private_key_jwt aud issuer", method: PrivateKeyJWT, alg: "ES256", audience: AudienceIssuer},
		{name: "private_key_jwt aud token endpoint", method: PrivateKeyJWT, alg: "ES256", audience: AudienceTokenEndpoint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as := newAuthServer(t, tc.method)
			if tc.alg != "" {
				as.useKey(t, tc.alg)
			}
			p := as.provider(t)
			p.AssertionAudience = tc.audience
			if tc.audience == AudienceIssuer {
				p.Issuer, as.aud = as.srv.URL, as.srv.URL
			}
			c := newAuthClient(t, p)
			for _, call := range calls {
				for i := range 2 {
					if err := call.do(c); err != nil {
						t.Errorf("%s #%d: %v (server refused: %q)", call.name, i+1, err, as.refused())
					}
				}
			}
			if f := as.refused(); len(f) > 0 {
				t.Errorf("server refused: %q", f)
			}
		})
	}
}

// The test server refuses what it should, so that TestAuthMethods proves
// something: a client with another key, kid, audience, certificate or
// method is refused, and the refusal is our configuration's fault.
func TestAuthServerRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method AuthMethod
		setup  func(t *testing.T, as *authServer, p *Provider)
		want   string
	}{
		{name: "assertion signed by another key", method: PrivateKeyJWT, want: "signature not verified", setup: func(t *testing.T, as *authServer, p *Provider) {
			p.PrivateKeyFile = writeKey(t, signingKeys(t)["ES256"])
			as.useKey(t, "ES256")
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			as.pub = key.Public()
		}},
		{name: "other kid", method: PrivateKeyJWT, want: "wrong kid", setup: func(t *testing.T, as *authServer, p *Provider) { p.KeyID = "old-key" }},
		{name: "aud issuer where the token endpoint is expected", method: PrivateKeyJWT, want: "claims", setup: func(t *testing.T, as *authServer, p *Provider) {
			p.Issuer, p.AssertionAudience = as.srv.URL, AudienceIssuer
		}},
		{name: "certificate of another client", method: TLSClientAuth, want: "certificate of another client", setup: func(t *testing.T, as *authServer, p *Provider) {
			as.ca.Client(t, "someone-else").WriteFiles(t, p.ClientCertFile, p.ClientKeyFile)
		}},
		{name: "certificate from another CA", method: TLSClientAuth, want: "", setup: func(t *testing.T, as *authServer, p *Provider) {
			tlstest.NewCA(t, "other").Client(t, clientCN).WriteFiles(t, p.ClientCertFile, p.ClientKeyFile)
		}},
		{name: "no certificate", method: TLSClientAuth, want: "no verified client certificate", setup: func(t *testing.T, as *authServer, p *Provider) {
			*p = Provider{TokenURL: p.TokenURL, RevocationURL: p.RevocationURL, ClientID: clientID, AuthMethod: ClientSecretPost, CAFile: p.CAFile}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as := newAuthServer(t, tc.method)
			p := as.provider(t)
			tc.setup(t, as, &p)
			c := newAuthClient(t, p)
			for _, call := range calls {
				err := call.do(c)
				if !errors.Is(err, upstreamtoken.ErrUpstreamUnavailable) {
					t.Errorf("%s: err = %v, want a refusal", call.name, err)
				}
				if tc.want != "" && !errors.Is(err, upstreamtoken.ErrProviderMisconfigured) {
					t.Errorf("%s: err = %v, want ErrProviderMisconfigured", call.name, err)
				}
				assertNoSecrets(t, err)
			}
			if tc.want == "" {
				return // refused at the TLS handshake
			}
			for _, f := range as.refused() {
				if !strings.Contains(f, tc.want) {
					t.Errorf("server refused because %q, want %q", f, tc.want)
				}
			}
		})
	}
}

// Without ca_file the provider's private CA is not trusted.
func TestCAFileNeeded(t *testing.T) {
	as := newAuthServer(t, ClientSecretBasic)
	p := as.provider(t)
	p.CAFile = ""
	_, err := newAuthClient(t, p).Refresh(context.Background(), "idp", oldRT)
	var e *Error
	if !errors.As(err, &e) || e.Cause != "TLS failure" {
		t.Fatalf("err = %v, want a TLS failure", err)
	}
}

func TestExchangeArguments(t *testing.T) {
	as := newAuthServer(t, ClientSecretBasic)
	c := newAuthClient(t, as.provider(t))
	for _, tc := range []struct{ name, code, redirect, verifier string }{
		{"empty code", "", testRedirect, testVerifier},
		{"relative redirect", testCode, "/callback", testVerifier},
		{"short verifier", testCode, testRedirect, "abc"},
		{"verifier with a space", testCode, testRedirect, strings.Repeat("a", 42) + " "},
	} {
		_, err := c.Exchange(context.Background(), "idp", tc.code, tc.redirect, tc.verifier)
		if !errors.Is(err, ErrInvalidExchange) {
			t.Errorf("%s: err = %v, want ErrInvalidExchange", tc.name, err)
		}
		assertNoSecrets(t, err)
	}
	if _, err := c.Exchange(context.Background(), "nope", testCode, testRedirect, testVerifier); !errors.Is(err, ErrUnknownProvider) {
		t.Errorf("unknown provider: err = %v", err)
	}
	if n := as.hitsOf("/token"); n != 0 {
		t.Errorf("token endpoint saw %d requests", n)
	}
	// A code the provider does not know is refused for good.
	_, err := c.Exchange(context.Background(), "idp", "code-OTHER", testRedirect, testVerifier)
	if !errors.Is(err, ErrCodeRefused) || errors.Is(err, upstreamtoken.ErrUpstreamUnavailable) || errors.Is(err, upstreamtoken.ErrRefreshFailed) {
		t.Errorf("unknown code: err = %v, want ErrCodeRefused alone", err)
	}
	assertNoSecrets(t, err)
	if strings.Contains(err.Error(), testVerifier) {
		t.Errorf("error %q carries the code verifier", err)
	}
}

func TestExchangeGitHubBadCode(t *testing.T) {
	e := newEndpoint(t, respondJSON(200, `{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired."}`))
	c := newClient(t, e.url(), nil)
	_, err := c.Exchange(context.Background(), "idp", testCode, testRedirect, testVerifier)
	if !errors.Is(err, ErrCodeRefused) || errors.Is(err, upstreamtoken.ErrUpstreamUnavailable) {
		t.Errorf("err = %v, want ErrCodeRefused", err)
	}
	r := e.requests()[0]
	if r.form.Get("grant_type") != "authorization_code" || r.form.Get("code") != testCode || r.form.Get("redirect_uri") != testRedirect ||
		r.form.Get("code_verifier") != testVerifier || r.form.Has("scope") {
		t.Errorf("form has grant_type %q, code %t, redirect_uri %t, code_verifier %t, scope %t", r.form.Get("grant_type"),
			r.form.Get("code") == testCode, r.form.Get("redirect_uri") == testRedirect, r.form.Get("code_verifier") == testVerifier, r.form.Has("scope"))
	}
}

func TestDiscoveredEndpoints(t *testing.T) {
	t.Run("filled from the document", func(t *testing.T) {
		as := newAuthServer(t, PrivateKeyJWT)
		p := as.provider(t)
		p.Issuer, p.TokenURL, p.RevocationURL = as.srv.URL, "", ""
		c := newAuthClient(t, p)
		for _, call := range calls {
			if err := call.do(c); err != nil {
				t.Errorf("%s: %v (server refused: %q)", call.name, err, as.refused())
			}
		}
		ep, err := c.Endpoints(context.Background(), "idp")
		want := Endpoints{Issuer: as.srv.URL, AuthorizationURL: as.srv.URL + "/authorize", TokenURL: as.srv.URL + "/token", RevocationURL: as.srv.URL + "/revoke"}
		if err != nil || ep != want {
			t.Errorf("Endpoints = %+v, %v; want %+v", ep, err, want)
		}
		if n := as.hitsOf(discovery.WellKnownPath); n != 1 {
			t.Errorf("discovery document fetched %d times, want 1", n)
		}
	})
	t.Run("set by hand wins", func(t *testing.T) {
		as := newAuthServer(t, ClientSecretPost)
		as.aud = as.srv.URL + "/token2"
		p := as.provider(t)
		p.Issuer, p.TokenURL, p.AuthorizationURL = as.srv.URL, as.srv.URL+"/token2", "https://login.example/authorize"
		c := newAuthClient(t, p)
		for _, call := range calls {
			if err := call.do(c); err != nil {
				t.Errorf("%s: %v", call.name, err)
			}
		}
		if n := as.hitsOf("/token"); n != 0 || as.hitsOf("/token2") != 2 {
			t.Errorf("token requests: %d to the discovered URL, %d to the configured one", n, as.hitsOf("/token2"))
		}
		// Everything the calls needed was set by hand.
		if n := as.hitsOf(discovery.WellKnownPath); n != 0 {
			t.Errorf("discovery document fetched %d times, want 0", n)
		}
		ep, err := c.Endpoints(context.Background(), "idp")
		if err != nil || ep.AuthorizationURL != "https://login.example/authorize" || ep.TokenURL != as.srv.URL+"/token2" {
			t.Errorf("Endpoints = %+v, %v", ep, err)
		}
	})
	t.Run("no revocation endpoint", func(t *testing.T) {
		as := newAuthServer(t, ClientSecretBasic)
		as.noRevoke = true
		p := as.provider(t)
		p.Issuer, p.TokenURL, p.RevocationURL = as.srv.URL, "", ""
		err := newAuthClient(t, p).Revoke(context.Background(), "idp", oldRT, HintRefreshToken)
		if !errors.Is(err, ErrRevocationUnsupported) {
			t.Errorf("err = %v, want ErrRevocationUnsupported", err)
		}
	})
	t.Run("unreachable at start", func(t *testing.T) {
		as := newAuthServer(t, ClientSecretBasic)
		as.disc.Store(true)
		p := as.provider(t)
		p.Issuer, p.TokenURL, p.RevocationURL = as.srv.URL, "", ""
		clock := now()
		var mu sync.Mutex
		d := discovery.New(map[string]discovery.Source{"idp": {Issuer: as.srv.URL, HTTPClient: caClient(t, as)}},
			discovery.Options{Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }})
		if errs := d.Prefetch(context.Background()); errs["idp"] == nil {
			t.Fatal("Prefetch succeeded with discovery down")
		}
		c := newAuthClient(t, p, WithDiscovery(d))
		for _, call := range calls {
			err := call.do(c)
			if !errors.Is(err, upstreamtoken.ErrUpstreamUnavailable) || errors.Is(err, upstreamtoken.ErrProviderMisconfigured) {
				t.Errorf("%s: err = %v, want ErrUpstreamUnavailable alone", call.name, err)
			}
		}
		// Back up: after the retry interval the calls go through.
		as.disc.Store(false)
		mu.Lock()
		clock = clock.Add(discovery.DefaultRetryInterval)
		mu.Unlock()
		for _, call := range calls {
			if err := call.do(c); err != nil {
				t.Errorf("%s after recovery: %v", call.name, err)
			}
		}
	})
}

// caClient is an HTTP client that trusts as's CA.
func caClient(t *testing.T, as *authServer) *http.Client {
	t.Helper()
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: as.ca.Pool(), MinVersion: tls.VersionTLS12}}}
}

func TestAuthValidation(t *testing.T) {
	keys := signingKeys(t)
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	ca.Client(t, clientCN).WriteFiles(t, cert, key)
	otherKey := filepath.Join(dir, "other-k.pem")
	tlstest.WriteFile(t, otherKey, ca.Client(t, "x").KeyPEM)
	caFile := filepath.Join(dir, "ca.pem")
	tlstest.WriteFile(t, caFile, ca.PEM)
	garbage := filepath.Join(dir, "garbage.pem")
	tlstest.WriteFile(t, garbage, []byte("not PEM at all "+clientSecret))
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	encrypted := filepath.Join(dir, "enc.pem")
	tlstest.WriteFile(t, encrypted, pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1, 2, 3}}))

	jwtP := Provider{TokenURL: "https://idp.example/token", ClientID: clientID, AuthMethod: PrivateKeyJWT,
		PrivateKeyFile: writeKey(t, keys["RS256"]), KeyID: testKID}
	tlsP := Provider{TokenURL: "https://idp.example/token", ClientID: clientID, AuthMethod: TLSClientAuth,
		ClientCertFile: cert, ClientKeyFile: key}
	secretP := Provider{TokenURL: "https://idp.example/token", ClientID: clientID, AuthMethod: ClientSecretBasic, ClientSecret: clientSecret}
	for _, tc := range []struct {
		name   string
		base   Provider
		mutate func(*Provider)
		want   []string // substrings of the error; none: valid
	}{
		{name: "private_key_jwt valid", base: jwtP},
		{name: "private_key_jwt EC and issuer audience", base: jwtP, mutate: func(p *Provider) {
			p.PrivateKeyFile, p.Issuer, p.AssertionAudience = writeKey(t, keys["ES384"]), "https://idp.example", AudienceIssuer
		}},
		{name: "private_key_jwt without a key file", base: jwtP, mutate: func(p *Provider) { p.PrivateKeyFile = "" },
			want: []string{"private_key_file is required with private_key_jwt"}},
		{name: "private_key_jwt missing file", base: jwtP, mutate: func(p *Provider) { p.PrivateKeyFile = filepath.Join(dir, "none.pem") },
			want: []string{"private_key_file: cannot read", "no such file"}},
		{name: "private_key_jwt not a key", base: jwtP, mutate: func(p *Provider) { p.PrivateKeyFile = garbage },
			want: []string{"private_key_file:", "no PEM private key found"}},
		{name: "private_key_jwt encrypted key", base: jwtP, mutate: func(p *Provider) { p.PrivateKeyFile = encrypted },
			want: []string{"encrypted private keys are not supported"}},
		{name: "private_key_jwt short RSA key", base: jwtP, mutate: func(p *Provider) { p.PrivateKeyFile = writeKey(t, small) },
			want: []string{"RSA key of 1024 bits"}},
		{name: "private_key_jwt P-224", base: jwtP, mutate: func(p *Provider) { p.PrivateKeyFile = writeKey(t, p224) },
			want: []string{"unsupported ECDSA curve"}},
		{name: "private_key_jwt without kid", base: jwtP, mutate: func(p *Provider) { p.KeyID = "" },
			want: []string{"key_id is required with private_key_jwt"}},
		{name: "private_key_jwt kid with a space", base: jwtP, mutate: func(p *Provider) { p.KeyID = "my key" },
			want: []string{"key_id must be printable ASCII without spaces"}},
		{name: "private_key_jwt kid too long", base: jwtP, mutate: func(p *Provider) { p.KeyID = strings.Repeat("k", 257) },
			want: []string{"key_id is longer than 256 bytes"}},
		{name: "private_key_jwt with a secret", base: jwtP, mutate: func(p *Provider) { p.ClientSecret = clientSecret },
			want: []string{"client_secret must not be set with private_key_jwt"}},
		{name: "private_key_jwt issuer audience without issuer", base: jwtP, mutate: func(p *Provider) { p.AssertionAudience = AudienceIssuer },
			want: []string{"assertion_audience: issuer needs the provider's issuer"}},
		{name: "private_key_jwt unknown audience", base: jwtP, mutate: func(p *Provider) { p.AssertionAudience = "both" },
			want: []string{`assertion_audience must be "token_endpoint" or "issuer"`}},
		{name: "tls_client_auth valid with ca_file", base: tlsP, mutate: func(p *Provider) { p.CAFile = caFile }},
		{name: "tls_client_auth without files", base: tlsP, mutate: func(p *Provider) { p.ClientCertFile, p.ClientKeyFile = "", "" },
			want: []string{"client_cert_file and client_key_file are required with tls_client_auth"}},
		{name: "tls_client_auth without key", base: tlsP, mutate: func(p *Provider) { p.ClientKeyFile = "" },
			want: []string{"client_cert_file and client_key_file are required"}},
		{name: "tls_client_auth key of another certificate", base: tlsP, mutate: func(p *Provider) { p.ClientKeyFile = otherKey },
			want: []string{"client_cert_file:", "does not match the certificate"}},
		{name: "tls_client_auth certificate not PEM", base: tlsP, mutate: func(p *Provider) { p.ClientCertFile = garbage },
			want: []string{"client_cert_file:", "no PEM certificate found"}},
		{name: "tls_client_auth with a secret", base: tlsP, mutate: func(p *Provider) { p.ClientSecret = clientSecret },
			want: []string{"client_secret must not be set with tls_client_auth"}},
		{name: "settings of another method", base: secretP, mutate: func(p *Provider) {
			p.PrivateKeyFile, p.KeyID, p.ClientCertFile, p.ClientKeyFile = jwtP.PrivateKeyFile, testKID, cert, key
		}, want: []string{"private_key_file is used only with token_endpoint_auth private_key_jwt", "key_id is used only with",
			"client_cert_file is used only with token_endpoint_auth tls_client_auth", "client_key_file is used only with"}},
		{name: "ca_file missing", base: secretP, mutate: func(p *Provider) { p.CAFile = filepath.Join(dir, "none.pem") },
			want: []string{"ca_file: CA file", "no such file"}},
		{name: "ca_file not PEM", base: secretP, mutate: func(p *Provider) { p.CAFile = garbage },
			want: []string{"ca_file:", "no PEM certificate found"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.base
			if tc.mutate != nil {
				tc.mutate(&p)
			}
			err := p.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				if _, err := New(map[string]Provider{"idp": p}); err != nil {
					t.Fatalf("New = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			assertNoSecrets(t, err)
			if strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("error %q quotes a file", err)
			}
		})
	}
}

// A custom transport cannot be given the provider's TLS settings.
func TestTLSSettingsNeedHTTPTransport(t *testing.T) {
	as := newAuthServer(t, TLSClientAuth)
	_, err := New(map[string]Provider{"idp": as.provider(t)}, WithHTTPClient(&http.Client{Transport: &countingTransport{base: http.DefaultTransport}}))
	if err == nil || !strings.Contains(err.Error(), "*http.Transport") {
		t.Fatalf("New = %v, want the transport refused", err)
	}
}

func TestAssertionAlgorithm(t *testing.T) {
	for alg, key := range signingKeys(t) {
		got, err := AssertionAlgorithm(key)
		if err != nil || string(got) != alg {
			t.Errorf("AssertionAlgorithm(%s key) = %q, %v", alg, got, err)
		}
	}
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	if got, _ := AssertionAlgorithm(ed); got != jose.EdDSA {
		t.Errorf("Ed25519: %q", got)
	}
	e521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if got, _ := AssertionAlgorithm(e521); got != jose.ES512 {
		t.Errorf("P-521: %q", got)
	}
	// The jti is fresh for each assertion, and never the same twice.
	seen := map[string]bool{}
	p := &provider{method: PrivateKeyJWT, config: newClient(t, "https://idp.example/token", nil).providers["idp"].config}
	signer, err := loadSigner(writeKey(t, signingKeys(t)["ES256"]), testKID)
	if err != nil {
		t.Fatal(err)
	}
	p.creds = &credentials{signer: signer}
	for range 100 {
		form, err := p.authForm("https://idp.example/token", "", now())
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.ParseSigned(form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		var c jwt.Claims
		if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
			t.Fatal(err)
		}
		if seen[c.ID] || len(c.ID) < 16 {
			t.Fatalf("jti %q repeated or short", c.ID)
		}
		seen[c.ID] = true
	}
}
