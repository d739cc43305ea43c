package upstreamtoken

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/cached"
)

// outageStorage fails every operation with ErrUnavailable while down.
type outageStorage struct {
	Storage
	down   atomic.Bool
	writes atomic.Int32 // CompleteRefresh calls that reached the store
}

func (o *outageStorage) err() error {
	if o.down.Load() {
		return fmt.Errorf("%w: connection refused", store.ErrUnavailable)
	}
	return nil
}

func (o *outageStorage) Get(ctx context.Context, sessionID, provider string) (store.Row, error) {
	if err := o.err(); err != nil {
		return store.Row{}, err
	}
	return o.Storage.Get(ctx, sessionID, provider)
}

func (o *outageStorage) GetSession(ctx context.Context, sessionID string) ([]store.Row, error) {
	if err := o.err(); err != nil {
		return nil, err
	}
	return o.Storage.GetSession(ctx, sessionID)
}

func (o *outageStorage) ClaimRefresh(ctx context.Context, sessionID, provider, owner string, ttl time.Duration) (store.Claim, error) {
	if err := o.err(); err != nil {
		return store.Claim{}, err
	}
	return o.Storage.ClaimRefresh(ctx, sessionID, provider, owner, ttl)
}

func (o *outageStorage) CompleteRefresh(ctx context.Context, sessionID, provider string, l store.Lease, t store.Tokens) (store.Row, error) {
	if err := o.err(); err != nil {
		return store.Row{}, err
	}
	o.writes.Add(1)
	return o.Storage.CompleteRefresh(ctx, sessionID, provider, l, t)
}

// downAfterRedeem is a refresher that takes the store down once the
// provider has rotated the refresh token, as a database failing in the
// middle of a refresh would.
func downAfterRedeem(ref *fakeRefresher, o *outageStorage) Refresher {
	return refresherFunc(func(ctx context.Context, provider, rt string) (store.Tokens, error) {
		t, err := ref.Refresh(ctx, provider, rt)
		o.down.Store(true)
		return t, err
	})
}

func TestStoreOutageDuringRedemptionLosesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newStore(t, row("gh", t0.Add(-time.Minute), "rt-0"))
		st := &outageStorage{Storage: mem}
		ref := &fakeRefresher{rotate: true}
		var logs testutil.SyncBuffer
		svc := newService(st, downAfterRedeem(ref, st), WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))

		c, err := svc.GetValidTokens(context.Background(), "s1", "gh")
		if err != nil || c.AccessToken != "gh-access-1" {
			t.Fatalf("refresh with the store failing after redemption: %+v, %v; want the new token", c, err)
		}
		if !strings.Contains(logs.String(), `"outcome":"deferred"`) {
			t.Errorf("no deferred outcome logged:\n%s", logs.String())
		}
		// While the store is down, this process keeps serving the new token
		// and does not redeem the spent refresh token again.
		for range 3 {
			time.Sleep(time.Second)
			c, err := svc.GetValidTokens(context.Background(), "s1", "gh")
			if err != nil || c.AccessToken != "gh-access-1" {
				t.Fatalf("during the outage: %+v, %v; want the deferred token", c, err)
			}
		}
		if _, err := svc.GetValidTokens(WithBinding(context.Background(), Binding{Subject: "mallory", ClientID: "app"}), "s1", "gh"); err == nil {
			t.Error("a deferred token was served to another subject")
		}
		// The store comes back: the write lands, and nothing is redeemed
		// again.
		st.down.Store(false)
		if err := svc.WaitRefreshes(context.Background()); err != nil {
			t.Fatal(err)
		}
		got, err := mem.Get(context.Background(), "s1", "gh")
		if err != nil || got.AccessToken != "gh-access-1" || got.RefreshToken != "gh-refresh-1" {
			t.Errorf("stored row after the outage: %q/%q, %v; want the rotated tokens", got.AccessToken, got.RefreshToken, err)
		}
		c, err = svc.GetValidTokens(context.Background(), "s1", "gh")
		if err != nil || c.AccessToken != "gh-access-1" {
			t.Errorf("after the outage: %+v, %v", c, err)
		}
		if n := ref.calls.Load(); n != 1 {
			t.Errorf("provider called %d times, want 1", n)
		}
		if svc.pending.count.Load() != 0 {
			t.Error("the deferred write is still pending after it was stored")
		}
	})
}

