// Package observed is the store.Store decorator that lets operators see the
// store: every call is measured for metrics (its latency, whether it failed,
// whether the store answered; see package telemetry) and, when tracing is
// on, wrapped in an OpenTelemetry span. Both name the call's outcome with
// store.Classify, so a metric and a span never tell the same call apart
// differently.
//
// # Operations
//
// Metrics name the operations in snake case after the method: "get",
// "get_session", "put", "delete", "claim_refresh", "complete_refresh",
// "release_refresh" and "ping". Spans are named "store." and the method
// ("store.Get", "store.GetSession", and so on); Ping is measured but not
// traced. Measure records an operation made on the store's backend other
// than through the Store, such as garbage collection's "delete_expired".
//
// # Metrics
//
// An operation failed unless its outcome is an answer that callers expect in
// normal operation (store.Outcome.Failed). The store is up after any answer,
// an invalid outcome included (the store refused the values, it did not
// fail to answer), and down after an unavailable one; the other outcomes
// leave its state alone (store.Outcome.StoreUp). When the caller's context
// is already done, a failure says nothing about the store: its latency is
// recorded, but neither a failure nor the store's state. Watch pings the
// store periodically so that its state stays current while no request uses
// it.
//
// # Spans
//
// A span carries the operation (extauthz.store.operation, the method's
// name), the provider's name where the call has one (extauthz.provider), the
// number of rows GetSession returned, whether ClaimRefresh got the lease,
// and the outcome (extauthz.outcome). It never carries a session ID,
// subject, client ID, lease owner or token, and an error's text is not
// recorded: a failure sets the span's status to Error with the fixed
// outcome as its description; the other outcomes leave it unset.
package observed

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/extauthz/extauthz/store"
)

// Recorder receives the measurements. telemetry.Metrics implements it. Its
// methods must be quick and safe for concurrent use.
type Recorder interface {
	// StoreOperation records one operation's latency and whether it
	// failed.
	StoreOperation(op string, elapsed time.Duration, failed bool)
	// SetStoreUp records whether the store answers.
	SetStoreUp(up bool)
}

// Pinger is a store that can check that it answers (store/postgres.Store
// does).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Scope is the instrumentation scope (tracer name) of the store spans. It
// keeps the name under which these spans were first published, so that
// collectors' filters and dashboards keep matching.
const Scope = "github.com/extauthz/extauthz/store/traced"

// Span attribute keys.
const (
	AttrOperation = "extauthz.store.operation"
	AttrProvider  = "extauthz.provider"
	AttrOutcome   = "extauthz.outcome"
	AttrRows      = "extauthz.store.rows"
	AttrHeld      = "extauthz.store.lease_held"
)

// Options configure a Store.
type Options struct {
	// Recorder receives the metrics; nil records none.
	Recorder Recorder
	// TracerProvider provides the spans' tracer; nil starts no spans.
	TracerProvider trace.TracerProvider
}

// Store observes the calls to an inner store. It is safe for concurrent use
// when the inner store and the Recorder are.
type Store struct {
	inner  store.Store
	rec    Recorder     // nil: no metrics
	tracer trace.Tracer // nil: no spans
}

var (
	_ store.Store = (*Store)(nil)
	_ Pinger      = (*Store)(nil)
)

// New returns inner with every call observed as o says.
func New(inner store.Store, o Options) *Store {
	s := &Store{inner: inner, rec: o.Recorder}
	if o.TracerProvider != nil {
		s.tracer = o.TracerProvider.Tracer(Scope)
	}
	return s
}

// op names an operation: for metrics, and for spans with the method's name.
type op struct {
	metric, span, method string
}

func newOp(metric, method string) op {
	return op{metric: metric, span: "store." + method, method: method}
}

var (
	opGet             = newOp("get", "Get")
	opGetSession      = newOp("get_session", "GetSession")
	opPut             = newOp("put", "Put")
	opDelete          = newOp("delete", "Delete")
	opClaimRefresh    = newOp("claim_refresh", "ClaimRefresh")
	opCompleteRefresh = newOp("complete_refresh", "CompleteRefresh")
	opReleaseRefresh  = newOp("release_refresh", "ReleaseRefresh")
)

// call is one observed call in progress.
type call struct {
	s      *Store
	ctx    context.Context
	metric string
	start  time.Time
	span   trace.Span // nil without tracing
}

