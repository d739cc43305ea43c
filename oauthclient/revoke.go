package oauthclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/upstreamtoken"
)

var (
	// ErrRevocationUnsupported means the provider has no revocation_url:
	// its tokens cannot be revoked by this client. No request is sent.
	ErrRevocationUnsupported = errors.New("oauthclient: provider has no revocation endpoint")
	// ErrUnsupportedTokenType means the provider answered the revocation
	// with the OAuth error unsupported_token_type (RFC 7009 section 2.2.1):
	// it does not revoke tokens of the type sent. The token is still valid;
	// the caller may revoke a token of the other type instead.
	ErrUnsupportedTokenType = errors.New("oauthclient: provider does not revoke this token type")
	// ErrRevocationRefused means the provider refused the revocation with
	// an OAuth error code that says the request or the token is no good
	// (invalid_request, invalid_grant and the codes that refuse a refresh
	// for good). Sending the same request again will not help.
	ErrRevocationRefused = errors.New("oauthclient: revocation refused by provider")
	// ErrInvalidRevocation means Revoke was called with an empty token or a
	// token type hint other than HintRefreshToken and HintAccessToken. No
	// request is sent.
	ErrInvalidRevocation = errors.New("oauthclient: empty token or unknown token type hint")
)

// TokenTypeHint is the token_type_hint of a revocation request (RFC 7009
// section 2.1): which kind of token is sent.
type TokenTypeHint string

const (
	// HintRefreshToken sends a refresh token.
	HintRefreshToken TokenTypeHint = "refresh_token"
	// HintAccessToken sends an access token.
	HintAccessToken TokenTypeHint = "access_token"
)

// revokeOp is the classification of failed revocations.
var revokeOp = &operation{
	name:               "revocation",
	refused:            ErrRevocationRefused,
	refusedSummary:     "revocation refused",
	tokenTypeCodes:     map[string]error{"unsupported_token_type": ErrUnsupportedTokenType},
	unsupportedSummary: "provider does not revoke this token type",
}

// maxErrorBody bounds how much of a failed revocation's answer is read to
// find its OAuth error code.
const maxErrorBody = 1 << 20

