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
	"maps"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/extauthz/extauthz/internal/oauthscope"
	"github.com/extauthz/extauthz/jwtauth"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/upstreamtoken"
)

// ContextKeyProviders is the per-route context extension naming the
// providers (comma-separated) whose credentials the route needs.
const ContextKeyProviders = "upstream_providers"

// ContextKeyRequiredScopes is the per-route context extension naming the
// scopes (space-separated, RFC 6749 scope-tokens) that the caller's JWT must
// all carry. A Check whose JWT lacks one is denied with 403
// insufficient_scope before any stored credential is read or refreshed.
const ContextKeyRequiredScopes = "required_scopes"

// ContextKeyDenyStyle is the per-route context extension choosing the deny
// style (DenyStyleMCP, or empty for the plain deny), read with the other
// context extensions when they choose the route's policy.
const ContextKeyDenyStyle = "deny_style"

// DenyStyleMCP makes a missing or dead upstream grant on a route a JSON-RPC
// error response for MCP clients, when the request's body is a JSON-RPC
// request and a connect link could be made (see Decider.Check).
const DenyStyleMCP = "mcp"

// TokenVerifier verifies the caller's bearer JWT. Rejections wrap
// jwtauth.ErrInvalidToken; jwtauth.ErrKeysUnavailable means the verifier
// could not decide.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (jwtauth.Claims, error)
}

// CredentialSource returns a session's valid upstream credentials, checking
// the binding. upstreamtoken.InProcessService implements it.
type CredentialSource interface {
	Lookup(ctx context.Context, sessionID string, binding upstreamtoken.Binding, providers ...string) (upstreamtoken.Result, error)
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
	// Routes choose providers and required scopes from the request's host
	// and path when the request carries neither ContextKeyProviders nor
	// ContextKeyRequiredScopes (Istio cannot send context extensions), or
	// always when RoutesOnly is set. See Route for the matching rules.
	Routes []Route
	// DefaultRoute is the policy of a request that Routes do not match: its
	// Providers (none means DefaultProviders) and RequiredScopes. Its Host,
	// PathPrefix and CaseSensitive are ignored. The zero value is
	// DefaultProviders with no required scopes.
	DefaultRoute Route
	// RoutesOnly makes the decision ignore context extensions: providers
	// and required scopes then come only from Routes, DefaultRoute and
	// DefaultProviders. Set it where callers cannot be trusted to choose
	// their own policy (Istio, where any workload could call the service).
	RoutesOnly bool
	// Realm and ResourceMetadata go into WWW-Authenticate on 401 and 403.
	Realm            string
	ResourceMetadata string
	// Observer, when not nil, is told of every decision once, after it is
	// made (for metrics).
	Observer Observer
	// Connect, when not nil, makes the connect link that a deny for a
	// missing or dead upstream grant carries (see Decider.Check). Nil: no
	// deny carries a link, and DenyStyleMCP has no effect.
	Connect Connector
}

// Connector makes the link at which the user behind a verified JWT links
// (again) their account at a provider to the JWT's session. The link must
// be fit for a header and a JSON string, and must not reveal the session,
// subject or client ID it is for. Its errors must not contain the link.
type Connector interface {
	ConnectLink(ctx context.Context, t ConnectTarget) (ConnectLink, error)
}

// ConnectTarget is what a connect link is for: the session, subject and
// client ID of a verified JWT, and the provider whose grant is missing or
// dead.
type ConnectTarget struct {
	SessionID string
	Subject   string
	ClientID  string
	Provider  string
}

// ConnectLink is a connect link.
type ConnectLink struct {
	// URI is the absolute URI the user opens in a browser.
	URI string
	// ID identifies the link (an MCP elicitationId): unique, opaque, and
	// not enough on its own to follow the link.
	ID string
}

// Observer learns of each decision and how long it took. Decision is called
// once per Check, on the Check's goroutine, so it must be quick and safe for
// concurrent use. It must not keep or expose the Response's headers or body:
// they can hold upstream tokens.
type Observer interface {
	Decision(resp Response, elapsed time.Duration)
}