// begin starts observing a call of o; provider is recorded on the span when
// it is not empty. The returned context carries the span.
func (s *Store) begin(ctx context.Context, o op, provider string) (context.Context, call) {
	c := call{s: s, ctx: ctx, metric: o.metric}
	if s.tracer != nil {
		attrs := []attribute.KeyValue{attribute.String(AttrOperation, o.method)}
		if provider != "" {
			attrs = append(attrs, attribute.String(AttrProvider, provider))
		}
		ctx, c.span = s.tracer.Start(ctx, o.span, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	}
	c.start = time.Now()
	return ctx, c
}

// end records the outcome of the call, which returned err, with attrs on
// its span. It is called after the inner call returns, never deferred, so
// that a panic's value cannot reach a span.
func (c call) end(err error, attrs ...attribute.KeyValue) {
	outcome := store.Classify(err)
	c.s.record(c.ctx, c.metric, time.Since(c.start), outcome)
	if c.span == nil {
		return
	}
	c.span.SetAttributes(append(attrs, attribute.String(AttrOutcome, string(outcome)))...)
	if outcome.Failed() {
		c.span.SetStatus(codes.Error, string(outcome))
	}
	c.span.End()
}

// record records one operation op of the given outcome that took elapsed,
// for a caller whose context is ctx.
func (s *Store) record(ctx context.Context, op string, elapsed time.Duration, outcome store.Outcome) {
	if s.rec == nil {
		return
	}
	if outcome != store.OutcomeOK && ctx.Err() != nil {
		// The caller gave up (an Envoy time-out, say): the failure is
		// theirs, not the store's.
		s.rec.StoreOperation(op, elapsed, false)
		return
	}
	s.rec.StoreOperation(op, elapsed, outcome.Failed())
	if up, known := outcome.StoreUp(); known {
		s.rec.SetStoreUp(up)
	}
}

// Measure runs fn, an operation on the store's backend made other than
// through the Store (garbage collection's DeleteExpired, say), and records
// it as the operation op (snake case, as telemetry.StoreOperations lists
// them) the way the Store records its own operations. It starts no span. It
// returns fn's error.
func (s *Store) Measure(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	start := time.Now()
	err := fn(ctx)
	s.record(ctx, op, time.Since(start), store.Classify(err))
	return err
}

// Get implements store.Reader.
func (s *Store) Get(ctx context.Context, sessionID, provider string) (store.Row, error) {
	ctx, c := s.begin(ctx, opGet, provider)
	r, err := s.inner.Get(ctx, sessionID, provider)
	c.end(err)
	return r, err
}

// GetSession implements store.Reader.
func (s *Store) GetSession(ctx context.Context, sessionID string) ([]store.Row, error) {
	ctx, c := s.begin(ctx, opGetSession, "")
	rows, err := s.inner.GetSession(ctx, sessionID)
	c.end(err, attribute.Int(AttrRows, len(rows)))
	return rows, err
}

// Put implements store.Writer.
func (s *Store) Put(ctx context.Context, row store.Row) error {
	ctx, c := s.begin(ctx, opPut, row.Provider)
	err := s.inner.Put(ctx, row)
	c.end(err)
	return err
}

// Delete implements store.Writer.
func (s *Store) Delete(ctx context.Context, sessionID, provider string) error {
	ctx, c := s.begin(ctx, opDelete, provider)
	err := s.inner.Delete(ctx, sessionID, provider)
	c.end(err)
	return err
}

// ClaimRefresh implements store.RefreshCoordinator.
func (s *Store) ClaimRefresh(ctx context.Context, sessionID, provider, owner string, ttl time.Duration) (store.Claim, error) {
	ctx, c := s.begin(ctx, opClaimRefresh, provider)
	cl, err := s.inner.ClaimRefresh(ctx, sessionID, provider, owner, ttl)
	if err != nil {
		c.end(err)
	} else {
		c.end(err, attribute.Bool(AttrHeld, cl.Held))
	}
	return cl, err
}

// CompleteRefresh implements store.RefreshCoordinator.
func (s *Store) CompleteRefresh(ctx context.Context, sessionID, provider string, lease store.Lease, t store.Tokens) (store.Row, error) {
	ctx, c := s.begin(ctx, opCompleteRefresh, provider)
	r, err := s.inner.CompleteRefresh(ctx, sessionID, provider, lease, t)
	c.end(err)
	return r, err
}

// ReleaseRefresh implements store.RefreshCoordinator.
func (s *Store) ReleaseRefresh(ctx context.Context, sessionID, provider string, lease store.Lease, reauth bool) error {
	ctx, c := s.begin(ctx, opReleaseRefresh, provider)
	err := s.inner.ReleaseRefresh(ctx, sessionID, provider, lease, reauth)
	c.end(err)
	return err
}

// ErrNoPing is returned by Ping when the inner store cannot be pinged.
var ErrNoPing = fmt.Errorf("observed: the store cannot be pinged: %w", errors.ErrUnsupported)

// Ping pings the inner store, if it implements Pinger, and records the
// result as the operation "ping" (without a span). Otherwise it returns
// ErrNoPing and records nothing.
func (s *Store) Ping(ctx context.Context) error {
	p, ok := s.inner.(Pinger)
	if !ok {
		return ErrNoPing
	}
	return s.Measure(ctx, "ping", p.Ping)
}

// Watch pings the store (see Ping) now and then every interval until ctx is
// done, so that the store's state is measured while no request uses the
// store. Each ping is bounded by interval. Watch returns at once if the
// store cannot be pinged.
func (s *Store) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, interval)
		err := s.Ping(pctx)
		cancel()
		if errors.Is(err, ErrNoPing) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
