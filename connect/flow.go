package connect

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/tokencrypt"
	"github.com/extauthz/extauthz/upstreamtoken"
)

// The flow's callback paths, under the public URL. Register
// {public URL}/connect/login as a redirect URI of the login client at the
// primary authorization server, and {public URL}/connect/callback as one of
// extauthz's client at every provider.
const (
	PathLoginCallback    = PathConnect + "/login"
	PathProviderCallback = PathConnect + "/callback"
)

// Login is the client with which the flow signs the browser in at the
// primary authorization server (the issuer of the callers' JWTs):
// OpenID Connect, authorization code with PKCE S256, state and nonce.
type Login struct {
	// Issuer is the server's issuer URL: its endpoints are found by
	// discovery, and the ID token's iss must equal it.
	Issuer string
	// ClientID and ClientSecret are the login client's credentials; the ID
	// token's aud must contain ClientID.
	ClientID     string
	ClientSecret string
	// SecretInBody sends the secret in the token request's body
	// (client_secret_post) rather than in the Authorization header
	// (client_secret_basic, the default). It is never detected by trying.
	SecretInBody bool
	// Scopes are requested besides openid, which is always requested.
	Scopes []string
}

// Provider is what the flow needs of an upstream provider to send the
// browser there and check what comes back. The code exchange at the
// provider's token endpoint is the Exchanger's.
type Provider struct {
	// AuthorizationURL is the provider's authorization endpoint. It may be
	// empty for an OIDC provider (Issuer set) when Options.Endpoints is
	// set: the endpoint is then asked of it on each use.
	AuthorizationURL string
	// ClientID is extauthz's client ID at the provider.
	ClientID string
	// Scopes are the scopes requested (space-separated in the request);
	// for an OIDC provider, openid is added when missing.
	Scopes []string
	// AuthParams are extra parameters of the authorization request, such as
	// Google's access_type=offline and prompt=consent. They may not set the
	// protocol's own parameters (NewHandler refuses them).
	AuthParams map[string]string
	// Issuer, when set, makes the provider an OpenID Connect one: the
	// request carries a nonce, the token response must carry an ID token,
	// and its signature (keys by discovery from Issuer), iss (Issuer), aud
	// (ClientID), exp and nonce are verified; its sub becomes the row's
	// upstream subject.
	Issuer string
}

// Exchanger redeems an authorization code at a provider's token endpoint,
// with the PKCE verifier and the redirect URI the code was issued for,
// authenticating as the provider's configuration says. It returns the
// tokens with the ID token, if any, in Tokens.IDToken; an error wrapping
// upstreamtoken.ErrUpstreamUnavailable is a passing failure, any other a
// refusal. Errors carry no token.
type Exchanger interface {
	Exchange(ctx context.Context, provider, code, redirectURI, codeVerifier string) (store.Tokens, error)
}

// Endpoints finds the authorization endpoint of a provider configured
// without one (by its issuer's discovery document). An error wrapping
// upstreamtoken.ErrUpstreamUnavailable means the provider cannot be reached
// now; any error ends the flow on the "unavailable" page.
type Endpoints interface {
	AuthorizationEndpoint(ctx context.Context, provider string) (string, error)
}

// Sessions reads a session's rows and writes one: the sealed store
// (store/encrypted over store/postgres) is one.
type Sessions interface {
	GetSession(ctx context.Context, sessionID string) ([]store.Row, error)
	Put(ctx context.Context, row store.Row) error
}

// Options configure NewHandler. Tickets, Keys, PublicURL, Login,
// Exchanger and Sessions are required.
type Options struct {
	// PublicURL is connect.public_url: https, or http on a loopback host
	// (development and tests; see DevCookieName). The handler serves the
	// flow's paths under its path.
	PublicURL string
	// Tickets opens and redeems the links' tickets.
	Tickets *Tickets
	// Keys seals the flow cookie (purpose FlowPurpose); the tickets'
	// keyring serves.
	Keys *tokencrypt.Keyring
	// Login signs the browser in at the primary authorization server.
	Login Login
	// Providers are the providers accounts can be linked at, by name.
	Providers map[string]Provider
	// Exchanger redeems the providers' codes.
	Exchanger Exchanger
	// Endpoints finds the authorization endpoints of the OIDC providers
	// configured without one. Nil: every provider needs its
	// AuthorizationURL.
	Endpoints Endpoints
	// Sessions is where a linked account's tokens are stored.
	Sessions Sessions
	// ReturnURL, when set, is linked from the success page ("Go back").
	ReturnURL string
	// HTTPClient talks to the primary authorization server and to the
	// OIDC providers' discovery and key sets. Nil means a client with a
	// 30 s time-out.
	HTTPClient *http.Client
	// Now is the clock (ID tokens' exp, the cookie's life). Nil means
	// time.Now.
	Now func() time.Time
	// Logger receives one line per flow that ends, with hashes of the
	// session and the ticket's ID, never a token. Nil discards.
	Logger *slog.Logger
}