// Route is a policy chosen by the request's host and path.
//
// A route matches a request when its Host is empty or equals the request's
// host, and its PathPrefix is a prefix (plain string comparison, as Envoy's
// route "prefix") of the request's path. Unless CaseSensitive is set, the
// comparison ignores the case of ASCII letters (as Envoy's route
// "case_sensitive: false" does, and as many backends route): "/GITHUB/user"
// is under "/github/". Of the matching routes, the one with the longest
// PathPrefix wins; on equal length a route with a Host beats one without, and
// then a case-sensitive route beats a case-insensitive one. No matching route
// means Config.DefaultRoute.
//
// Hosts are compared case-insensitively, without a port and without a
// trailing dot ("API.example.com.:8443" is "api.example.com"). The request
// path loses its query and fragment, percent-encoded unreserved characters
// (RFC 3986 §2.3: letters, digits, "-", ".", "_", "~") are decoded, the hex
// digits of the remaining escapes are upper-cased and dot-segments are
// removed (RFC 3986 §5.2.4). Nothing else is decoded, and nothing twice:
// "%2F" stays an encoded slash and "%25" an encoded percent (so "%252F" is
// not a slash either), and repeated slashes are kept, since
// decoding or merging those can change what the backend sees. PathPrefix is
// compared in the same normal form (see CleanPath).
type Route struct {
	// Host is a host name or IP address without port; empty matches any
	// host.
	Host string
	// PathPrefix starts with "/".
	PathPrefix string
	// CaseSensitive compares PathPrefix with the path exactly; by default
	// ASCII letters match regardless of case.
	CaseSensitive bool
	// Providers are the route's providers; empty means DefaultProviders.
	Providers []string
	// RequiredScopes must all be among the JWT's scopes.
	RequiredScopes []string
	// DenyStyle is DenyStyleMCP or empty (the plain deny).
	DenyStyle string
}

// Request is what the decision needs from a check request.
type Request struct {
	// Headers are the request headers with lower-case names.
	Headers map[string]string
	// ContextExtensions are the route's settings (Envoy's
	// check_settings.context_extensions).
	ContextExtensions map[string]string
	// Host is the request's host (the :authority or Host header), possibly
	// with a port. It selects a Route.
	Host string
	// Path is the request target's path as the client (or the proxy, after
	// its own normalization) sent it, possibly with a query string. It
	// selects a Route.
	Path string
	// Body is the request's body, or its beginning, when the proxy sends it
	// (Envoy's with_request_body); empty otherwise. Only DenyStyleMCP reads
	// it, for the JSON-RPC request's id.
	Body string
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
	// RemoveHeaders are removed from the request when allowed. Responses
	// may share it: it is not to be modified.
	RemoveHeaders []string
	// Body is the JSON body of a deny.
	Body string
	// Reason is a short fixed word for logs and metrics, one of Reasons. It
	// never carries request data.
	Reason string
}

// Result classifies the decision for metrics: ResultOK when allowed,
// ResultError when the service could not decide (a 5xx deny: something the
// service depends on failed, or its configuration is wrong), ResultDenied
// otherwise (the client's credentials do not pass).
func (r Response) Result() string {
	switch {
	case r.Allowed:
		return ResultOK
	case r.Status >= 500:
		return ResultError
	default:
		return ResultDenied
	}
}

// Decider makes Check decisions. It is safe for concurrent use.
type Decider struct {
	verifier   TokenVerifier
	source     CredentialSource
	log        *slog.Logger
	cfg        Config
	challenge  string          // WWW-Authenticate prefix: Bearer realm="..."[, resource_metadata="..."]
	allHeaders []string        // every header name a provider could set, sorted
	routes     []compiledRoute // cfg.Routes normalized, in matching order
	fallback   policy          // cfg.DefaultRoute: when no context extension and no route applies
	// extPolicies holds the policies resolved from context extensions, by
	// their values (at most maxExtPolicies: Envoy sends one set per route,
	// so a few recur on every Check); a new map replaces it, under extMu,
	// when one is added.
	extPolicies atomic.Pointer[map[extKey]policy]
	extMu       sync.Mutex
}

// compiledRoute is a configured Route with its policy resolved at New.
type compiledRoute struct {
	Route
	policy
}

