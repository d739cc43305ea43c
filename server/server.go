// Package server is the gRPC front of extauthz: it serves Envoy's
// envoy.service.auth.v3.Authorization/Check by translating a CheckRequest
// into an authz.Request and the decision into a CheckResponse, plus the
// standard gRPC health service.
//
// A deny is an ordinary CheckResponse; Check returns a gRPC error only when
// the request is unusable.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"go.opentelemetry.io/otel/trace"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/extauthz/extauthz/authz"
)

// Decider is the transport-independent decision.
type Decider interface {
	Check(ctx context.Context, req authz.Request) authz.Response
}

// Authorization implements authv3.AuthorizationServer on top of a Decider.
type Authorization struct {
	authv3.UnimplementedAuthorizationServer
	decider Decider
}

// NewAuthorization returns the Check service for d.
func NewAuthorization(d Decider) *Authorization { return &Authorization{decider: d} }

// Check implements authv3.AuthorizationServer.
func (a *Authorization) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	httpReq := req.GetAttributes().GetRequest().GetHttp()
	if httpReq == nil {
		return nil, status.Error(codes.InvalidArgument, "check request carries no HTTP request attributes")
	}
	return ToCheckResponse(a.decider.Check(ctx, FromCheckRequest(req))), nil
}

// FromCheckRequest extracts the decision's input. Header names are
// lower-cased (Envoy already sends them so). Host and Path are
// attributes.request.http.host and .path as Envoy sends them: the path is the
// request target with its query string and without decoding (but after
// Envoy's own normalize_path / merge_slashes, when configured); the decision
// drops the query and normalizes the path itself before matching routes.
// Body is attributes.request.http.raw_body when set, else .body: empty
// unless Envoy is configured with with_request_body.
//
// The Request shares what it can with req (the context extensions, and the
// header map itself when its names are all lower-case and Envoy sent no
// header_map, which is the usual case and saves copying it on every Check):
// neither is to be modified while the other is in use.
func FromCheckRequest(req *authv3.CheckRequest) authz.Request {
	attrs := req.GetAttributes()
	httpReq := attrs.GetRequest().GetHttp()
	// With with_request_body Envoy sends the body (or its beginning, with
	// allow_partial_message) as body, or as raw_body with pack_as_bytes.
	body := httpReq.GetBody()
	if raw := httpReq.GetRawBody(); len(raw) > 0 {
		body = string(raw)
	}
	return authz.Request{Headers: requestHeaders(httpReq), ContextExtensions: attrs.GetContextExtensions(),
		Host: httpReq.GetHost(), Path: httpReq.GetPath(), Body: body}
}

// requestHeaders returns the request's headers with lower-case names: the
// CheckRequest's own map when it will do, else a copy.
func requestHeaders(httpReq *authv3.AttributeContext_HttpRequest) map[string]string {
	src := httpReq.GetHeaders()
	// With encode_raw_headers Envoy sends header_map instead.
	raw := httpReq.GetHeaderMap().GetHeaders()
	if len(raw) == 0 && lowerCaseKeys(src) {
		return src
	}
	headers := make(map[string]string, len(src)+len(raw))
	for k, v := range src {
		headers[strings.ToLower(k)] = v
	}
	for _, h := range raw {
		v := h.GetValue()
		if len(h.GetRawValue()) > 0 {
			v = string(h.GetRawValue())
		}
		headers[strings.ToLower(h.GetKey())] = v
	}
	return headers
}

// lowerCaseKeys reports whether no key of m has an upper-case letter (ASCII
// or not): strings.ToLower returns such a key as it is, without allocating.
func lowerCaseKeys(m map[string]string) bool {
	for k := range m {
		if strings.ToLower(k) != k {
			return false
		}
	}
	return true
}

// ToCheckResponse renders a decision. Headers set on an allowed request
// overwrite any client value: both append=false (read by older Envoys) and
// OVERWRITE_IF_EXISTS_OR_ADD (read by newer ones) are set.
//
// The messages of one response are allocated together (one allocation for
// an allow with one header), since a Check's garbage is most of what the
// service's garbage collector has to keep up with; the response is an
// ordinary message to its reader.
func ToCheckResponse(r authz.Response) *authv3.CheckResponse {
	if r.Allowed {
		m := new(okMessages)
		m.http.HeadersToRemove = r.RemoveHeaders
		if len(r.Headers) == 1 {
			m.one[0] = m.oneOpt.set(r.Headers[0])
			m.http.Headers = m.one[:]
		} else {
			m.http.Headers = headerOptions(r.Headers)
		}
		m.ok.OkResponse = &m.http
		m.resp.Status, m.resp.HttpResponse = &m.status, &m.ok
		return &m.resp
	}
	m := new(deniedMessages)
	m.status.Code = int32(grpcCode(r.Status))
	m.httpStatus.Code = typev3.StatusCode(r.Status)
	m.http.Status, m.http.Headers, m.http.Body = &m.httpStatus, headerOptions(r.Headers), r.Body
	m.denied.DeniedResponse = &m.http
	m.resp.Status, m.resp.HttpResponse = &m.status, &m.denied
	return &m.resp
}

