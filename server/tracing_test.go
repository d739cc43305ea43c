package server_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/server"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/memory"
	"github.com/extauthz/extauthz/store/traced"
)

const (
	secretSession = "sess-SECRET-5d2a"
	secretSubject = "sub-SECRET-81c0"
	secretClient  = "client-SECRET-0b9e"
	secretAccess  = "gho_SECRET-access-77"
	secretRefresh = "ghr_SECRET-refresh-88"
	secretID      = "id-SECRET-token-99"
	secretJWT     = "eyJSECRET.jwt.value"

	// The trace context Envoy sends in gRPC metadata.
	envoyTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	envoySpanID  = "00f067aa0ba902b7"
	// The trace context a client put in its own HTTP request.
	clientTraceID = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	clientSpanID  = "bbbbbbbbbbbbbbbb"
)

var secrets = []string{secretSession, secretSubject, secretClient, secretAccess, secretRefresh, secretID, secretJWT,
	clientTraceID, clientSpanID}

// storeDecider reads the session's row from its store, so that a Check
// makes a store call and so a store span.
type storeDecider struct{ st store.Store }

func (d storeDecider) Check(ctx context.Context, _ authz.Request) authz.Response {
	row, err := d.st.Get(ctx, secretSession, "github")
	if err != nil {
		return authz.Response{Status: 503}
	}
	return authz.Response{Allowed: true, Status: 200, Headers: []authz.Header{{Name: "authorization", Value: "Bearer " + row.AccessToken}}}
}

func TestCheckSpanParentedByMetadataNotHeader(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	mem := memory.New()
	if err := mem.Put(context.Background(), store.Row{SessionID: secretSession, Provider: "github",
		Subject: secretSubject, ClientID: secretClient,
		Tokens: store.Tokens{AccessToken: secretAccess, RefreshToken: secretRefresh, IDToken: secretID}}); err != nil {
		t.Fatal(err)
	}
	srv, _ := server.New(storeDecider{traced.New(mem, tp)}, server.Options{TracerProvider: tp})
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
	defer func() { _ = conn.Close() }()

	// Envoy's trace context goes in gRPC metadata, injected as Envoy does
	// (W3C trace context).
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: mustTraceID(t, envoyTraceID), SpanID: mustSpanID(t, envoySpanID),
		TraceFlags: trace.FlagsSampled, Remote: true,
	})
	md := metadata.MD{}
	propagation.TraceContext{}.Inject(trace.ContextWithRemoteSpanContext(context.Background(), parent), metadataCarrier(md))
	if got := md.Get("traceparent"); len(got) != 1 || !strings.Contains(got[0], envoyTraceID) {
		t.Fatalf("injected metadata = %v", md)
	}
	ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(context.Background(), md), 10*time.Second)
	defer cancel()

	// The client's own traceparent, inside the CheckRequest.
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Headers: map[string]string{
			"authorization": "Bearer " + secretJWT,
			"traceparent":   "00-" + clientTraceID + "-" + clientSpanID + "-01",
			"tracestate":    "evil=" + clientSpanID,
		}},
	}}}
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetOkResponse() == nil {
		t.Fatalf("Check = %v, want OK", resp)
	}
	// Health checks are not traced.
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}

	checkSpan, storeSpan := waitForSpans(t, sr)
	if got := checkSpan.SpanContext().TraceID().String(); got != envoyTraceID {
		t.Errorf("Check span trace ID %s, want the metadata's %s", got, envoyTraceID)
	}
	if got := checkSpan.Parent(); got.SpanID().String() != envoySpanID || got.TraceID().String() != envoyTraceID || !got.IsRemote() {
		t.Errorf("Check span parent %s/%s remote=%v, want the metadata's %s/%s", got.TraceID(), got.SpanID(), got.IsRemote(), envoyTraceID, envoySpanID)
	}
	if checkSpan.SpanKind() != trace.SpanKindServer {
		t.Errorf("Check span kind %v", checkSpan.SpanKind())
	}
	if storeSpan.Parent().SpanID() != checkSpan.SpanContext().SpanID() || storeSpan.SpanContext().TraceID() != checkSpan.SpanContext().TraceID() {
		t.Errorf("store span parent %s, want the Check span %s", storeSpan.Parent().SpanID(), checkSpan.SpanContext().SpanID())
	}

	for _, sp := range sr.Ended() {
		if strings.HasPrefix(sp.Name(), "grpc.health") {
			t.Errorf("health check traced: %s", sp.Name())
		}
		texts := []string{sp.Name(), sp.Status().Description, sp.Parent().TraceID().String(), sp.Parent().SpanID().String(),
			sp.SpanContext().TraceState().String()}
		texts = appendAttrs(texts, sp.Attributes())
		texts = appendAttrs(texts, sp.Resource().Attributes())
		for _, ev := range sp.Events() {
			texts = appendAttrs(append(texts, ev.Name), ev.Attributes)
		}
		for _, l := range sp.Links() {
			texts = appendAttrs(append(texts, l.SpanContext.TraceID().String(), l.SpanContext.SpanID().String()), l.Attributes)
		}
		for _, text := range texts {
			for _, sec := range secrets {
				if strings.Contains(text, sec) {
					t.Errorf("span %s carries %q: %q", sp.Name(), sec, text)
				}
			}
		}
	}
}

// waitForSpans waits for the Check span, which otelgrpc may end just after
// the client has its answer, and returns it with the store span.
func waitForSpans(t *testing.T, sr *tracetest.SpanRecorder) (check, st sdktrace.ReadOnlySpan) {
	t.Helper()
	defer func() {
		if t.Failed() {
			var names []string
			for _, sp := range sr.Ended() {
				names = append(names, sp.Name())
			}
			t.Logf("spans ended: %v", names)
		}
	}()
	testutil.Eventually(t, 5*time.Second, "the Check span and a store.Get span", func() bool {
		check, st = nil, nil
		for _, sp := range sr.Ended() {
			switch sp.Name() {
			case "envoy.service.auth.v3.Authorization/Check":
				check = sp
			case "store.Get":
				st = sp
			}
		}
		return check != nil && st != nil
	})
	return check, st
}

func appendAttrs(texts []string, kvs []attribute.KeyValue) []string {
	for _, kv := range kvs {
		texts = append(texts, string(kv.Key)+"="+kv.Value.String())
	}
	return texts
}

// metadataCarrier lets a propagator write gRPC metadata.
type metadataCarrier metadata.MD

func (c metadataCarrier) Get(k string) string {
	if v := metadata.MD(c).Get(k); len(v) > 0 {
		return v[0]
	}
	return ""
}
func (c metadataCarrier) Set(k, v string) { metadata.MD(c).Set(k, v) }
func (c metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

func mustTraceID(t *testing.T, s string) trace.TraceID {
	t.Helper()
	id, err := trace.TraceIDFromHex(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func mustSpanID(t *testing.T, s string) trace.SpanID {
	t.Helper()
	id, err := trace.SpanIDFromHex(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