// Handler serves the connect flow on listen.connect:
//
//   - GET {public URL}/connect?ticket=... opens the ticket (without
//     redeeming it) and sends the browser to sign in at the primary
//     authorization server;
//   - GET {public URL}/connect/login is the sign-in's callback: the code is
//     exchanged, the ID token verified, and its sub must be the ticket's
//     subject; then the browser goes to the provider;
//   - GET {public URL}/connect/callback is the provider's callback: the
//     ticket is redeemed (once), the code exchanged, the ID token verified
//     for an OIDC provider, and the row stored, bound to the ticket's
//     subject and client ID, unless the session's rows are bound to
//     another.
//
// The state of a flow lives in one sealed cookie, so any replica serves
// any step. Every outcome is a plain page (see securityHeaders); a failure
// stores nothing. It is safe for concurrent use.
type Handler struct {
	opts     Options
	base     string
	basePath string
	jar      cookieJar

	mu        sync.Mutex
	providers map[string]*oidc.Provider // by issuer, once discovered
}

// ProtocolParam reports whether name is a parameter of the authorization
// request that the flow sets itself, which Provider.AuthParams may not
// set.
func ProtocolParam(name string) bool { return slices.Contains(protocolParams, name) }

// protocolParams are the authorization request's parameters that the flow
// sets itself and AuthParams may not override.
var protocolParams = []string{"response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
	"code_challenge", "code_challenge_method", "request", "request_uri", "response_mode"}

// NewHandler checks opts and returns the flow's handler. It does no network
// I/O: the primary authorization server and the OIDC providers are
// discovered on first use, and again after a failure.
func NewHandler(opts Options) (*Handler, error) {
	base, u, err := parsePublicURL(opts.PublicURL)
	if err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	var errs []error
	if opts.Tickets == nil || opts.Keys == nil || opts.Exchanger == nil || opts.Sessions == nil {
		errs = append(errs, errors.New("connect: Tickets, Keys, Exchanger and Sessions are required"))
	}
	if !isHTTPURL(opts.Login.Issuer) || opts.Login.ClientID == "" {
		errs = append(errs, errors.New("connect: the login needs an http(s) issuer and a client ID"))
	}
	for name, p := range opts.Providers {
		discovered := p.AuthorizationURL == "" && p.Issuer != "" && opts.Endpoints != nil
		if (!discovered && !isHTTPURL(p.AuthorizationURL)) || p.ClientID == "" || (p.Issuer != "" && !isHTTPURL(p.Issuer)) {
			errs = append(errs, fmt.Errorf("connect: provider %q needs an http(s) authorization URL (or an issuer and Options.Endpoints), a client ID, and an http(s) issuer if any", name))
		}
		for k := range p.AuthParams {
			if ProtocolParam(k) {
				errs = append(errs, fmt.Errorf("connect: provider %q: the authorization parameter %q is the flow's own", name, k))
			}
		}
	}
	jar, err := newCookieJar(opts.Keys, u, opts.Now)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &Handler{opts: opts, base: base, basePath: u.EscapedPath(), jar: jar, providers: map[string]*oidc.Provider{}}, nil
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// ServeHTTP implements http.Handler. Only GET and HEAD are served; other
// paths are 404.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		securityHeaders(w.Header())
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch r.URL.EscapedPath() {
	case h.basePath + PathConnect:
		h.start(w, r)
	case h.basePath + PathLoginCallback:
		h.loginCallback(w, r)
	case h.basePath + PathProviderCallback:
		h.providerCallback(w, r)
	default:
		securityHeaders(w.Header())
		http.NotFound(w, r)
	}
}

// flowLog is what the log line of a flow names: never a token, a ticket
// or a session ID.
type flowLog struct {
	ticketID string
	session  string
	provider string
}

func (l flowLog) attrs() []any {
	var a []any
	if l.ticketID != "" {
		a = append(a, "ticket_id", l.ticketID)
	}
	if l.session != "" {
		a = append(a, "session", upstreamtoken.SessionHash(l.session))
	}
	if l.provider != "" {
		a = append(a, "provider", l.provider)
	}
	return a
}

