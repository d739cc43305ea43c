package server

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/extauthz/extauthz/authz"
)

func TestFromCheckRequest(t *testing.T) {
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		ContextExtensions: map[string]string{"upstream_providers": "gh"},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Headers: map[string]string{"Authorization": "Bearer a", "x-other": "1"},
			HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: "x-raw", RawValue: []byte("raw")},
				{Key: "X-Plain", Value: "plain"},
			}},
		}},
	}}
	got := FromCheckRequest(req)
	want := authz.Request{
		Headers:           map[string]string{"authorization": "Bearer a", "x-other": "1", "x-raw": "raw", "x-plain": "plain"},
		ContextExtensions: map[string]string{"upstream_providers": "gh"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestFromCheckRequestHostAndPath(t *testing.T) {
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Host: "API.example.com:8443", Path: "/github/%61dmin?x=1", Query: "x=1",
			Headers: map[string]string{":authority": "ignored", ":path": "/ignored"},
		}},
	}}
	got := FromCheckRequest(req)
	// Passed on as Envoy sent them: the decision strips the query, the
	// port and the case, and normalizes the path, when it matches routes.
	if got.Host != "API.example.com:8443" || got.Path != "/github/%61dmin?x=1" {
		t.Errorf("Host %q Path %q", got.Host, got.Path)
	}
	if got := FromCheckRequest(&authv3.CheckRequest{}); got.Host != "" || got.Path != "" {
		t.Errorf("no attributes: Host %q Path %q", got.Host, got.Path)
	}
}

func TestToCheckResponse(t *testing.T) {
	ok := ToCheckResponse(authz.Response{Allowed: true, Status: 200,
		Headers: []authz.Header{{Name: "authorization", Value: "Bearer up"}}, RemoveHeaders: []string{"x-id"}})
	if codes.Code(ok.GetStatus().GetCode()) != codes.OK || ok.GetOkResponse() == nil {
		t.Fatalf("allowed response = %v", ok)
	}
	h := ok.GetOkResponse().GetHeaders()[0]
	//lint:ignore SA1019 older Envoys read the deprecated append field.
	if h.GetAppend() == nil || h.GetAppend().GetValue() || h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
		t.Errorf("header option %v must overwrite by both fields", h)
	}
	if got := ok.GetOkResponse().GetHeadersToRemove(); !reflect.DeepEqual(got, []string{"x-id"}) {
		t.Errorf("headers_to_remove = %v", got)
	}
	for status, code := range map[int]codes.Code{401: codes.Unauthenticated, 403: codes.PermissionDenied, 500: codes.Internal, 502: codes.Internal, 503: codes.Unavailable} {
		resp := ToCheckResponse(authz.Response{Status: status, Body: `{"error":"x"}`})
		d := resp.GetDeniedResponse()
		if d == nil || int(d.GetStatus().GetCode()) != status || codes.Code(resp.GetStatus().GetCode()) != code || d.GetBody() != `{"error":"x"}` {
			t.Errorf("deny %d = %v, want HTTP %d and status %v", status, resp, status, code)
		}
	}
}

// serve starts the server New builds for d on a loopback port, stopped
// when the test ends, and returns a client of it.
func serve(t *testing.T, d Decider, opts Options) authv3.AuthorizationClient {
	t.Helper()
	srv, _ := New(d, opts)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// goroutines records the goroutine each Check runs on.
type goroutines struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (g *goroutines) Check(context.Context, authz.Request) authz.Response {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := strings.Cut(strings.TrimPrefix(string(buf), "goroutine "), " ")
	g.mu.Lock()
	g.ids[id] = true
	g.mu.Unlock()
	return authz.Response{Allowed: true, Status: 200}
}

// TestChecksRunOnWorkers checks that Checks run on New's stream workers,
// which keep their grown stacks, not on a new goroutine each: more Checks
// than twice the workers, one after the other, run on at most streamWorkers()
// goroutines (without the workers, on as many as there are Checks).
func TestChecksRunOnWorkers(t *testing.T) {
	g := &goroutines{ids: map[string]bool{}}
	client := serve(t, g, Options{})
	checks := 2*streamWorkers() + 1
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{}}}}
	for range checks {
		if _, err := client.Check(t.Context(), req); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(g.ids); n == 0 || n > streamWorkers() {
		t.Errorf("%d Checks ran on %d goroutines, want 1 to %d (the stream workers)", checks, n, streamWorkers())
	}
}

