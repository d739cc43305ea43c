// Package oauthclient is the OAuth 2.0 client that talks to upstream
// identity providers' token endpoints, using golang.org/x/oauth2. It redeems
// refresh tokens with the refresh_token grant (RFC 6749 section 6),
// exchanges authorization codes (RFC 6749 section 4.1.3 with PKCE, RFC 7636:
// see Exchange) and revokes tokens (RFC 7009, see Revoke and RevokeSession).
// Each provider authenticates our client in the way it is configured for
// (AuthMethod: client_secret_basic, client_secret_post, private_key_jwt or
// tls_client_auth), the same for all three; its endpoints are configured by
// hand or taken from its OpenID Connect discovery document (WithDiscovery).
//
// A Client knows a fixed set of providers by name. Each call to Refresh or
// Exchange sends exactly one token request: the client never caches tokens,
// never probes the provider's preferred client authentication method (it is
// configured explicitly, see AuthMethod) and never follows redirects, so a
// refresh token or a code is never redeemed twice by one call.
//
// Failures are *Error values, classified by the provider's OAuth error code
// and HTTP status. Test them with errors.Is against
// upstreamtoken.ErrRefreshFailed (the provider refused the refresh token for
// good: the user must authenticate again), upstreamtoken.ErrUpstreamUnavailable
// (transient: retry later), upstreamtoken.ErrProviderMisconfigured
// (transient too, but our own client configuration is wrong: alert an
// operator) and upstreamtoken.ErrUnknownRefusal (transient, for the one
// session whose refresh the provider refused with a code nobody knows). Error messages carry only
// the provider's name, the HTTP status, the OAuth error code and a short
// cause: never a token, the client secret or the provider's response body.
// The package does not log.
package oauthclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/extauthz/extauthz/discovery"
	"github.com/extauthz/extauthz/internal/oauthscope"
	"github.com/extauthz/extauthz/internal/setting"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/upstreamtoken"
)

// DefaultHTTPTimeout bounds a token request when the caller does not supply
// its own *http.Client (WithHTTPClient). Callers should still bound each
// Refresh with a context deadline.
const DefaultHTTPTimeout = 30 * time.Second

// ErrUnknownProvider means Refresh was asked for a provider the Client was not
// configured with. It is a fault of the caller's configuration, not of the
// provider.
var ErrUnknownProvider = errors.New("oauthclient: unknown provider")

// Provider is one upstream identity provider's endpoints and our client
// registration there.
type Provider struct {
	// Issuer, when set, is the provider's OpenID Connect issuer: its
	// discovery document supplies AuthorizationURL, TokenURL and
	// RevocationURL where they are empty (see WithDiscovery), and it is
	// the aud of AudienceIssuer assertions.
	Issuer string
	// AuthorizationURL is the absolute http or https URL of the
	// authorization endpoint, where the connect flow sends the browser. It
	// may be empty; this package sends no request there.
	AuthorizationURL string
	// TokenURL is the absolute http or https URL of the token endpoint.
	// Required unless Issuer is set.
	TokenURL string
	// RevocationURL is the absolute http or https URL of the provider's
	// token revocation endpoint (RFC 7009). Empty, and none discovered: the
	// provider revokes no tokens (Revoke returns ErrRevocationUnsupported).
	RevocationURL string
	// ClientID is our client's ID at the provider. Required.
	ClientID string
	// ClientSecret is our client's secret with ClientSecretBasic and
	// ClientSecretPost; it may be empty for a public client. It must be
	// empty with the other methods.
	ClientSecret string
	// AuthMethod says how the client authenticates. Required.
	AuthMethod AuthMethod
	// PrivateKeyFile is the PEM file (PKCS #8, PKCS #1 or SEC 1, not
	// encrypted) of the key that signs client assertions; KeyID is their
	// kid and AssertionAudience their aud (default AudienceTokenEndpoint).
	// PrivateKeyJWT only, which requires the file and the kid. The file is
	// read once, by New.
	PrivateKeyFile    string
	KeyID             string
	AssertionAudience Audience
	// ClientCertFile and ClientKeyFile are the PEM client certificate
	// chain and its key. TLSClientAuth only, which requires both. They are
	// read again when they change, as the listeners' certificates are.
	ClientCertFile string
	ClientKeyFile  string
	// CAFile, when set, is a PEM file of CA certificates trusted, beyond
	// the system's roots, for this provider's endpoints (a private IdP).
	CAFile string
	// Scopes, when set, are sent space-separated as the "scope" parameter of
	// every refresh request. When empty no scope is sent and the provider
	// keeps the scopes of the original grant.
	Scopes []string
}

