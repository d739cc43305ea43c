package telemetry

// Tracing: OpenTelemetry set-up from the standard OTEL_* environment
// variables, and a tracing decorator for the refresher. The Check span comes
// from otelgrpc (package server) and store spans from package store/observed.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/upstreamtoken"
)

// TraceScope is the instrumentation scope (tracer name) of the spans this
// package starts.
const TraceScope = "github.com/extauthz/extauthz/telemetry"

// TracePropagator is the propagator extauthz uses: W3C trace context and
// baggage.
func TracePropagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// TracingEnabled reports whether the OTEL_* variables read through getenv
// ask for traces to be exported, and an error naming the variable when they
// ask for something this build cannot do.
//
// Tracing is off unless OTEL_TRACES_EXPORTER is "otlp" or an OTLP endpoint
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set.
// OTEL_SDK_DISABLED=true and OTEL_TRACES_EXPORTER=none turn it off whatever
// else is set. Only the OTLP exporter over gRPC is built in: another exporter
// or OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL other than "grpc" is an error
// rather than traces silently lost.
func TracingEnabled(getenv func(string) string) (bool, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }
	if strings.EqualFold(get("OTEL_SDK_DISABLED"), "true") {
		return false, nil
	}
	on := get("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	if exp := get("OTEL_TRACES_EXPORTER"); exp != "" {
		otlp := false
		for _, e := range strings.Split(exp, ",") {
			switch e = strings.ToLower(strings.TrimSpace(e)); e {
			case "none":
				return false, nil
			case "otlp":
				otlp = true
			default:
				return false, fmt.Errorf("OTEL_TRACES_EXPORTER: exporter %q is not supported (use otlp or none)", e)
			}
		}
		on = otlp
	}
	if !on {
		return false, nil
	}
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := get(k); p != "" {
			if !strings.EqualFold(p, "grpc") {
				return false, fmt.Errorf("%s: protocol %q is not supported (use grpc)", k, p)
			}
			break // the signal-specific variable wins
		}
	}
	return true, nil
}

// SetupTracing returns the tracer provider the service should use and a
// function that flushes and stops it.
//
// When TracingEnabled(getenv) is false it returns a no-op provider and a
// no-op shutdown, and changes no global state. Otherwise it builds an OTLP
// gRPC exporter (which reads OTEL_EXPORTER_OTLP_* itself, from the process
// environment: endpoint, headers, certificates, time-out, compression), a
// batch span processor (OTEL_BSP_*), a resource with service.name and
// service.version (OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override
// them) and the sampler named by OTEL_TRACES_SAMPLER (default: follow the
// parent, sample roots). It also installs the provider and the W3C trace
// context and baggage propagator as the OpenTelemetry globals. Spans are
// never given a panic's value: panic recording is off.
//
// A nil getenv means os.Getenv. getenv only decides whether tracing is on;
// the SDK reads the rest of its configuration from the process environment.
func SetupTracing(ctx context.Context, getenv func(string) string, serviceName, version string) (tracerProvider trace.TracerProvider, shutdown func(context.Context) error, err error) {
	noShutdown := func(context.Context) error { return nil }
	on, err := TracingEnabled(getenv)
	if err != nil || !on {
		return tracenoop.NewTracerProvider(), noShutdown, err
	}
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return tracenoop.NewTracerProvider(), noShutdown, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", serviceName)}
	if version != "" {
		attrs = append(attrs, attribute.String("service.version", version))
	}
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attrs...),
		resource.WithFromEnv(), // later detectors win: OTEL_SERVICE_NAME overrides ours
	)
	if err != nil && res == nil {
		_ = exp.Shutdown(ctx)
		return tracenoop.NewTracerProvider(), noShutdown, fmt.Errorf("tracing: resource: %w", err)
	}
	// A partial resource (a malformed OTEL_RESOURCE_ATTRIBUTES) is still used.
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithoutPanicRecording(),
	)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(TracePropagator())
	return tp, tp.Shutdown, nil
}

// Span attribute keys used by the decorators. None of them carries a
// session ID, subject or token.
const (
	SpanAttrProvider   = "extauthz.provider"
	SpanAttrOutcome    = "extauthz.outcome"
	SpanAttrHTTPStatus = "http.response.status_code"
	SpanAttrOAuthError = "oauth.error"
)

// TraceRefresher returns r with a "refresh" span around every Refresh,
// carrying the provider's name and the outcome (upstreamtoken.RefreshOutcome,
// the words of the refresh metrics and logs) and, when the provider
// answered, the HTTP status and OAuth error code, never a token. The span's
// status description is the fixed outcome, not the error's text. A nil tp
// returns r unchanged.
func TraceRefresher(r upstreamtoken.Refresher, tp trace.TracerProvider) upstreamtoken.Refresher {
	if tp == nil || r == nil {
		return r
	}
	return &tracedRefresher{inner: r, tracer: tp.Tracer(TraceScope)}
}

// providerAnswer is a refresh error that says how the provider answered
// (*oauthclient.Error is one): the HTTP status, 0 when there was no answer,
// and the OAuth error code, "" when it sent none. Neither ever carries a
// token.
type providerAnswer interface {
	error
	HTTPStatus() int
	OAuthErrorCode() string
}

type tracedRefresher struct {
	inner  upstreamtoken.Refresher
	tracer trace.Tracer
}

func (t *tracedRefresher) Refresh(ctx context.Context, provider, refreshToken string) (store.Tokens, error) {
	ctx, span := t.tracer.Start(ctx, "refresh", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String(SpanAttrProvider, provider)))
	tok, err := t.inner.Refresh(ctx, provider, refreshToken)
	outcome := upstreamtoken.RefreshOutcome(err)
	span.SetAttributes(attribute.String(SpanAttrOutcome, outcome))
	if a, ok := errors.AsType[providerAnswer](err); ok {
		if status := a.HTTPStatus(); status != 0 {
			span.SetAttributes(attribute.Int(SpanAttrHTTPStatus, status))
		}
		if code := a.OAuthErrorCode(); code != "" {
			span.SetAttributes(attribute.String(SpanAttrOAuthError, code))
		}
	}
	if err != nil {
		span.SetStatus(codes.Error, outcome)
	}
	// Not deferred: a panic's value is never recorded on the span.
	span.End()
	return tok, err
}
