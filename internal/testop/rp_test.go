package testop_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/extauthz/extauthz/internal/testop"
)

// relyingParty is a tiny confidential client of a testop provider, as a
// web application would be: /login sends the browser to the provider
// (authorization code with PKCE S256, state, nonce), /callback exchanges the
// code with golang.org/x/oauth2, verifies the ID token (discovery, JWKS,
// issuer, audience, nonce) and shows the user's sub.
type relyingParty struct {
	URL      string
	config   oauth2.Config
	verifier *oidc.IDTokenVerifier
	ctx      context.Context // carries the HTTP client for the provider
	// exchangeOpts, when set, adds parameters to the code exchange (a
	// private_key_jwt assertion).
	exchangeOpts func() []oauth2.AuthCodeOption

	mu      sync.Mutex
	pending map[string]pendingLogin // by state
	tokens  []*oauth2.Token         // every token response, oldest first
}

type pendingLogin struct{ verifier, nonce string }

// newRelyingParty serves a relying party until t ends; its redirect URI is
// URL+"/callback". Call use before the first sign-in.
func newRelyingParty(t *testing.T) *relyingParty {
	t.Helper()
	rp := &relyingParty{pending: map[string]pendingLogin{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", rp.login)
	mux.HandleFunc("GET /callback", rp.callback)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	rp.URL = srv.URL
	return rp
}

// use makes the RP a client of o, found by discovery, that authenticates
// with the secret in the given style.
func (rp *relyingParty) use(t *testing.T, o *testop.OP, clientID, secret string, style oauth2.AuthStyle) {
	t.Helper()
	rp.ctx = oidc.ClientContext(context.Background(), o.HTTPClient())
	ctx, cancel := context.WithTimeout(rp.ctx, time.Minute)
	defer cancel()
	provider, err := oidc.NewProvider(ctx, o.Issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	rp.verifier = provider.Verifier(&oidc.Config{ClientID: clientID})
	endpoint := provider.Endpoint()
	endpoint.AuthStyle = style
	rp.config = oauth2.Config{
		ClientID:     clientID,
		ClientSecret: secret,
		Endpoint:     endpoint,
		RedirectURL:  rp.URL + "/callback",
		Scopes:       []string{oidc.ScopeOpenID, "profile", "email", oidc.ScopeOfflineAccess},
	}
}

func randomString() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (rp *relyingParty) login(w http.ResponseWriter, r *http.Request) {
	state, p := randomString(), pendingLogin{verifier: oauth2.GenerateVerifier(), nonce: randomString()}
	rp.mu.Lock()
	rp.pending[state] = p
	rp.mu.Unlock()
	http.Redirect(w, r, rp.config.AuthCodeURL(state, oauth2.S256ChallengeOption(p.verifier), oidc.Nonce(p.nonce)), http.StatusFound)
}

// callback answers 200 "signed in as sub=..." or 403 "sign-in failed: ...".
func (rp *relyingParty) callback(w http.ResponseWriter, r *http.Request) {
	fail := func(format string, args ...any) {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, "<!doctype html><p>sign-in failed: %s</p>", html.EscapeString(fmt.Sprintf(format, args...)))
	}
	q := r.URL.Query()
	rp.mu.Lock()
	p, ok := rp.pending[q.Get("state")]
	delete(rp.pending, q.Get("state"))
	rp.mu.Unlock()
	if !ok {
		fail("unknown state")
		return
	}
	if e := q.Get("error"); e != "" {
		fail("error=%s", e)
		return
	}
	ctx, cancel := context.WithTimeout(rp.ctx, time.Minute)
	defer cancel()
	opts := []oauth2.AuthCodeOption{oauth2.VerifierOption(p.verifier)}
	if rp.exchangeOpts != nil {
		opts = append(opts, rp.exchangeOpts()...)
	}
	tok, err := rp.config.Exchange(ctx, q.Get("code"), opts...)
	if err != nil {
		fail("code exchange: %v", err)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idToken, err := rp.verifier.Verify(ctx, raw)
	if err != nil {
		fail("ID token: %v", err)
		return
	}
	if idToken.Nonce != p.nonce {
		fail("ID token: wrong nonce")
		return
	}
	var claims struct {
		Email string `json:"email"`
	}
	if err := idToken.Claims(&claims); err != nil {
		fail("ID token claims: %v", err)
		return
	}
	rp.mu.Lock()
	rp.tokens = append(rp.tokens, tok)
	rp.mu.Unlock()
	fmt.Fprintf(w, "<!doctype html><p>signed in as sub=%s email=%s</p>", html.EscapeString(idToken.Subject), html.EscapeString(claims.Email))
}

// lastToken returns the last token response of a successful sign-in.
func (rp *relyingParty) lastToken(t *testing.T) *oauth2.Token {
	t.Helper()
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if len(rp.tokens) == 0 {
		t.Fatal("no sign-in completed")
	}
	return rp.tokens[len(rp.tokens)-1]
}