// Validate reports every problem of p, joined, each a *setting.Error named
// by the configuration key of its field: token_url (required unless issuer
// is set), authorization_url, revocation_url and issuer (absolute http or
// https URLs without credentials), client_id (required), the
// authentication method and the settings it requires (token_endpoint_auth:
// never auto-detected; private_key_file and key_id for private_key_jwt,
// client_cert_file and client_key_file for tls_client_auth, each file
// readable and parsed; a client_secret only for the client_secret methods;
// no setting of another method), ca_file, and scopes (RFC 6749
// scope-tokens). No problem quotes a URL, which may carry a secret, nor a
// file's contents.
func (p Provider) Validate() error {
	_, err := p.check()
	return err
}

// check is Validate, returning the loaded credentials when there is no
// problem.
func (p Provider) check() (*credentials, error) {
	var errs []error
	switch {
	case p.TokenURL != "":
		errs = append(errs, checkEndpoint("token_url", p.TokenURL))
	case p.Issuer == "":
		errs = append(errs, setting.Errorf("token_url", " is required (or issuer, whose discovery document names it)"))
	}
	for _, ep := range []struct{ key, url string }{
		{"issuer", p.Issuer}, {"authorization_url", p.AuthorizationURL}, {"revocation_url", p.RevocationURL},
	} {
		if ep.url != "" {
			errs = append(errs, checkEndpoint(ep.key, ep.url))
		}
	}
	if p.ClientID == "" {
		errs = append(errs, setting.Errorf("client_id", " is required"))
	}
	errs = append(errs, oauthscope.Check("scopes", p.Scopes))
	creds, err := loadCredentials(p)
	errs = append(errs, err)
	return creds, errors.Join(errs...)
}

// checkEndpoint reports, under key, why raw is not an absolute http(s) URL
// without credentials, if it is not.
func checkEndpoint(key, raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return setting.Errorf(key, " must be an absolute http(s) URL")
	case u.User != nil:
		return setting.Errorf(key, " must not carry credentials: use client_id and client_secret")
	}
	return nil
}

// Option configures a Client.
type Option func(*options)

type options struct {
	httpClient *http.Client
	now        func() time.Time
	discovery  Discovery
}

// WithHTTPClient makes the Client send token and revocation requests with hc (its
// Transport, Timeout and Jar). The Client wraps hc's Transport to add the
// configured scopes and client assertions and to enforce one request per
// call, and never follows redirects whatever hc.CheckRedirect says. A
// provider with a ca_file or tls_client_auth gets a clone of the Transport,
// which must then be an *http.Transport, with its roots and certificate. A
// nil hc selects the default: a client on http.DefaultTransport with a
// DefaultHTTPTimeout time-out.
func WithHTTPClient(hc *http.Client) Option {
	return func(o *options) { o.httpClient = hc }
}

