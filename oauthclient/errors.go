package oauthclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/oauth2"

	"github.com/extauthz/extauthz/upstreamtoken"
)

// MaxRetryAfter caps the Retry-After hint taken from a provider's response.
const MaxRetryAfter = time.Hour

// Error is a failed refresh or revocation. Its message names only the
// provider, the HTTP status, the OAuth error code and a short cause: never a
// token, the client secret or the response body.
//
// A failed refresh wraps (errors.Is) these sentinels, by who is to blame:
//
//   - the session's grant: upstreamtoken.ErrRefreshFailed, permanent, when
//     the provider refused this session's refresh token or its consent:
//     OAuth error invalid_grant, invalid_request (how Dex and others answer
//     the reuse of a rotated refresh token), invalid_scope (the user narrowed
//     consent), interaction_required, consent_required, login_required (how
//     Microsoft Entra answers under conditional access) or bad_refresh_token
//     (GitHub, with HTTP 200);
//   - our client registration: upstreamtoken.ErrUpstreamUnavailable and
//     upstreamtoken.ErrProviderMisconfigured: invalid_client,
//     unauthorized_client, unsupported_grant_type;
//   - nobody known: upstreamtoken.ErrUpstreamUnavailable and
//     upstreamtoken.ErrUnknownRefusal for a 4xx (or 2xx) answer with any
//     other well-formed OAuth error code;
//   - the provider's health: upstreamtoken.ErrUpstreamUnavailable alone for
//     everything else: HTTP 5xx or 429 (whatever the error code),
//     temporarily_unavailable, server_error, slow_down, a non-2xx
//     answer without a well-formed code, a redirect, a 2xx answer without
//     access_token or that cannot be parsed, a time-out, a cancelled context
//     and network failures. A context's error (context.DeadlineExceeded,
//     context.Canceled) is wrapped as well.
//
// A failed revocation is classified the same way, except that the codes that
// refuse a session's grant wrap ErrRevocationRefused instead of
// upstreamtoken.ErrRefreshFailed, that unsupported_token_type (in a non-5xx,
// non-429 answer) wraps ErrUnsupportedTokenType alone, and that every 2xx
// answer is a success (see Client.Revoke).
type Error struct {
	// Provider is the provider's name as configured.
	Provider string
	// Status is the HTTP status of the provider's answer, 0 if there was
	// none.
	Status int
	// Code is the OAuth error code the provider sent, "" if none (or if it
	// was not a well-formed code, which Cause then says).
	Code string
	// Cause is a short description of a failure without an OAuth error code,
	// such as "timeout" or "connection refused"; it may be empty.
	Cause string
	// Retry is the provider's Retry-After hint (capped at MaxRetryAfter), 0
	// if none.
	Retry time.Duration

	summary string
	errs    []error
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "oauthclient: provider %q: %s", e.Provider, e.summary)
	var details []string
	if e.Status != 0 {
		details = append(details, "HTTP "+strconv.Itoa(e.Status))
	}
	if e.Code != "" {
		details = append(details, "OAuth error "+strconv.Quote(e.Code))
	}
	if e.Cause != "" {
		details = append(details, e.Cause)
	}
	if e.Retry > 0 {
		details = append(details, "retry after "+e.Retry.String())
	}
	if len(details) > 0 {
		b.WriteString(" (")
		b.WriteString(strings.Join(details, ", "))
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns the sentinels the error stands for (see Error).
func (e *Error) Unwrap() []error { return e.errs }

// HTTPStatus returns the HTTP status of the provider's answer, 0 if there was
// none.
func (e *Error) HTTPStatus() int { return e.Status }

// OAuthErrorCode returns the well-formed OAuth error code the provider sent,
// "" if none.
func (e *Error) OAuthErrorCode() string { return e.Code }

// RetryAfter returns the provider's Retry-After hint, 0 if it sent none. It
// is the hook upstreamtoken.RetryAfter looks for.
func (e *Error) RetryAfter() time.Duration { return e.Retry }

var (
	// grantCodes mean that this session's grant is no good: the user must
	// authenticate again.
	grantCodes = map[string]bool{
		"invalid_grant":        true,
		"invalid_request":      true,
		"invalid_scope":        true,
		"interaction_required": true,
		"consent_required":     true,
		"login_required":       true,
		"bad_refresh_token":    true,
	}
	// clientCodes mean that our client registration is wrong.
	clientCodes = map[string]bool{
		"invalid_client":         true,
		"unauthorized_client":    true,
		"unsupported_grant_type": true,
	}
	// healthCodes mean that the provider cannot serve anyone right now.
	healthCodes = map[string]bool{
		"temporarily_unavailable": true,
		"server_error":            true,
		"slow_down":               true,
	}
)

// operation is what a failed request was for: its words in messages and
// the sentinel of a refusal by a grant code.
type operation struct {
	// name is "refresh" or "revocation".
	name string
	// refused is wrapped when the provider answers with one of grantCodes,
	// refusedSummary is then the message.
	refused        error
	refusedSummary string
	// tokenTypeCodes are further OAuth error codes with their sentinel;
	// unsupportedSummary is the message of such an answer.
	tokenTypeCodes     map[string]error
	unsupportedSummary string
}

var refreshOp = &operation{
	name:           "refresh",
	refused:        upstreamtoken.ErrRefreshFailed,
	refusedSummary: "refresh token refused, re-authentication required",
}

// classify turns a failed token request into an *Error. ctx is the caller's
// context and a what the transport saw of the exchange.
func (c *Client) classify(ctx context.Context, op *operation, providerName string, a *attempt, err error) *Error {
	status, header := a.response()
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		status, header = re.Response.StatusCode, re.Response.Header
	}
	e := c.newError(providerName, status, header)
	if re != nil {
		// The provider answered with a non-2xx status, or with an OAuth
		// error code in a 2xx body. Neither re.Error() nor re.Body may be
		// used: they carry the response body.
		return e.answered(op, re.ErrorCode)
	}
	return e.failed(ctx, err)
}

