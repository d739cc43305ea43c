// Package traced is a store.Store decorator that starts an OpenTelemetry
// span around every store call: "store.Get", "store.GetSession",
// "store.Put", and so on, named after the method.
//
// A span carries the operation (extauthz.store.operation), the provider's
// name where the call has one (extauthz.provider), the number of rows a
// multi-row read returned, and the outcome (extauthz.outcome: "ok" or the
// class of the error, such as "not_found" or "unavailable"). It never
// carries a session ID, subject, client ID, lease owner or token, and an
// error's text is not recorded: the span status holds the fixed outcome.
// Outcomes a caller expects in normal operation (not_found, lease_lost,
// conflict) leave the status unset; the others set it to Error.
//
// If the wrapped store implements store.Rewriter or store.Collector, so does
// the decorator.
package traced

import (
	"context"
	"errors"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/extauthz/extauthz/store"
)

// Scope is the instrumentation scope (tracer name) of the store spans.
const Scope = "github.com/extauthz/extauthz/store/traced"

// Attribute keys.
const (
	AttrOperation = "extauthz.store.operation"
	AttrProvider  = "extauthz.provider"
	AttrOutcome   = "extauthz.outcome"
	AttrRows      = "extauthz.store.rows"
	AttrHeld      = "extauthz.store.lease_held"
	AttrRan       = "extauthz.store.ran"
)

// Outcomes.
const (
	OutcomeOK          = "ok"
	OutcomeNotFound    = "not_found"
	OutcomeLeaseLost   = "lease_lost"
	OutcomeConflict    = "conflict"
	OutcomeInvalid     = "invalid"
	OutcomeUnavailable = "unavailable"
	OutcomeUnreadable  = "unreadable"
	OutcomeError       = "error"
)

// Store wraps a store.Store with spans. It is safe for concurrent use when
// the inner store is.
type Store struct {
	inner  store.Store
	tracer trace.Tracer
}

var _ store.Store = (*Store)(nil)

// rewriter adds the store.Rewriter methods to a Store.
type rewriter struct {
	s  *Store
	rw store.Rewriter
}

// collector adds the store.Collector methods to a Store.
type collector struct {
	s *Store
	c store.Collector
}

var (
	_ store.Rewriter  = rewriter{}
	_ store.Collector = collector{}
)

// New returns inner with a span around every call, from tp. If inner
// implements store.Rewriter or store.Collector, the result does too. A nil
// tp returns inner unchanged.
func New(inner store.Store, tp trace.TracerProvider) store.Store {
	if tp == nil {
		return inner
	}
	s := &Store{inner: inner, tracer: tp.Tracer(Scope)}
	rw, isRW := inner.(store.Rewriter)
	c, isC := inner.(store.Collector)
	switch {
	case isRW && isC:
		return &struct {
			*Store
			rewriter
			collector
		}{s, rewriter{s, rw}, collector{s, c}}
	case isRW:
		return &struct {
			*Store
			rewriter
		}{s, rewriter{s, rw}}
	case isC:
		return &struct {
			*Store
			collector
		}{s, collector{s, c}}
	default:
		return s
	}
}

// Outcome classifies a store error into one of the Outcome values.
func Outcome(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, store.ErrLeaseLost):
		return OutcomeLeaseLost
	case errors.Is(err, store.ErrNotFound):
		return OutcomeNotFound
	case errors.Is(err, store.ErrConflict):
		return OutcomeConflict
	case errors.Is(err, store.ErrInvalid):
		return OutcomeInvalid
	case errors.Is(err, store.ErrUnreadable):
		return OutcomeUnreadable
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return OutcomeUnavailable
	default:
		return OutcomeError
	}
}

// start starts the span named name, "store." and the operation: the name is
// a constant at each call site, so that no Check builds it.
func (s *Store) start(ctx context.Context, name, provider string) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{attribute.String(AttrOperation, strings.TrimPrefix(name, "store."))}
	if provider != "" {
		attrs = append(attrs, attribute.String(AttrProvider, provider))
	}
	return s.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// end records err's outcome and ends span. It is called after the inner