// WithNow sets the clock used to turn expires_in into an expiry time, an
// HTTP-date Retry-After into a duration, and to date client assertions. A
// nil now selects time.Now.
func WithNow(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// Discovery finds a provider's discovery document by provider name;
// *discovery.Cache is one.
type Discovery interface {
	Lookup(ctx context.Context, provider string) (discovery.Metadata, error)
}

// WithDiscovery makes the Client take the endpoints that a provider with an
// Issuer leaves empty from d, keyed by the same provider names, so that one
// document serves the ID-token verifier too. Without it the Client keeps a
// discovery.Cache of its own over the providers' transports (plain http
// only to loopback hosts), on its clock.
func WithDiscovery(d Discovery) Option {
	return func(o *options) { o.discovery = d }
}

// Client redeems, exchanges and revokes tokens at a fixed set of providers.
// It is safe for concurrent use. It does not coordinate concurrent refreshes
// of the same token: callers that must redeem a token at most once
// serialise Refresh calls themselves.
type Client struct {
	providers map[string]*provider
	now       func() time.Time
	discovery Discovery
}

type provider struct {
	// config holds the client ID, secret and x/oauth2 auth style; each
	// request is sent with a copy naming the resolved token URL.
	config   oauth2.Config
	method   AuthMethod
	audience Audience
	creds    *credentials
	http     *http.Client
	scope    string // space-separated; empty: none
	// configured holds the endpoints set by hand, and the issuer.
	configured Endpoints
}

// New returns a Client for providers, keyed by provider name. It validates
// every provider (see Provider.Validate), loads their key and certificate
// files and reports all problems at once. It does no network I/O: discovery
// happens on first use (or ahead of it, by the shared discovery.Cache).
func New(providers map[string]Provider, opts ...Option) (*Client, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.now == nil {
		o.now = time.Now
	}
	base := o.httpClient
	if base == nil {
		base = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	baseTransport := base.Transport
	if baseTransport == nil {
		baseTransport = http.DefaultTransport
	}

	var errs []error
	c := &Client{providers: make(map[string]*provider, len(providers)), now: o.now, discovery: o.discovery}
	sources := map[string]discovery.Source{}
	for name, p := range providers {
		if name == "" {
			errs = append(errs, errors.New("oauthclient: provider name is empty"))
			continue
		}
		prefix := fmt.Sprintf("oauthclient: provider %q: ", name)
		creds, err := p.check()
		if err != nil {
			errs = append(errs, setting.Prefixed(prefix, err))
			continue
		}
		tr, err := creds.httpTransport(baseTransport)
		if err != nil {
			errs = append(errs, errors.New(prefix+err.Error()))
			continue
		}
		if p.Issuer != "" {
			sources[name] = discovery.Source{Issuer: p.Issuer, HTTPClient: &http.Client{Transport: tr, Timeout: base.Timeout}}
		}
		hc := &http.Client{
			Transport:     &transport{base: tr},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Jar:           base.Jar,
			Timeout:       base.Timeout,
		}
		c.providers[name] = &provider{
			config: oauth2.Config{
				ClientID:     p.ClientID,
				ClientSecret: p.ClientSecret,
				Endpoint:     oauth2.Endpoint{AuthStyle: p.AuthMethod.oauth2Style()},
			},
			method:   p.AuthMethod,
			audience: p.AssertionAudience,
			creds:    creds,
			http:     hc,
			scope:    strings.Join(p.Scopes, " "),
			configured: Endpoints{Issuer: p.Issuer, AuthorizationURL: p.AuthorizationURL, TokenURL: p.TokenURL,
				RevocationURL: p.RevocationURL},
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if c.discovery == nil {
		c.discovery = discovery.New(sources, discovery.Options{Now: o.now})
	}
	return c, nil
}

// Refresh redeems refreshToken at the named provider with exactly one
// refresh_token grant request and returns the provider's new tokens. It
// always asks the provider: deciding whether a token needs refreshing (with
// whatever skew) is the caller's business.
//
// On success, RefreshToken is the rotated refresh token, or refreshToken if
// the provider issued none; IDToken is the response's id_token, or empty;
// TokenType is the provider's token_type, "Bearer" if it named none;
// ExpiresAt is the clock's now plus expires_in, or the zero time when the
// provider sent no (positive) expires_in.
//
// An unknown provider is ErrUnknownProvider and an empty refreshToken is
// upstreamtoken.ErrNoRefreshToken; neither sends a request. Every other
// failure is an *Error: see its documentation for the classification.
func (c *Client) Refresh(ctx context.Context, providerName, refreshToken string) (store.Tokens, error) {
	p, ok := c.providers[providerName]
	if !ok {
		return store.Tokens{}, fmt.Errorf("%w %q", ErrUnknownProvider, providerName)
	}
	if refreshToken == "" {
		return store.Tokens{}, fmt.Errorf("oauthclient: provider %q: %w", providerName, upstreamtoken.ErrNoRefreshToken)
	}
	conf, a, err := c.tokenRequest(ctx, refreshOp, providerName, p)
	if err != nil {
		return store.Tokens{}, err
	}
	if p.scope != "" {
		a.form.Set("scope", p.scope)
	}
	rctx := context.WithValue(ctx, oauth2.HTTPClient, p.http)
	rctx = context.WithValue(rctx, attemptKey{}, a)
	// An empty access token is never valid, so the token source always
	// sends the refresh request.
	tok, err := conf.TokenSource(rctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
	if err != nil {
		return store.Tokens{}, c.classify(ctx, refreshOp, providerName, a, err)
	}
	out := c.tokens(tok)
	if out.RefreshToken == "" {
		out.RefreshToken = refreshToken
	}
	return out, nil
}

// tokenRequest prepares one request to p's token endpoint for op: the
// x/oauth2 configuration naming the resolved token URL, and the attempt
// whose form carries the client authentication fields. A cancelled ctx, a
// failed discovery or an assertion that cannot be signed is an *Error, and
// no request is sent.
func (c *Client) tokenRequest(ctx context.Context, op *operation, name string, p *provider) (*oauth2.Config, *attempt, error) {
	a := &attempt{form: url.Values{}}
	if err := ctx.Err(); err != nil {
		return nil, nil, c.classify(ctx, op, name, a, err)
	}
	ep, err := c.resolve(ctx, op, name, p, needToken)
	if err != nil {
		return nil, nil, err
	}
	form, err := p.authForm(ep.TokenURL, ep.Issuer, c.now())
	if err != nil {
		return nil, nil, c.signFailure(op, name)
	}
	for k, v := range form {
		a.form[k] = v
	}
	conf := p.config
	conf.Endpoint.TokenURL = ep.TokenURL
	return &conf, a, nil
}

// tokens converts a successful token response: IDToken is the response's
// id_token, or empty; TokenType is the provider's token_type, "Bearer" if it
// named none; ExpiresAt is the clock's now plus expires_in, or the zero time
// when the provider sent no (positive) expires_in.
func (c *Client) tokens(tok *oauth2.Token) store.Tokens {
	out := store.Tokens{
		AccessToken:  tok.AccessToken,
		RefreshToken: tok.RefreshToken,
		TokenType:    tok.Type(),
	}
	if id, ok := tok.Extra("id_token").(string); ok {
		out.IDToken = id
	}
	if n := expiresIn(tok); n > 0 {
		out.ExpiresAt = c.now().Add(time.Duration(n) * time.Second)
	}
	return out
}

// maxExpiresIn caps expires_in (in seconds) so that the expiry time cannot
// overflow; x/oauth2 caps it the same way.
const maxExpiresIn = 1<<31 - 1

// expiresIn returns the response's expires_in in seconds, or 0 if it had none
// or a non-positive one. x/oauth2 computes Expiry from its own clock, so the
// value is read back from the response to apply the Client's clock.
func expiresIn(tok *oauth2.Token) int64 {
	n := tok.ExpiresIn // JSON responses
	if n == 0 {
		// Form-encoded responses: x/oauth2 sets only Expiry.
		switch v := tok.Extra("expires_in").(type) {
		case int64:
			n = v
		case float64:
			n = int64(v)
		case string:
			n, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	if n <= 0 {
		return 0
	}
	return min(n, maxExpiresIn)
}
