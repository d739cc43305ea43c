package upstreamtoken

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

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