func TestDeferredWriteLosesToANewLogin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newStore(t, row("gh", t0.Add(-time.Minute), "rt-0"))
		st := &outageStorage{Storage: mem}
		svc := newService(st, downAfterRedeem(&fakeRefresher{rotate: true}, st))
		if _, err := svc.GetValidTokens(context.Background(), "s1", "gh"); err != nil {
			t.Fatal(err)
		}
		// The user logs in again (through another path to the database)
		// before the store takes the deferred write.
		login := row("gh", t0.Add(time.Hour), "rt-login")
		login.AccessToken = "from-login"
		if err := mem.Put(context.Background(), login); err != nil {
			t.Fatal(err)
		}
		st.down.Store(false)
		if err := svc.WaitRefreshes(context.Background()); err != nil {
			t.Fatal(err)
		}
		c, err := svc.GetValidTokens(context.Background(), "s1", "gh")
		if err != nil || c.AccessToken != "from-login" {
			t.Errorf("after a new login: %+v, %v; want the login's token", c, err)
		}
		if got, _ := mem.Get(context.Background(), "s1", "gh"); got.RefreshToken != "rt-login" {
			t.Error("the deferred write overwrote a newer login")
		}
	})
}

func TestShutdownGivesUpDeferredWritesAndStartsNoRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		other := row("gh", t0.Add(-time.Minute), "rt-other")
		other.SessionID = "s2"
		mem := newStore(t, row("gh", t0.Add(-time.Minute), "rt-0"), other)
		st := &outageStorage{Storage: mem}
		ref := &fakeRefresher{rotate: true}
		var logs testutil.SyncBuffer
		svc := newService(st, downAfterRedeem(ref, st), WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
		if _, err := svc.GetValidTokens(context.Background(), "s1", "gh"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := svc.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown with the store down = %v, want the deadline", err)
		}
		want := fmt.Sprintf(`"provider":"gh","session":"%s"`, SessionHash("s1"))
		if !strings.Contains(logs.String(), `"outcome":"not_stored"`) || !strings.Contains(logs.String(), want) {
			t.Errorf("the given-up write is not logged with its provider and session hash:\n%s", logs.String())
		}
		st.down.Store(false)
		_, err := svc.GetValidTokens(context.Background(), "s2", "gh")
		if !errors.Is(err, ErrUpstreamUnavailable) || ref.calls.Load() != 1 {
			t.Errorf("refresh after shutdown: err %v, provider calls %d; want ErrUpstreamUnavailable and no new call", err, ref.calls.Load())
		}
		synctest.Wait()
		if n := st.writes.Load(); n != 0 {
			t.Errorf("%d writes after the deferred write was given up", n)
		}
	})
}

func TestShutdownWaitsForDeferredWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newStore(t, row("gh", t0.Add(-time.Minute), "rt-0"))
		st := &outageStorage{Storage: mem}
		svc := newService(st, downAfterRedeem(&fakeRefresher{rotate: true}, st))
		if _, err := svc.GetValidTokens(context.Background(), "s1", "gh"); err != nil {
			t.Fatal(err)
		}
		go func() {
			time.Sleep(5 * time.Second)
			st.down.Store(false)
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := svc.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if got, _ := mem.Get(context.Background(), "s1", "gh"); got.RefreshToken != "gh-refresh-1" {
			t.Errorf("after Shutdown the stored refresh token is %q, want the rotated one", got.RefreshToken)
		}
	})
}

// sessionRefresher answers each session's refresh token with its own error.
type sessionRefresher struct {
	fakeRefresher
	errs map[string]error // by refresh token
}

func (s *sessionRefresher) Refresh(ctx context.Context, provider, rt string) (store.Tokens, error) {
	if err := s.errs[rt]; err != nil {
		s.calls.Add(1)
		return store.Tokens{}, err
	}
	return s.fakeRefresher.Refresh(ctx, provider, rt)
}

