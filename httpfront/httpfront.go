// Package httpfront is the HTTP authorization front of extauthz: it answers
// the authorization subrequests of reverse proxies by translating them into an
// authz.Request and the decision into an HTTP response. It decides nothing
// itself; the same authz.Decider serves the gRPC front (package server), and
// for the same input both fronts give the same answer.
//
// Two request shapes are served:
//
//   - Forward auth at PathForwardAuth ("/auth"): nginx auth_request, Caddy
//     forward_auth and Traefik forwardAuth. The original request's URI is in
//     X-Original-URI (nginx) or X-Forwarded-Uri (Caddy, Traefik); its host in
//     X-Forwarded-Host, else in Host. X-Forwarded-Method and
//     X-Forwarded-Proto are accepted and not used: the decision depends on
//     neither.
//   - Envoy's ext_authz http_service with path_prefix PathEnvoy ("/envoy"):
//     the original path (with its query) follows the prefix, the original
//     :authority is the Host, and the headers are the ones Envoy forwards.
//
// In both, the caller's JWT is in Authorization. A request that carries
// Authorization more than once has its values joined with "," (as Envoy joins
// them in a CheckRequest), which no bearer token can contain: such a request
// is denied as an invalid token, and never decided on one of its values.
//
// There are no context extensions over HTTP. A proxy may instead name the
// route's providers in HeaderProviders and its required scopes in
// HeaderRequiredScopes; these become the upstream_providers and
// required_scopes context extensions, with the same meaning as over gRPC
// (when either is present, routes are not consulted). Only the proxy may set
// them: a proxy that forwards a client's copy lets the client choose its own
// policy. With Options.RoutesOnly a request carrying either is refused.
//
// Answers: an allowed request gets 200, no body, and the credential headers
// of the decision; the proxy copies them onto the upstream request. On the
// Envoy shape the headers the proxy must remove are listed, comma-separated,
// in HeaderHeadersToRemove. A denied request gets the decision's status,
// headers (WWW-Authenticate, Retry-After, Content-Type) and JSON body, the
// same bytes the gRPC front puts in its DeniedHttpResponse. A request the
// front cannot read (see ErrBadRequest) gets 400 with a JSON body and is not
// decided.
package httpfront

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/extauthz/extauthz/authz"
)

// Paths served.
const (
	// PathForwardAuth is the forward-auth endpoint (nginx, Caddy,
	// Traefik). Only this exact path is served; a query is ignored.
	PathForwardAuth = "/auth"
	// PathEnvoy is the path_prefix of Envoy's http_service: the original
	// request's path follows it.
	PathEnvoy = "/envoy"
)

// Header names read or written by the front.
const (
	// HeaderProviders names the route's providers (comma-separated): the
	// upstream_providers context extension.
	HeaderProviders = "X-Extauthz-Providers"
	// HeaderRequiredScopes names the route's required scopes
	// (space-separated): the required_scopes context extension.
	HeaderRequiredScopes = "X-Extauthz-Required-Scopes"
	// HeaderHeadersToRemove lists, on an allowed answer to Envoy, the
	// request headers Envoy removes before forwarding the request.
	HeaderHeadersToRemove = "X-Envoy-Auth-Headers-To-Remove"

	headerOriginalURI   = "X-Original-URI"
	headerForwardedURI  = "X-Forwarded-Uri"
	headerForwardedHost = "X-Forwarded-Host"
)

// ErrBadRequest is wrapped by the errors of FromForwardAuth and FromEnvoy: the
// request does not say unambiguously what is being authorized (the original
// URI missing, two sources of it that disagree, a header given twice that
// must be given once, a policy header refused under routes_only). The
// messages name headers, never their values.
var ErrBadRequest = errors.New("unusable authorization request")

// Decider is the transport-independent decision.
type Decider interface {
	Check(ctx context.Context, req authz.Request) authz.Response
}

// Options configures New.
type Options struct {
	// RoutesOnly refuses requests that carry HeaderProviders or
	// HeaderRequiredScopes, which a decision configured with routes_only
	// would ignore: their presence means the proxy lets a client's copy
	// through.
	RoutesOnly bool
	// Logger receives refused requests and panics; nil discards them.
	Logger *slog.Logger
	// Refusals, when not nil, counts the requests refused with 400 before
	// any decision (the decisions themselves are counted by the Decider's
	// observer).
	Refusals Refusals
	// TracerProvider, when not nil, gives every request to PathForwardAuth
	// or PathEnvoy a server span, the parent of the decision's spans (store,
	// refresh). The span is always the root of a new trace: the request's
	// headers are the client's, forwarded by the proxy, so a traceparent
	// among them may be the client's own, and a client must not choose the
	// trace its request is recorded in. The span holds the method, the
	// route (the endpoint, not the original path) and the status; never a
	// header, the original path or the query.
	TracerProvider trace.TracerProvider
}

// Refusals counts the requests refused before any decision, by shape:
// ShapeForwardAuth or ShapeEnvoy.
type Refusals interface {
	Refused(shape string)
}

// Shape names, for Refusals and spans.
const (
	ShapeForwardAuth = "forward_auth"
	ShapeEnvoy       = "envoy"
)

