// Package authz makes the ext_authz decision independently of any transport:
// a Request (headers, per-route settings) goes in, a Response (allow with
// headers to set and remove, or a deny with status, headers and body) comes
// out. The gRPC front for Envoy and any HTTP front translate to and from these
// types.
package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/extauthz/extauthz/jwtauth"
	"github.com/extauthz/extauthz/refresh"
	"github.com/extauthz/extauthz/upstreamtoken"
)

// ContextKeyProviders is the per-route context extension naming the
// providers (comma-separated) whose credentials the route needs.
const ContextKeyProviders = "upstream_providers"

// TokenVerifier verifies the caller's bearer JWT. Rejections wrap
// jwtauth.ErrInvalidToken; jwtauth.ErrKeysUnavailable means the verifier
// could not decide.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (jwtauth.Claims, error)
}

// CredentialSource returns a session's valid upstream credentials, checking
// the binding. upstreamtoken.InProcessService implements it.
type CredentialSource interface {
	Lookup(ctx context.Context, sessionID string, binding *upstreamtoken.Binding, providers ...string) (upstreamtoken.Result, error)
}

// Provider says where a provider's credentials go on an allowed request.
type Provider struct {
	// Header receives "Bearer <access token>". Lower-case. Default
	// "authorization".
	Header string
	// IDTokenHeader, when set, receives the raw ID token. Lower-case.
	IDTokenHeader string
}

// Config configures a Decider. Header names must be lower-case. Providers
// may share a header name as long as no route names two of them: such a
// route is refused with 500.
type Config struct {
	Providers        map[string]Provider
	DefaultProviders []string
	// Realm and ResourceMetadata go into WWW-Authenticate on 401 and 403.
	Realm            string
	ResourceMetadata string
}

// Request is what the decision needs from a check request.
type Request struct {
	// Headers are the request headers with lower-case names.
	Headers map[string]string
	// ContextExtensions are the route's settings (Envoy's
	// check_settings.context_extensions).
	ContextExtensions map[string]string
}

// Header is one HTTP header.
type Header struct {
	Name  string
	Value string
}

// Response is the decision.
type Response struct {
	// Allowed requests go on to the backend with Headers set (overwriting any
	// client value) and RemoveHeaders removed. The two never overlap.
	Allowed bool
	// Status is the HTTP status of a deny (200 when allowed).
	Status int
	// Headers are the headers to set upstream when allowed, or the headers of
	// the deny response otherwise.
	Headers []Header
	// RemoveHeaders are removed from the request when allowed.
	RemoveHeaders []string
	// Body is the JSON body of a deny.
	Body string
	// Reason is a short fixed word for logs and metrics ("ok", "no_token",
	// "invalid_token", ...). It never carries request data.
	Reason string
}

// Decider makes Check decisions. It is safe for concurrent use.
type Decider struct {
	verifier   TokenVerifier
	source     CredentialSource
	log        *slog.Logger
	cfg        Config
	challenge  string   // WWW-Authenticate prefix: Bearer realm="..."[, resource_metadata="..."]
	allHeaders []string // every header name a provider could set, sorted
}

// New returns a Decider. log may be nil.
func New(cfg Config, verifier TokenVerifier, source CredentialSource, log *slog.Logger) *Decider {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Decider{verifier: verifier, source: source, log: log, cfg: cfg}
	d.challenge = `Bearer realm=` + quote(cfg.Realm)
	if cfg.ResourceMetadata != "" {
		d.challenge += `, resource_metadata=` + quote(cfg.ResourceMetadata)
	}
	names := map[string]bool{"authorization": true}
	for _, p := range cfg.Providers {
		names[p.header()] = true
		if p.IDTokenHeader != "" {
			names[p.IDTokenHeader] = true
		}
	}
	for n := range names {
		d.allHeaders = append(d.allHeaders, n)
	}
	sort.Strings(d.allHeaders)
	return d
}

func (p Provider) header() string {
	if p.Header == "" {
		return "authorization"
	}
	return p.Header
}

// Descriptions shown to clients. The session one is identical for an unknown
// session, a provider missing from it and a binding mismatch, so that a deny
// never reveals which.
const (
	descNoToken      = "a bearer token is required"
	descInvalidToken = "the access token is invalid"
	descSession      = "the token's session is not valid for this resource"
	descReauth       = "upstream authorization has expired; re-authentication required"
)

