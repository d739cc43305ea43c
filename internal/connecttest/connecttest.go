// Package connecttest holds what tests of the connect flow share: a
// loopback listener for the flow's handler (whose public URL must be known
// before the handler is made), a code exchanger over golang.org/x/oauth2
// for a test provider, and the steps of signing in on the test provider's
// pages in a real browser.
package connecttest

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/extauthz/extauthz/internal/browsertest"
	"github.com/extauthz/extauthz/internal/testop"
	"github.com/extauthz/extauthz/store"
)

// Exchanger is a connect.Exchanger for one client at a test provider: it
// redeems codes at TokenURL with the client's secret in the body
// (client_secret_post) or, with InHeader, in the Authorization header
// (client_secret_basic), whatever the provider name.
type Exchanger struct {
	HTTPClient   *http.Client
	TokenURL     string
	ClientID     string
	ClientSecret string
	InHeader     bool
	// Replace, when set, replaces the outcome of each exchange (a test
	// makes the provider's answer wrong with it).
	Replace func(store.Tokens, error) (store.Tokens, error)

	mu    sync.Mutex
	calls int
}

// Exchange implements connect.Exchanger.
func (e *Exchanger) Exchange(ctx context.Context, _, code, redirectURI, verifier string) (store.Tokens, error) {
	e.mu.Lock()
	e.calls++
	e.mu.Unlock()
	style := oauth2.AuthStyleInParams
	if e.InHeader {
		style = oauth2.AuthStyleInHeader
	}
	cfg := oauth2.Config{ClientID: e.ClientID, ClientSecret: e.ClientSecret, RedirectURL: redirectURI,
		Endpoint: oauth2.Endpoint{TokenURL: e.TokenURL, AuthStyle: style}}
	var out store.Tokens
	tok, err := cfg.Exchange(oidc.ClientContext(ctx, e.HTTPClient), code, oauth2.VerifierOption(verifier))
	if err == nil {
		id, _ := tok.Extra("id_token").(string)
		out = store.Tokens{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, IDToken: id,
			TokenType: tok.TokenType, ExpiresAt: tok.Expiry}
	}
	if e.Replace != nil {
		return e.Replace(out, err)
	}
	return out, err
}

// Calls returns how many exchanges were asked for.
func (e *Exchanger) Calls() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls
}

// SignIn signs in on the test provider's form, on page, as user, for the
// client named client, and waits for the consent page; the caller presses
// testop.AllowButton or testop.DenyButton.
func SignIn(page *browsertest.Page, client string, user testop.User) {
	page.WaitText("to continue to " + client)
	page.Fill(testop.UsernameField, user.Username)
	page.Fill(testop.PasswordField, user.Password)
	page.Click(testop.SignInButton)
	page.WaitText(client + " asks for access to the account " + user.Username)
}

// Listen opens a listener on 127.0.0.1 for the flow's handler and returns
// it with the public URL the handler will have: http://127.0.0.1:PORT/.extauthz.
func Listen(t testing.TB) (net.Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln, "http://" + ln.Addr().String() + "/.extauthz"
}

// Serve serves h on ln until t ends.
func Serve(t testing.TB, ln net.Listener, h http.Handler) {
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
}