// policy is a route's providers (checked by checkRoute) and required scopes,
// or the error that refuses the route. The configured routes' and the
// fallback's are resolved once, at New, and those of the first
// maxExtPolicies sets of context extensions when first seen, so that a
// Check that uses them allocates nothing for its route; their slices are
// shared by every Check and never modified (they are clipped: an append
// copies).
type policy struct {
	providers, scopes []string
	denyStyle         string
	err               error
	idHeaders         int // how many of the providers have an ID-token header
	// removals says that removeWithIDs and removeWithoutIDs hold the
	// headers an allow removes when it sends every ID token that its
	// providers have a header for, and when it sends none (else an allow
	// computes its own).
	removals                        bool
	removeWithIDs, removeWithoutIDs []string
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
	d.allHeaders = cfg.HeaderNames()
	for i, r := range cfg.Routes {
		p := d.routePolicy(fmt.Sprintf("routes[%d]", i), &r)
		r.Host = cleanHost(r.Host)
		r.PathPrefix = CleanPath(r.PathPrefix)
		if !r.CaseSensitive {
			r.PathPrefix = lowerASCII(r.PathPrefix)
		}
		d.routes = append(d.routes, compiledRoute{Route: r, policy: d.withRemovals(p)})
	}
	// Longest prefix first; on equal length, host-specific first, then
	// case-sensitive first. Stable, so that of two identical routes
	// (refused by config) the first wins.
	sort.SliceStable(d.routes, func(i, j int) bool {
		a, b := d.routes[i], d.routes[j]
		if len(a.PathPrefix) != len(b.PathPrefix) {
			return len(a.PathPrefix) > len(b.PathPrefix)
		}
		if (a.Host != "") != (b.Host != "") {
			return a.Host != ""
		}
		return a.CaseSensitive && !b.CaseSensitive
	})
	d.fallback = d.withRemovals(d.routePolicy("default_route", &d.cfg.DefaultRoute))
	return d
}

// HeaderNames returns, sorted and without repeats, every header name a
// Decider built from c could set on any route: each provider's header and
// ID-token header, and "authorization" whether or not a provider writes it
// (a caller's own Authorization must never pass). A proxy removes those an
// answer does not set.
func (c Config) HeaderNames() []string {
	names := map[string]bool{"authorization": true}
	for _, p := range c.Providers {
		names[p.header()] = true
		if p.IDTokenHeader != "" {
			names[p.IDTokenHeader] = true
		}
	}
	out := make([]string, 0, len(names))
	for n := range names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
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
	descScope        = "the access token lacks a scope this resource requires"
)

// Check decides one request.
func (d *Decider) Check(ctx context.Context, req Request) Response {
	if d.cfg.Observer == nil {
		return d.check(ctx, req)
	}
	start := time.Now()
	resp := d.check(ctx, req)
	d.cfg.Observer.Decision(resp, time.Since(start))
	return resp
}