func TestOneSessionCannotPauseAProvider(t *testing.T) {
	grant := fmt.Errorf("%w: interaction_required", ErrRefreshFailed)
	unknown := errors.Join(ErrUpstreamUnavailable, ErrUnknownRefusal)
	for _, tc := range []struct {
		name      string
		err       error
		want      error
		pausedOne bool // the failing session is paused (not called again)
	}{
		{"session's grant refused", grant, ErrRefreshFailed, true},
		{"unknown error code", unknown, ErrUpstreamUnavailable, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			victim := row("gh", t0.Add(-time.Minute), "rt-other")
			victim.SessionID = "s2"
			st := newStore(t, row("gh", t0.Add(-time.Minute), "rt-bad"), victim)
			ref := &sessionRefresher{errs: map[string]error{"rt-bad": tc.err}}
			svc := newService(st, ref, WithBackoff(time.Minute, time.Hour))
			if _, err := svc.GetValidTokens(context.Background(), "s1", "gh"); !errors.Is(err, tc.want) {
				t.Fatalf("failing session: %v, want %v", err, tc.want)
			}
			c, err := svc.GetValidTokens(context.Background(), "s2", "gh")
			if err != nil || c.AccessToken != "gh-access-2" {
				t.Errorf("another session of the provider right after: %+v, %v; want it refreshed", c, err)
			}
			_, err = svc.GetValidTokens(context.Background(), "s1", "gh")
			if !errors.Is(err, tc.want) || ref.calls.Load() != 2 {
				t.Errorf("failing session again: %v after %d provider calls; want %v without a new call", err, ref.calls.Load(), tc.want)
			}
		})
	}
}

func TestProviderWidePauses(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"our client rejected", errors.Join(ErrUpstreamUnavailable, ErrProviderMisconfigured)},
		{"provider down", fmt.Errorf("%w: HTTP 503", ErrUpstreamUnavailable)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			other := row("gh", t0.Add(-time.Minute), "rt-other")
			other.SessionID = "s2"
			st := newStore(t, row("gh", t0.Add(-time.Minute), "rt-bad"), other)
			ref := &sessionRefresher{errs: map[string]error{"rt-bad": tc.err}}
			svc := newService(st, ref, WithBackoff(time.Minute, time.Hour))
			_, _ = svc.GetValidTokens(context.Background(), "s1", "gh")
			_, err := svc.GetValidTokens(context.Background(), "s2", "gh")
			if !errors.Is(err, ErrUpstreamUnavailable) || ref.calls.Load() != 1 {
				t.Errorf("another session during the pause: %v after %d calls; want ErrUpstreamUnavailable after 1", err, ref.calls.Load())
			}
			for _, r := range []store.Row{row("gh", t0, ""), other} {
				if got, _ := st.Get(context.Background(), r.SessionID, "gh"); got.NeedsReauth {
					t.Errorf("session %s marked for re-authentication by a provider-wide failure", r.SessionID)
				}
			}
		})
	}
}

func TestRetryAfterNeverBeyondBackoffMax(t *testing.T) {
	st := newStore(t, row("gh", t0.Add(-time.Minute), "rt"))
	hinted := errors.Join(ErrUpstreamUnavailable, retryErr(time.Hour))
	svc := newService(st, &fakeRefresher{err: hinted}, WithBackoff(time.Second, 20*time.Second))
	for i := range 2 {
		_, err := svc.GetValidTokens(context.Background(), "s1", "gh")
		if got := RetryAfter(err); got > 20*time.Second || got < 19*time.Second {
			t.Errorf("call %d: Retry-After %v for a provider hint of 1h, want backoff_max (20s)", i, got)
		}
	}
}

func TestExpiredSessionIsRefused(t *testing.T) {
	fresh := row("gh", t0.Add(time.Hour), "rt")
	fresh.SessionExpiresAt = t0.Add(-time.Second)
	stale := row("gl", t0.Add(-time.Minute), "rt")
	stale.SessionExpiresAt = t0
	live := row("gh", t0.Add(time.Hour), "rt")
	live.SessionID = "s2"
	live.SessionExpiresAt = t0.Add(time.Second)
	ref := &fakeRefresher{}
	svc := newService(newStore(t, fresh, stale, live), ref)
	for _, p := range []string{"gh", "gl"} {
		if _, err := svc.GetValidTokens(context.Background(), "s1", p); !errors.Is(err, ErrSessionNotFound) {
			t.Errorf("provider %s of an expired session: %v, want ErrSessionNotFound", p, err)
		}
	}
	if _, err := svc.Lookup(context.Background(), "s1", Binding{Subject: "alice", ClientID: "app"}); !errors.Is(err, ErrSessionExpired) ||
		!errors.Is(err, ErrSessionNotFound) {
		t.Errorf("whole expired session: %v, want ErrSessionExpired (an ErrSessionNotFound)", err)
	}
	if _, err := svc.Lookup(context.Background(), "s-none", Binding{Subject: "alice", ClientID: "app"}); errors.Is(err, ErrSessionExpired) ||
		!errors.Is(err, ErrSessionNotFound) {
		t.Errorf("unknown session: %v, want ErrSessionNotFound only", err)
	}
	if creds, failed, err := svc.GetAllUpstreamCredentials(context.Background(), "s1"); err != nil || len(creds) != 0 || len(failed) != 0 {
		t.Errorf("GetAll of an expired session = %v, %v, %v; want it unknown", creds, failed, err)
	}
	if ref.calls.Load() != 0 {
		t.Errorf("an expired session was refreshed (%d calls)", ref.calls.Load())
	}
	if _, err := svc.GetValidTokens(context.Background(), "s2", "gh"); err != nil {
		t.Errorf("a session expiring in a second: %v", err)
	}
}