// Check decides one request.
func (d *Decider) Check(ctx context.Context, req Request) Response {
	raw, ok := bearer(req.Headers["authorization"])
	if !ok {
		return d.deny401("no_token", "", descNoToken)
	}
	providers, err := d.providers(req.ContextExtensions)
	if err != nil {
		d.log.ErrorContext(ctx, "check refused: route configuration", "reason", "route_misconfigured", "error", err)
		return failure(http.StatusInternalServerError, "route_misconfigured", "server_error", "the authorization service is misconfigured for this route", 0)
	}
	claims, err := d.verifier.Verify(ctx, raw)
	switch {
	case errors.Is(err, jwtauth.ErrKeysUnavailable):
		d.log.WarnContext(ctx, "check denied", "reason", "keys_unavailable", "error", err)
		return failure(http.StatusServiceUnavailable, "keys_unavailable", "temporarily_unavailable", "the token cannot be verified right now", time.Second)
	case err != nil:
		d.log.InfoContext(ctx, "check denied", "reason", "invalid_token", "error", err)
		return d.deny401("invalid_token", "invalid_token", descInvalidToken)
	}
	session := upstreamtoken.SessionHash(claims.SessionID)

	res, err := d.source.Lookup(ctx, claims.SessionID,
		&upstreamtoken.Binding{Subject: claims.Subject, ClientID: claims.ClientID}, providers...)
	if err == nil {
		err = worst(providers, res.Failures)
	}
	if err != nil {
		resp := d.denyFor(err)
		d.log.Log(ctx, logLevel(err), "check denied", "reason", resp.Reason, "session", session, "error", err)
		return resp
	}
	resp, err := d.allow(providers, res.Credentials)
	if err != nil {
		d.log.ErrorContext(ctx, "check refused: unsafe upstream credential", "reason", resp.Reason, "session", session, "error", err)
		return resp
	}
	d.log.DebugContext(ctx, "check allowed", "session", session, "providers", providers)
	return resp
}

// providers returns the route's providers, all of them configured.
func (d *Decider) providers(ext map[string]string) ([]string, error) {
	names := d.cfg.DefaultProviders
	if v := strings.TrimSpace(ext[ContextKeyProviders]); v != "" {
		names = nil
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
	}
	if len(names) == 0 {
		return nil, errors.New("no providers for this route and no default_providers")
	}
	return d.checkRoute(names)
}

// checkRoute returns the route's providers without repeats, failing when one
// is not configured or when two of them would write the same header.
func (d *Decider) checkRoute(names []string) ([]string, error) {
	out := make([]string, 0, len(names))
	writer := make(map[string]string, 2*len(names))
	for _, n := range names {
		p, ok := d.cfg.Providers[n]
		if !ok {
			return nil, fmt.Errorf("route names provider %q, which the configuration does not define", n)
		}
		if slices.Contains(out, n) {
			continue
		}
		for _, h := range []string{p.header(), p.IDTokenHeader} {
			if h == "" {
				continue
			}
			if other, taken := writer[h]; taken {
				return nil, fmt.Errorf("providers %q and %q on one route both write header %q", other, n, h)
			}
			writer[h] = n
		}
		out = append(out, n)
	}
	return out, nil
}

// worst folds per-provider failures into one error: any permanent failure
// wins over passing ones.
func worst(providers []string, failures map[string]error) error {
	var passing error
	for _, p := range providers {
		err := failures[p]
		switch {
		case err == nil:
		case !errors.Is(err, upstreamtoken.ErrUpstreamUnavailable):
			return err
		case passing == nil:
			passing = err
		default:
			passing = errors.Join(passing, err)
		}
	}
	return passing
}

