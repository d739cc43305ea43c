// Package oauthclient is the OAuth 2.0 client that talks to upstream
// identity providers' token endpoints, using golang.org/x/oauth2. It redeems
// refresh tokens with the refresh_token grant (RFC 6749 section 6) and
// revokes tokens (RFC 7009, see Revoke and RevokeSession).
//
// A Client knows a fixed set of providers by name. Each call to Refresh sends
// exactly one token request: the client never caches tokens, never probes the
// provider's preferred client authentication style (it is configured
// explicitly, see AuthStyle) and never follows redirects, so a refresh token is
// never redeemed twice by one call.
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

// AuthStyle is how the client authenticates to a provider's token endpoint.
// The zero value is not a valid style: every provider must name one, because
// auto-detection (trying one style and then the other) would send a refresh
// token twice.
type AuthStyle int

const (
	// AuthStyleHeader sends client_id and client_secret in an HTTP Basic
	// Authorization header (RFC 6749 section 2.3.1, the recommended way).
	AuthStyleHeader AuthStyle = iota + 1
	// AuthStyleParams sends client_id and client_secret as form fields of
	// the request body.
	AuthStyleParams
)

// ParseAuthStyle parses the configuration spelling of an AuthStyle: "header"
// or "params".
func ParseAuthStyle(s string) (AuthStyle, error) {
	switch s {
	case "header":
		return AuthStyleHeader, nil
	case "params":
		return AuthStyleParams, nil
	}
	return 0, fmt.Errorf("oauthclient: invalid auth style %q: want \"header\" or \"params\"", s)
}