// Revoke revokes token, of the kind hint names, at the named provider's
// revocation endpoint (RFC 7009) with exactly one request: a form-encoded
// POST of token and token_type_hint, authenticated as the provider's
// refresh requests are. With ClientSecretBasic the client ID and secret go
// form-encoded into an HTTP Basic Authorization header (RFC 6749 section
// 2.3.1); with ClientSecretPost they are the form fields client_id and
// client_secret; with PrivateKeyJWT the form carries client_id and a fresh
// client assertion (whose aud is the token endpoint or the issuer, as for
// the token endpoint: never the revocation URL); with TLSClientAuth it
// carries client_id and the connection presents the client certificate. A
// public client (no client secret) sends client_id in the form and no
// Authorization header, whatever its method. The request goes over the
// HTTP client refreshes use (WithHTTPClient, its time-out), and a redirect
// is not followed. The revocation URL is the one set by hand, else the
// issuer's discovery document's revocation_endpoint.
//
// Revoke returns nil when the provider answers 2xx: the token is revoked,
// or it was already invalid (RFC 7009 section 2.2). Otherwise:
//
//   - ErrUnknownProvider for a provider the Client does not know, and
//     ErrRevocationUnsupported for one without a revocation URL (none set,
//     none discovered); no request is sent, nor for ErrInvalidRevocation;
//   - an *Error wrapping upstreamtoken.ErrUpstreamUnavailable when the
//     revocation URL is to come from discovery and discovery fails;
//   - an *Error wrapping ErrUnsupportedTokenType when the provider does not
//     revoke that type of token (the caller may send the other one);
//   - an *Error wrapping upstreamtoken.ErrUpstreamUnavailable when the
//     provider cannot revoke it now: HTTP 503 (RFC 7009 section 2.2.1;
//     its Retry-After is the *Error's RetryAfter), any 5xx or 429, a
//     time-out, a network failure, a redirect; together with
//     upstreamtoken.ErrProviderMisconfigured when the provider rejects our
//     client registration (invalid_client, unauthorized_client) and with
//     upstreamtoken.ErrUnknownRefusal for an OAuth error code nobody knows;
//   - an *Error wrapping ErrRevocationRefused for the codes that refuse a
//     request or a grant for good (see Error).
//
// As for Refresh, no message carries the token, the client secret or the
// provider's answer.
func (c *Client) Revoke(ctx context.Context, providerName, token string, hint TokenTypeHint) error {
	p, ok := c.providers[providerName]
	unsupported := fmt.Errorf("%w (provider %q)", ErrRevocationUnsupported, providerName)
	switch {
	case !ok:
		return fmt.Errorf("%w %q", ErrUnknownProvider, providerName)
	case p.configured.RevocationURL == "" && p.configured.Issuer == "":
		return unsupported
	case token == "" || (hint != HintRefreshToken && hint != HintAccessToken):
		return fmt.Errorf("%w (provider %q)", ErrInvalidRevocation, providerName)
	}
	a := &attempt{}
	if err := ctx.Err(); err != nil {
		return c.classify(ctx, revokeOp, providerName, a, err)
	}
	n := needRevocation
	if p.method == PrivateKeyJWT && p.audience != AudienceIssuer {
		n |= needToken
	}
	ep, err := c.resolve(ctx, revokeOp, providerName, p, n)
	if err != nil {
		return err
	}
	if ep.RevocationURL == "" {
		return unsupported
	}
	auth, err := p.authForm(ep.TokenURL, ep.Issuer, c.now())
	if err != nil {
		return c.signFailure(revokeOp, providerName)
	}
	resp, err := p.http.Do(p.revocationRequest(context.WithValue(ctx, attemptKey{}, a), ep.RevocationURL, token, hint, auth))
	if err != nil {
		return c.classify(ctx, revokeOp, providerName, a, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// The body of a success says nothing (RFC 7009 section 2.2);
		// reading a little lets the connection be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil
	}
	return c.newError(providerName, resp.StatusCode, resp.Header).answered(revokeOp, errorCode(resp))
}

// revocationRequest builds the revocation request of token to endpoint,
// with auth, the fields of a client assertion (or nil). The URL was checked
// by New or by discovery, so building cannot fail.
func (p *provider) revocationRequest(ctx context.Context, endpoint, token string, hint TokenTypeHint, auth url.Values) *http.Request {
	form := url.Values{"token": {token}, "token_type_hint": {string(hint)}}
	id, secret := p.config.ClientID, p.config.ClientSecret
	basic := p.method == ClientSecretBasic && secret != ""
	if !basic {
		form.Set("client_id", id)
		if secret != "" {
			form.Set("client_secret", secret)
		}
	}
	for k, v := range auth {
		form[k] = v
	}
	body := form.Encode()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if basic {
		// As x/oauth2 does for the token endpoint.
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	return req
}

// errorCode returns the OAuth error code of a failed answer: the "error"
// member of a JSON body, or the "error" field of a form-encoded one (as
// x/oauth2 reads token endpoint answers); "" if there is none.
func errorCode(resp *http.Response) string {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil {
		return ""
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if ct == "application/x-www-form-urlencoded" || ct == "text/plain" {
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return ""
		}
		return v.Get("error")
	}
	var v struct {
		Error any `json:"error"`
	}
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	s, _ := v.Error.(string)
	return s
}

// The kinds of a failed revocation (Revocation.Kind, RevocationKind): short
// fixed words, safe to log and to answer with.
const (
	// KindNotConfigured: the provider has no revocation_url.
	KindNotConfigured = "not_configured"
	// KindUnknownProvider: the row's provider is not configured.
	KindUnknownProvider = "unknown_provider"
	// KindNoToken: the row holds no token to revoke.
	KindNoToken = "no_token"
	// KindUnsupportedTokenType: the provider revokes neither token the row
	// holds.
	KindUnsupportedTokenType = "unsupported_token_type"
	// KindRefused: the provider refused the revocation (an OAuth error
	// code); sending it again will not help.
	KindRefused = "refused"
	// KindMisconfigured: the provider rejected our client registration.
	KindMisconfigured = "misconfigured"
	// KindUnavailable: the provider could not revoke now (5xx, 429,
	// time-out, network); it may succeed later.
	KindUnavailable = "unavailable"
	// KindFailed: any other failure.
	KindFailed = "failed"
)

// RevocationKind names the failure err of Revoke with one of the Kind
// words, "" for nil.
func RevocationKind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrRevocationUnsupported):
		return KindNotConfigured
	case errors.Is(err, ErrUnknownProvider):
		return KindUnknownProvider
	case errors.Is(err, ErrInvalidRevocation):
		return KindNoToken
	case errors.Is(err, ErrUnsupportedTokenType):
		return KindUnsupportedTokenType
	case errors.Is(err, upstreamtoken.ErrProviderMisconfigured):
		return KindMisconfigured
	case errors.Is(err, ErrRevocationRefused), errors.Is(err, upstreamtoken.ErrUnknownRefusal):
		return KindRefused
	case errors.Is(err, upstreamtoken.ErrUpstreamUnavailable):
		return KindUnavailable
	}
	return KindFailed
}