// slowIDTokens verifies ID tokens only after delay, as an issuer whose keys
// take that long to fetch; ctx ending first is ErrUpstreamUnavailable.
type slowIDTokens struct {
	delay    time.Duration
	deadline atomic.Int64 // the verify context's deadline, UnixNano
}

func (*slowIDTokens) Has(string) bool { return true }

func (s *slowIDTokens) Verify(ctx context.Context, _, _ string) (string, error) {
	if d, ok := ctx.Deadline(); ok {
		s.deadline.Store(d.UnixNano())
	}
	select {
	case <-time.After(s.delay):
		return "upstream-alice", nil
	case <-ctx.Done():
		return "", fmt.Errorf("%w: keys not fetched: %w", ErrUpstreamUnavailable, ctx.Err())
	}
}

func TestIDTokenCheckFitsInTheLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStore(t, row("gh", t0.Add(-time.Minute), "rt"))
		ids := &slowIDTokens{delay: time.Hour}
		ref := &fakeRefresher{rotate: true, idToken: "new-id"}
		const lock, persist = 20 * time.Second, 5 * time.Second
		svc := newService(st, ref, WithIDTokenVerifier(ids), WithLockTimeout(lock), WithPersistTimeout(persist), WithRefreshTimeout(time.Second))
		start := time.Now()
		c, err := svc.GetValidTokens(context.Background(), "s1", "gh")
		if err != nil || c.AccessToken != "gh-access-1" || c.IDToken != "gh-id-0" {
			t.Fatalf("got %+v, %v; want the new access token with the previous (verified) ID token", c, err)
		}
		if got := time.Since(start); got > lock-persist {
			t.Errorf("refresh took %v; the ID-token check must leave the write its budget inside the %v lease", got, lock)
		}
		if d := time.Unix(0, ids.deadline.Load()); d.After(start.Add(lock - persist)) {
			t.Errorf("the ID-token check may run until %v after the claim, past the lease less the write", d.Sub(start))
		}
		got, _ := st.Get(context.Background(), "s1", "gh")
		if got.RefreshToken != "gh-refresh-1" || got.IDToken != "gh-id-0" {
			t.Errorf("stored %q/%q, want the rotated refresh token and the previous ID token", got.RefreshToken, got.IDToken)
		}
	})
}

func TestExpiredSessionIsRefusedFromTheCache(t *testing.T) {
	clk := testutil.NewClock(t0)
	r := row("gh", t0.Add(time.Hour), "rt")
	r.SessionExpiresAt = t0.Add(time.Minute)
	mem := newStore(t, r)
	c := cached.New(mem, cached.Options{Size: 16, MaxAge: time.Hour, Now: clk.Now})
	c.Trust(time.Now().Add(time.Hour))
	svc := newService(c, &fakeRefresher{}, WithClock(clk.Now))
	if _, err := svc.GetValidTokens(context.Background(), "s1", "gh"); err != nil {
		t.Fatalf("live session: %v", err)
	}
	if _, err := svc.GetValidTokens(context.Background(), "s1", "gh"); err != nil || c.Stats().Hits == 0 {
		t.Fatalf("live session again: %v, cache hits %d; want it served from the cache", err, c.Stats().Hits)
	}
	clk.Advance(time.Minute)
	_, err := svc.GetValidTokens(context.Background(), "s1", "gh")
	if !errors.Is(err, ErrSessionNotFound) {
		t.Errorf("after the session expired: %v, want ErrSessionNotFound", err)
	}
}