// logLevel grades a credential failure for the log: a client's problem is
// Info, a passing outage Warn, and our own misconfiguration (the provider
// rejected our client credentials) Error, because it needs an operator.
func logLevel(err error) slog.Level {
	switch {
	case errors.Is(err, refresh.ErrProviderMisconfigured):
		return slog.LevelError
	case errors.Is(err, upstreamtoken.ErrUpstreamUnavailable):
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// denyFor maps a credential failure to the deny table.
func (d *Decider) denyFor(err error) Response {
	switch {
	case errors.Is(err, upstreamtoken.ErrNoRefreshToken):
		return d.deny401("no_refresh_token", "invalid_token", descReauth)
	case errors.Is(err, upstreamtoken.ErrRefreshFailed):
		return d.deny401("refresh_failed", "invalid_token", descReauth)
	case errors.Is(err, upstreamtoken.ErrInvalidBinding):
		return d.deny401("binding_mismatch", "invalid_token", descSession)
	case errors.Is(err, upstreamtoken.ErrSessionNotFound):
		return d.deny401("session_not_found", "invalid_token", descSession)
	default:
		return failure(http.StatusServiceUnavailable, "upstream_unavailable", "temporarily_unavailable",
			"the upstream credential is temporarily unavailable; retry later", upstreamtoken.RetryAfter(err))
	}
}

// allow builds the OK response: each provider's headers set, every other
// header a provider could set removed.
func (d *Decider) allow(providers []string, creds map[string]upstreamtoken.UpstreamCredential) (Response, error) {
	resp := Response{Allowed: true, Status: http.StatusOK, Reason: "ok"}
	set := make(map[string]bool, 2*len(providers))
	for _, name := range providers {
		p, c := d.cfg.Providers[name], creds[name]
		sendID := p.IDTokenHeader != "" && c.IDToken != ""
		if !headerSafe(c.AccessToken) || (sendID && !headerSafe(c.IDToken)) {
			return failure(http.StatusBadGateway, "unsafe_token", "server_error", "the upstream credential cannot be forwarded", 0),
				fmt.Errorf("provider %q: token contains CR, LF or NUL", name)
		}
		resp.Headers = append(resp.Headers, Header{Name: p.header(), Value: "Bearer " + c.AccessToken})
		set[p.header()] = true
		if sendID {
			resp.Headers = append(resp.Headers, Header{Name: p.IDTokenHeader, Value: c.IDToken})
			set[p.IDTokenHeader] = true
		}
	}
	for _, n := range d.allHeaders {
		if !set[n] {
			resp.RemoveHeaders = append(resp.RemoveHeaders, n)
		}
	}
	return resp, nil
}

func headerSafe(v string) bool { return !strings.ContainsAny(v, "\r\n\x00") }

// deny401 answers 401 with a Bearer challenge; code "" omits the error
// attributes (RFC 6750 §3.1: no error code when the request had no token).
func (d *Decider) deny401(reason, code, desc string) Response {
	challenge := d.challenge
	if code != "" {
		challenge += `, error=` + quote(code) + `, error_description=` + quote(desc)
	}
	if code == "" {
		code = "unauthorized"
	}
	resp := failure(http.StatusUnauthorized, reason, code, desc, 0)
	resp.Headers = append(resp.Headers, Header{Name: "www-authenticate", Value: challenge})
	return resp
}

// failure builds a deny with a JSON body and, when retry > 0, Retry-After in
// whole seconds (rounded up, at least 1).
func failure(status int, reason, code, desc string, retry time.Duration) Response {
	body, _ := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{code, desc})
	resp := Response{Status: status, Reason: reason, Body: string(body),
		Headers: []Header{{Name: "content-type", Value: "application/json"}}}
	if retry > 0 {
		secs := int64((retry + time.Second - 1) / time.Second)
		resp.Headers = append(resp.Headers, Header{Name: "retry-after", Value: strconv.FormatInt(max(secs, 1), 10)})
	}
	return resp
}

// bearer extracts the credentials of an Authorization header with the
// Bearer scheme (case-insensitive). An empty value after the scheme is
// returned as ok with raw "" and rejected by the verifier as invalid.
func bearer(h string) (raw string, ok bool) {
	h = strings.TrimSpace(h)
	i := strings.IndexAny(h, " \t")
	if i < 0 {
		i = len(h)
	}
	if !strings.EqualFold(h[:i], "Bearer") {
		return "", false
	}
	return strings.TrimSpace(h[i:]), true
}

// quote renders s as an RFC 9110 quoted-string.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