// Shapes lists the shape names.
var Shapes = []string{ShapeForwardAuth, ShapeEnvoy}

// handler serves both shapes.
type handler struct {
	decider Decider
	opts    Options
	log     *slog.Logger
	tracer  trace.Tracer // nil without a TracerProvider
}

// New returns the HTTP authorization handler for d. It serves
// PathForwardAuth and PathEnvoy (and everything under it) for any method,
// and answers 404 elsewhere. It matches the raw request target, so that no
// path cleaning or redirect alters the original path Envoy appends.
func New(d Decider, opts Options) http.Handler {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{decider: d, opts: opts, log: log}
	if opts.TracerProvider != nil {
		h.tracer = opts.TracerProvider.Tracer("github.com/extauthz/extauthz/httpfront")
	}
	return h
}

// ServeHTTP implements http.Handler.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sh := shape(r.RequestURI)
	if sh == shapeNone {
		http.NotFound(w, r)
		return
	}
	if h.tracer != nil {
		var span trace.Span
		r, w, span = h.startSpan(r, w, sh)
		defer span.End()
	}
	defer func() {
		if p := recover(); p != nil {
			// The panic value is not logged: it could hold a token.
			h.log.ErrorContext(r.Context(), "panic in HTTP authorization handler",
				"panic_type", fmt.Sprintf("%T", p), "stack", string(debug.Stack()))
			writeError(w, http.StatusInternalServerError, "server_error", "internal error")
		}
	}()
	var (
		req authz.Request
		err error
	)
	if sh == shapeEnvoy {
		req, err = FromEnvoy(r)
	} else {
		req, err = FromForwardAuth(r)
	}
	if err == nil && h.opts.RoutesOnly {
		err = refusePolicyHeaders(r.Header)
	}
	if err != nil {
		h.log.WarnContext(r.Context(), "authorization request refused", "transport", "http", "error", err)
		if h.opts.Refusals != nil {
			h.opts.Refusals.Refused(sh.String())
		}
		// The message names headers, never their values.
		trace.SpanFromContext(r.Context()).SetAttributes(attribute.String("extauthz.refused", err.Error()))
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	Write(w, h.decider.Check(r.Context(), req), sh == shapeEnvoy)
}

// startSpan starts the request's server span (a new root, see
// Options.TracerProvider) and returns the request carrying it and a writer
// that records the status on it.
func (h *handler) startSpan(r *http.Request, w http.ResponseWriter, sh requestShape) (*http.Request, http.ResponseWriter, trace.Span) {
	route := PathForwardAuth
	if sh == shapeEnvoy {
		route = PathEnvoy + "/*"
	}
	method := r.Method
	if !knownMethods[method] {
		method = "_OTHER"
	}
	name := method + " " + route
	if method == "_OTHER" {
		name = "HTTP " + route
	}
	ctx, span := h.tracer.Start(r.Context(), name,
		trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			semconv.HTTPRequestMethodKey.String(method),
			semconv.HTTPRoute(route),
			attribute.String("extauthz.transport", "http"),
			attribute.String("extauthz.shape", sh.String())))
	return r.WithContext(ctx), &statusWriter{ResponseWriter: w, span: span}, span
}

// knownMethods are the methods a span names as they are; another is
// "_OTHER", so that a client cannot fill span names with its own words.
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodConnect: true, http.MethodOptions: true,
	http.MethodTrace: true,
}

