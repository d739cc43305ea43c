package upstreamtoken

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/memory"
)

func TestTwoProcessesOneRedemption(t *testing.T) {
	// Two services on one store stand for two replicas on one database.
	st := newStore(t, row("gh", t0.Add(-time.Minute), "rt"))
	ref := &fakeRefresher{delay: 100 * time.Millisecond, rotate: true}
	a := newService(st, ref, WithOwner("a"))
	b := newService(st, ref, WithOwner("b"))
	var wg sync.WaitGroup
	var failures atomic.Int32
	for i := range 40 {
		svc := a
		if i%2 == 1 {
			svc = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := svc.GetValidTokens(context.Background(), "s1", "gh")
			if err != nil || c.AccessToken != "gh-access-1" {
				failures.Add(1)
				t.Errorf("got %+v, %v", c, err)
			}
		}()
	}
	wg.Wait()
	if n := ref.calls.Load(); n != 1 {
		t.Errorf("refresh token redeemed %d times by two processes, want 1", n)
	}
}

func TestLapsedLeaseIsTakenOver(t *testing.T) {
	// A process that claimed the refresh and died leaves a lease; another
	// process acts once it lapses, not before.
	// In a synctest bubble the wait for the lapse takes no real time.
	synctest.Test(t, func(t *testing.T) {
		st := memory.New()
		if err := st.Put(context.Background(), row("gh", time.Now().Add(-time.Minute), "rt")); err != nil {
			t.Fatal(err)
		}
		opts := []Option{WithRefreshTimeout(100 * time.Millisecond), WithPersistTimeout(100 * time.Millisecond)}
		lease := MinLockTimeout(100*time.Millisecond, 100*time.Millisecond)
		dead, err := st.ClaimRefresh(context.Background(), "s1", "gh", "dead-replica", lease)
		if err != nil || !dead.Held {
			t.Fatalf("claim: %+v %v", dead, err)
		}
		claimed := time.Now()
		ref := &fakeRefresher{rotate: true}
		svc := NewInProcessService(st, ref, opts...)
		c, err := svc.GetValidTokens(context.Background(), "s1", "gh")
		if err != nil || c.AccessToken != "gh-access-1" {
			t.Fatalf("got %+v, %v", c, err)
		}
		if waited := time.Since(claimed); waited < lease {
			t.Errorf("took over after %v, before the %v lease lapsed", waited, lease)
		}
		if ref.calls.Load() != 1 {
			t.Errorf("redeemed %d times", ref.calls.Load())
		}
		// The dead process, were it to wake up, cannot store anything.
		if _, err := st.CompleteRefresh(context.Background(), "s1", "gh", dead.Lease, store.Tokens{AccessToken: "stale"}); !errors.Is(err, store.ErrLeaseLost) {
			t.Errorf("completing a lapsed, taken-over lease: %v, want ErrLeaseLost", err)
		}
	})
}