type panicky struct{}

func (panicky) Check(context.Context, authz.Request) authz.Response {
	panic("token gho_leaky in a panic")
}

func TestPanicBecomesInternalWithoutLeaking(t *testing.T) {
	var logs bytes.Buffer
	client := serve(t, panicky{}, Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	_, err := client.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{}}}})
	if status.Code(err) != codes.Internal || strings.Contains(err.Error(), "gho_leaky") {
		t.Fatalf("err = %v, want Internal without the panic value", err)
	}
	if !strings.Contains(logs.String(), "panic in gRPC handler") || strings.Contains(logs.String(), "gho_leaky") {
		t.Errorf("logs = %s", logs.String())
	}
}

// TestToCheckResponseWire checks that the messages ToCheckResponse
// allocates together marshal as the plain literal of the same response.
func TestToCheckResponseWire(t *testing.T) {
	opt := func(name, value string) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{
			Header: &corev3.HeaderValue{Key: name, Value: value},
			//lint:ignore SA1019 older Envoys read only the deprecated append field.
			Append:       wrapperspb.Bool(false),
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}
	}
	allow := func(remove []string, hs ...*corev3.HeaderValueOption) *authv3.CheckResponse {
		return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{Headers: hs, HeadersToRemove: remove}}}
	}
	for _, tc := range []struct {
		name string
		in   authz.Response
		want *authv3.CheckResponse
	}{
		{"allow, no header", authz.Response{Allowed: true, Status: 200, RemoveHeaders: []string{"authorization"}},
			allow([]string{"authorization"})},
		{"allow, one header", authz.Response{Allowed: true, Status: 200,
			Headers: []authz.Header{{Name: "authorization", Value: "Bearer up"}}, RemoveHeaders: []string{"x-id", "x-other"}},
			allow([]string{"x-id", "x-other"}, opt("authorization", "Bearer up"))},
		{"allow, two headers", authz.Response{Allowed: true, Status: 200,
			Headers: []authz.Header{{Name: "authorization", Value: "Bearer up"}, {Name: "x-id", Value: "id"}}},
			allow(nil, opt("authorization", "Bearer up"), opt("x-id", "id"))},
		{"deny", authz.Response{Status: 503, Body: `{"error":"x"}`,
			Headers: []authz.Header{{Name: "content-type", Value: "application/json"}, {Name: "retry-after", Value: "2"}}},
			&authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.Unavailable)},
				HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
					Status:  &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
					Headers: []*corev3.HeaderValueOption{opt("content-type", "application/json"), opt("retry-after", "2")},
					Body:    `{"error":"x"}`,
				}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ToCheckResponse(tc.in)
			if !proto.Equal(got, tc.want) {
				t.Fatalf("got %v\nwant %v", got, tc.want)
			}
			g, err1 := proto.MarshalOptions{Deterministic: true}.Marshal(got)
			w, err2 := proto.MarshalOptions{Deterministic: true}.Marshal(tc.want)
			if err1 != nil || err2 != nil || !bytes.Equal(g, w) {
				t.Errorf("wire forms differ (errors %v, %v)", err1, err2)
			}
		})
	}
}

// TestFromCheckRequestHeaderNames checks that the headers come out with
// lower-case names whether or not FromCheckRequest copies them.
func TestFromCheckRequestHeaderNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   map[string]string
		want map[string]string
	}{
		{"lower-case", map[string]string{"authorization": "Bearer a", ":path": "/"}, map[string]string{"authorization": "Bearer a", ":path": "/"}},
		{"upper-case", map[string]string{"Authorization": "Bearer a", ":path": "/"}, map[string]string{"authorization": "Bearer a", ":path": "/"}},
		{"non-ASCII lower-case", map[string]string{"x-é": "1"}, map[string]string{"x-é": "1"}},
		{"non-ASCII upper-case", map[string]string{"x-É": "1"}, map[string]string{"x-é": "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
				Http: &authv3.AttributeContext_HttpRequest{Headers: tc.in}}}}
			if got := FromCheckRequest(req).Headers; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