// call returns, never deferred, so that a panic's value cannot reach a span.
func end(span trace.Span, err error, attrs ...attribute.KeyValue) {
	outcome := Outcome(err)
	span.SetAttributes(append(attrs, attribute.String(AttrOutcome, outcome))...)
	switch outcome {
	case OutcomeOK, OutcomeNotFound, OutcomeLeaseLost, OutcomeConflict:
	default:
		span.SetStatus(codes.Error, outcome)
	}
	span.End()
}

// Get implements store.Reader.
func (s *Store) Get(ctx context.Context, sessionID, provider string) (store.Row, error) {
	ctx, span := s.start(ctx, "store.Get", provider)
	r, err := s.inner.Get(ctx, sessionID, provider)
	end(span, err)
	return r, err
}

// GetSession implements store.Reader.
func (s *Store) GetSession(ctx context.Context, sessionID string) ([]store.Row, error) {
	ctx, span := s.start(ctx, "store.GetSession", "")
	rows, err := s.inner.GetSession(ctx, sessionID)
	end(span, err, attribute.Int(AttrRows, len(rows)))
	return rows, err
}

// Put implements store.Writer.
func (s *Store) Put(ctx context.Context, row store.Row) error {
	ctx, span := s.start(ctx, "store.Put", row.Provider)
	err := s.inner.Put(ctx, row)
	end(span, err)
	return err
}

// Delete implements store.Writer.
func (s *Store) Delete(ctx context.Context, sessionID, provider string) error {
	ctx, span := s.start(ctx, "store.Delete", provider)
	err := s.inner.Delete(ctx, sessionID, provider)
	end(span, err)
	return err
}

// ClaimRefresh implements store.RefreshCoordinator.
func (s *Store) ClaimRefresh(ctx context.Context, sessionID, provider, owner string, ttl time.Duration) (store.Claim, error) {
	ctx, span := s.start(ctx, "store.ClaimRefresh", provider)
	c, err := s.inner.ClaimRefresh(ctx, sessionID, provider, owner, ttl)
	if err != nil {
		end(span, err)
	} else {
		end(span, err, attribute.Bool(AttrHeld, c.Held))
	}
	return c, err
}

// CompleteRefresh implements store.RefreshCoordinator.
func (s *Store) CompleteRefresh(ctx context.Context, sessionID, provider string, lease store.Lease, t store.Tokens) (store.Row, error) {
	ctx, span := s.start(ctx, "store.CompleteRefresh", provider)
	r, err := s.inner.CompleteRefresh(ctx, sessionID, provider, lease, t)
	end(span, err)
	return r, err
}

// ReleaseRefresh implements store.RefreshCoordinator.
func (s *Store) ReleaseRefresh(ctx context.Context, sessionID, provider string, lease store.Lease, reauth bool) error {
	ctx, span := s.start(ctx, "store.ReleaseRefresh", provider)
	err := s.inner.ReleaseRefresh(ctx, sessionID, provider, lease, reauth)
	end(span, err)
	return err
}

// Scan implements store.Rewriter.
func (r rewriter) Scan(ctx context.Context, after store.Key, limit int) ([]store.Row, error) {
	ctx, span := r.s.start(ctx, "store.Scan", "")
	rows, err := r.rw.Scan(ctx, after, limit)
	end(span, err, attribute.Int(AttrRows, len(rows)))
	return rows, err
}

// RewriteTokens implements store.Rewriter.
func (r rewriter) RewriteTokens(ctx context.Context, sessionID, provider string, version int64, t store.Tokens) error {
	ctx, span := r.s.start(ctx, "store.RewriteTokens", provider)
	err := r.rw.RewriteTokens(ctx, sessionID, provider, version, t)
	end(span, err)
	return err
}

// DeleteExpired implements store.Collector.
func (c collector) DeleteExpired(ctx context.Context, limit int) (int, error) {
	ctx, span := c.s.start(ctx, "store.DeleteExpired", "")
	n, err := c.c.DeleteExpired(ctx, limit)
	end(span, err, attribute.Int(AttrRows, n))
	return n, err
}

// RunExclusive implements store.Collector. Its span covers fn, so the
// pass's DeleteExpired spans are its children.
func (c collector) RunExclusive(ctx context.Context, fn func(ctx context.Context) error) (bool, error) {
	ctx, span := c.s.start(ctx, "store.RunExclusive", "")
	ran, err := c.c.RunExclusive(ctx, fn)
	end(span, err, attribute.Bool(AttrRan, ran))
	return ran, err
}