func (d *Decider) check(ctx context.Context, req Request) Response {
	raw, ok := bearer(req.Headers["authorization"])
	if !ok {
		return d.deny401(ReasonNoToken, "", descNoToken)
	}
	pol := d.route(req)
	providers, scopes, err := pol.providers, pol.scopes, pol.err
	if err != nil {
		d.log.ErrorContext(ctx, "check refused: route configuration", "reason", ReasonRouteMisconfigured, "error", err)
		return failure(http.StatusInternalServerError, ReasonRouteMisconfigured, "server_error", "the authorization service is misconfigured for this route", 0)
	}
	claims, err := d.verifier.Verify(ctx, raw)
	switch {
	case errors.Is(err, jwtauth.ErrKeysUnavailable):
		d.log.WarnContext(ctx, "check denied", "reason", ReasonKeysUnavailable, "error", err)
		return failure(http.StatusServiceUnavailable, ReasonKeysUnavailable, "temporarily_unavailable", "the token cannot be verified right now", time.Second)
	case err != nil:
		d.log.InfoContext(ctx, "check denied", "reason", ReasonInvalidToken, "error", err)
		return d.deny401(ReasonInvalidToken, "invalid_token", descInvalidToken)
	}
	// Before any store access: a token without the route's scopes must not
	// read, let alone refresh, the session's credentials.
	if missing := missingScopes(scopes, claims.Scopes); len(missing) > 0 {
		d.log.InfoContext(ctx, "check denied", "reason", ReasonInsufficientScope, "session", upstreamtoken.SessionHash(claims.SessionID), "missing_scopes", missing)
		return d.deny403(scopes)
	}

	res, err := d.source.Lookup(ctx, claims.SessionID,
		upstreamtoken.Binding{Subject: claims.Subject, ClientID: claims.ClientID}, providers...)
	if err == nil {
		err = worst(providers, res.Failures)
	}
	if err != nil {
		link, provider := d.connectLink(ctx, claims, providers, res.Failures, err)
		resp := d.denyFor(err, link.URI)
		if link.URI != "" && pol.denyStyle == DenyStyleMCP {
			if id, ok := RequestID(req.Body); ok {
				resp = denyMCP(resp.Reason, id, link, provider)
			}
		}
		d.log.Log(ctx, logLevel(err), "check denied", "reason", resp.Reason, "session", upstreamtoken.SessionHash(claims.SessionID),
			"connect_link", link.URI != "", "error", err)
		return resp
	}
	resp, err := d.allow(&pol, &res)
	if err != nil {
		d.log.ErrorContext(ctx, "check refused: unsafe upstream credential", "reason", resp.Reason, "session", upstreamtoken.SessionHash(claims.SessionID), "error", err)
		return resp
	}
	if d.log.Enabled(ctx, slog.LevelDebug) {
		d.log.DebugContext(ctx, "check allowed", "session", upstreamtoken.SessionHash(claims.SessionID), "providers", providers)
	}
	return resp
}

// route returns the request's policy: its providers (all of them
// configured), required scopes and deny style, or the error that refuses
// it. Unless RoutesOnly is set, context extensions are authoritative when
// ContextKeyProviders or ContextKeyRequiredScopes is present, even empty:
// the providers come from ContextKeyProviders (else DefaultProviders), the
// scopes from ContextKeyRequiredScopes (else none) and the deny style from
// ContextKeyDenyStyle (else plain), and Routes are not consulted.
// Otherwise the matching Route, else DefaultRoute, supplies all three. The
// returned slices must not be modified.
func (d *Decider) route(req Request) policy {
	ext := req.ContextExtensions
	_, hasProviders := ext[ContextKeyProviders]
	_, hasScopes := ext[ContextKeyRequiredScopes]
	if d.cfg.RoutesOnly || (!hasProviders && !hasScopes) {
		if r := d.match(req.Host, req.Path); r != nil {
			return r.policy
		}
		return d.fallback
	}
	key := extKey{ext[ContextKeyProviders], ext[ContextKeyRequiredScopes], ext[ContextKeyDenyStyle]}
	m := d.extPolicies.Load()
	if m != nil {
		if p, ok := (*m)[key]; ok {
			return p
		}
		if len(*m) >= maxExtPolicies {
			return d.extPolicy(key) // full: no lock to learn it again
		}
	}
	return d.remember(key, d.extPolicy(key))
}

// extKey is the context extensions that choose a policy.
type extKey struct{ providers, scopes, denyStyle string }

// maxExtPolicies bounds the policies from context extensions that a
// Decider keeps; others are resolved on every Check.
const maxExtPolicies = 64

// remember keeps p, with its removals computed, as the policy of key,
// unless maxExtPolicies are kept already, and returns it.
func (d *Decider) remember(key extKey, p policy) policy {
	d.extMu.Lock()
	defer d.extMu.Unlock()
	var m map[extKey]policy
	if old := d.extPolicies.Load(); old != nil {
		m = *old
	}
	if len(m) >= maxExtPolicies {
		return p
	}
	p = d.withRemovals(p)
	m = maps.Clone(m)
	if m == nil {
		m = make(map[extKey]policy, 1)
	}
	m[key] = p
	d.extPolicies.Store(&m)
	return p
}

