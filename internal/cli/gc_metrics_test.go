package cli

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/gc"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/memory"
	"github.com/extauthz/extauthz/store/observed"
	"github.com/extauthz/extauthz/telemetry"
)

// TestGCMeasuredAsDeleteExpired: serve's garbage collection is measured as
// the store operation delete_expired, once per DeleteExpired batch, the
// way serve wires it.
func TestGCMeasuredAsDeleteExpired(t *testing.T) {
	mem := memory.New()
	for _, sid := range []string{"s1", "s2", "s3"} {
		r := store.Row{SessionID: sid, Provider: "gh", Subject: "sub", ClientID: "app",
			Tokens: store.Tokens{AccessToken: "at"}, SessionExpiresAt: time.Unix(1, 0)}
		if err := mem.Put(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	metrics := telemetry.NewMetrics("test", nil)
	c := measuredGC{Collector: mem, obs: observed.New(mem, observed.Options{Recorder: metrics})}
	r, err := gc.Pass(t.Context(), c, 2)
	if err != nil || r.Deleted != 3 || r.Batches != 2 {
		t.Fatalf("Pass = %+v, %v; want 3 rows deleted in 2 batches", r, err)
	}
	rec := httptest.NewRecorder()
	metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`extauthz_store_operation_duration_seconds_count{op="delete_expired"} 2`,
		`extauthz_store_errors_total{op="delete_expired"} 0`,
		`extauthz_store_up 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
