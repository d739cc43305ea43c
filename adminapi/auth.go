package adminapi

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/extauthz/extauthz/jwtauth"
)

// Authentication failures. ErrUnauthenticated is answered 401 with a
// Bearer challenge, ErrForbidden 403, ErrAuthUnavailable 503.
var (
	ErrUnauthenticated = errors.New("not authenticated")
	ErrForbidden       = errors.New("not allowed")
	ErrAuthUnavailable = errors.New("authentication cannot be checked now")
)

// errNoCredentials: the request presents neither a token nor a certificate
// (its challenge carries no error code, RFC 6750 section 3.1).
var errNoCredentials = errors.New("no bearer token or client certificate")

// Caller is who made a request: a client of the authorization server
// (its token's sub and client_id) or the identity of its certificate.
type Caller struct {
	Subject     string
	ClientID    string
	Certificate string
}

// String names the caller for audit lines.
func (c Caller) String() string {
	switch {
	case c.Certificate != "":
		return "certificate:" + c.Certificate
	case c.ClientID != "":
		return "client:" + c.ClientID + " sub:" + c.Subject
	}
	return "anonymous"
}

// Authenticator authenticates and authorizes the caller of a request. Its
// errors wrap ErrUnauthenticated, ErrForbidden or ErrAuthUnavailable and
// never hold a token.
type Authenticator interface {
	Authenticate(r *http.Request) (Caller, error)
}

// TokenVerifier verifies a client-credentials token (a jwtauth.Verifier
// configured WithoutSession).
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (jwtauth.Claims, error)
}

// CertificateMatcher tells whether a verified client certificate carries
// an accepted identity, and which (a tlsreload.Identities).
type CertificateMatcher interface {
	Match(cert *x509.Certificate) (string, bool)
}

// Auth accepts a bearer token that Tokens verifies and that carries Scope,
// or a client certificate (verified by the listener's client CA) whose
// identity Certificates accepts. A request with a bearer token is decided
// on the token alone.
type Auth struct {
	// Tokens, when not nil, verifies bearer tokens.
	Tokens TokenVerifier
	// Scope must be among the token's scopes.
	Scope string
	// AllowedClients, when not empty, are the only client IDs whose tokens
	// are accepted.
	AllowedClients []string
	// Certificates, when not nil, authenticates by client certificate.
	Certificates CertificateMatcher
}

// Authenticate implements Authenticator.
func (a Auth) Authenticate(r *http.Request) (Caller, error) {
	values := r.Header.Values("Authorization")
	if len(values) > 1 {
		return Caller{}, fmt.Errorf("%w: Authorization is given more than once", ErrUnauthenticated)
	}
	if len(values) == 1 {
		return a.bearer(r.Context(), values[0])
	}
	if a.Certificates != nil && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.PeerCertificates) > 0 {
		if id, ok := a.Certificates.Match(r.TLS.PeerCertificates[0]); ok {
			return Caller{Certificate: id}, nil
		}
		return Caller{}, fmt.Errorf("%w: the client certificate carries none of the accepted identities", ErrForbidden)
	}
	return Caller{}, fmt.Errorf("%w: %w", ErrUnauthenticated, errNoCredentials)
}

func (a Auth) bearer(ctx context.Context, header string) (Caller, error) {
	if a.Tokens == nil {
		return Caller{}, fmt.Errorf("%w: bearer tokens are not accepted here", ErrUnauthenticated)
	}
	scheme, raw, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || raw == "" {
		return Caller{}, fmt.Errorf("%w: Authorization is not a bearer token", ErrUnauthenticated)
	}
	claims, err := a.Tokens.Verify(ctx, strings.TrimSpace(raw))
	switch {
	case errors.Is(err, jwtauth.ErrKeysUnavailable):
		return Caller{}, fmt.Errorf("%w: the issuer's keys cannot be fetched", ErrAuthUnavailable)
	case err != nil:
		// jwtauth's errors name the failed check, never the token.
		return Caller{}, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	c := Caller{Subject: claims.Subject, ClientID: claims.ClientID}
	if len(a.AllowedClients) > 0 && !slices.Contains(a.AllowedClients, claims.ClientID) {
		return c, fmt.Errorf("%w: client is not among admin.allowed_clients", ErrForbidden)
	}
	if !slices.Contains(claims.Scopes, a.Scope) {
		return c, fmt.Errorf("%w: the token lacks scope %s", ErrForbidden, a.Scope)
	}
	return c, nil
}

// writeAuthError answers an authentication failure and returns its status.
func writeAuthError(w http.ResponseWriter, err error) int {
	switch {
	case errors.Is(err, ErrForbidden):
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope"`)
		return writeProblem(w, problem{Status: http.StatusForbidden, Detail: err.Error()})
	case errors.Is(err, ErrAuthUnavailable):
		w.Header().Set("Retry-After", "5")
		return writeProblem(w, problem{Status: http.StatusServiceUnavailable, Detail: err.Error()})
	}
	if errors.Is(err, errNoCredentials) {
		w.Header().Set("WWW-Authenticate", `Bearer`)
	} else {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	return writeProblem(w, problem{Status: http.StatusUnauthorized, Detail: err.Error()})
}
