package traced_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/memory"
	"github.com/extauthz/extauthz/store/storetest"
	"github.com/extauthz/extauthz/store/traced"
)

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

func newRecorder() (*tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	sr := tracetest.NewSpanRecorder()
	return sr, sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
}

// advancing lets the conformance suite move the memory store's clock through
// the decorator.
type advancing struct {
	store.Store
	store.Rewriter
	store.Collector
	offset *atomic.Int64
}

func (a advancing) Advance(d time.Duration) { a.offset.Add(int64(d)) }

func TestConformance(t *testing.T) {
	_, tp := newRecorder()
	storetest.Run(t, func(t *testing.T) store.Store {
		offset := new(atomic.Int64)
		mem := memory.New(memory.WithClock(func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }))
		s := traced.New(mem, tp)
		return advancing{Store: s, Rewriter: s.(store.Rewriter), Collector: s.(store.Collector), offset: offset}
	})
}

// onlyStore hides every interface but store.Store.
type onlyStore struct{ store.Store }

func TestOptionalInterfacesFollowInner(t *testing.T) {
	_, tp := newRecorder()
	s := traced.New(memory.New(), tp)
	if _, ok := s.(store.Rewriter); !ok {
		t.Error("a memory store wrapped does not implement store.Rewriter")
	}
	if _, ok := s.(store.Collector); !ok {
		t.Error("a memory store wrapped does not implement store.Collector")
	}
	s = traced.New(onlyStore{memory.New()}, tp)
	if _, ok := s.(store.Rewriter); ok {
		t.Error("a plain store wrapped claims store.Rewriter")
	}
	if _, ok := s.(store.Collector); ok {
		t.Error("a plain store wrapped claims store.Collector")
	}
	inner := memory.New()
	if got := traced.New(inner, nil); got != store.Store(inner) {
		t.Errorf("New(inner, nil) = %T, want inner itself", got)
	}
}

func TestSpans(t *testing.T) {
	sr, tp := newRecorder()
	mem := memory.New()
	s := traced.New(mem, tp)
	rw := s.(store.Rewriter)
	col := s.(store.Collector)
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
	r, err := s.CompleteRefresh(ctx, sessionID, "github", c.Lease, row.Tokens)
	must(err)
	must(rw.RewriteTokens(ctx, sessionID, "github", r.Version, row.Tokens))
	_, err = rw.Scan(ctx, store.Key{}, 10)
	must(err)
	if err := s.ReleaseRefresh(ctx, sessionID, "github", store.Lease{Owner: owner, Version: 1}, false); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("ReleaseRefresh of a lease not held = %v", err)
	}
	_, err = col.RunExclusive(ctx, func(ctx context.Context) error {
		_, err := col.DeleteExpired(ctx, 10)
		return err
	})
	must(err)
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
	}
	wants := []want{
		{"store.Put", "github", "ok", codes.Unset},
		{"store.Get", "github", "ok", codes.Unset},
		{"store.GetSession", "", "ok", codes.Unset},
		{"store.ClaimRefresh", "github", "ok", codes.Unset},
		{"store.CompleteRefresh", "github", "ok", codes.Unset},
		{"store.RewriteTokens", "github", "ok", codes.Unset},
		{"store.Scan", "", "ok", codes.Unset},
		{"store.ReleaseRefresh", "github", "lease_lost", codes.Unset},
		{"store.DeleteExpired", "", "ok", codes.Unset}, // ends before its parent
		{"store.RunExclusive", "", "ok", codes.Unset},
		{"store.Delete", "", "ok", codes.Unset}, // an empty provider is not recorded
		{"store.Get", "github", "not_found", codes.Unset},
		{"store.Get", "github", "unavailable", codes.Error},
	}
	spans := sr.Ended()
	if len(spans) != len(wants) {
		t.Fatalf("%d spans ended, want %d", len(spans), len(wants))
	}
	for i, w := range wants {
		sp := spans[i]
		attrs := map[string]string{}
		for _, kv := range sp.Attributes() {
			attrs[string(kv.Key)] = kv.Value.String()
		}
		if sp.Name() != w.name || attrs[traced.AttrProvider] != w.provider || attrs[traced.AttrOutcome] != w.outcome ||
			attrs[traced.AttrOperation] != strings.TrimPrefix(w.name, "store.") || sp.Status().Code != w.status {
			t.Errorf("span %d = %s %v status %v, want %+v", i, sp.Name(), attrs, sp.Status(), w)
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
	if del, run := spans[8], spans[9]; del.Parent().SpanID() != run.SpanContext().SpanID() {
		t.Error("store.DeleteExpired is not a child of store.RunExclusive")
	}
}
