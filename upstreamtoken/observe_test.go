package upstreamtoken

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/extauthz/extauthz/store"
)

// outcomes records what WithRefreshObserver reports.
type outcomes struct {
	mu  sync.Mutex
	got []string
}

func (o *outcomes) observe(provider, outcome string, elapsed time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if elapsed < 0 {
		panic("negative duration")
	}
	o.got = append(o.got, provider+":"+outcome)
}

func (o *outcomes) take() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	got := o.got
	o.got = nil
	return got
}

// leaseLostStorage loses every lease at CompleteRefresh.
type leaseLostStorage struct{ Storage }

func (leaseLostStorage) CompleteRefresh(context.Context, string, string, store.Lease, store.Tokens) (store.Row, error) {
	return store.Row{}, fmt.Errorf("%w: a new login wrote the row", store.ErrLeaseLost)
}

func TestRefreshObserverOutcomes(t *testing.T) {
	expired := t0.Add(-time.Minute)
	misconfigured := errors.Join(ErrUpstreamUnavailable, ErrProviderMisconfigured)
	tests := []struct {
		name    string
		storage func(*testing.T) Storage
		ref     *fakeRefresher
		calls   int // Checks in a row
		want    []string
	}{
		{"ok", func(t *testing.T) Storage { return newStore(t, row("gh", expired, "rt")) }, &fakeRefresher{}, 2, []string{"gh:ok"}},
		{"refused", func(t *testing.T) Storage { return newStore(t, row("gh", expired, "rt")) },
			&fakeRefresher{err: fmt.Errorf("%w: invalid_grant", ErrRefreshFailed)}, 1, []string{"gh:refused"}},
		{"unavailable, then backing off", func(t *testing.T) Storage { return newStore(t, row("gh", expired, "rt")) },
			&fakeRefresher{err: fmt.Errorf("%w: 503", ErrUpstreamUnavailable)}, 2, []string{"gh:unavailable", "gh:backing_off"}},
		{"misconfigured, then backing off", func(t *testing.T) Storage { return newStore(t, row("gh", expired, "rt")) },
			&fakeRefresher{err: misconfigured}, 2, []string{"gh:misconfigured", "gh:backing_off"}},
		{"superseded", func(t *testing.T) Storage { return leaseLostStorage{newStore(t, row("gh", expired, "rt"))} },
			&fakeRefresher{}, 1, []string{"gh:superseded"}},
		{"unknown refusal, then this session backing off", func(t *testing.T) Storage { return newStore(t, row("gh", expired, "rt")) },
			&fakeRefresher{err: errors.Join(ErrUpstreamUnavailable, ErrUnknownRefusal)}, 2, []string{"gh:unknown_refusal", "gh:backing_off"}},
		{"deferred", func(t *testing.T) Storage {
			return &flakyStorage{Storage: newStore(t, row("gh", expired, "rt")), failures: maxPersistAttempts + 1}
		}, &fakeRefresher{}, 2, []string{"gh:deferred"}},
		{"not stored", func(t *testing.T) Storage {
			return &flakyStorage{Storage: newStore(t, row("gh", expired, "rt")), failures: 100, failWith: store.ErrInvalid}
		}, &fakeRefresher{}, 1, []string{"gh:not_stored"}},
	}
	for _, tc := range tests {
		// In a synctest bubble, the pauses between persist attempts take no
		// real time.
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var o outcomes
				svc := newService(tc.storage(t), tc.ref, WithRefreshObserver(o.observe), WithPersistTimeout(2*time.Second))
				for range tc.calls {
					_, _ = svc.GetValidTokens(context.Background(), "s1", "gh")
				}
				if err := svc.WaitRefreshes(context.Background()); err != nil {
					t.Fatal(err)
				}
				if got := o.take(); fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("outcomes %v, want %v", got, tc.want)
				}
			})
		})
	}
}

func TestRefreshObserverSkipped(t *testing.T) {
	st := newStore(t, row("gh", t0.Add(-time.Minute), "rt"))
	var o outcomes
	svc := newService(st, &fakeRefresher{}, WithRefreshObserver(o.observe))
	// Another replica refreshed the row after this one read it: the claim
	// re-reads it and serves the new token without redeeming.
	stale, _ := st.Get(context.Background(), "s1", "gh")
	c, err := st.ClaimRefresh(context.Background(), "s1", "gh", "other-replica", time.Minute)
	if err != nil || !c.Held {
		t.Fatal(c, err)
	}
	if _, err := st.CompleteRefresh(context.Background(), "s1", "gh", c.Lease, store.Tokens{AccessToken: "other-replica", ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	got, err := svc.refresh(context.Background(), stale, 30*time.Second, TriggerCheck)
	if err != nil || got.AccessToken != "other-replica" {
		t.Fatalf("refresh = %+v, %v", got, err)
	}
	if got := o.take(); fmt.Sprint(got) != "[gh:skipped]" {
		t.Errorf("outcomes %v, want [gh:skipped]", got)
	}
}

func TestWaitRefreshesOutlastsImpatientCallers(t *testing.T) {
	// In a synctest bubble, the refresh takes its 300ms and the callers' deadlines
	// fall exactly where they are set.
	synctest.Test(t, func(t *testing.T) {
		st := newStore(t, row("gh", t0.Add(-time.Minute), "rt"))
		ref := &fakeRefresher{delay: 300 * time.Millisecond, rotate: true}
		svc := newService(st, ref)
		if err := svc.WaitRefreshes(context.Background()); err != nil {
			t.Fatalf("WaitRefreshes with nothing in flight: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		if _, err := svc.GetValidTokens(ctx, "s1", "gh"); !errors.Is(err, ErrUpstreamUnavailable) {
			t.Fatalf("impatient caller: %v", err)
		}
		// The caller left; the refresh goes on and WaitRefreshes waits for it.
		short, cancelShort := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancelShort()
		if err := svc.WaitRefreshes(short); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitRefreshes while a refresh runs = %v, want the deadline", err)
		}
		if err := svc.WaitRefreshes(context.Background()); err != nil {
			t.Fatal(err)
		}
		if stored, _ := st.Get(context.Background(), "s1", "gh"); stored.RefreshToken != "gh-refresh-1" {
			t.Errorf("WaitRefreshes returned before the refresh was stored: refresh token %q", stored.RefreshToken)
		}
	})
}
