package observed_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/memory"
	"github.com/extauthz/extauthz/store/observed"
	"github.com/extauthz/extauthz/store/storetest"
)

// recorder counts what the decorator reports.
type recorder struct {
	mu     sync.Mutex
	ops    map[string]int
	errors map[string]int
	up     []bool
}

func newRecorder() *recorder {
	return &recorder{ops: map[string]int{}, errors: map[string]int{}}
}

func (r *recorder) StoreOperation(op string, elapsed time.Duration, failed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if elapsed < 0 {
		panic("negative latency")
	}
	r.ops[op]++
	if failed {
		r.errors[op]++
	}
}

func (r *recorder) SetStoreUp(up bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.up = append(r.up, up)
}

// state returns the last reported state: 1 up, 0 down, -1 none reported.
func (r *recorder) state() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case len(r.up) == 0:
		return -1
	case r.up[len(r.up)-1]:
		return 1
	}
	return 0
}

func (r *recorder) counts(op string) (ops, errs int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ops[op], r.errors[op]
}

func newTracer() (*tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	sr := tracetest.NewSpanRecorder()
	return sr, sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
}

// attrs returns a span's attributes as strings.
func attrs(sp sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, kv := range sp.Attributes() {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

// advancing lets the conformance suite move the memory store's clock through
// the decorator.
type advancing struct {
	*observed.Store
	offset *atomic.Int64
}

func (a advancing) Advance(d time.Duration) { a.offset.Add(int64(d)) }

func TestConformance(t *testing.T) {
	for name, o := range map[string]func() observed.Options{
		"metrics and spans": func() observed.Options {
			_, tp := newTracer()
			return observed.Options{Recorder: newRecorder(), TracerProvider: tp}
		},
		"nothing": func() observed.Options { return observed.Options{} },
	} {
		t.Run(name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store {
				offset := new(atomic.Int64)
				mem := memory.New(memory.WithClock(func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }))
				return advancing{observed.New(mem, o()), offset}
			})
		})
	}
}

// failing is a store whose Get returns err.
type failing struct {
	store.Store
	err error
}

func (f failing) Get(context.Context, string, string) (store.Row, error) { return store.Row{}, f.err }

// TestMetricsAndSpansAgree: for every class of error, the metric's failure
// and store state and the span's outcome and status are the ones
// store.Classify gives.
func TestMetricsAndSpansAgree(t *testing.T) {
	for _, err := range []error{
		nil,
		fmt.Errorf("x: %w", store.ErrNotFound),
		fmt.Errorf("x: %w", store.ErrLeaseLost),
		fmt.Errorf("x: %w", store.ErrConflict),
		fmt.Errorf("x: %w", store.ErrInvalid),
		fmt.Errorf("x: %w", store.ErrUnreadable),
		fmt.Errorf("x: %w", store.ErrUnavailable),
		errors.New("boom"),
	} {
		want := store.Classify(err)
		t.Run(string(want), func(t *testing.T) {
			rec := newRecorder()
			sr, tp := newTracer()
			s := observed.New(failing{memory.New(), err}, observed.Options{Recorder: rec, TracerProvider: tp})
			if _, got := s.Get(context.Background(), "s", "gh"); got != err {
				t.Fatalf("Get = %v, want the inner store's %v", got, err)
			}
			if n, e := rec.counts("get"); n != 1 || (e == 1) != want.Failed() {
				t.Errorf("metrics: %d ops, %d errors; want 1 op, failed %v", n, e, want.Failed())
			}
			wantState := -1
			if up, known := want.StoreUp(); known {
				wantState = 0
				if up {
					wantState = 1
				}
			}
			if rec.state() != wantState {
				t.Errorf("store state %d, want %d", rec.state(), wantState)
			}
			spans := sr.Ended()
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			sp := spans[0]
			if got := attrs(sp)[observed.AttrOutcome]; got != string(want) {
				t.Errorf("span outcome %q, want %q", got, want)
			}
			if (sp.Status().Code == codes.Error) != want.Failed() || (want.Failed() && sp.Status().Description != string(want)) {
				t.Errorf("span status %v, want Error %q only for a failure", sp.Status(), want)
			}
		})
	}
}