// newError starts the *Error of an exchange with providerName whose answer,
// if any, had status and header.
func (c *Client) newError(providerName string, status int, header http.Header) *Error {
	e := &Error{Provider: providerName, Status: status}
	if header != nil {
		e.Retry = parseRetryAfter(header.Get("Retry-After"), c.now())
	}
	return e
}

func (e *Error) unavailable(summary string, extra ...error) *Error {
	e.summary = summary
	e.errs = append([]error{upstreamtoken.ErrUpstreamUnavailable}, extra...)
	return e
}

// answered classifies an answer of the provider that is a failure for op:
// a non-2xx status (e.Status), or code, the OAuth error code of the body
// ("" if none).
func (e *Error) answered(op *operation, code string) *Error {
	status := e.Status
	if validErrorCode(code) {
		e.Code = code
	} else if code != "" {
		e.Cause = "malformed OAuth error code"
	}
	lc := strings.ToLower(code)
	switch {
	case status >= 500 || status == http.StatusTooManyRequests:
		// An overloaded or failing server's verdict on the token is
		// not trusted: never log a user out on a 5xx.
		return e.unavailable("provider unavailable")
	case grantCodes[lc]:
		e.summary = op.refusedSummary
		e.errs = []error{op.refused}
		return e
	case op.tokenTypeCodes[lc] != nil:
		e.summary = op.unsupportedSummary
		e.errs = []error{op.tokenTypeCodes[lc]}
		return e
	case clientCodes[lc]:
		return e.unavailable("provider rejected our client configuration", upstreamtoken.ErrProviderMisconfigured)
	case e.Code != "" && !healthCodes[lc] && (status < 300 || status >= 400):
		return e.unavailable("provider refused this "+op.name+" with an unknown error code", upstreamtoken.ErrUnknownRefusal)
	case code == "" && status >= 300 && status < 400:
		e.Cause = "redirect not followed"
	}
	return e.unavailable("provider unavailable")
}

// failed classifies a request that got no usable answer: err is what the
// HTTP client (or x/oauth2) returned, ctx the caller's context.
func (e *Error) failed(ctx context.Context, err error) *Error {
	status := e.Status
	var ctxErr error
	switch {
	case errors.Is(err, errSecondRequest):
		e.Cause = "refused to send a second request"
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		e.Cause, ctxErr = "timeout", context.DeadlineExceeded
	case errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled):
		e.Cause, ctxErr = "canceled", context.Canceled
	case isTimeout(err):
		e.Cause = "timeout"
	case status >= 200 && status < 300:
		// x/oauth2 read the answer but found no token in it. Its messages
		// are matched only to pick a cause; the classification does not
		// depend on them.
		msg := err.Error()
		switch {
		case strings.Contains(msg, "missing access_token"):
			e.Cause = "response without access_token"
		case strings.Contains(msg, "cannot parse"):
			e.Cause = "unparseable response"
		default:
			e.Cause = "cannot read response"
		}
	case status != 0:
		e.Cause = "unexpected response"
	default:
		e.Cause = networkCause(err)
	}
	if ctxErr != nil {
		return e.unavailable("provider unavailable", ctxErr)
	}
	return e.unavailable("provider unavailable")
}

// validErrorCode reports whether code is safe to repeat in a message: 1 to
// 40 ASCII letters and underscores. Every code in RFC 6749 and its
// extensions has this form; anything else (digits, punctuation, length) might
// be a piece of the body or a token, so it is not repeated.
func validErrorCode(code string) bool {
	if code == "" || len(code) > 40 {
		return false
	}
	for i := 0; i < len(code); i++ {
		c := code[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_') {
			return false
		}
	}
	return true
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// networkCause names a transport failure without repeating its message (which
// would contain the token URL).
func networkCause(err error) string {
	var (
		dnsErr   *net.DNSError
		certErr  *tls.CertificateVerificationError
		hostErr  x509.HostnameError
		authErr  x509.UnknownAuthorityError
		invErr   x509.CertificateInvalidError
		recErr   tls.RecordHeaderError
		alertErr tls.AlertError
	)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	case errors.As(err, &dnsErr):
		return "DNS lookup failed"
	case errors.As(err, &certErr), errors.As(err, &hostErr), errors.As(err, &authErr),
		errors.As(err, &invErr), errors.As(err, &recErr), errors.As(err, &alertErr):
		return "TLS failure"
	case errors.Is(err, errAddForm):
		return "cannot add fields to the request"
	}
	return "network error"
}

// parseRetryAfter parses a Retry-After header value (RFC 9110 section 10.2.3):
// delay-seconds or an HTTP-date, relative to now. It returns 0 for an absent,
// malformed or past value and caps the result at MaxRetryAfter.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseUint(v, 10, 64); err == nil {
		if n > uint64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		return time.Duration(n) * time.Second
	} else if errors.Is(err, strconv.ErrRange) {
		return MaxRetryAfter
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	d := t.Sub(now)
	if d <= 0 {
		return 0
	}
	if d >= MaxRetryAfter {
		return MaxRetryAfter
	}
	// Round up to whole seconds, the header's resolution.
	return (d + time.Second - 1).Truncate(time.Second)
}