// String returns "header" or "params", the spelling ParseAuthStyle accepts.
func (s AuthStyle) String() string {
	switch s {
	case AuthStyleHeader:
		return "header"
	case AuthStyleParams:
		return "params"
	}
	return "AuthStyle(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText implements encoding.TextMarshaler.
func (s AuthStyle) MarshalText() ([]byte, error) {
	if _, ok := s.oauth2(); !ok {
		return nil, fmt.Errorf("oauthclient: invalid auth style %d", int(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseAuthStyle, so
// that configuration decoders accept "header" and "params".
func (s *AuthStyle) UnmarshalText(text []byte) error {
	v, err := ParseAuthStyle(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// oauth2 maps s to x/oauth2's style. It never yields AuthStyleAutoDetect.
func (s AuthStyle) oauth2() (oauth2.AuthStyle, bool) {
	switch s {
	case AuthStyleHeader:
		return oauth2.AuthStyleInHeader, true
	case AuthStyleParams:
		return oauth2.AuthStyleInParams, true
	}
	return 0, false
}

// Provider is one upstream identity provider's token endpoint and our client
// registration there.
type Provider struct {
	// TokenURL is the absolute http or https URL of the token endpoint.
	TokenURL string
	// ClientID is our client's ID at the provider. Required.
	ClientID string
	// ClientSecret is our client's secret. It may be empty for a public
	// client.
	ClientSecret string
	// AuthStyle says how the client credentials are sent. Required.
	AuthStyle AuthStyle
	// Scopes, when set, are sent space-separated as the "scope" parameter of
	// every refresh request. When empty no scope is sent and the provider
	// keeps the scopes of the original grant.
	Scopes []string
	// RevocationURL is the absolute http or https URL of the provider's
	// token revocation endpoint (RFC 7009). Empty: the provider revokes no
	// tokens (Revoke returns ErrRevocationUnsupported).
	RevocationURL string
}

// Validate reports every problem of p, joined, each a *setting.Error named
// by the configuration key of its field: token_url (an absolute http or
// https URL without credentials), revocation_url (optional; the same rules),
// client_id (required), auth_style (required: it is never auto-detected)
// and scopes (RFC 6749 scope-tokens). No problem quotes a URL, which may
// carry a secret.
func (p Provider) Validate() error {
	errs := []error{checkEndpoint("token_url", p.TokenURL)}
	if p.RevocationURL != "" {
		errs = append(errs, checkEndpoint("revocation_url", p.RevocationURL))
	}
	if p.ClientID == "" {
		errs = append(errs, setting.Errorf("client_id", " is required"))
	}
	if _, ok := p.AuthStyle.oauth2(); !ok {
		errs = append(errs, setting.Errorf("auth_style", ` must be "header" or "params" (it is never auto-detected)`))
	}
	errs = append(errs, oauthscope.Check("scopes", p.Scopes))
	return errors.Join(errs...)
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
}

// WithHTTPClient makes the Client send token and revocation requests with hc (its
// Transport, Timeout and Jar). The Client wraps hc's Transport to add the
// configured scopes and to enforce one request per refresh, and never follows
// redirects whatever hc.CheckRedirect says. A nil hc selects the default: a
// client on http.DefaultTransport with a DefaultHTTPTimeout time-out.
func WithHTTPClient(hc *http.Client) Option {
	return func(o *options) { o.httpClient = hc }
}

// WithNow sets the clock used to turn expires_in into an expiry time and an
// HTTP-date Retry-After into a duration. A nil now selects time.Now.
func WithNow(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// Client redeems and revokes tokens at a fixed set of providers. It is safe for
// concurrent use. It does not coordinate concurrent refreshes of the same
// token: callers that must redeem a token at most once serialise Refresh
// calls themselves.
type Client struct {
	providers map[string]*provider
	now       func() time.Time
}

type provider struct {
	config        *oauth2.Config
	http          *http.Client
	style         AuthStyle
	revocationURL string
}

// New returns a Client for providers, keyed by provider name. It validates
// every provider (see Provider.Validate) and reports all problems at once.
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
	c := &Client{providers: make(map[string]*provider, len(providers)), now: o.now}
	for name, p := range providers {
		if name == "" {
			errs = append(errs, errors.New("oauthclient: provider name is empty"))
			continue
		}
		if err := p.Validate(); err != nil {
			errs = append(errs, setting.Prefixed(fmt.Sprintf("oauthclient: provider %q: ", name), err))
			continue
		}
		style, _ := p.AuthStyle.oauth2()
		tokenURL, _ := url.Parse(p.TokenURL)
		hc := &http.Client{
			Transport: &transport{
				base:     baseTransport,
				tokenURL: tokenURL,
				scope:    strings.Join(p.Scopes, " "),
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Jar:           base.Jar,
			Timeout:       base.Timeout,
		}
		c.providers[name] = &provider{
			config: &oauth2.Config{
				ClientID:     p.ClientID,
				ClientSecret: p.ClientSecret,
				Endpoint:     oauth2.Endpoint{TokenURL: p.TokenURL, AuthStyle: style},
			},
			http:          hc,
			style:         p.AuthStyle,
			revocationURL: p.RevocationURL,
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
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
	if err := ctx.Err(); err != nil {
		return store.Tokens{}, c.classify(ctx, refreshOp, providerName, &attempt{}, err)
	}

	a := &attempt{}
	rctx := context.WithValue(ctx, oauth2.HTTPClient, p.http)
	rctx = context.WithValue(rctx, attemptKey{}, a)
	// An empty access token is never valid, so the token source always
	// sends the refresh request.
	tok, err := p.config.TokenSource(rctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
	if err != nil {
		return store.Tokens{}, c.classify(ctx, refreshOp, providerName, a, err)
	}

	out := store.Tokens{
		AccessToken:  tok.AccessToken,
		RefreshToken: tok.RefreshToken,
		TokenType:    tok.Type(),
	}
	if out.RefreshToken == "" {
		out.RefreshToken = refreshToken
	}
	if id, ok := tok.Extra("id_token").(string); ok {
		out.IDToken = id
	}
	if n := expiresIn(tok); n > 0 {
		out.ExpiresAt = c.now().Add(time.Duration(n) * time.Second)
	}
	return out, nil
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