func TestRefreshedElsewhereIsNotRedeemed(t *testing.T) {
	// Another process stored a refresh after this one read the row: the
	// claim's re-read serves it.
	st := newStore(t, row("gh", t0.Add(-time.Minute), "rt"))
	stale, _ := st.Get(context.Background(), "s1", "gh")
	other, _ := st.ClaimRefresh(context.Background(), "s1", "gh", "other", time.Minute)
	if _, err := st.CompleteRefresh(context.Background(), "s1", "gh", other.Lease,
		store.Tokens{AccessToken: "from-other", RefreshToken: "rt2", ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	ref := &fakeRefresher{}
	got, err := newService(st, ref).refresh(context.Background(), stale, 30*time.Second, TriggerCheck)
	if err != nil || got.AccessToken != "from-other" || ref.calls.Load() != 0 {
		t.Fatalf("got %+v, %v after %d redemptions; want the other process's token and none", got, err, ref.calls.Load())
	}
}

func TestTransientFailureBacksOff(t *testing.T) {
	clk := testutil.NewClock(t0)
	st := newStore(t, row("gh", t0.Add(-time.Minute), "rt"))
	ref := &fakeRefresher{err: fmt.Errorf("%w: %w", ErrUpstreamUnavailable, retryErr(3*time.Second))}
	svc := NewInProcessService(st, ref, WithClock(clk.Now), WithBackoff(time.Second, 10*time.Second))

	for i, want := range []struct {
		calls int32
		retry time.Duration
	}{{1, 3 * time.Second}, {1, 3 * time.Second}} {
		_, err := svc.GetValidTokens(context.Background(), "s1", "gh")
		if !errors.Is(err, ErrUpstreamUnavailable) || ref.calls.Load() != want.calls || RetryAfter(err) != want.retry {
			t.Fatalf("call %d: err %v retry %v after %d provider calls; want %v after %d", i, err, RetryAfter(err), ref.calls.Load(), want.retry, want.calls)
		}
	}
	clk.Advance(2 * time.Second)
	if _, err := svc.GetValidTokens(context.Background(), "s1", "gh"); RetryAfter(err) != time.Second || ref.calls.Load() != 1 {
		t.Fatalf("during back-off: retry %v, %d calls; want the remaining 1s and no call", RetryAfter(err), ref.calls.Load())
	}
	clk.Advance(2 * time.Second)
	ref.err = nil
	if c, err := svc.GetValidTokens(context.Background(), "s1", "gh"); err != nil || c.AccessToken != "gh-access-2" {
		t.Fatalf("after back-off: %+v %v", c, err)
	}
	row, _ := st.Get(context.Background(), "s1", "gh")
	if row.NeedsReauth {
		t.Error("a transient failure marked the row for re-authentication")
	}
	// The success ended the back-off: the next failure pauses for the first
	// step again (the 3s hint), not for the doubled one.
	clk.Advance(2 * time.Hour)
	ref.err = fmt.Errorf("%w: %w", ErrUpstreamUnavailable, retryErr(3*time.Second))
	if _, err := svc.GetValidTokens(context.Background(), "s1", "gh"); !errors.Is(err, ErrUpstreamUnavailable) || ref.calls.Load() != 3 {
		t.Fatalf("failure after success: %v after %d calls", err, ref.calls.Load())
	}
	if _, err := svc.GetValidTokens(context.Background(), "s1", "gh"); RetryAfter(err) != 3*time.Second || ref.calls.Load() != 3 {
		t.Errorf("back-off after success, failure: retry %v after %d calls; want 3s and no new call", RetryAfter(err), ref.calls.Load())
	}
}

func TestRefreshRechecksBindingOfTheReRead(t *testing.T) {
	// The session was written again, for another subject or client, after
	// this request read and checked it: the claim's re-read is checked too,
	// so the other identity's tokens are neither served nor redeemed.
	for _, tc := range []struct {
		name, subject, clientID string
		expires                 time.Time
	}{
		{"other subject, fresh token", "mallory", "app", t0.Add(time.Hour)},
		{"other subject, expired token", "mallory", "app", t0.Add(-time.Minute)},
		{"other client, expired token", "alice", "other-app", t0.Add(-time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newStore(t, row("gh", t0.Add(-time.Minute), "rt"))
			stale, _ := st.Get(context.Background(), "s1", "gh")
			other := row("gh", tc.expires, "rt-other")
			other.Subject, other.ClientID, other.AccessToken = tc.subject, tc.clientID, "other-access"
			if err := st.Put(context.Background(), other); err != nil {
				t.Fatal(err)
			}
			ref := &fakeRefresher{}
			got, err := newService(st, ref).refresh(context.Background(), stale, 30*time.Second, TriggerCheck)
			if !errors.Is(err, ErrInvalidBinding) || got.AccessToken != "" || ref.calls.Load() != 0 {
				t.Errorf("got %+v, %v after %d redemptions (seen %v); want ErrInvalidBinding and none", got, err, ref.calls.Load(), ref.seen)
			}
		})
	}
}

func TestShortLockTimeoutIsRaised(t *testing.T) {
	// A lease shorter than the provider call plus the write could lapse
	// while its owner still redeems: it is raised, and the refresh works.
	st := newStore(t, row("gh", t0.Add(-time.Minute), "rt"))
	ref := &fakeRefresher{rotate: true}
	svc := newService(st, ref, WithRefreshTimeout(200*time.Millisecond), WithPersistTimeout(200*time.Millisecond), WithLockTimeout(time.Millisecond))
	c, err := svc.GetValidTokens(context.Background(), "s1", "gh")
	if err != nil || c.AccessToken != "gh-access-1" || ref.calls.Load() != 1 {
		t.Fatalf("got %+v, %v after %d calls; want the refreshed token after 1", c, err, ref.calls.Load())
	}
}

func TestStoringOutlivesTheRefreshContext(t *testing.T) {
	// The provider may have rotated the refresh token, or refused it, by the
	// time the refresh's context ends: storing the result and releasing the
	// lease with the refusal mark have budgets of their own.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name  string
		act   func(*InProcessService, store.Claim) error
		check func(store.Row) bool
	}{
		{"rotated tokens stored", func(svc *InProcessService, c store.Claim) error {
			_, err := svc.persist(done, svc.log, c.Row, c.Lease,
				store.Tokens{AccessToken: "new", RefreshToken: "rt-rotated", ExpiresAt: t0.Add(time.Hour)}, func(string) {})
			return err
		}, func(r store.Row) bool { return r.AccessToken == "new" && r.RefreshToken == "rt-rotated" }},
		{"refusal marked", func(svc *InProcessService, c store.Claim) error {
			svc.release(done, c, true)
			return nil
		}, func(r store.Row) bool { return r.NeedsReauth }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newStore(t, row("gh", t0.Add(-time.Minute), "rt"))
			svc := newService(st, &fakeRefresher{})
			claim, err := st.ClaimRefresh(context.Background(), "s1", "gh", "me", time.Minute)
			if err != nil || !claim.Held {
				t.Fatalf("claim: %+v %v", claim, err)
			}
			if err := tc.act(svc, claim); err != nil {
				t.Fatalf("with the refresh's context done: %v", err)
			}
			if got, _ := st.Get(context.Background(), "s1", "gh"); !tc.check(got) {
				t.Errorf("row after the refresh's context ended: %+v", got)
			}
		})
	}
}