func TestErrorsAndState(t *testing.T) {
	mem := memory.New()
	rec := newRecorder()
	s := observed.New(mem, observed.Options{Recorder: rec})
	ctx := context.Background()
	row := store.Row{SessionID: "s", Provider: "gh", Tokens: store.Tokens{AccessToken: "at"}, Subject: "sub", ClientID: "c"}

	if rec.state() != -1 {
		t.Fatalf("state reported before any call")
	}
	if err := s.Put(ctx, row); err != nil {
		t.Fatal(err)
	}
	if n, e := rec.counts("put"); n != 1 || e != 0 || rec.state() != 1 {
		t.Errorf("put: %d ops %d errors state %d; want 1, 0, up", n, e, rec.state())
	}

	// Answers that are not failures.
	if _, err := s.Get(ctx, "nope", "gh"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	if err := s.ReleaseRefresh(ctx, "s", "gh", store.Lease{Owner: "o", Version: 99}, false); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatal(err)
	}
	for _, op := range []string{"get", "release_refresh"} {
		if n, e := rec.counts(op); n != 1 || e != 0 {
			t.Errorf("%s: %d ops %d errors; want 1 op, no error", op, n, e)
		}
	}
	if rec.state() != 1 {
		t.Errorf("state %d after answers, want up", rec.state())
	}

	// A refused value is a failure, but the store answered.
	if err := s.Put(ctx, store.Row{}); !errors.Is(err, store.ErrInvalid) {
		t.Fatal(err)
	}
	if n, e := rec.counts("put"); n != 2 || e != 1 || rec.state() != 1 {
		t.Errorf("invalid put: %d ops %d errors state %d; want 2, 1, up", n, e, rec.state())
	}

	// The store is down.
	mem.SetUnavailable(true)
	if _, err := s.GetSession(ctx, "s"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatal(err)
	}
	if n, e := rec.counts("get_session"); n != 1 || e != 1 || rec.state() != 0 {
		t.Errorf("get_session while down: %d ops %d errors state %d; want 1, 1, down", n, e, rec.state())
	}

	// A caller that gave up says nothing about the store.
	mem.SetUnavailable(false)
	if _, err := s.Get(ctx, "s", "gh"); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	mem.SetUnavailable(true)
	if _, err := s.Get(cancelled, "s", "gh"); err == nil {
		t.Fatal("Get on a down store succeeded")
	}
	if n, e := rec.counts("get"); n != 3 || e != 0 || rec.state() != 1 {
		t.Errorf("get by a caller that gave up: %d ops %d errors state %d; want 3 ops, no error, still up", n, e, rec.state())
	}
}

// TestMeasure: a call made on the backend directly is recorded as the
// operation named, like the Store's own, and gets no span.
func TestMeasure(t *testing.T) {
	mem := memory.New()
	rec := newRecorder()
	sr, tp := newTracer()
	s := observed.New(mem, observed.Options{Recorder: rec, TracerProvider: tp})
	ctx := context.Background()
	deleteExpired := func(ctx context.Context) error {
		_, err := mem.DeleteExpired(ctx, 10)
		return err
	}
	if err := s.Measure(ctx, "delete_expired", deleteExpired); err != nil {
		t.Fatal(err)
	}
	mem.SetUnavailable(true)
	if err := s.Measure(ctx, "delete_expired", deleteExpired); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Measure = %v, want the call's ErrUnavailable", err)
	}
	if n, e := rec.counts("delete_expired"); n != 2 || e != 1 || rec.state() != 0 {
		t.Errorf("delete_expired: %d ops %d errors state %d; want 2, 1, down", n, e, rec.state())
	}
	if n := len(sr.Ended()); n != 0 {
		t.Errorf("Measure started %d spans, want none", n)
	}
}

// plainStore hides every method of the memory store but store.Store's.
type plainStore struct{ store.Store }

func TestPingWithoutPinger(t *testing.T) {
	rec := newRecorder()
	s := observed.New(plainStore{memory.New()}, observed.Options{Recorder: rec})
	if err := s.Ping(context.Background()); !errors.Is(err, observed.ErrNoPing) {
		t.Errorf("Ping of a store without Ping = %v, want ErrNoPing", err)
	}
	// Watch gives up at once on a store that cannot be pinged.
	done := make(chan struct{})
	go func() { s.Watch(context.Background(), time.Hour); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch kept running on a store that cannot be pinged")
	}
	if n, _ := rec.counts("ping"); n != 0 {
		t.Errorf("%d pings recorded, want none", n)
	}
}