// statusWriter records the status written on the span: 5xx is an error,
// as for any HTTP server span.
type statusWriter struct {
	http.ResponseWriter
	span  trace.Span
	wrote bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.wrote = true
		s.span.SetAttributes(semconv.HTTPResponseStatusCode(code))
		if code >= 500 {
			s.span.SetStatus(codes.Error, http.StatusText(code))
		}
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if !s.wrote {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(b)
}

type requestShape int

const (
	shapeNone requestShape = iota
	shapeForwardAuth
	shapeEnvoy
)

// String is the shape's name for Refusals and spans.
func (s requestShape) String() string {
	switch s {
	case shapeForwardAuth:
		return ShapeForwardAuth
	case shapeEnvoy:
		return ShapeEnvoy
	}
	return "none"
}

// shape tells the endpoint from the raw request target: "/auth" with an
// optional query, or "/envoy" followed by "/" or "?" or nothing.
func shape(target string) requestShape {
	path, _, _ := strings.Cut(target, "?")
	switch {
	case path == PathForwardAuth:
		return shapeForwardAuth
	case strings.HasPrefix(target, PathEnvoy) &&
		(len(target) == len(PathEnvoy) || target[len(PathEnvoy)] == '/' || target[len(PathEnvoy)] == '?'):
		return shapeEnvoy
	}
	return shapeNone
}

// FromForwardAuth reads a forward-auth request (nginx auth_request, Caddy
// forward_auth, Traefik forwardAuth). The original path is X-Original-URI or
// X-Forwarded-Uri: at least one must be present, each at most once, starting
// with "/", and when both are present they must be equal (a proxy sets one;
// the other may be a client's). The host is X-Forwarded-Host when present (at
// most once and a single value, not a list), else the Host header. The
// headers and policy headers are read as by headers and policy.
func FromForwardAuth(r *http.Request) (authz.Request, error) {
	var path string
	for _, name := range []string{headerOriginalURI, headerForwardedURI} {
		v, ok, err := single(r.Header, name)
		if err != nil {
			return authz.Request{}, err
		}
		if !ok {
			continue
		}
		if !strings.HasPrefix(v, "/") {
			return authz.Request{}, fmt.Errorf("%w: %s is not an origin-form request target (it must start with \"/\")", ErrBadRequest, name)
		}
		if path != "" && v != path {
			return authz.Request{}, fmt.Errorf("%w: %s and %s disagree", ErrBadRequest, headerOriginalURI, headerForwardedURI)
		}
		path = v
	}
	if path == "" {
		return authz.Request{}, fmt.Errorf("%w: neither %s nor %s names the original request", ErrBadRequest, headerOriginalURI, headerForwardedURI)
	}
	host, ok, err := single(r.Header, headerForwardedHost)
	if err != nil {
		return authz.Request{}, err
	}
	if ok && strings.Contains(host, ",") {
		return authz.Request{}, fmt.Errorf("%w: %s holds a list; the proxy must set a single host", ErrBadRequest, headerForwardedHost)
	}
	if !ok {
		host = r.Host
	}
	return build(r, host, path)
}

// FromEnvoy reads a request from Envoy's ext_authz http_service configured
// with path_prefix PathEnvoy: the original path is the request target after
// the prefix (empty means "/"), the host is the Host header (Envoy's
// :authority, which is the original request's). The request target must be
// in origin form.
func FromEnvoy(r *http.Request) (authz.Request, error) {
	target := r.RequestURI
	if shape(target) != shapeEnvoy {
		return authz.Request{}, fmt.Errorf("%w: the request target does not start with %s", ErrBadRequest, PathEnvoy)
	}
	path := target[len(PathEnvoy):]
	if path == "" || path[0] == '?' {
		path = "/" + path
	}
	return build(r, r.Host, path)
}

// build makes the decision's input: every header with its name lower-cased
// and its values joined with "," (so that two Authorization headers are one
// value that no bearer token matches), and the policy headers as context
// extensions.
func build(r *http.Request, host, path string) (authz.Request, error) {
	ext, err := policy(r.Header)
	if err != nil {
		return authz.Request{}, err
	}
	headers := make(map[string]string, len(r.Header))
	for name, values := range r.Header {
		headers[strings.ToLower(name)] = strings.Join(values, ",")
	}
	return authz.Request{Headers: headers, ContextExtensions: ext, Host: host, Path: path}, nil
}

// policy maps the policy headers to context extensions. Each may be given
// once; an empty value counts as absent (proxies send an empty value where
// they mean none).
func policy(h http.Header) (map[string]string, error) {
	var ext map[string]string
	for _, p := range []struct{ header, key string }{
		{HeaderProviders, authz.ContextKeyProviders},
		{HeaderRequiredScopes, authz.ContextKeyRequiredScopes},
	} {
		v, ok, err := single(h, p.header)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if ext == nil {
			ext = make(map[string]string, 2)
		}
		ext[p.key] = v
	}
	return ext, nil
}

// refusePolicyHeaders fails when a policy header is present at all.
func refusePolicyHeaders(h http.Header) error {
	for _, name := range []string{HeaderProviders, HeaderRequiredScopes} {
		if len(h.Values(name)) > 0 {
			return fmt.Errorf("%w: %s is not accepted with routes_only (the proxy must remove a client's copy)", ErrBadRequest, name)
		}
	}
	return nil
}

// single returns the one value of header name, trimmed; ok is false when
// the header is absent or empty. A header given more than once is an error.
func single(h http.Header, name string) (v string, ok bool, err error) {
	values := h.Values(name)
	switch len(values) {
	case 0:
		return "", false, nil
	case 1:
		v = strings.TrimSpace(values[0])
		return v, v != "", nil
	default:
		return "", false, fmt.Errorf("%w: %s is given more than once", ErrBadRequest, name)
	}
}

// Write renders a decision. An allowed request gets 200 with the headers to
// set and, when envoy is set and there are any, HeaderHeadersToRemove; a
// deny gets its status, headers and body. A deny whose status is not an
// HTTP error status is answered 500: a proxy must never read a deny as an
// allow.
func Write(w http.ResponseWriter, resp authz.Response, envoy bool) {
	out := w.Header()
	for _, hd := range resp.Headers {
		out.Set(hd.Name, hd.Value)
	}
	if resp.Allowed {
		if envoy && len(resp.RemoveHeaders) > 0 {
			out.Set(HeaderHeadersToRemove, strings.Join(resp.RemoveHeaders, ","))
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	status := resp.Status
	if status < 400 || status > 599 {
		status = http.StatusInternalServerError
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(resp.Body))
}

// writeError answers a request the front did not decide.
func writeError(w http.ResponseWriter, status int, code, desc string) {
	body, _ := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{code, desc})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
