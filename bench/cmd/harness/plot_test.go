package main

import (
	"image/png"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestIntervalWidth(t *testing.T) {
	for _, tc := range []struct {
		span, want time.Duration
	}{
		{0, 100 * time.Millisecond},
		{time.Second, 100 * time.Millisecond},
		{4400 * time.Millisecond, 200 * time.Millisecond},
		{6 * time.Second, 250 * time.Millisecond},
		{12 * time.Second, 500 * time.Millisecond},
		{23 * time.Second, time.Second},
		{40 * time.Second, 2 * time.Second},
		{2 * time.Minute, 5 * time.Second},
		{55 * time.Second, 2500 * time.Millisecond},
		{10 * time.Minute, 25 * time.Second},
	} {
		if got := intervalWidth(tc.span); got != tc.want {
			t.Errorf("intervalWidth(%v) = %v, want %v", tc.span, got, tc.want)
		}
	}
}

func TestTimeline(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 13, 0, 0, 0, time.UTC)
	at := func(ms int, latencyMs int) stamp {
		return stamp{end: t0.Add(time.Duration(ms) * time.Millisecond), latency: time.Duration(latencyMs) * time.Millisecond}
	}
	for _, tc := range []struct {
		name        string
		stamps      []stamp
		span, width time.Duration
		want        []interval
	}{
		{
			name:   "even intervals, an empty one in the middle",
			stamps: []stamp{at(100, 1), at(900, 3), at(950, 2), at(2500, 7)},
			span:   3 * time.Second, width: time.Second,
			want: []interval{
				{Start: 0, Seconds: 1, Count: 3, PerSec: 3, P50ms: 2, P99ms: 3},
				{Start: 1, Seconds: 1, Count: 0, PerSec: 0},
				{Start: 2, Seconds: 1, Count: 1, PerSec: 1, P50ms: 7, P99ms: 7},
			},
		},
		{
			name:   "a short last interval keeps its own length",
			stamps: []stamp{at(500, 1), at(1200, 1), at(1400, 1)},
			span:   1500 * time.Millisecond, width: time.Second,
			want: []interval{
				{Start: 0, Seconds: 1, Count: 1, PerSec: 1, P50ms: 1, P99ms: 1},
				{Start: 1, Seconds: 0.5, Count: 2, PerSec: 4, P50ms: 1, P99ms: 1},
			},
		},
		{
			name:   "a sliver at the end is merged into the interval before",
			stamps: []stamp{at(500, 1), at(1100, 1), at(2100, 5)},
			span:   2200 * time.Millisecond, width: time.Second,
			want: []interval{
				{Start: 0, Seconds: 1, Count: 1, PerSec: 1, P50ms: 1, P99ms: 1},
				{Start: 1, Seconds: 1.2, Count: 2, PerSec: 1.667, P50ms: 1, P99ms: 5},
			},
		},
		{
			name:   "stamps outside the span count in the first and last interval",
			stamps: []stamp{at(-50, 1), at(1000, 2), at(5000, 3)},
			span:   time.Second, width: 500 * time.Millisecond,
			want: []interval{
				{Start: 0, Seconds: 0.5, Count: 1, PerSec: 2, P50ms: 1, P99ms: 1},
				{Start: 0.5, Seconds: 0.5, Count: 2, PerSec: 4, P50ms: 2, P99ms: 3},
			},
		},
		{name: "no span", stamps: []stamp{at(1, 1)}, span: 0, width: time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := timeline(tc.stamps, t0, tc.span, tc.width)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestLoadTimeline(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 13, 0, 0, 0, time.UTC)
	var stamps []stamp
	for i := range 1000 { // 4.4 s: intervals of 200 ms, 22 of them
		stamps = append(stamps, stamp{end: t0.Add(time.Duration(i+1) * 4400 * time.Microsecond), latency: time.Millisecond})
	}
	tl, span, width := loadTimeline(stamps, t0)
	if span != 4400*time.Millisecond || width != 200*time.Millisecond || len(tl) != 22 {
		t.Fatalf("span %v, width %v, %d intervals", span, width, len(tl))
	}
	n := 0
	for _, iv := range tl {
		n += iv.Count
	}
	if n != len(stamps) {
		t.Errorf("%d requests in the intervals, want %d", n, len(stamps))
	}
}

// TestTokenEndpointStamps checks that the token endpoint records each
// redemption, and only redemptions, with the latency it served.
func TestTokenEndpointStamps(t *testing.T) {
	e, err := startTokenEndpoint(2 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	e.reset(1)
	for _, rt := range []string{"rt.s1.1.0", "rt.s1.1.0", "rt.s2.1.0"} { // the second is a reuse
		resp, err := http.PostForm(e.url, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	got := e.redemptionStamps()
	if len(got) != 2 {
		t.Fatalf("%d redemptions recorded, want 2", len(got))
	}
	for _, s := range got {
		if s.latency < 2*time.Millisecond || s.end.IsZero() {
			t.Errorf("redemption recorded with latency %v at %v", s.latency, s.end)
		}
	}
	e.reset(2)
	if n := len(e.redemptionStamps()); n != 0 {
		t.Errorf("%d redemptions after reset", n)
	}
}

// syntheticTimeline is n intervals of width seconds with rates and
// latencies that vary.
func syntheticTimeline(n int, width, rate, latencyMs float64) []interval {
	tl := make([]interval, n)
	for k := range tl {
		f := 1 + 0.2*float64(k%5)
		tl[k] = interval{Start: float64(k) * width, Seconds: width, Count: int(rate * width * f),
			PerSec: rate * f, P50ms: latencyMs * f, P99ms: 3 * latencyMs * f}
	}
	tl[n/2] = interval{Start: float64(n/2) * width, Seconds: width} // nothing completed
	return tl
}

// TestWritePlots renders the plots of a report made of synthetic
// timelines and checks that each is a PNG of 800 x 400 pixels; scenarios
// without a timeline get no picture.
func TestWritePlots(t *testing.T) {
	rep := report{
		Date:    "2026-12-05T13:00:00Z",
		Machine: machine{CPU: "Test CPU", CPUs: 2},
		Build:   "extauthz from the working tree at 0000000",
		Params:  params{Rounds: 3, TokenLatency: "20ms"},
		Order:   []string{"hot", "storm", "http-floor"},
		Scenarios: map[string]*scenarioResult{
			"hot": {Name: "hot", Median: roundResult{Round: 1, loadFigures: loadFigures{RPS: 4500, Timeline: syntheticTimeline(22, 0.2, 4500, 6)}}},
			"storm": {Name: "storm", Median: roundResult{Round: 3, loadFigures: loadFigures{RPS: 850, Timeline: syntheticTimeline(24, 1, 850, 50)},
				Storm: &stormFigures{Timeline: syntheticTimeline(24, 1, 420, 21)}}},
			"http-floor": {Name: "http-floor"}, // from a results file written before timelines
		},
	}
	dir := filepath.Join(t.TempDir(), "plots")
	written, err := writePlots(rep, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{plotName("hot"), plotName("storm"), stormPlotName}
	for i := range want {
		want[i] = filepath.Join(dir, want[i])
	}
	if !slices.Equal(written, want) {
		t.Fatalf("written %v, want %v", written, want)
	}
	for _, path := range written {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if b := img.Bounds(); b.Dx() != 800 || b.Dy() != 400 {
			t.Errorf("%s: %d x %d pixels, want 800 x 400", path, b.Dx(), b.Dy())
		}
	}
}
