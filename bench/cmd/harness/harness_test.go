package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	lat := make([]time.Duration, 1000)
	for i := range lat {
		lat[i] = time.Duration(i+1) * time.Millisecond
	}
	for p, want := range map[float64]time.Duration{50: 500 * time.Millisecond, 99: 990 * time.Millisecond, 99.9: 999 * time.Millisecond, 100: time.Second} {
		if got := percentile(lat, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if got := percentile(lat[:1], 99.9); got != time.Millisecond {
		t.Errorf("p99.9 of one = %v", got)
	}
}

// TestTokenEndpointRotates checks the storm's bookkeeping: a refresh token
// is redeemed once, its successor works, a spent one or one from another
// epoch is refused and counted.
func TestTokenEndpointRotates(t *testing.T) {
	e, err := startTokenEndpoint(time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	e.reset(3)
	redeem := func(rt string) (int, map[string]any) {
		t.Helper()
		resp, err := http.PostForm(e.url, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}
	if code, body := redeem("rt.s1.3.0"); code != 200 || body["access_token"] != "at.s1.3.1" || body["refresh_token"] != "rt.s1.3.1" {
		t.Fatalf("first redemption: %d %v", code, body)
	}
	if code, body := redeem("rt.s1.3.0"); code != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("reuse: %d %v", code, body)
	}
	if code, _ := redeem("rt.s1.3.1"); code != 200 {
		t.Fatalf("successor: %d", code)
	}
	if code, _ := redeem("rt.s2.2.0"); code != 400 {
		t.Fatalf("old epoch: %d", code)
	}
	red, refused, malformed := e.counts()
	if red["s1"] != 2 || len(red) != 1 || refused != 2 || malformed != 0 {
		t.Fatalf("counts: %v refused %d malformed %d", red, refused, malformed)
	}
}

func TestProcReaders(t *testing.T) {
	pid := os.Getpid()
	if _, err := cpuSeconds(pid); err != nil {
		t.Fatal(err)
	}
	if rss, err := peakRSS(pid); err != nil || rss <= 0 {
		t.Fatalf("peak RSS %d, %v", rss, err)
	}
	if _, _, err := systemCPU(); err != nil {
		t.Fatal(err)
	}
	if _, err := treeCPUSeconds(pid); err != nil {
		t.Fatal(err)
	}
}

func TestProtoset(t *testing.T) {
	if err := writeProtoset(t.TempDir() + "/p"); err != nil {
		t.Fatal(err)
	}
}

func TestParseScenarios(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "floor,hot,storm,http", want: []string{"floor", "hot", "storm", "http-floor", "http-hot"}},
		{in: "http", want: []string{"http-floor", "http-hot"}},
		{in: "scale", want: []string{"scale"}},
		{in: "floor,scale", want: []string{"floor", "scale"}},
		{in: "hot, floor", want: []string{"hot", "floor"}},
		{in: "http-hot", wantErr: true}, // only with its floor
		{in: "http,http", wantErr: true},
		{in: "", wantErr: true},
	} {
		got, err := parseScenarios(tc.in)
		if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
			t.Errorf("parseScenarios(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestHTTPLoad checks the HTTP load's bookkeeping against a server that
// refuses one session: every request is sent once with its session's
// header, and the refused ones are counted as errors.
func TestHTTPLoad(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("Authorization")]++
		mu.Unlock()
		if r.Host != httpHost || r.URL.RequestURI() != httpPath {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if r.Header.Get("Authorization") == "Bearer s2" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer srv.Close()
	client := newHTTPClient(4)
	defer client.CloseIdleConnections()
	l := httpLoad{client: client, url: srv.URL + httpPath, bearer: [][]string{{"Bearer s0"}, {"Bearer s1"}, {"Bearer s2"}},
		concurrency: 4, requests: 30}
	lf, err := l.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if lf.Requests != 30 || lf.Errors != 10 || lf.failure == nil || lf.RPS <= 0 || !lf.inProcess {
		t.Errorf("requests %d, errors %d, failure %v, req/s %v", lf.Requests, lf.Errors, lf.failure, lf.RPS)
	}
	if seen["Bearer s0"] != 10 || seen["Bearer s1"] != 10 || seen["Bearer s2"] != 10 {
		t.Errorf("requests per session: %v", seen)
	}
}

func TestScaleOptionsCheck(t *testing.T) {
	ok := scaleOptions{sessions: 20000, active: 5000, expired: 10000, batch: 500, writers: 2, spread: time.Hour, observe: time.Second}
	if err := ok.check(); err != nil {
		t.Errorf("check(%+v) = %v", ok, err)
	}
	for name, change := range map[string]func(*scaleOptions){
		"active and expired over sessions": func(o *scaleOptions) { o.expired = 15001 },
		"no active":                        func(o *scaleOptions) { o.active = 0 },
		"negative expired":                 func(o *scaleOptions) { o.expired = -1 },
		"no batch":                         func(o *scaleOptions) { o.batch = 0 },
		"no spread":                        func(o *scaleOptions) { o.spread = 0 },
	} {
		o := ok
		change(&o)
		if o.check() == nil {
			t.Errorf("%s: check(%+v) = nil, want an error", name, o)
		}
	}
}

func TestMetricSum(t *testing.T) {
	text := `# HELP extauthz_refresh_by_trigger_total Refreshes.
# TYPE extauthz_refresh_by_trigger_total counter
extauthz_refresh_by_trigger_total{outcome="ok",provider="a",trigger="ahead"} 7
extauthz_refresh_by_trigger_total{outcome="failed",provider="a",trigger="ahead"} 1
extauthz_refresh_by_trigger_total{outcome="ok",provider="a",trigger="check"} 2
extauthz_refresh_by_trigger_total_other 100
extauthz_check_refresh_waits_total{provider="a"} 3
extauthz_check_refresh_waits_total{provider="b"} 0
`
	for _, tc := range []struct {
		name, label string
		want        float64
	}{
		{"extauthz_refresh_by_trigger_total", `trigger="ahead"`, 8},
		{"extauthz_refresh_by_trigger_total", `trigger="check"`, 2},
		{"extauthz_check_refresh_waits_total", "", 3},
		{"extauthz_missing_total", "", 0},
	} {
		if got := metricSum(text, tc.name, tc.label); got != tc.want {
			t.Errorf("metricSum(%s, %s) = %v, want %v", tc.name, tc.label, got, tc.want)
		}
	}
}

// TestScaleRatiosUseAdjacentFloors checks that the misses are compared with
// the floors measured on either side of them, and the hits with theirs; a
// results file from before the floors were measured three times compares
// both with its one floor.
func TestScaleRatiosUseAdjacentFloors(t *testing.T) {
	lf := func(rps float64) loadFigures { return loadFigures{RPS: rps} }
	tests := []struct {
		name              string
		s                 scaleResult
		wantMiss, wantHit float64
		missMet, hitMet   bool
	}{
		{"three floors", scaleResult{Floor: lf(8000), FloorMid: lf(6000), FloorEnd: lf(5000), Miss: lf(2900), Hot: lf(5000)},
			7000, 5500, true, true},
		{"the hits slower than their floors", scaleResult{Floor: lf(6000), FloorMid: lf(6000), FloorEnd: lf(6000), Miss: lf(2000), Hot: lf(5000)},
			6000, 6000, false, false},
		{"one floor (older file)", scaleResult{Floor: lf(6000), Miss: lf(2400), Hot: lf(5400)},
			6000, 6000, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			miss, hit := tc.s.floors()
			if miss != tc.wantMiss || hit != tc.wantHit {
				t.Errorf("floors() = %v, %v; want %v, %v", miss, hit, tc.wantMiss, tc.wantHit)
			}
			met := map[string]bool{}
			for _, tg := range scaleTargets(&tc.s) {
				met[tg.Name] = tg.Met
			}
			if met["scale miss"] != tc.missMet || met["scale hit"] != tc.hitMet {
				t.Errorf("miss met %v, hit met %v; want %v, %v", met["scale miss"], met["scale hit"], tc.missMet, tc.hitMet)
			}
		})
	}
}