// okMessages are the messages of an allow, allocated together; one and
// oneOpt hold the header of an allow that sets one.
type okMessages struct {
	resp   authv3.CheckResponse
	status rpcstatus.Status // code OK (zero)
	ok     authv3.CheckResponse_OkResponse
	http   authv3.OkHttpResponse
	one    [1]*corev3.HeaderValueOption
	oneOpt headerOption
}

// deniedMessages are the messages of a deny but its headers, allocated
// together.
type deniedMessages struct {
	resp       authv3.CheckResponse
	status     rpcstatus.Status
	denied     authv3.CheckResponse_DeniedResponse
	http       authv3.DeniedHttpResponse
	httpStatus typev3.HttpStatus
}

// headerOption is the messages of one header to set, allocated together.
type headerOption struct {
	opt    corev3.HeaderValueOption
	header corev3.HeaderValue
	append wrapperspb.BoolValue // false
}

// set fills o with h, to overwrite any client value, and returns its option.
func (o *headerOption) set(h authz.Header) *corev3.HeaderValueOption {
	o.header.Key, o.header.Value = h.Name, h.Value
	o.opt.Header = &o.header
	//lint:ignore SA1019 older Envoys read only the deprecated append field.
	o.opt.Append = &o.append
	o.opt.AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	return &o.opt
}

func headerOptions(hs []authz.Header) []*corev3.HeaderValueOption {
	opts := make([]headerOption, len(hs))
	out := make([]*corev3.HeaderValueOption, len(hs))
	for i, h := range hs {
		out[i] = opts[i].set(h)
	}
	return out
}

// grpcCode is the CheckResponse status matching an HTTP deny status.
func grpcCode(httpStatus int) codes.Code {
	switch {
	case httpStatus == 401:
		return codes.Unauthenticated
	case httpStatus == 403:
		return codes.PermissionDenied
	case httpStatus == 503:
		return codes.Unavailable
	case httpStatus >= 500:
		return codes.Internal
	default:
		return codes.PermissionDenied
	}
}

// Options configures New.
type Options struct {
	// Reflection registers the gRPC reflection service.
	Reflection bool
	// ServerOptions are passed to grpc.NewServer.
	ServerOptions []grpc.ServerOption
	// Logger receives internal errors; nil discards them.
	Logger *slog.Logger
	// TracerProvider, when not nil, gives every RPC but health checks a span
	// parented by the trace context in the gRPC metadata (see tracing).
	TracerProvider trace.TracerProvider
}

// streamWorkers is the number of goroutines New keeps for handling Checks:
// four per CPU the Go scheduler uses (GOMAXPROCS), so that Checks answered
// from memory, which never block, always find one.
func streamWorkers() int { return 4 * runtime.GOMAXPROCS(0) }

// recoverPanics turns a panic in a handler into an Internal error instead
// of a crash. The panic value is not logged: it could hold a token; its type
// and the stack (which shows no string contents) are.
func recoverPanics(log *slog.Logger) grpc.UnaryServerInterceptor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				log.ErrorContext(ctx, "panic in gRPC handler", "method", info.FullMethod,
					"panic_type", fmt.Sprintf("%T", r), "stack", string(debug.Stack()))
				resp, err = nil, status.Error(codes.Internal, "internal error")
			}
		}()
		return handler(ctx, req)
	}
}

// New returns a gRPC server with the Check service for d and the standard
// health service, reporting SERVING for both the server as a whole ("") and
// the Authorization service. The returned health server lets the caller turn
// them NOT_SERVING on shutdown.
//
// Checks are handled by a pool of streamWorkers() goroutines, each of which
// keeps the stack it has grown: a Check on a fresh goroutine per call (gRPC's
// default) grows and copies its stack every time, which measured 14 % of the
// service's CPU on the hot path. When every worker is busy (Checks waiting on
// the database or a provider), a Check gets a goroutine of its own as
// before.
func New(d Decider, opts Options) (*grpc.Server, *health.Server) {
	sopts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(recoverPanics(opts.Logger)),
		grpc.NumStreamWorkers(uint32(streamWorkers()))}
	if opts.TracerProvider != nil {
		sopts = append(sopts, tracing(opts.TracerProvider))
	}
	s := grpc.NewServer(append(sopts, opts.ServerOptions...)...)
	authv3.RegisterAuthorizationServer(s, NewAuthorization(d))
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, hs)
	if opts.Reflection {
		reflection.Register(s)
	}
	return s, hs
}