// extPolicy resolves the policy that context extensions choose.
func (d *Decider) extPolicy(key extKey) policy {
	var names []string
	for _, n := range strings.Split(key.providers, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	scopes, err := oauthscope.Parse(key.scopes)
	if err != nil {
		return policy{err: fmt.Errorf("context extension %s: %w", ContextKeyRequiredScopes, err)}
	}
	if err := checkDenyStyle(key.denyStyle); err != nil {
		return policy{err: fmt.Errorf("context extension %s: %w", ContextKeyDenyStyle, err)}
	}
	return d.resolve(ContextKeyProviders, names, scopes, key.denyStyle)
}

// routePolicy resolves a configured route's policy (or DefaultRoute's); key
// names the route in its problems.
func (d *Decider) routePolicy(key string, r *Route) policy {
	if err := oauthscope.Check(key+".required_scopes", r.RequiredScopes); err != nil {
		return policy{err: err}
	}
	if err := denyStyleProblem(key, r.DenyStyle); err != nil {
		return policy{err: err}
	}
	var scopes []string
	for _, s := range r.RequiredScopes {
		if !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	return d.resolve(key+".providers", r.Providers, scopes, r.DenyStyle)
}

// resolve returns the policy of a route naming providers (none means
// DefaultProviders), requiring scopes and denying in denyStyle; key names
// the provider list in its problems.
func (d *Decider) resolve(key string, names, scopes []string, denyStyle string) policy {
	if len(names) == 0 {
		key, names = "default_providers", d.cfg.DefaultProviders
	}
	if len(names) == 0 {
		return policy{err: errors.New("no providers for this route and no default_providers")}
	}
	providers, err := d.cfg.checkProviders(key, names)
	if err != nil {
		return policy{err: err}
	}
	p := policy{providers: slices.Clip(providers), scopes: slices.Clip(scopes), denyStyle: denyStyle}
	for _, name := range providers {
		if d.cfg.Providers[name].IDTokenHeader != "" {
			p.idHeaders++
		}
	}
	return p
}

// match returns the route for host and path, or nil.
func (d *Decider) match(host, path string) *compiledRoute {
	if len(d.routes) == 0 {
		return nil
	}
	host, path = cleanHost(host), CleanPath(path)
	for i := range d.routes {
		r := &d.routes[i]
		if r.Host != "" && r.Host != host {
			continue
		}
		if r.CaseSensitive && strings.HasPrefix(path, r.PathPrefix) ||
			!r.CaseSensitive && hasPrefixFoldASCII(path, r.PathPrefix) {
			return r
		}
	}
	return nil
}

// hasPrefixFoldASCII reports whether s starts with prefix, ignoring the case
// of ASCII letters in s; prefix must already be lower-case. Other bytes
// (percent-escapes' hex digits are upper-cased by CleanPath on both sides,
// and then folded alike) compare exactly.
func hasPrefixFoldASCII(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// lowerASCII lower-cases the ASCII letters of s, leaving other bytes alone.
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// missingScopes returns the required scopes that have is without, compared
// exactly (scopes are case-sensitive).
func missingScopes(required, have []string) []string {
	var missing []string
	for _, s := range required {
		if !slices.Contains(have, s) {
			missing = append(missing, s)
		}
	}
	return missing
}

// cleanHost lower-cases a Host or :authority value and drops its port and a
// trailing dot. A bracketed IPv6 literal loses its brackets.
func cleanHost(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	switch {
	case strings.HasPrefix(h, "["):
		if i := strings.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	case strings.Count(h, ":") == 1:
		h = h[:strings.IndexByte(h, ':')]
	}
	return strings.TrimSuffix(h, ".")
}

// CleanPath puts a request path in the normal form routes are matched in:
// the query and fragment are dropped, percent-encoded unreserved characters
// (letters, digits, "-", ".", "_", "~") decoded, the hex digits of every
// other escape upper-cased, and dot-segments removed (RFC 3986 §5.2.4).
// Reserved characters stay encoded ("%2F" is not a "/"), a "%" that starts
// no escape is taken as "%25", and repeated slashes are kept. CleanPath is
// idempotent: nothing is ever decoded twice.
func CleanPath(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	if strings.Contains(p, "%") {
		var b strings.Builder
		b.Grow(len(p))
		for i := 0; i < len(p); i++ {
			if p[i] == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]) {
				c := unhex(p[i+1])<<4 | unhex(p[i+2])
				if unreserved(c) {
					b.WriteByte(c)
				} else {
					b.WriteString(strings.ToUpper(p[i : i+3]))
				}
				i += 2
				continue
			}
			if p[i] == '%' {
				// Not an escape: take it as a literal "%", so that
				// it can never pair with a decoded digit into a new
				// escape (which a second decoding would decode).
				b.WriteString("%25")
				continue
			}
			b.WriteByte(p[i])
		}
		p = b.String()
	}
	return removeDotSegments(p)
}

// removeDotSegments resolves "." and ".." segments of an absolute path; a
// path not starting with "/" is returned as it is.
func removeDotSegments(p string) string {
	if !strings.HasPrefix(p, "/") || !strings.Contains(p, ".") {
		return p
	}
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
			continue
		}
		if last {
			out = append(out, "") // "/a/b/.." is "/a/", not "/a"
		}
	}
	return "/" + strings.Join(out, "/")
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// worst folds per-provider failures into one error: any permanent failure
// wins over transient ones.
func worst(providers []string, failures map[string]error) error {
	var transient error
	for _, p := range providers {
		err := failures[p]
		switch {
		case err == nil:
		case !errors.Is(err, upstreamtoken.ErrUpstreamUnavailable):
			return err
		case transient == nil:
			transient = err
		default:
			transient = errors.Join(transient, err)
		}
	}
	return transient
}

