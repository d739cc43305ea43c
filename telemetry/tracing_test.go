package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/extauthz/extauthz/oauthclient"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/telemetry"
	"github.com/extauthz/extauthz/upstreamtoken"
)

func tracEnv(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

func TestTracingEnabled(t *testing.T) {
	for _, tt := range []struct {
		env     map[string]string
		on      bool
		wantErr string
	}{
		{env: nil},
		{env: map[string]string{"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, on: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": " OTLP "}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}},
		{env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}},
		{env: map[string]string{"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}},
		{env: map[string]string{"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantErr: "OTEL_TRACES_EXPORTER"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, wantErr: "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, on: true},
		// The protocol of an exporter that is off does not matter.
		{env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}},
	} {
		on, err := telemetry.TracingEnabled(tracEnv(tt.env))
		if on != tt.on || (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("TracingEnabled(%v) = %v, %v; want %v, error containing %q", tt.env, on, err, tt.on, tt.wantErr)
		}
	}
}

// tracKeepGlobals restores the OpenTelemetry globals SetupTracing sets.
func tracKeepGlobals(t *testing.T) {
	tp, prop := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	t.Cleanup(func() { otel.SetTracerProvider(tp); otel.SetTextMapPropagator(prop) })
}

func TestSetupTracingOffByDefault(t *testing.T) {
	tracKeepGlobals(t)
	before := otel.GetTracerProvider()
	tp, shutdown, err := telemetry.SetupTracing(t.Context(), tracEnv(nil), "extauthz", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tp.(*sdktrace.TracerProvider); ok {
		t.Fatal("tracing is on with an empty environment")
	}
	_, span := tp.Tracer("x").Start(t.Context(), "s")
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Error("the no-op provider records spans")
	}
	span.End()
	if otel.GetTracerProvider() != before {
		t.Error("SetupTracing changed the global provider while off")
	}
	if err := shutdown(t.Context()); err != nil {
		t.Error(err)
	}

	if _, _, err := telemetry.SetupTracing(t.Context(), tracEnv(map[string]string{"OTEL_TRACES_EXPORTER": "jaeger"}), "extauthz", "v1"); err == nil {
		t.Error("an unsupported exporter is not an error")
	}
}

func TestSetupTracingBuildsExporter(t *testing.T) {
	tracKeepGlobals(t)
	// Nothing listens there: the exporter connects lazily, and shutdown
	// gives up at its deadline.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_SERVICE_NAME", "")
	tp, shutdown, err := telemetry.SetupTracing(t.Context(), nil, "extauthz", "v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	sdk, ok := tp.(*sdktrace.TracerProvider)
	if !ok {
		t.Fatalf("provider is %T, want the SDK's", tp)
	}
	if otel.GetTracerProvider() != tp {
		t.Error("the global provider is not set")
	}
	if f := otel.GetTextMapPropagator().Fields(); !strings.Contains(strings.Join(f, ","), "traceparent") || !strings.Contains(strings.Join(f, ","), "baggage") {
		t.Errorf("global propagator fields %v, want W3C trace context and baggage", f)
	}
	_, span := sdk.Tracer("x").Start(t.Context(), "s")
	if !span.IsRecording() {
		t.Error("span not recording")
	}
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_ = shutdown(ctx) // the export fails: nothing listens
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown took %v", d)
	}
}

type tracFakeRefresher struct{ err error }

func (f tracFakeRefresher) Refresh(context.Context, string, string) (store.Tokens, error) {
	if f.err != nil {
		return store.Tokens{}, f.err
	}
	return store.Tokens{AccessToken: "at-SECRET-new", RefreshToken: "rt-SECRET-new"}, nil
}

func TestTraceRefresher(t *testing.T) {
	for _, tt := range []struct {
		err     error
		outcome string
	}{
		{nil, "ok"},
		{fmt.Errorf("%w: x", upstreamtoken.ErrRefreshFailed), "refused"},
		{fmt.Errorf("%w: x", upstreamtoken.ErrUpstreamUnavailable), "unavailable"},
		{fmt.Errorf("%w: %w", upstreamtoken.ErrUpstreamUnavailable, upstreamtoken.ErrProviderMisconfigured), "misconfigured"},
		{fmt.Errorf("%w: %w", upstreamtoken.ErrUpstreamUnavailable, upstreamtoken.ErrUnknownRefusal), "unknown_refusal"},
		{errors.New("rt-SECRET-old leaked"), "unavailable"},
	} {
		sr := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
		r := telemetry.TraceRefresher(tracFakeRefresher{tt.err}, tp)
		_, err := r.Refresh(t.Context(), "github", "rt-SECRET-old")
		if err != tt.err {
			t.Errorf("error %v, want %v passed through", err, tt.err)
		}
		spans := sr.Ended()
		if len(spans) != 1 || spans[0].Name() != "refresh" {
			t.Fatalf("spans %v, want one refresh span", spans)
		}
		sp := spans[0]
		attrs := map[string]string{}
		for _, kv := range sp.Attributes() {
			attrs[string(kv.Key)] = kv.Value.String()
		}
		if attrs[telemetry.SpanAttrProvider] != "github" || attrs[telemetry.SpanAttrOutcome] != tt.outcome {
			t.Errorf("attributes %v, want provider github and outcome %s", attrs, tt.outcome)
		}
		wantStatus := codes.Unset
		if tt.err != nil {
			wantStatus = codes.Error
		}
		if sp.Status().Code != wantStatus || (tt.err != nil && sp.Status().Description != tt.outcome) {
			t.Errorf("status %v, want %v with the fixed description %q", sp.Status(), wantStatus, tt.outcome)
		}
		tracAssertNoSecret(t, sp)
	}
	if got := telemetry.TraceRefresher(tracFakeRefresher{}, nil); got != (tracFakeRefresher{}) {
		t.Errorf("TraceRefresher(r, nil) = %T, want r", got)
	}
}

// TestTraceRefresherProviderAnswer records the HTTP status and OAuth error
// code of a real refresh the provider refused.
func TestTraceRefresherProviderAnswer(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"rt-SECRET-old is revoked"}`))
	}))
	defer ts.Close()
	c, err := oauthclient.New(map[string]oauthclient.Provider{"github": {TokenURL: ts.URL, ClientID: "cid", ClientSecret: "cs-SECRET", AuthMethod: oauthclient.ClientSecretBasic}})
	if err != nil {
		t.Fatal(err)
	}
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	_, err = telemetry.TraceRefresher(c, tp).Refresh(t.Context(), "github", "rt-SECRET-old")
	if !errors.Is(err, upstreamtoken.ErrRefreshFailed) {
		t.Fatalf("Refresh = %v, want ErrRefreshFailed", err)
	}
	sp := sr.Ended()[0]
	attrs := map[string]string{}
	for _, kv := range sp.Attributes() {
		attrs[string(kv.Key)] = kv.Value.String()
	}
	if attrs[telemetry.SpanAttrHTTPStatus] != "400" || attrs[telemetry.SpanAttrOAuthError] != "invalid_grant" || attrs[telemetry.SpanAttrOutcome] != "refused" {
		t.Errorf("attributes %v", attrs)
	}
	tracAssertNoSecret(t, sp)
}

func tracAssertNoSecret(t *testing.T, sp sdktrace.ReadOnlySpan) {
	t.Helper()
	texts := []string{sp.Name(), sp.Status().Description}
	for _, kv := range sp.Attributes() {
		texts = append(texts, kv.Value.String())
	}
	for _, ev := range sp.Events() {
		texts = append(texts, ev.Name)
		for _, kv := range ev.Attributes {
			texts = append(texts, kv.Value.String())
		}
	}
	for _, s := range texts {
		if strings.Contains(s, "SECRET") {
			t.Errorf("span %s carries a secret: %q", sp.Name(), s)
		}
	}
}
