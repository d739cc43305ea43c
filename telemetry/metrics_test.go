package telemetry_test

import (
	"io"
	"maps"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/telemetry"
)

func TestMetricsRecordAndClampLabels(t *testing.T) {
	m := telemetry.NewMetrics("v1.2.3", []string{"gh", "google"})
	m.Decision(authz.Response{Allowed: true, Status: 200, Reason: "ok"}, 3*time.Millisecond)
	m.Decision(authz.Response{Status: 401, Reason: "session_not_found"}, time.Millisecond)
	m.Decision(authz.Response{Status: 503, Reason: "store_unavailable"}, time.Millisecond)
	m.Decision(authz.Response{Status: 401, Reason: "user alice sent sess-123"}, time.Millisecond)
	m.Transport("http").Decision(authz.Response{Status: 401, Reason: "session_not_found"}, time.Millisecond)
	m.Transport("sess-123").Decision(authz.Response{Allowed: true, Status: 200, Reason: "ok"}, time.Millisecond)
	m.Refresh("gh", "ok", time.Second)
	m.Refresh("gh", "skipped", time.Millisecond)
	m.Refresh("sess-123-provider", "ok", time.Second)
	m.Refresh("google", "weird", time.Second)
	m.RefreshTrigger("gh", "ahead", "ok")
	m.RefreshTrigger("gh", "check", "skipped")
	m.RefreshTrigger("sess-123-provider", "sess-123", "weird")
	m.CheckWaited("gh")
	m.CheckWaited("sess-123-provider")
	m.StoreOperation("get", time.Millisecond, false)
	m.StoreOperation("get", time.Millisecond, true)
	m.StoreOperation("sess-123", time.Millisecond, true)
	m.SetStoreUp(true)
	m.Refused("envoy")
	m.Refused("sess-123")

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	text := string(body)
	for _, want := range []string{
		`extauthz_check_decisions_total{reason="ok",result="ok",transport="grpc"} 1`,
		`extauthz_check_decisions_total{reason="session_not_found",result="denied",transport="grpc"} 1`,
		`extauthz_check_decisions_total{reason="store_unavailable",result="error",transport="grpc"} 1`,
		`extauthz_check_decisions_total{reason="other",result="denied",transport="grpc"} 1`,
		`extauthz_check_decisions_total{reason="insufficient_scope",result="denied",transport="grpc"} 0`,
		`extauthz_check_decisions_total{reason="session_not_found",result="denied",transport="http"} 1`,
		`extauthz_check_decisions_total{reason="insufficient_scope",result="denied",transport="http"} 0`,
		`extauthz_check_decisions_total{reason="ok",result="ok",transport="other"} 1`,
		`extauthz_check_duration_seconds_count{transport="grpc"} 4`,
		`extauthz_check_duration_seconds_count{transport="http"} 1`,
		`extauthz_refresh_total{outcome="ok",provider="gh"} 1`,
		`extauthz_refresh_total{outcome="skipped",provider="gh"} 1`,
		`extauthz_refresh_total{outcome="ok",provider="other"} 1`,
		`extauthz_refresh_total{outcome="other",provider="google"} 1`,
		`extauthz_refresh_total{outcome="not_stored",provider="google"} 0`,
		`extauthz_refresh_skipped_total 1`,
		`extauthz_refresh_duration_seconds_count{outcome="ok",provider="gh"} 1`,
		`extauthz_refresh_by_trigger_total{outcome="ok",provider="gh",trigger="ahead"} 1`,
		`extauthz_refresh_by_trigger_total{outcome="skipped",provider="gh",trigger="check"} 1`,
		`extauthz_refresh_by_trigger_total{outcome="ok",provider="google",trigger="ahead"} 0`,
		`extauthz_refresh_by_trigger_total{outcome="other",provider="other",trigger="other"} 1`,
		`extauthz_check_refresh_waits_total{provider="gh"} 1`,
		`extauthz_check_refresh_waits_total{provider="google"} 0`,
		`extauthz_check_refresh_waits_total{provider="other"} 1`,
		`extauthz_store_operation_duration_seconds_count{op="get"} 2`,
		`extauthz_store_errors_total{op="get"} 1`,
		`extauthz_store_errors_total{op="other"} 1`,
		`extauthz_store_up 1`,
		`extauthz_http_refused_total{shape="envoy"} 1`,
		`extauthz_http_refused_total{shape="forward_auth"} 0`,
		`extauthz_http_refused_total{shape="other"} 1`,
		`extauthz_build_info{goversion="go`,
		`version="v1.2.3"} 1`,
		`go_goroutines `,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, leak := range []string{"alice", "sess-123"} {
		if strings.Contains(text, leak) {
			t.Errorf("/metrics contains %q", leak)
		}
	}
	if _, err := m.Registry().Gather(); err != nil {
		t.Errorf("Gather: %v", err)
	}
}

func TestStoreUpStartsDown(t *testing.T) {
	m := telemetry.NewMetrics("v", nil)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "extauthz_store_up 0") {
		t.Error("extauthz_store_up is not 0 before the store has answered")
	}
	m.SetStoreUp(true)
	m.SetStoreUp(false)
	rec = httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "extauthz_store_up 0") {
		t.Error("extauthz_store_up is not 0 after SetStoreUp(false)")
	}
}

// certExpiry returns the certificate expiry gauge's value by listener.
func certExpiry(t *testing.T, m *telemetry.Metrics) map[string]float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != telemetry.MetricTLSCertExpiry {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "listener" {
					got[l.GetValue()] = s.GetGauge().GetValue()
				}
			}
		}
	}
	return got
}

func TestWatchCertificate(t *testing.T) {
	m := telemetry.NewMetrics("v", nil)
	if got := certExpiry(t, m); len(got) != 0 {
		t.Errorf("before any listener is watched: %v", got)
	}
	first := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	var grpcNotAfter atomic.Pointer[time.Time]
	grpcNotAfter.Store(&first)
	if err := m.WatchCertificate("grpc", func() time.Time { return *grpcNotAfter.Load() }); err != nil {
		t.Fatal(err)
	}
	if err := m.WatchCertificate("admin", func() time.Time { return first.Add(time.Hour) }); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"grpc": float64(first.Unix()), "admin": float64(first.Add(time.Hour).Unix())}
	if got := certExpiry(t, m); !maps.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}

	// A reload shows at the next scrape.
	renewed := first.Add(90 * 24 * time.Hour)
	grpcNotAfter.Store(&renewed)
	want["grpc"] = float64(renewed.Unix())
	if got := certExpiry(t, m); !maps.Equal(got, want) {
		t.Errorf("after a reload got %v, want %v", got, want)
	}

	for _, tt := range []struct{ name, listener string }{
		{"twice", "grpc"},
		{"unknown listener", "metrics"},
	} {
		if err := m.WatchCertificate(tt.listener, time.Now); err == nil {
			t.Errorf("%s: WatchCertificate(%q) succeeded", tt.name, tt.listener)
		}
	}
}
