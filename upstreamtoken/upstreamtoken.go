// Package upstreamtoken is the library API of extauthz: it hands out a
// session's valid upstream identity-provider credentials, refreshing expired
// access tokens on the way.
//
// Errors are sentinels tested with errors.Is. ErrSessionNotFound,
// ErrInvalidBinding, ErrNoRefreshToken and ErrRefreshFailed are permanent: the
// user must authenticate again. ErrUpstreamUnavailable is transient: the store or
// the provider could not answer now, and the same call may succeed later.
package upstreamtoken

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// TokenSessionIDClaimKey is the JWT claim that carries the token session ID.
const TokenSessionIDClaimKey = "tsid"

var (
	// ErrSessionNotFound means no upstream tokens are stored for the session
	// (or, for one provider, none for that provider).
	ErrSessionNotFound = errors.New("upstreamtoken: session not found")
	// ErrSessionExpired means the session's rows are there but its
	// session_expires_at has passed: the user must authenticate again. It
	// wraps ErrSessionNotFound: an expired session stands for no session.
	ErrSessionExpired = fmt.Errorf("%w: the session expired", ErrSessionNotFound)
	// ErrNoRefreshToken means the access token has expired and cannot be
	// renewed: there is no refresh token, or no refresher.
	ErrNoRefreshToken = errors.New("upstreamtoken: access token expired and no refresh token")
	// ErrRefreshFailed means the provider refused the refresh token for good
	// (invalid_grant and the like). The user must authenticate again.
	ErrRefreshFailed = errors.New("upstreamtoken: refresh refused by provider")
	// ErrInvalidBinding means the stored session belongs to another subject
	// or client than the caller's.
	ErrInvalidBinding = errors.New("upstreamtoken: session binding mismatch")
	// ErrUpstreamUnavailable means the store or the provider could not answer
	// (unreachable, 5xx, 429, time-out) or the provider rejected our own client
	// configuration. It is transient: retry later; the user is not logged out.
	ErrUpstreamUnavailable = errors.New("upstreamtoken: upstream unavailable")
	// ErrProviderMisconfigured means the provider rejected our own client
	// registration (invalid_client and the like). A Refresher returns it
	// together with ErrUpstreamUnavailable: the user's refresh token is not
	// to blame, but an operator must fix the configuration.
	ErrProviderMisconfigured = errors.New("upstreamtoken: provider rejected our client configuration")
	// ErrUnknownRefusal means the provider refused one session's refresh
	// with an OAuth error code that is not known to mean either "this grant
	// is no good" or "your client is wrong". A Refresher returns it together
	// with ErrUpstreamUnavailable: the row is kept and that session alone
	// pauses its refreshes, since nothing says the provider or our
	// configuration is at fault for its other users.
	ErrUnknownRefusal = errors.New("upstreamtoken: provider refused the refresh with an unknown error code")
)

// UpstreamCredential is what a backend needs to call the provider's APIs on
// the user's behalf.
type UpstreamCredential struct {
	// AccessToken is valid (not expired within the configured skew) when
	// returned.
	AccessToken string
	// IDToken may be empty, and may have expired: callers that need it check
	// its exp themselves.
	IDToken string
}

// Service returns one provider's valid credential for a session.
type Service interface {
	// GetValidTokens returns the session's credential at providerName,
	// refreshing it first if it has expired. An unknown session or provider is
	// ErrSessionNotFound. The session's binding is checked only when the
	// implementation is given the caller's identity (InProcessService: a
	// context from WithBinding); a caller that serves requests must give it.
	GetValidTokens(ctx context.Context, sessionID, providerName string) (*UpstreamCredential, error)
}

// TokenReader returns all of a session's credentials.
type TokenReader interface {
	// GetAllUpstreamCredentials returns a valid credential for every provider
	// of the session, refreshing those that have expired. Providers whose
	// token could not be refreshed for good are left out of creds and named in
	// failed. An unknown session yields an empty map, nil failed and nil
	// error. When the store cannot be read, creds and failed are nil and the
	// error wraps ErrUpstreamUnavailable. When some providers' refresh failed
	// transiently (provider unreachable, paused), they are left out of creds and
	// failed and the error wraps ErrUpstreamUnavailable, while creds and
	// failed still hold the other providers' outcomes: a caller may use the
	// credentials it got and retry later for the rest. The session's binding
	// is checked only when the implementation is given the caller's identity
	// (InProcessService: a context from WithBinding).
	GetAllUpstreamCredentials(ctx context.Context, sessionID string) (creds map[string]UpstreamCredential, failed []string, err error)
}

// RetryAfter returns how long a caller should wait before retrying after a
// transient failure: the longest hint carried by err, at least one second. A
// hint is an error in err's tree with a RetryAfter() time.Duration method;
// such an error speaks for everything it wraps (the pause it reports already
// took its causes' hints into account), so the tree below it is not searched.
func RetryAfter(err error) time.Duration {
	best := time.Second
	walk(err, func(e error) bool {
		h, ok := e.(interface{ RetryAfter() time.Duration })
		if ok && h.RetryAfter() > best {
			best = h.RetryAfter()
		}
		return !ok
	})
	return best
}

// walk calls fn for err and, while fn returns true, for what err wraps.
func walk(err error, fn func(error) bool) {
	if err == nil || !fn(err) {
		return
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		walk(u.Unwrap(), fn)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			walk(e, fn)
		}
	}
}
