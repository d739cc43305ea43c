package main

import (
	"slices"
	"time"
)

// stamp is one completed request (a Check, an HTTP request through nginx,
// or a redemption at the token endpoint): when it ended and how long it
// took.
type stamp struct {
	end     time.Time
	latency time.Duration
}

// interval is what completed during one slice of a run: the requests that
// ended in [Start, Start+Seconds) seconds after the load began, their rate
// and their latency percentiles (0 when Count is 0).
type interval struct {
	Start   float64 `json:"start_s"`
	Seconds float64 `json:"seconds"`
	Count   int     `json:"count"`
	PerSec  float64 `json:"per_second"`
	P50ms   float64 `json:"p50_ms"`
	P99ms   float64 `json:"p99_ms"`
}

// timelineIntervals is about how many intervals a run is cut into.
const timelineIntervals = 25

// intervalWidth is the width of a timeline's intervals for a run lasting
// span: span/timelineIntervals rounded up to 100, 200, 250 or 500 ms, or to
// 1, 2, 2.5 or 5 times a power of ten seconds; at least 100 ms.
func intervalWidth(span time.Duration) time.Duration {
	want := span / timelineIntervals
	for _, w := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond} {
		if want <= w {
			return w
		}
	}
	for w := time.Second; ; w *= 10 {
		for _, m := range []time.Duration{w, 2 * w, 5 * w / 2, 5 * w} {
			if want <= m {
				return m
			}
		}
	}
}

// timeline cuts the span after start into intervals of width and counts
// the stamps by the interval in which they ended (a stamp before start
// counts in the first interval, one after start+span in the last). Every
// interval is width long except the last, which ends at span; a last one
// shorter than half the width is merged into the one before it, so that
// its rate does not rest on a sliver of time. It returns nil for a span
// or width that is not positive.
func timeline(stamps []stamp, start time.Time, span, width time.Duration) []interval {
	if span <= 0 || width <= 0 {
		return nil
	}
	n := int((span + width - 1) / width)
	if n > 1 && span-time.Duration(n-1)*width < width/2 {
		n--
	}
	lat := make([][]time.Duration, n)
	for _, s := range stamps {
		k := min(max(int(s.end.Sub(start)/width), 0), n-1)
		lat[k] = append(lat[k], s.latency)
	}
	out := make([]interval, n)
	for k := range out {
		from := time.Duration(k) * width
		to := from + width
		if k == n-1 {
			to = span
		}
		iv := interval{Start: from.Seconds(), Seconds: (to - from).Seconds(), Count: len(lat[k])}
		iv.PerSec = round3(float64(iv.Count) / iv.Seconds)
		if iv.Count > 0 {
			slices.Sort(lat[k])
			iv.P50ms = ms(percentile(lat[k], 50))
			iv.P99ms = ms(percentile(lat[k], 99))
		}
		out[k] = iv
	}
	return out
}

// loadTimeline is the timeline of a load's requests, which began at start
// (for ghz: when its first request was sent) and lasted until the last
// one ended.
func loadTimeline(stamps []stamp, start time.Time) (tl []interval, span, width time.Duration) {
	for _, s := range stamps {
		span = max(span, s.end.Sub(start))
	}
	width = intervalWidth(span)
	return timeline(stamps, start, span, width), span, width
}

// setTimeline sets lf's timeline from its requests' stamps; the load began
// at start.
func (lf *loadFigures) setTimeline(stamps []stamp, start time.Time) {
	lf.Timeline, lf.span, lf.width = loadTimeline(stamps, start)
	lf.began = start
}