func logOf(tk Ticket) flowLog {
	return flowLog{ticketID: tk.ID, session: tk.SessionID, provider: tk.Provider}
}

// fail ends a flow on f's page, clears the flow cookie and logs the
// reason with cause (which must carry no secret).
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, f failure, l flowLog, cause error) {
	attrs := append([]any{"reason", f.Reason, "status", f.Status}, l.attrs()...)
	if cause != nil {
		attrs = append(attrs, "error", cause.Error())
	}
	level := slog.LevelInfo
	if f.Status >= 500 {
		level = slog.LevelWarn
	}
	h.opts.Logger.Log(r.Context(), level, "connect failed", attrs...)
	h.jar.clear(w)
	render(w, f.Status, page{Title: f.Title, Message: f.Message, Hint: freshStart})
}

// ticketFailure maps an error of Open or Redeem to its page.
func ticketFailure(err error) failure {
	switch {
	case errors.Is(err, ErrTicketExpired):
		return failTicketExpired
	case errors.Is(err, ErrTicketUsed):
		return failTicketUsed
	case errors.Is(err, ErrTicketForeign), errors.Is(err, ErrTicketTampered):
		return failTicketInvalid
	case errors.Is(err, store.ErrUnavailable):
		return failUnavailable
	default:
		return failInternal
	}
}

