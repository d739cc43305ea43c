package cli

import (
	"context"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/extauthz/extauthz/telemetry"
)

// setupTracing turns OpenTelemetry tracing on when the OTEL_* environment
// variables ask for it (see telemetry.TracingEnabled). When tracing is off it
// returns a nil provider, which server.Options, observed.Options and
// telemetry.TraceRefresher all take to mean "no tracing", and a shutdown that
// does nothing. A setting this build cannot honour is a usage error (exit 2).
// Export failures are logged as warnings: they never fail a Check.
func setupTracing(ctx context.Context, env Env, log *slog.Logger) (trace.TracerProvider, func(context.Context) error, error) {
	noop := func(context.Context) error { return nil }
	on, err := telemetry.TracingEnabled(env.Getenv)
	if err != nil {
		return nil, noop, fmt.Errorf("%w: tracing: %w", errUsage, err)
	}
	if !on {
		return nil, noop, nil
	}
	tp, shutdown, err := telemetry.SetupTracing(ctx, env.Getenv, "extauthz", versionString())
	if err != nil {
		return nil, noop, fmt.Errorf("%w: %w", errUsage, err)
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing: export failed", "error", err)
	}))
	log.Info("tracing on: OTLP over gRPC, configured by OTEL_* variables")
	return tp, shutdown, nil
}
