package upstreamtoken

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/memory"
)

// BenchmarkLookupRecord measures what recording served sessions adds to a
// Check's lookup of a fresh token, from parallel callers.
func BenchmarkLookupRecord(b *testing.B) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{{"off", nil}, {"ahead", []Option{WithRefreshAhead(aheadCfg)}}} {
		b.Run(tc.name, func(b *testing.B) {
			st := memory.New(memory.WithClock(func() time.Time { return t0 }))
			const sessions = 1024
			for i := range sessions {
				r := row("gh", t0.Add(time.Hour), "rt")
				r.SessionID = fmt.Sprint(i)
				if err := st.Put(context.Background(), r); err != nil {
					b.Fatal(err)
				}
			}
			svc := newService(st, nil, tc.opts...)
			var n atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := fmt.Sprint(n.Add(1) % sessions)
					if _, err := svc.GetValidTokens(context.Background(), id, "gh"); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkAheadRecordHeap reports the live heap that the record of served
// sessions takes per entry (B/record), with 100,000 sessions of one provider
// recorded, their IDs counted only where the record keeps its own copy.
func BenchmarkAheadRecordHeap(b *testing.B) {
	const n = 100_000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i) // as long as a UUID
	}
	var perRecord float64
	for b.Loop() {
		svc := newService(memory.New(), nil, WithRefreshAhead(Ahead{Window: time.Hour, Margin: 5 * time.Minute, MaxEntries: n}))
		before := liveHeap()
		for _, id := range ids {
			svc.ahead.served(store.Row{SessionID: id, Provider: "gh", Tokens: store.Tokens{RefreshToken: "rt", ExpiresAt: t0.Add(time.Hour)}}, t0)
		}
		perRecord = float64(liveHeap()-before) / n
		runtime.KeepAlive(svc)
	}
	b.ReportMetric(perRecord, "B/record")
}

// liveHeap returns the bytes of live heap objects after a collection.
func liveHeap() int64 {
	b, _ := testutil.LiveHeap()
	return int64(b)
}

// BenchmarkAheadScan measures the refresh-ahead loop's once-an-interval scan
// of a record of 100,000 sessions when none is due: the sessions' tokens
// expire within the hour, the scan is a minute in. "idle" is the usual
// case, where each shard's wake time lets the scan skip it; "every shard"
// walks every entry, as when each shard has a row coming due.
func BenchmarkAheadScan(b *testing.B) {
	const n = 100_000
	svc := newService(memory.New(), nil, WithRefreshAhead(Ahead{Window: time.Hour, Margin: 5 * time.Minute, MaxEntries: n}))
	for i := range n {
		expires := t0.Add(10*time.Minute + time.Duration(i)*50*time.Minute/n)
		svc.ahead.served(store.Row{SessionID: fmt.Sprint(i), Provider: "gh", Tokens: store.Tokens{RefreshToken: "rt", ExpiresAt: expires}}, t0)
	}
	now := t0.Add(time.Minute)
	paused := func(string) bool { return false }
	for _, bc := range []struct {
		name string
		wake bool
	}{{"idle", false}, {"every shard", true}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if bc.wake {
					for i := range svc.ahead.wake {
						svc.ahead.wake[i] = 0
					}
				}
				if start := svc.ahead.due(now, paused); len(start) != 0 {
					b.Fatalf("due: %v", start)
				}
			}
		})
	}
}
