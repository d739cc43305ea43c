package httpfront_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/httpfront"
)

// refusals counts Refused calls by shape.
type refusals struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *refusals) Refused(shape string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[shape]++
}

func TestRefusalsAreCountedByShape(t *testing.T) {
	ref := &refusals{}
	h := httpfront.New(&capture{}, httpfront.Options{Refusals: ref})
	for _, req := range [][]string{
		{"GET /auth HTTP/1.1", "Host: api.test"},
		{"GET /auth HTTP/1.1", "Host: api.test", "X-Original-URI: /a", "X-Forwarded-Uri: /b"},
		{"GET /envoy/x HTTP/1.1", "Host: api.test", "X-Extauthz-Providers: a", "X-Extauthz-Providers: b"},
		{"GET /auth HTTP/1.1", "Host: api.test", "X-Original-URI: /a"}, // decided: not a refusal
		{"GET /other HTTP/1.1", "Host: api.test"},                      // 404: not a refusal
	} {
		serve(h, raw(t, req...))
	}
	want := map[string]int{httpfront.ShapeForwardAuth: 2, httpfront.ShapeEnvoy: 1}
	if len(ref.n) != len(want) || ref.n[httpfront.ShapeForwardAuth] != 2 || ref.n[httpfront.ShapeEnvoy] != 1 {
		t.Errorf("refusals %v, want %v", ref.n, want)
	}
}

// TestSpans: one server span per request to an endpoint, a new root even
// when the request carries a traceparent (the client's, forwarded by the
// proxy), with the endpoint as route and the status, and nothing of the
// request's headers or original path.
func TestSpans(t *testing.T) {
	const (
		clientTrace = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		secretPath  = "/repos/SECRET-path"
	)
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	deny := authz.Response{Status: 503, Reason: "store_unavailable", Body: `{"error":"temporarily_unavailable"}`}
	for _, tc := range []struct {
		name, method, target string
		answer               *authz.Response
		span                 string
		status               int
		refused, isError     bool
	}{
		{"forward auth allowed", "GET", "/auth", nil, "GET /auth", 200, false, false},
		{"envoy denied 503", "PUT", "/envoy" + secretPath + "?access_token=SECRET", &deny, "PUT /envoy/*", 503, false, true},
		{"envoy other method", "BREW", "/envoy" + secretPath, nil, "HTTP /envoy/*", 200, false, false},
		{"refused", "GET", "/auth?SECRET", nil, "GET /auth", 400, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sr.Reset()
			h := httpfront.New(&capture{answer: tc.answer}, httpfront.Options{TracerProvider: tp})
			lines := []string{tc.method + " " + tc.target + " HTTP/1.1", "Host: api.test",
				"Authorization: Bearer SECRET-jwt",
				"Traceparent: 00-" + clientTrace + "-bbbbbbbbbbbbbbbb-01"}
			if !tc.refused {
				lines = append(lines, "X-Original-URI: "+secretPath)
			}
			rec := serve(h, raw(t, lines...))
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d", rec.Code, tc.status)
			}
			spans := sr.Ended()
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			s := spans[0]
			if s.Name() != tc.span || s.Parent().IsValid() || s.SpanContext().TraceID().String() == clientTrace {
				t.Errorf("span %q (parent valid %v, client's trace %v), want %q, a new root", s.Name(),
					s.Parent().IsValid(), s.SpanContext().TraceID().String() == clientTrace, tc.span)
			}
			attrs := map[attribute.Key]attribute.Value{}
			for _, a := range s.Attributes() {
				attrs[a.Key] = a.Value
				if strings.Contains(a.Value.String(), "SECRET") {
					t.Errorf("attribute %s holds a request value", a.Key)
				}
			}
			if got := attrs["http.response.status_code"].AsInt64(); got != int64(tc.status) {
				t.Errorf("http.response.status_code %d, want %d", got, tc.status)
			}
			if _, ok := attrs["extauthz.refused"]; ok != tc.refused {
				t.Errorf("extauthz.refused present %v, want %v", ok, tc.refused)
			}
			if (s.Status().Code == codes.Error) != tc.isError {
				t.Errorf("span status %v", s.Status())
			}
		})
	}
	t.Run("no span for other paths", func(t *testing.T) {
		sr.Reset()
		rec := serve(httpfront.New(&capture{}, httpfront.Options{TracerProvider: tp}), raw(t, "GET /x HTTP/1.1", "Host: a"))
		if rec.Code != http.StatusNotFound || len(sr.Ended()) != 0 {
			t.Errorf("status %d, spans %d", rec.Code, len(sr.Ended()))
		}
	})
}
