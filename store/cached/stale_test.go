package cached_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/cached"
	"github.com/extauthz/extauthz/store/memory"
)

// failing is a store whose reads fail with store.ErrUnavailable while down.
type failing struct {
	store.Store
	down atomic.Bool
}

var errDown = fmt.Errorf("%w: test: the database is down", store.ErrUnavailable)

func (f *failing) Get(ctx context.Context, sessionID, provider string) (store.Row, error) {
	if f.down.Load() {
		return store.Row{}, errDown
	}
	return f.Store.Get(ctx, sessionID, provider)
}

func (f *failing) GetSession(ctx context.Context, sessionID string) ([]store.Row, error) {
	if f.down.Load() {
		return nil, errDown
	}
	return f.Store.GetSession(ctx, sessionID)
}

// TestStaleIfError: while the source does not vouch for the cache, a read
// goes to the inner store; only if that fails as unavailable, a valid
// cached row answers, within StaleIfError of the last vouching.
func TestStaleIfError(t *testing.T) {
	const bound = 30 * time.Second
	for _, tt := range []struct {
		name  string
		stale time.Duration // Options.StaleIfError
		// after runs once s1/gh, s1/absent (known absent) and s2 (whole
		// session) are cached and the trust is withdrawn.
		after     func(c *cached.Store, inner *failing)
		provider  string // read of s1; "" reads the session s2
		wantToken string // "" wants store.ErrUnavailable
		wantStale uint64
	}{
		{name: "database down: served", stale: bound, provider: "gh", wantToken: "at1", wantStale: 1},
		{name: "whole session: served", stale: bound, wantToken: "at2", wantStale: 1},
		{name: "off", provider: "gh"},
		{name: "bound passed", stale: bound, provider: "gh",
			after: func(*cached.Store, *failing) { time.Sleep(bound + 2*time.Second) }},
		{name: "bound counted from the last vouching", stale: bound, provider: "gh", wantToken: "at1", wantStale: 1,
			after: func(c *cached.Store, _ *failing) {
				time.Sleep(bound)
				c.Trust(time.Now().Add(time.Second)) // vouched again (a heartbeat), then lost
				c.Trust(time.Time{})
			}},
		{name: "known absent: not served", stale: bound, provider: "absent"},
		{name: "entry past its max age: not served", stale: 2 * time.Hour, provider: "gh",
			after: func(*cached.Store, *failing) { time.Sleep(cached.DefaultMaxAge) }},
		{name: "invalidated: not served", stale: bound, provider: "gh",
			after: func(c *cached.Store, _ *failing) { c.Invalidate("s1", "") }},
		{name: "database up: read, not served stale", stale: bound, provider: "gh", wantToken: "at1-new",
			after: func(_ *cached.Store, inner *failing) {
				inner.down.Store(false)
				if err := inner.Store.Put(context.Background(), row("s1", "gh", "at1-new", time.Now().Add(time.Hour))); err != nil {
					panic(err)
				}
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				inner := &failing{Store: memory.New()}
				c := cached.New(inner, cached.Options{Size: 10, Skew: 30 * time.Second, StaleIfError: tt.stale})
				for _, r := range []store.Row{row("s1", "gh", "at1", time.Now().Add(time.Hour)), row("s2", "gh", "at2", time.Now().Add(time.Hour))} {
					if err := inner.Store.Put(ctx, r); err != nil {
						t.Fatal(err)
					}
				}
				c.Trust(time.Now().Add(time.Second))
				_, err1 := c.Get(ctx, "s1", "gh")
				_, err2 := c.Get(ctx, "s1", "absent")
				_, err3 := c.GetSession(ctx, "s2")
				if err1 != nil || !errors.Is(err2, store.ErrNotFound) || err3 != nil {
					t.Fatalf("filling the cache: %v, %v, %v", err1, err2, err3)
				}
				c.Trust(time.Time{})
				inner.down.Store(true)
				if tt.after != nil {
					tt.after(c, inner)
				}

				var token string
				var err error
				if tt.provider != "" {
					var r store.Row
					r, err = c.Get(ctx, "s1", tt.provider)
					token = r.AccessToken
				} else if rows, e := c.GetSession(ctx, "s2"); e == nil && len(rows) == 1 {
					token = rows[0].AccessToken
				} else {
					err = e
				}
				switch {
				case tt.wantToken == "" && !errors.Is(err, store.ErrUnavailable):
					t.Errorf("read = %q, %v; want store.ErrUnavailable", token, err)
				case tt.wantToken != "" && (err != nil || token != tt.wantToken):
					t.Errorf("read = %q, %v; want %q", token, err, tt.wantToken)
				}
				if st := c.Stats(); st.Stale != tt.wantStale {
					t.Errorf("Stats.Stale = %d, want %d", st.Stale, tt.wantStale)
				}
			})
		})
	}
}