func TestBackoffGrowsToMax(t *testing.T) {
	b := backoff{min: time.Second, max: 4 * time.Second, now: func() time.Time { return t0 }}
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		if got := b.fail("p", 0); got != want {
			t.Errorf("failure %d: pause %v, want %v", i, got, want)
		}
	}
	if got := b.fail("p", 9*time.Second); got != 4*time.Second {
		t.Errorf("a Retry-After beyond max: pause %v, want max (4s)", got)
	}
	if got := b.fail("q", 3*time.Second); got != 3*time.Second {
		t.Errorf("a Retry-After longer than the step and within max: pause %v, want 3s", got)
	}
	b.succeed("p")
	if b.remaining("p") != 0 {
		t.Error("success must end the pause")
	}
}

func TestNewLoginDuringRefreshWins(t *testing.T) {
	st := newStore(t, row("gh", t0.Add(-time.Minute), "rt"))
	started := make(chan struct{})
	ref := refresherFunc(func(ctx context.Context, provider, rt string) (store.Tokens, error) {
		close(started)
		// The user logs in again while the old grant is being refreshed.
		r := row("gh", t0.Add(time.Hour), "rt-login")
		r.AccessToken = "from-login"
		if err := st.Put(ctx, r); err != nil {
			t.Error(err)
		}
		return store.Tokens{AccessToken: "from-old-grant", ExpiresAt: t0.Add(time.Hour)}, nil
	})
	_, err := newService(st, ref).GetValidTokens(context.Background(), "s1", "gh")
	<-started
	if !errors.Is(err, ErrUpstreamUnavailable) {
		t.Errorf("err = %v, want a transient failure (retry serves the new login)", err)
	}
	got, _ := st.Get(context.Background(), "s1", "gh")
	if got.AccessToken != "from-login" || got.RefreshToken != "rt-login" {
		t.Errorf("the refresh of the old grant overwrote the new login: %q/%q", got.AccessToken, got.RefreshToken)
	}
}

type refresherFunc func(ctx context.Context, provider, rt string) (store.Tokens, error)

func (f refresherFunc) Refresh(ctx context.Context, provider, rt string) (store.Tokens, error) {
	return f(ctx, provider, rt)
}

// fakeIDTokens verifies ID tokens of the form "id-for-<sub>"; "unverifiable"
// means the issuer's keys are unreachable; anything else is invalid.
type fakeIDTokens struct{}

func (fakeIDTokens) Has(provider string) bool { return provider == "gh" }

func (fakeIDTokens) Verify(_ context.Context, _, raw string) (string, error) {
	switch {
	case raw == "unverifiable":
		return "", fmt.Errorf("%w: JWKS unreachable", ErrUpstreamUnavailable)
	case len(raw) > 7 && raw[:7] == "id-for-":
		return raw[7:], nil
	}
	return "", errors.New("bad signature")
}

func TestRefreshedIDTokenVerified(t *testing.T) {
	tests := []struct {
		name      string
		idToken   string
		wantErr   error
		wantID    string
		wantReuth bool
	}{
		{"same subject", "id-for-octocat", nil, "id-for-octocat", false},
		{"other subject", "id-for-mallory", ErrRefreshFailed, "", true},
		{"invalid", "forged", ErrRefreshFailed, "", true},
		{"keys unreachable: tokens kept, old ID token stays", "unverifiable", nil, "gh-id-0", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := row("gh", t0.Add(-time.Minute), "rt")
			r.UpstreamSubject = "octocat"
			st := newStore(t, r)
			svc := newService(st, &fakeRefresher{idToken: tc.idToken}, WithIDTokenVerifier(fakeIDTokens{}))
			c, err := svc.GetValidTokens(context.Background(), "s1", "gh")
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			stored, _ := st.Get(context.Background(), "s1", "gh")
			if stored.NeedsReauth != tc.wantReuth {
				t.Errorf("needs_reauth = %v, want %v", stored.NeedsReauth, tc.wantReuth)
			}
			if tc.wantErr == nil && (c.IDToken != tc.wantID || stored.IDToken != tc.wantID || stored.AccessToken != "gh-access-1") {
				t.Errorf("served ID %q, stored ID %q access %q; want %q and the new access token", c.IDToken, stored.IDToken, stored.AccessToken, tc.wantID)
			}
		})
	}
}