// redirect sends the browser to target with 303, uncached.
func redirect(w http.ResponseWriter, r *http.Request, target string) {
	securityHeaders(w.Header())
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// authURL returns req's endpoint with the parameters of req and f.
func authURL(req authRequest, f flowState) (string, error) {
	u, err := url.Parse(req.endpoint)
	if err != nil {
		return "", err
	}
	q := u.Query()
	for k, v := range req.extra {
		q.Set(k, v)
	}
	q.Set("response_type", "code")
	q.Set("client_id", req.clientID)
	q.Set("redirect_uri", req.redirectURI)
	if len(req.scopes) > 0 {
		q.Set("scope", strings.Join(req.scopes, " "))
	}
	q.Set("state", f.State)
	if f.Nonce != "" {
		q.Set("nonce", f.Nonce)
	}
	q.Set("code_challenge", challengeS256(f.Verifier))
	q.Set("code_challenge_method", "S256")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// loginScopes are the login's scopes: openid first, then the configured
// ones.
func (h *Handler) loginScopes() []string {
	scopes := []string{oidc.ScopeOpenID}
	for _, s := range h.opts.Login.Scopes {
		if !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	return scopes
}

// start serves GET /connect?ticket=...
func (h *Handler) start(w http.ResponseWriter, r *http.Request) {
	ticket := r.URL.Query().Get("ticket")
	if ticket == "" {
		h.fail(w, r, failNoTicket, flowLog{}, nil)
		return
	}
	tk, _, l, as, ok := h.openForLogin(w, r, ticket)
	if !ok {
		return
	}
	h.sendTo(w, r, l, stageLogin, ticket, minTime(tk.ExpiresAt, h.opts.Now().Add(flowTTL)), authRequest{
		endpoint: as.Endpoint().AuthURL, clientID: h.opts.Login.ClientID, redirectURI: h.base + PathLoginCallback,
		scopes: h.loginScopes(), nonce: true,
	})
}

// authRequest is an authorization request the flow sends the browser with.
type authRequest struct {
	endpoint, clientID, redirectURI string
	scopes                          []string
	extra                           map[string]string
	nonce                           bool
}

// sendTo starts stage of the flow: a new flow state (state, PKCE verifier,
// and a nonce when req asks for one) in the cookie, and the browser sent
// to req's endpoint with it.
func (h *Handler) sendTo(w http.ResponseWriter, r *http.Request, l flowLog, stage, ticket string, expires time.Time, req authRequest) {
	f, err := newFlow(stage, ticket, expires, req.nonce)
	var target string
	if err == nil {
		target, err = authURL(req, f)
	}
	if err == nil {
		err = h.jar.set(w, f)
	}
	if err != nil {
		h.fail(w, r, failInternal, l, err)
		return
	}
	redirect(w, r, target)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// errorCode matches an OAuth error code worth repeating in a log.
var errorCode = regexp.MustCompile(`^[a-z_]{1,64}$`)

// callbackFlow reads the flow cookie for a callback of stage and checks the
// callback's state against it; then it reports an error answer of the
// server (denied is the failure for access_denied, other the failure for any
// other error). ok is false when the flow ended on a failure page.
func (h *Handler) callbackFlow(w http.ResponseWriter, r *http.Request, stage string, denied, other failure) (flowState, bool) {
	q := r.URL.Query()
	f, err := h.jar.get(r)
	if err != nil || f.Stage != stage {
		h.fail(w, r, failNoFlow, flowLog{}, nil)
		return flowState{}, false
	}
	if !f.stateMatches(q.Get("state")) {
		h.fail(w, r, failStateMismatch, flowLog{}, nil)
		return flowState{}, false
	}
	if code := q.Get("error"); code != "" {
		fl := other
		if code == "access_denied" {
			fl = denied
		}
		if !errorCode.MatchString(code) {
			code = "(not a code)"
		}
		h.fail(w, r, fl, flowLog{}, fmt.Errorf("the server answered error=%s", code))
		return flowState{}, false
	}
	if q.Get("code") == "" {
		h.fail(w, r, other, flowLog{}, errors.New("the callback carries neither a code nor an error"))
		return flowState{}, false
	}
	return f, true
}

// providerOf takes the outcome of opening or redeeming the flow's ticket
// and returns the ticket's provider and what logs name; ok is false when
// the flow ended on a failure page (a ticket refused, or a provider connect
// does not know).
func (h *Handler) providerOf(w http.ResponseWriter, r *http.Request, tk Ticket, err error) (Provider, flowLog, bool) {
	if err != nil {
		h.fail(w, r, ticketFailure(err), flowLog{}, err)
		return Provider{}, flowLog{}, false
	}
	l := logOf(tk)
	p, ok := h.opts.Providers[tk.Provider]
	if !ok {
		h.fail(w, r, failUnknownProvider, l, nil)
	}
	return p, l, ok
}

// openForLogin opens ticket, without redeeming it, and finds the primary
// authorization server: what the flow's start and the login's callback
// need. ok is false when the flow ended on a failure page.
func (h *Handler) openForLogin(w http.ResponseWriter, r *http.Request, ticket string) (Ticket, Provider, flowLog, *oidc.Provider, bool) {
	tk, err := h.opts.Tickets.Open(ticket)
	p, l, ok := h.providerOf(w, r, tk, err)
	if !ok {
		return Ticket{}, Provider{}, l, nil, false
	}
	as, err := h.discover(r.Context(), h.opts.Login.Issuer)
	if err != nil {
		h.fail(w, r, failUnavailable, l, err)
		return Ticket{}, Provider{}, l, nil, false
	}
	return tk, p, l, as, true
}

// loginCallback serves GET /connect/login: the primary authorization
// server's answer.
func (h *Handler) loginCallback(w http.ResponseWriter, r *http.Request) {
	f, ok := h.callbackFlow(w, r, stageLogin, failLoginDenied, failLoginError)
	if !ok {
		return
	}
	tk, p, l, as, ok := h.openForLogin(w, r, f.Ticket)
	if !ok {
		return
	}
	style := oauth2.AuthStyleInHeader
	if h.opts.Login.SecretInBody {
		style = oauth2.AuthStyleInParams
	}
	endpoint := as.Endpoint()
	endpoint.AuthStyle = style
	cfg := oauth2.Config{ClientID: h.opts.Login.ClientID, ClientSecret: h.opts.Login.ClientSecret,
		Endpoint: endpoint, RedirectURL: h.base + PathLoginCallback}
	tok, err := cfg.Exchange(oidc.ClientContext(r.Context(), h.opts.HTTPClient), r.URL.Query().Get("code"), oauth2.VerifierOption(f.Verifier))
	if err != nil {
		var refused *oauth2.RetrieveError
		if errors.As(err, &refused) {
			// The response body may say anything: log the code only.
			code := refused.ErrorCode
			if !errorCode.MatchString(code) {
				code = "(none)"
			}
			h.fail(w, r, failLoginExchange, l, fmt.Errorf("token endpoint refused the code: HTTP %d, error=%s", refused.Response.StatusCode, code))
			return
		}
		h.fail(w, r, failUnavailable, l, errors.New("token endpoint unreachable"))
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	id, err := h.verify(r.Context(), h.opts.Login.Issuer, h.opts.Login.ClientID, raw, f.Nonce)
	if err != nil {
		h.fail(w, r, verifyFailure(err, failLoginIDToken), l, err)
		return
	}
	if subtle.ConstantTimeCompare([]byte(id.Subject), []byte(tk.Subject)) != 1 {
		h.fail(w, r, failWrongUser, l, nil)
		return
	}

	providerEndpoint := p.AuthorizationURL
	if providerEndpoint == "" {
		if providerEndpoint, err = h.opts.Endpoints.AuthorizationEndpoint(r.Context(), tk.Provider); err != nil {
			h.fail(w, r, failUnavailable, l, err)
			return
		}
	}
	scopes := p.Scopes
	if p.Issuer != "" && !slices.Contains(scopes, oidc.ScopeOpenID) {
		scopes = append([]string{oidc.ScopeOpenID}, scopes...)
	}
	h.sendTo(w, r, l, stageProvider, f.Ticket, f.Expires, authRequest{
		endpoint: providerEndpoint, clientID: p.ClientID, redirectURI: h.base + PathProviderCallback,
		scopes: scopes, extra: p.AuthParams, nonce: p.Issuer != "",
	})
}

// providerCallback serves GET /connect/callback: the provider's answer.
func (h *Handler) providerCallback(w http.ResponseWriter, r *http.Request) {
	f, ok := h.callbackFlow(w, r, stageProvider, failProviderDenied, failProviderError)
	if !ok {
		return
	}
	// Redeem first: a ticket that was used once never reaches the
	// provider's token endpoint again.
	tk, err := h.opts.Tickets.Redeem(r.Context(), f.Ticket)
	p, l, ok := h.providerOf(w, r, tk, err)
	if !ok {
		return
	}
	tokens, err := h.opts.Exchanger.Exchange(r.Context(), tk.Provider, r.URL.Query().Get("code"), h.base+PathProviderCallback, f.Verifier)
	switch {
	case errors.Is(err, upstreamtoken.ErrUpstreamUnavailable):
		h.fail(w, r, failUnavailable, l, err)
		return
	case err != nil:
		h.fail(w, r, failProviderExchange, l, err)
		return
	case tokens.Check() != nil:
		h.fail(w, r, failProviderExchange, l, errors.New("the token response has no access token"))
		return
	}
	var upstreamSubject, account string
	if p.Issuer != "" {
		id, err := h.verify(r.Context(), p.Issuer, p.ClientID, tokens.IDToken, f.Nonce)
		if err != nil {
			h.fail(w, r, verifyFailure(err, failProviderIDToken), l, err)
			return
		}
		upstreamSubject, account = id.Subject, accountName(id)
	}

	rows, err := h.opts.Sessions.GetSession(r.Context(), tk.SessionID)
	if err != nil {
		h.fail(w, r, storeFailure(err), l, err)
		return
	}
	var sessionExpires time.Time
	for _, row := range rows {
		if row.Subject != tk.Subject || row.ClientID != tk.ClientID {
			h.fail(w, r, failBinding, l, errors.New("the session's rows are bound to another subject or client"))
			return
		}
		if row.SessionExpiresAt.After(sessionExpires) {
			sessionExpires = row.SessionExpiresAt
		}
	}
	row := store.Row{SessionID: tk.SessionID, Provider: tk.Provider, Tokens: tokens, Subject: tk.Subject,
		ClientID: tk.ClientID, UpstreamSubject: upstreamSubject, SessionExpiresAt: sessionExpires}
	if err := h.opts.Sessions.Put(r.Context(), row); err != nil {
		h.fail(w, r, storeFailure(err), l, err)
		return
	}
	h.opts.Logger.InfoContext(r.Context(), "connect linked an account", l.attrs()...)
	h.jar.clear(w)
	msg := "Your " + tk.Provider + " account is now linked."
	if account != "" {
		msg = "Your " + tk.Provider + " account " + account + " is now linked."
	}
	render(w, http.StatusOK, page{Title: "Account linked", Message: msg,
		Hint: "You can close this page and go back to the application: its next request uses the linked account.",
		Back: h.opts.ReturnURL})
}

// storeFailure maps a store error to its page.
func storeFailure(err error) failure {
	if errors.Is(err, store.ErrUnavailable) {
		return failUnavailable
	}
	return failInternal
}

// verifyFailure maps an error of verify: the issuer unreachable, else
// refused.
func verifyFailure(err error, refused failure) failure {
	if errors.Is(err, upstreamtoken.ErrUpstreamUnavailable) {
		return failUnavailable
	}
	return refused
}

// accountName is how the success page names the linked account: the ID
// token's preferred_username, email or name, else its sub.
func accountName(id *oidc.IDToken) string {
	var c struct {
		PreferredUsername string `json:"preferred_username"`
		Email             string `json:"email"`
		Name              string `json:"name"`
	}
	_ = id.Claims(&c)
	for _, s := range []string{c.PreferredUsername, c.Email, c.Name} {
		if s != "" {
			return s
		}
	}
	return id.Subject
}