// logLevel grades a credential failure for the log: a client's problem is
// Info, a transient outage Warn, and our own misconfiguration (the provider
// rejected our client credentials) Error, because it needs an operator.
func logLevel(err error) slog.Level {
	switch {
	case errors.Is(err, upstreamtoken.ErrProviderMisconfigured):
		return slog.LevelError
	case errors.Is(err, upstreamtoken.ErrUpstreamUnavailable):
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// denyFor maps a credential failure to the deny table. connectURI, when
// not empty, goes into the deny (connect_uri and Link); connectLink makes
// one only for the failures that a connect can fix.
func (d *Decider) denyFor(err error, connectURI string) Response {
	switch {
	case errors.Is(err, upstreamtoken.ErrInvalidBinding):
		// First: a session of another subject or client is never offered
		// a connect.
		return d.deny401(ReasonBindingMismatch, "invalid_token", descSession)
	case errors.Is(err, upstreamtoken.ErrNoRefreshToken):
		return withConnect(d.deny401(ReasonNoRefreshToken, "invalid_token", descReauth), "invalid_token", descReauth, connectURI)
	case errors.Is(err, upstreamtoken.ErrRefreshFailed):
		return withConnect(d.deny401(ReasonRefreshFailed, "invalid_token", descReauth), "invalid_token", descReauth, connectURI)
	case errors.Is(err, upstreamtoken.ErrSessionExpired):
		// Known, but over: the user must sign in again.
		return d.deny401(ReasonSessionNotFound, "invalid_token", descReauth)
	case errors.Is(err, upstreamtoken.ErrSessionNotFound):
		return withConnect(d.deny401(ReasonSessionNotFound, "invalid_token", descSession), "invalid_token", descSession, connectURI)
	default:
		return failure(http.StatusServiceUnavailable, unavailableReason(err), "temporarily_unavailable",
			"the upstream credential is temporarily unavailable; retry later", upstreamtoken.RetryAfter(err))
	}
}

// unavailableReason names what a transient failure came from. The client sees
// the same 503 either way; operators see which dependency to look at. When
// several providers failed, a misconfiguration wins over a store failure,
// which wins over a provider outage.
func unavailableReason(err error) string {
	switch {
	case errors.Is(err, upstreamtoken.ErrProviderMisconfigured):
		return ReasonProviderMisconfigured
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, store.ErrUnreadable):
		return ReasonStoreUnavailable
	default:
		return ReasonProviderUnavailable
	}
}

// allow builds the OK response for pol's providers: each provider's headers
// set, every other header a provider could set removed (the list
// precomputed for the route when it applies).
func (d *Decider) allow(pol *policy, res *upstreamtoken.Result) (Response, error) {
	resp := Response{Allowed: true, Status: http.StatusOK, Reason: ReasonOK,
		Headers: make([]Header, 0, len(pol.providers)+pol.idHeaders)}
	allIDs, noIDs := true, true // whether every, or no, ID-token header is sent
	for _, name := range pol.providers {
		p := d.cfg.Providers[name]
		c, _ := res.Credential(name)
		sendID := p.IDTokenHeader != "" && c.IDToken != ""
		if !headerSafe(c.AccessToken) || (sendID && !headerSafe(c.IDToken)) {
			return failure(http.StatusBadGateway, ReasonUnsafeToken, "server_error", "the upstream credential cannot be forwarded", 0),
				fmt.Errorf("provider %q: token contains CR, LF or NUL", name)
		}
		resp.Headers = append(resp.Headers, Header{Name: p.header(), Value: "Bearer " + c.AccessToken})
		if sendID {
			resp.Headers = append(resp.Headers, Header{Name: p.IDTokenHeader, Value: c.IDToken})
			noIDs = false
		} else if p.IDTokenHeader != "" {
			allIDs = false
		}
	}
	switch {
	case pol.removals && allIDs:
		resp.RemoveHeaders = pol.removeWithIDs
	case pol.removals && noIDs:
		resp.RemoveHeaders = pol.removeWithoutIDs
	default:
		resp.RemoveHeaders = d.removals(resp.Headers)
	}
	return resp, nil
}

// removals returns the header names a provider could set that are not
// among set (nil when there are none).
func (d *Decider) removals(set []Header) []string {
	// Few headers on either side: linear scans cost less than a map.
	isSet := func(n string) bool {
		for _, h := range set {
			if h.Name == n {
				return true
			}
		}
		return false
	}
	var out []string
	for _, n := range d.allHeaders {
		if !isSet(n) {
			if out == nil {
				out = make([]string, 0, len(d.allHeaders))
			}
			out = append(out, n)
		}
	}
	return slices.Clip(out)
}

// withRemovals returns p with the headers its allows remove computed once:
// for allows that send every ID token the providers have a header for, and
// for allows that send none.
func (d *Decider) withRemovals(p policy) policy {
	if p.err != nil {
		return p
	}
	var withIDs, withoutIDs []Header
	for _, name := range p.providers {
		h := d.cfg.Providers[name]
		withIDs = append(withIDs, Header{Name: h.header()})
		withoutIDs = append(withoutIDs, Header{Name: h.header()})
		if h.IDTokenHeader != "" {
			withIDs = append(withIDs, Header{Name: h.IDTokenHeader})
		}
	}
	p.removals, p.removeWithIDs, p.removeWithoutIDs = true, d.removals(withIDs), d.removals(withoutIDs)
	return p
}

// denyBody is a deny's JSON body: the RFC 6750 error code and description,
// and the connect link when there is one.
func denyBody(code, desc, connectURI string) string {
	body, _ := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
		ConnectURI  string `json:"connect_uri,omitempty"`
	}{code, desc, connectURI})
	return string(body)
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

// deny403 answers 403 insufficient_scope with the route's required scopes
// in the challenge (RFC 6750 §3.1). Scope-tokens need no escaping inside a
// quoted-string.
func (d *Decider) deny403(required []string) Response {
	resp := failure(http.StatusForbidden, ReasonInsufficientScope, "insufficient_scope", descScope, 0)
	resp.Headers = append(resp.Headers, Header{Name: "www-authenticate",
		Value: d.challenge + `, error="insufficient_scope", scope=` + quote(strings.Join(required, " "))})
	return resp
}

// failure builds a deny with a JSON body and, when retry > 0, Retry-After in
// whole seconds (rounded up, at least 1).
func failure(status int, reason, code, desc string, retry time.Duration) Response {
	body := denyBody(code, desc, "")
	resp := Response{Status: status, Reason: reason, Body: body,
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
	return `"` + quoteEscaper.Replace(s) + `"`
}

var quoteEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)
