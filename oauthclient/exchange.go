package oauthclient

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/oauth2"

	"github.com/extauthz/extauthz/store"
)

var (
	// ErrCodeRefused means the provider refused the authorization code for
	// good (invalid_grant: expired, used already, issued to another client
	// or redirect URI, or a code_verifier that does not match; or another
	// code that refuses a grant, see Error). The flow must start again.
	ErrCodeRefused = errors.New("oauthclient: authorization code refused by provider")
	// ErrInvalidExchange means Exchange was called with an empty code, a
	// redirect URI that is not an absolute http(s) URL, or a code verifier
	// that RFC 7636 section 4.1 does not allow. No request is sent.
	ErrInvalidExchange = errors.New("oauthclient: invalid code exchange")
)

// exchangeOp is the classification of failed code exchanges.
var exchangeOp = &operation{
	name:           "code exchange",
	refused:        ErrCodeRefused,
	refusedSummary: "authorization code refused, start the flow again",
	// GitHub answers a bad or expired code with HTTP 200 and this code.
	tokenTypeCodes:     map[string]error{"bad_verification_code": ErrCodeRefused},
	unsupportedSummary: "authorization code refused, start the flow again",
}

// Exchange redeems an authorization code at the named provider's token
// endpoint (RFC 6749 section 4.1.3) with exactly one authorization_code
// grant request carrying code, redirectURI (the redirect_uri of the
// authorization request, which must be identical) and codeVerifier (PKCE,
// RFC 7636 section 4.5), authenticated as refreshes are. No scope is sent.
//
// On success the tokens are the provider's: RefreshToken may be empty (the
// provider issued none); IDToken is the raw id_token of the response, or
// empty (verifying it, with the flow's nonce, is the caller's business);
// TokenType is the provider's token_type, "Bearer" if it named none;
// ExpiresAt is the clock's now plus expires_in, or the zero time.
//
// An unknown provider is ErrUnknownProvider and bad arguments are
// ErrInvalidExchange; neither sends a request. Every other failure is an
// *Error classified as a refresh's is (see Error), except that the codes
// that refuse a grant wrap ErrCodeRefused rather than
// upstreamtoken.ErrRefreshFailed. Messages carry neither the code, the
// verifier, a token nor the client's secret or assertion.
func (c *Client) Exchange(ctx context.Context, providerName, code, redirectURI, codeVerifier string) (store.Tokens, error) {
	p, ok := c.providers[providerName]
	if !ok {
		return store.Tokens{}, fmt.Errorf("%w %q", ErrUnknownProvider, providerName)
	}
	switch {
	case code == "":
		return store.Tokens{}, fmt.Errorf("%w (provider %q): empty code", ErrInvalidExchange, providerName)
	case checkEndpoint("redirect_uri", redirectURI) != nil:
		return store.Tokens{}, fmt.Errorf("%w (provider %q): redirect URI is not an absolute http(s) URL", ErrInvalidExchange, providerName)
	case !validVerifier(codeVerifier):
		return store.Tokens{}, fmt.Errorf("%w (provider %q): code verifier must be 43 to 128 unreserved characters", ErrInvalidExchange, providerName)
	}
	conf, a, err := c.tokenRequest(ctx, exchangeOp, providerName, p)
	if err != nil {
		return store.Tokens{}, err
	}
	rctx := context.WithValue(ctx, oauth2.HTTPClient, p.http)
	rctx = context.WithValue(rctx, attemptKey{}, a)
	tok, err := conf.Exchange(rctx, code, oauth2.SetAuthURLParam("redirect_uri", redirectURI), oauth2.VerifierOption(codeVerifier))
	if err != nil {
		return store.Tokens{}, c.classify(ctx, exchangeOp, providerName, a, err)
	}
	return c.tokens(tok), nil
}

// validVerifier reports whether v is a PKCE code verifier (RFC 7636
// section 4.1): 43 to 128 characters of A-Z, a-z, 0-9, "-", ".", "_", "~".
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}