// Values that must never appear in a span.
const (
	sessionID = "sess-SECRET-4f1c"
	subject   = "subject-SECRET-9a0e"
	clientID  = "client-SECRET-77b2"
	owner     = "owner-SECRET-3c3c"
	accessTok = "at-SECRET-1111"
	refreshTk = "rt-SECRET-2222"
	idTok     = "id-SECRET-3333"
)

var secrets = []string{sessionID, subject, clientID, owner, accessTok, refreshTk, idTok}

func TestSpans(t *testing.T) {
	sr, tp := newTracer()
	mem := memory.New()
	s := observed.New(mem, observed.Options{TracerProvider: tp})
	ctx := context.Background()
	row := store.Row{SessionID: sessionID, Provider: "github", Subject: subject, ClientID: clientID,
		Tokens: store.Tokens{AccessToken: accessTok, RefreshToken: refreshTk, IDToken: idTok}}

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Put(ctx, row))
	_, err := s.Get(ctx, sessionID, "github")
	must(err)
	_, err = s.GetSession(ctx, sessionID)
	must(err)
	c, err := s.ClaimRefresh(ctx, sessionID, "github", owner, time.Minute)
	must(err)
	_, err = s.CompleteRefresh(ctx, sessionID, "github", c.Lease, row.Tokens)
	must(err)
	if err := s.ReleaseRefresh(ctx, sessionID, "github", store.Lease{Owner: owner, Version: 1}, false); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("ReleaseRefresh of a lease not held = %v", err)
	}
	must(s.Delete(ctx, sessionID, ""))
	if _, err := s.Get(ctx, sessionID, "github"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after Delete = %v", err)
	}
	mem.SetUnavailable(true)
	if _, err := s.Get(ctx, sessionID, "github"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Get while unavailable = %v", err)
	}

	type want struct {
		name, provider, outcome string
		status                  codes.Code
		extra                   map[string]string
	}
	wants := []want{
		{"store.Put", "github", "ok", codes.Unset, nil},
		{"store.Get", "github", "ok", codes.Unset, nil},
		{"store.GetSession", "", "ok", codes.Unset, map[string]string{observed.AttrRows: "1"}},
		{"store.ClaimRefresh", "github", "ok", codes.Unset, map[string]string{observed.AttrHeld: "true"}},
		{"store.CompleteRefresh", "github", "ok", codes.Unset, nil},
		{"store.ReleaseRefresh", "github", "lease_lost", codes.Unset, nil},
		{"store.Delete", "", "ok", codes.Unset, nil}, // an empty provider is not recorded
		{"store.Get", "github", "not_found", codes.Unset, nil},
		{"store.Get", "github", "unavailable", codes.Error, nil},
	}
	spans := sr.Ended()
	if len(spans) != len(wants) {
		t.Fatalf("%d spans ended, want %d", len(spans), len(wants))
	}
	for i, w := range wants {
		sp := spans[i]
		a := attrs(sp)
		if sp.Name() != w.name || a[observed.AttrProvider] != w.provider || a[observed.AttrOutcome] != w.outcome ||
			a[observed.AttrOperation] != strings.TrimPrefix(w.name, "store.") || sp.Status().Code != w.status {
			t.Errorf("span %d = %s %v status %v, want %+v", i, sp.Name(), a, sp.Status(), w)
		}
		for k, v := range w.extra {
			if a[k] != v {
				t.Errorf("span %d %s: %s = %q, want %q", i, sp.Name(), k, a[k], v)
			}
		}
		if sp.InstrumentationScope().Name != observed.Scope {
			t.Errorf("span %d scope %q, want %q", i, sp.InstrumentationScope().Name, observed.Scope)
		}
		if w.status == codes.Error && sp.Status().Description != w.outcome {
			t.Errorf("span %d status description %q, want the fixed %q", i, sp.Status().Description, w.outcome)
		}
		if len(sp.Events()) != 0 {
			t.Errorf("span %d has events %v; errors must not be recorded as events", i, sp.Events())
		}
		for _, kv := range sp.Attributes() {
			for _, sec := range secrets {
				if strings.Contains(kv.Value.String(), sec) {
					t.Errorf("span %s attribute %s carries a secret", sp.Name(), kv.Key)
				}
			}
		}
		for _, sec := range secrets {
			if strings.Contains(sp.Status().Description, sec) || strings.Contains(sp.Name(), sec) {
				t.Errorf("span %s name or status carries a secret", sp.Name())
			}
		}
	}
}
