package server

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

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

type panicky struct{}

func (panicky) Check(context.Context, authz.Request) authz.Response {
	panic("token gho_leaky in a panic")
}

func TestPanicBecomesInternalWithoutLeaking(t *testing.T) {
	var logs bytes.Buffer
	srv, _ := New(panicky{}, Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = authv3.NewAuthorizationClient(conn).Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{}}}})
	if status.Code(err) != codes.Internal || strings.Contains(err.Error(), "gho_leaky") {
		t.Fatalf("err = %v, want Internal without the panic value", err)
	}
	if !strings.Contains(logs.String(), "panic in gRPC handler") || strings.Contains(logs.String(), "gho_leaky") {
		t.Errorf("logs = %s", logs.String())
	}
}
