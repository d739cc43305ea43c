package server

import (
	"context"
	"net"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/extauthz/extauthz/authz"
)

// benchCheckRequest is what Envoy sends for a typical API call: addresses,
// the request line and a handful of headers, the bearer JWT among them.
func benchCheckRequest() *authv3.CheckRequest {
	const jwt = "eyJhbGciOiJFUzI1NiIsImtpZCI6IjEyMyIsInR5cCI6IkpXVCJ9." +
		"eyJpc3MiOiJodHRwczovL2FzLmV4YW1wbGUiLCJhdWQiOiJodHRwczovL2FwaS5leGFtcGxlIiwic3ViIjoidXNlci0wMDAwMSIsImNsaWVudF9pZCI6ImFwcCIsInRzaWQiOiJzLTAwMDAxIiwiZXhwIjo0MTAyNDQ0ODAwfQ." +
		"MEUCIQDf0v0TzLq8Xq2hKq9z1kq1c0nM2yQm9r1cYw7r4sX3bgIgT0b3wq8kq4Yx8q2YwzV1mJb6u0mZ2wqQx0c1u9mJ4aA"
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		ContextExtensions: map[string]string{"upstream_providers": "gh"},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "4711", Method: "GET", Path: "/v1/items?limit=20", Host: "api.example", Scheme: "https", Protocol: "HTTP/1.1",
			Headers: map[string]string{
				":authority":        "api.example",
				":method":           "GET",
				":path":             "/v1/items?limit=20",
				":scheme":           "https",
				"accept":            "application/json",
				"user-agent":        "bench-client/1.0",
				"x-forwarded-proto": "https",
				"x-request-id":      "00000000-0000-4000-8000-000000000001",
				"authorization":     "Bearer " + jwt,
			},
		}},
	}}
}

// benchAllow is the allow decision of the hot path with one provider: the
// upstream token set, the other configured headers removed.
var benchAllow = authz.Response{
	Allowed: true, Status: 200, Reason: "ok",
	Headers:       []authz.Header{{Name: "authorization", Value: "Bearer gho_16C7e42F292c6912E7710c838347Ae178B4a"}},
	RemoveHeaders: []string{"x-google-id", "x-google-token"},
}

var benchDeny = authz.Response{
	Status: 401, Reason: "invalid_token",
	Headers: []authz.Header{
		{Name: "www-authenticate", Value: `Bearer realm="api", error="invalid_token", error_description="the access token is invalid"`},
		{Name: "content-type", Value: "application/json"},
	},
	Body: `{"error":"invalid_token","error_description":"the access token is invalid"}`,
}

// fixedDecider answers every Check with the same response.
type fixedDecider struct{ resp authz.Response }

func (f fixedDecider) Check(context.Context, authz.Request) authz.Response { return f.resp }

// BenchmarkCheckGRPC measures what the gRPC front adds to a decision: the
// conversions from a CheckRequest and to a CheckResponse, the handler with
// both, and a whole Check over an in-memory gRPC connection to the server
// New builds (marshalling, HTTP/2 framing, interceptors; no network).
func BenchmarkCheckGRPC(b *testing.B) {
	req := benchCheckRequest()
	b.Run("FromCheckRequest", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r := FromCheckRequest(req); len(r.Headers) == 0 {
				b.Fatal("no headers")
			}
		}
	})
	b.Run("ToCheckResponse/allow", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r := ToCheckResponse(benchAllow); r.GetOkResponse() == nil {
				b.Fatal("not OK")
			}
		}
	})
	b.Run("ToCheckResponse/deny", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r := ToCheckResponse(benchDeny); r.GetDeniedResponse() == nil {
				b.Fatal("not denied")
			}
		}
	})
	b.Run("Authorization.Check", func(b *testing.B) {
		a := NewAuthorization(fixedDecider{benchAllow})
		ctx := b.Context()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.Check(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bufconn", func(b *testing.B) {
		lis := bufconn.Listen(1 << 20)
		srv, _ := New(fixedDecider{benchAllow}, Options{})
		go func() { _ = srv.Serve(lis) }()
		b.Cleanup(srv.Stop)
		conn, err := grpc.NewClient("passthrough:///bufconn",
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		client := authv3.NewAuthorizationClient(conn)
		ctx := b.Context()
		if _, err := client.Check(ctx, req); err != nil { // connect outside the loop
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			resp, err := client.Check(ctx, req)
			if err != nil {
				b.Fatal(err)
			}
			if resp.GetOkResponse() == nil {
				b.Fatal("not OK")
			}
		}
	})
}