// Revoker revokes one token at a provider; *Client is one.
type Revoker interface {
	Revoke(ctx context.Context, providerName, token string, hint TokenTypeHint) error
}

// Revocation is the outcome of revoking one row's grant at its provider.
// It never holds a token.
type Revocation struct {
	// Provider is the row's provider.
	Provider string
	// Revoked is true when the provider confirmed the revocation (or that
	// the token was already invalid).
	Revoked bool
	// TokenType is the kind of the last token sent, "" if none was sent.
	TokenType TokenTypeHint
	// Kind is "" when Revoked, else the failure's Kind word.
	Kind string
	// RetryAfter is the provider's Retry-After hint of a failure, 0 if
	// none.
	RetryAfter time.Duration
	// Err is the failure, nil when Revoked. Its message carries no token.
	Err error
}

// RevokeSession revokes the grant of each of rows (one session's rows, as
// the store returns them) at its provider, concurrently, and returns one
// Revocation per row, in the order of rows. It sends a row's refresh token
// (hint refresh_token), or its access token when it has no refresh token
// or when the provider answers that it does not revoke refresh tokens
// (unsupported_token_type). A row whose provider has no revocation URL
// sends nothing: its Revocation is not Revoked, of kind KindNotConfigured.
// ctx bounds every request; RevokeSession neither logs nor changes rows.
func RevokeSession(ctx context.Context, r Revoker, rows []store.Row) []Revocation {
	out := make([]Revocation, len(rows))
	var wg sync.WaitGroup
	for i, row := range rows {
		wg.Go(func() { out[i] = revokeRow(ctx, r, row) })
	}
	wg.Wait()
	return out
}

// revokeRow revokes one row's grant (see RevokeSession).
func revokeRow(ctx context.Context, r Revoker, row store.Row) Revocation {
	type try struct {
		token string
		hint  TokenTypeHint
	}
	var tries []try
	if row.RefreshToken != "" {
		tries = append(tries, try{row.RefreshToken, HintRefreshToken})
	}
	if row.AccessToken != "" {
		tries = append(tries, try{row.AccessToken, HintAccessToken})
	}
	res := Revocation{Provider: row.Provider}
	if len(tries) == 0 {
		res.Kind, res.Err = KindNoToken, fmt.Errorf("%w (provider %q)", ErrInvalidRevocation, row.Provider)
		return res
	}
	for _, t := range tries {
		err := r.Revoke(ctx, row.Provider, t.token, t.hint)
		if errors.Is(err, ErrRevocationUnsupported) || errors.Is(err, ErrUnknownProvider) {
			// Nothing was sent.
			return Revocation{Provider: row.Provider, Kind: RevocationKind(err), Err: err}
		}
		res = Revocation{Provider: row.Provider, Revoked: err == nil, TokenType: t.hint, Kind: RevocationKind(err), Err: err}
		var e *Error
		if errors.As(err, &e) {
			res.RetryAfter = e.Retry
		}
		if t.hint != HintRefreshToken || !errors.Is(err, ErrUnsupportedTokenType) {
			break
		}
	}
	return res
}
