package memory_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/memory"
	"github.com/extauthz/extauthz/store/storetest"
)

// advancing is a memory store whose clock runs with the real one, plus
// whatever the conformance suite adds with Advance.
type advancing struct {
	*memory.Store
	offset atomic.Int64
}

var _ storetest.Advancer = (*advancing)(nil)

func (a *advancing) Advance(d time.Duration) { a.offset.Add(int64(d)) }

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		a := &advancing{}
		a.Store = memory.New(memory.WithClock(func() time.Time {
			return time.Now().Add(time.Duration(a.offset.Load()))
		}))
		return a
	})
}

// TestConformanceRealClock runs the suite without Advancer, as it runs on
// PostgreSQL: leases run out by waiting.
func TestConformanceRealClock(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return memory.New() })
}

func row(sessionID, provider string) store.Row {
	return store.Row{
		SessionID: sessionID, Provider: provider,
		Tokens:  store.Tokens{AccessToken: "at"},
		Subject: "sub", ClientID: "client",
	}
}

func TestClock(t *testing.T) {
	now := time.Date(2030, time.January, 2, 3, 4, 5, 6789, time.FixedZone("X", 3600))
	s := memory.New(memory.WithClock(func() time.Time { return now }))
	ctx := t.Context()

	if err := s.Put(ctx, row("s1", "github")); err != nil {
		t.Fatal(err)
	}
	created := now.Truncate(time.Microsecond)
	now = now.Add(time.Hour)
	updated := now.Truncate(time.Microsecond)

	steps := []struct {
		name string
		do   func() error
	}{
		{"Put", func() error { return s.Put(ctx, row("s1", "github")) }},
		{"CompleteRefresh", func() error {
			c, err := s.ClaimRefresh(ctx, "s1", "github", "owner-1", time.Minute)
			if err != nil {
				return err
			}
			_, err = s.CompleteRefresh(ctx, "s1", "github", c.Lease, store.Tokens{AccessToken: "at2"})
			return err
		}},
		{"ReleaseRefresh with reauth", func() error {
			c, err := s.ClaimRefresh(ctx, "s1", "github", "owner-2", time.Minute)
			if err != nil {
				return err
			}
			return s.ReleaseRefresh(ctx, "s1", "github", c.Lease, true)
		}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := st.do(); err != nil {
				t.Fatal(err)
			}
			got, err := s.Get(ctx, "s1", "github")
			if err != nil {
				t.Fatal(err)
			}
			if !got.CreatedAt.Equal(created) || !got.UpdatedAt.Equal(updated) {
				t.Errorf("CreatedAt, UpdatedAt = %v, %v; want %v, %v", got.CreatedAt, got.UpdatedAt, created, updated)
			}
			if got.CreatedAt.Location() != time.UTC || got.UpdatedAt.Location() != time.UTC {
				t.Errorf("times not in UTC: %v, %v", got.CreatedAt, got.UpdatedAt)
			}
		})
		now = now.Add(time.Hour)
		updated = now.Truncate(time.Microsecond)
	}
}

func TestSetUnavailable(t *testing.T) {
	s := memory.New()
	ctx := t.Context()
	if err := s.Put(ctx, row("s1", "github")); err != nil {
		t.Fatal(err)
	}
	s.SetUnavailable(true)
	calls := []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, err := s.Get(ctx, "s1", "github"); return err }},
		{"GetSession", func() error { _, err := s.GetSession(ctx, "s1"); return err }},
		{"Put", func() error { return s.Put(ctx, row("s1", "google")) }},
		{"Delete", func() error { return s.Delete(ctx, "s1", "") }},
		{"ClaimRefresh", func() error { _, err := s.ClaimRefresh(ctx, "s1", "github", "owner", time.Minute); return err }},
		{"CompleteRefresh", func() error {
			_, err := s.CompleteRefresh(ctx, "s1", "github", store.Lease{Owner: "owner", Version: 1}, store.Tokens{AccessToken: "at2"})
			return err
		}},
		{"ReleaseRefresh", func() error {
			return s.ReleaseRefresh(ctx, "s1", "github", store.Lease{Owner: "owner", Version: 1}, true)
		}},
		{"Scan", func() error { _, err := s.Scan(ctx, store.Key{}, 10); return err }},
		{"RewriteTokens", func() error {
			return s.RewriteTokens(ctx, "s1", "github", 1, store.Tokens{AccessToken: "at2"})
		}},
		{"DeleteExpired", func() error { _, err := s.DeleteExpired(ctx, 10); return err }},
		{"RunExclusive", func() error {
			_, err := s.RunExclusive(ctx, func(context.Context) error { return nil })
			return err
		}},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s while unavailable = %v, want ErrUnavailable", c.name, err)
		}
	}
	s.SetUnavailable(false)
	rows, err := s.GetSession(ctx, "s1")
	if err != nil || len(rows) != 1 || rows[0].AccessToken != "at" || rows[0].NeedsReauth {
		t.Errorf("GetSession after recovery = %+v, %v; want the row as it was before", rows, err)
	}
}

// TestLeaseClock checks that leases are timed by the store's clock alone.
func TestLeaseClock(t *testing.T) {
	now := time.Date(2030, time.January, 2, 3, 4, 5, 0, time.UTC)
	s := memory.New(memory.WithClock(func() time.Time { return now }))
	ctx := t.Context()
	if err := s.Put(ctx, row("s1", "github")); err != nil {
		t.Fatal(err)
	}
	// A ttl below the microsecond is rounded up, not down to nothing.
	c, err := s.ClaimRefresh(ctx, "s1", "github", "a", time.Minute+time.Nanosecond)
	if err != nil || !c.Held {
		t.Fatalf("ClaimRefresh = %+v, %v; want held", c, err)
	}
	now = now.Add(time.Minute)
	c, err = s.ClaimRefresh(ctx, "s1", "github", "b", time.Minute)
	if err != nil || c.Held || c.Remaining != time.Microsecond {
		t.Fatalf("ClaimRefresh a minute later = %+v, %v; want not held, 1µs remaining", c, err)
	}
	now = now.Add(time.Microsecond)
	c, err = s.ClaimRefresh(ctx, "s1", "github", "b", time.Minute)
	if err != nil || !c.Held {
		t.Fatalf("ClaimRefresh when the lease ends = %+v, %v; want held", c, err)
	}
}

// TestDeleteExpiredClock checks that a session expires when the store's
// clock reaches its expiry, not a microsecond later.
func TestDeleteExpiredClock(t *testing.T) {
	now := time.Date(2030, time.January, 2, 3, 4, 5, 0, time.UTC)
	s := memory.New(memory.WithClock(func() time.Time { return now }))
	ctx := t.Context()
	r := row("s1", "github")
	r.SessionExpiresAt = now.Add(time.Minute)
	if err := s.Put(ctx, r); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute - time.Microsecond)
	if n, err := s.DeleteExpired(ctx, 10); n != 0 || err != nil {
		t.Fatalf("DeleteExpired a microsecond before expiry = %d, %v; want 0, nil", n, err)
	}
	now = now.Add(time.Microsecond)
	if n, err := s.DeleteExpired(ctx, 10); n != 1 || err != nil {
		t.Fatalf("DeleteExpired at expiry = %d, %v; want 1, nil", n, err)
	}
	if rows, err := s.GetSession(ctx, "s1"); len(rows) != 0 || err != nil {
		t.Errorf("GetSession after collection = %v, %v; want none", rows, err)
	}
}
