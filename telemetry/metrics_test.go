package telemetry_test

import (
	"io"
	"net/http/httptest"
	"strings"
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
