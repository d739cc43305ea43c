package upstreamtoken

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/memory"
)

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// fakeRefresher answers like a provider: each call returns the next access
// token, or err when set. It counts calls and can be slowed down.
type fakeRefresher struct {
	calls   atomic.Int32
	err     error
	delay   time.Duration
	idToken string
	rotate  bool
	mu      sync.Mutex
	seen    []string
}

func (f *fakeRefresher) Refresh(ctx context.Context, provider, rt string) (store.Tokens, error) {
	n := f.calls.Add(1)
	f.mu.Lock()
	f.seen = append(f.seen, rt)
	f.mu.Unlock()
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return store.Tokens{}, fmt.Errorf("%w: %w", ErrUpstreamUnavailable, ctx.Err())
		}
	}
	if f.err != nil {
		return store.Tokens{}, f.err
	}
	t := store.Tokens{AccessToken: fmt.Sprintf("%s-access-%d", provider, n), ExpiresAt: t0.Add(time.Hour), IDToken: f.idToken}
	if f.rotate {
		t.RefreshToken = fmt.Sprintf("%s-refresh-%d", provider, n)
	}
	return t, nil
}

func row(provider string, expires time.Time, rt string) store.Row {
	return store.Row{
		SessionID: "s1", Provider: provider, Subject: "alice", ClientID: "app",
		Tokens: store.Tokens{AccessToken: provider + "-access-0", RefreshToken: rt, IDToken: provider + "-id-0", ExpiresAt: expires},
	}
}

func newStore(t *testing.T, rows ...store.Row) *memory.Store {
	t.Helper()
	st := memory.New(memory.WithClock(func() time.Time { return t0 }))
	for _, r := range rows {
		if err := st.Put(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func newService(st Storage, r Refresher, opts ...Option) *InProcessService {
	opts = append([]Option{WithClock(func() time.Time { return t0 }), WithSkew(30 * time.Second)}, opts...)
	if r == nil {
		return NewInProcessService(st, nil, opts...)
	}
	return NewInProcessService(st, r, opts...)
}

func TestGetValidTokens(t *testing.T) {
	expired := t0.Add(-time.Minute)
	tests := []struct {
		name      string
		row       store.Row
		refresher *fakeRefresher
		nilRef    bool
		provider  string
		want      *UpstreamCredential
		wantErr   error
		wantCalls int32
	}{
		{name: "fresh token returned as is", row: row("gh", t0.Add(time.Hour), "rt"), refresher: &fakeRefresher{},
			provider: "gh", want: &UpstreamCredential{AccessToken: "gh-access-0", IDToken: "gh-id-0"}},
		{name: "NULL expiry never expires", row: row("gh", time.Time{}, ""), refresher: &fakeRefresher{},
			provider: "gh", want: &UpstreamCredential{AccessToken: "gh-access-0", IDToken: "gh-id-0"}},
		{name: "expired token refreshed, old ID token kept when none returned", row: row("gh", expired, "rt"), refresher: &fakeRefresher{},
			provider: "gh", want: &UpstreamCredential{AccessToken: "gh-access-1", IDToken: "gh-id-0"}, wantCalls: 1},
		{name: "token inside the skew refreshed", row: row("gh", t0.Add(10*time.Second), "rt"), refresher: &fakeRefresher{},
			provider: "gh", want: &UpstreamCredential{AccessToken: "gh-access-1", IDToken: "gh-id-0"}, wantCalls: 1},
		{name: "rotated ID token replaces the old one", row: row("gh", expired, "rt"), refresher: &fakeRefresher{idToken: "new-id"},
			provider: "gh", want: &UpstreamCredential{AccessToken: "gh-access-1", IDToken: "new-id"}, wantCalls: 1},
		{name: "empty ID token is legitimate", row: func() store.Row { r := row("gh", t0.Add(time.Hour), ""); r.IDToken = ""; return r }(),
			refresher: &fakeRefresher{}, provider: "gh", want: &UpstreamCredential{AccessToken: "gh-access-0"}},
		{name: "expired without refresh token", row: row("gh", expired, ""), refresher: &fakeRefresher{},
			provider: "gh", wantErr: ErrNoRefreshToken},
		{name: "nil refresher", row: row("gh", expired, "rt"), nilRef: true,
			provider: "gh", wantErr: ErrNoRefreshToken},
		{name: "unknown provider", row: row("gh", t0.Add(time.Hour), "rt"), refresher: &fakeRefresher{},
			provider: "google", wantErr: ErrSessionNotFound},
		{name: "refresh refused", row: row("gh", expired, "rt"), refresher: &fakeRefresher{err: fmt.Errorf("%w: invalid_grant", ErrRefreshFailed)},
			provider: "gh", wantErr: ErrRefreshFailed, wantCalls: 1},
		{name: "provider unreachable", row: row("gh", expired, "rt"), refresher: &fakeRefresher{err: fmt.Errorf("%w: connection refused", ErrUpstreamUnavailable)},
			provider: "gh", wantErr: ErrUpstreamUnavailable, wantCalls: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newStore(t, tc.row)
			var svc *InProcessService
			if tc.nilRef {
				svc = newService(st, nil)
			} else {
				svc = newService(st, tc.refresher)
			}
			got, err := svc.GetValidTokens(context.Background(), "s1", tc.provider)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("credential = %+v, want %+v", got, tc.want)
			}
			if tc.refresher != nil && tc.refresher.calls.Load() != tc.wantCalls {
				t.Errorf("refresher called %d times, want %d", tc.refresher.calls.Load(), tc.wantCalls)
			}
			if tc.wantCalls == 1 && tc.wantErr == nil {
				stored, err := st.Get(context.Background(), "s1", tc.provider)
				if err != nil {
					t.Fatal(err)
				}
				if stored.AccessToken != got.AccessToken || stored.IDToken != got.IDToken || !stored.ExpiresAt.Equal(t0.Add(time.Hour)) {
					t.Errorf("refreshed tokens not persisted: %+v", stored.Tokens)
				}
				if stored.RefreshToken != "rt" {
					t.Errorf("without rotation the old refresh token must be kept, got %q", stored.RefreshToken)
				}
			}
		})
	}
}

func TestUnknownSession(t *testing.T) {
	svc := newService(newStore(t), &fakeRefresher{})
	if _, err := svc.GetValidTokens(context.Background(), "nope", "gh"); !errors.Is(err, ErrSessionNotFound) {
		t.Errorf("GetValidTokens err = %v, want ErrSessionNotFound", err)
	}
	creds, failed, err := svc.GetAllUpstreamCredentials(context.Background(), "nope")
	if err != nil || failed != nil || creds == nil || len(creds) != 0 {
		t.Errorf("GetAllUpstreamCredentials = %v, %v, %v; want empty map, nil, nil", creds, failed, err)
	}
}

func TestGetAllUpstreamCredentials(t *testing.T) {
	expired := t0.Add(-time.Minute)
	st := newStore(t, row("gh", expired, "rt"), row("google", t0.Add(time.Hour), ""), row("okta", expired, ""))
	ref := &fakeRefresher{rotate: true}
	creds, failed, err := newService(st, ref).GetAllUpstreamCredentials(context.Background(), "s1")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]UpstreamCredential{
		"gh":     {AccessToken: "gh-access-1", IDToken: "gh-id-0"},
		"google": {AccessToken: "google-access-0", IDToken: "google-id-0"},
	}
	if !reflect.DeepEqual(creds, want) || !reflect.DeepEqual(failed, []string{"okta"}) {
		t.Errorf("got %v failed %v; want %v failed [okta]", creds, failed, want)
	}
	stored, _ := st.Get(context.Background(), "s1", "gh")
	if stored.RefreshToken != "gh-refresh-1" {
		t.Errorf("rotated refresh token not persisted: %q", stored.RefreshToken)
	}
}

func TestGetAllTransientFailureKeepsTheOthers(t *testing.T) {
	// gh's provider is down: the error says so, and google's good
	// credential and okta's permanent failure are still reported.
	st := newStore(t, row("gh", t0.Add(-time.Minute), "rt"), row("google", t0.Add(time.Hour), ""), row("okta", t0.Add(-time.Minute), ""))
	ref := &fakeRefresher{err: fmt.Errorf("%w: 503", ErrUpstreamUnavailable)}
	creds, failed, err := newService(st, ref).GetAllUpstreamCredentials(context.Background(), "s1")
	if !errors.Is(err, ErrUpstreamUnavailable) || !strings.Contains(err.Error(), `"gh"`) {
		t.Fatalf("err = %v, want ErrUpstreamUnavailable naming gh", err)
	}
	want := map[string]UpstreamCredential{"google": {AccessToken: "google-access-0", IDToken: "google-id-0"}}
	if !reflect.DeepEqual(creds, want) || !reflect.DeepEqual(failed, []string{"okta"}) {
		t.Errorf("got %v failed %v; want %v failed [okta]", creds, failed, want)
	}
}

func TestLookupAlwaysChecksTheBinding(t *testing.T) {
	svc := newService(newStore(t, row("gh", t0.Add(time.Hour), "rt")), nil)
	for _, b := range []Binding{{}, {Subject: "alice"}, {Subject: "mallory", ClientID: "app"}} {
		if _, err := svc.Lookup(context.Background(), "s1", b, "gh"); !errors.Is(err, ErrInvalidBinding) {
			t.Errorf("Lookup with binding %+v: %v, want ErrInvalidBinding", b, err)
		}
	}
	if res, err := svc.Lookup(context.Background(), "s1", Binding{Subject: "alice", ClientID: "app"}, "gh"); err != nil || !hasAccessToken(&res, "gh") {
		t.Errorf("Lookup with the row's binding: %d credentials, %v", res.NumCredentials(), err)
	}
}

func TestRefreshRefusedIsRemembered(t *testing.T) {
	st := newStore(t, row("gh", t0.Add(-time.Minute), "rt"))
	ref := &fakeRefresher{err: fmt.Errorf("%w: invalid_grant", ErrRefreshFailed)}
	svc := newService(st, ref)
	creds, failed, err := svc.GetAllUpstreamCredentials(context.Background(), "s1")
	if err != nil || len(creds) != 0 || !reflect.DeepEqual(failed, []string{"gh"}) {
		t.Fatalf("got %v %v %v; want no creds, failed [gh]", creds, failed, err)
	}
	if _, err := svc.GetValidTokens(context.Background(), "s1", "gh"); !errors.Is(err, ErrRefreshFailed) {
		t.Fatalf("second call err = %v, want ErrRefreshFailed", err)
	}
	if n := ref.calls.Load(); n != 1 {
		t.Errorf("a refused refresh token was redeemed %d times, want 1", n)
	}
}

func TestStoreUnavailable(t *testing.T) {
	st := newStore(t, row("gh", t0.Add(time.Hour), "rt"))
	st.SetUnavailable(true)
	svc := newService(st, &fakeRefresher{})
	if _, err := svc.GetValidTokens(context.Background(), "s1", "gh"); !errors.Is(err, ErrUpstreamUnavailable) {
		t.Errorf("GetValidTokens err = %v, want ErrUpstreamUnavailable", err)
	}
	if _, _, err := svc.GetAllUpstreamCredentials(context.Background(), "s1"); !errors.Is(err, ErrUpstreamUnavailable) {
		t.Errorf("GetAllUpstreamCredentials err = %v, want ErrUpstreamUnavailable", err)
	}
}

func TestBinding(t *testing.T) {
	st := newStore(t, row("gh", t0.Add(time.Hour), "rt"))
	svc := newService(st, &fakeRefresher{})
	for _, b := range []Binding{{"mallory", "app"}, {"alice", "other-app"}} {
		ctx := WithBinding(context.Background(), b)
		if _, err := svc.GetValidTokens(ctx, "s1", "gh"); !errors.Is(err, ErrInvalidBinding) {
			t.Errorf("%+v: GetValidTokens err = %v, want ErrInvalidBinding", b, err)
		}
		if _, _, err := svc.GetAllUpstreamCredentials(ctx, "s1"); !errors.Is(err, ErrInvalidBinding) {
			t.Errorf("%+v: GetAllUpstreamCredentials err = %v, want ErrInvalidBinding", b, err)
		}
	}
	ctx := WithBinding(context.Background(), Binding{"alice", "app"})
	if _, err := svc.GetValidTokens(ctx, "s1", "gh"); err != nil {
		t.Errorf("matching binding: %v", err)
	}
}

func TestConcurrentCallersShareOneRefresh(t *testing.T) {
	st := newStore(t, row("gh", t0.Add(-time.Minute), "rt"))
	ref := &fakeRefresher{delay: 50 * time.Millisecond, rotate: true}
	svc := newService(st, ref)
	var wg sync.WaitGroup
	got := make([]string, 32)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := svc.GetValidTokens(context.Background(), "s1", "gh")
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = c.AccessToken
		}()
	}
	wg.Wait()
	if n := ref.calls.Load(); n != 1 {
		t.Fatalf("refresher called %d times, want 1", n)
	}
	for i, g := range got {
		if g != "gh-access-1" {
			t.Errorf("caller %d got %q", i, g)
		}
	}
}

func TestCallerTimeoutDoesNotAbortSharedRefresh(t *testing.T) {
	st := newStore(t, row("gh", t0.Add(-time.Minute), "rt"))
	ref := &fakeRefresher{delay: 100 * time.Millisecond, rotate: true}
	svc := newService(st, ref)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := svc.GetValidTokens(ctx, "s1", "gh"); !errors.Is(err, ErrUpstreamUnavailable) {
		t.Fatalf("impatient caller err = %v, want ErrUpstreamUnavailable", err)
	}
	// A patient caller joins the refresh still in flight and gets its result.
	c, err := svc.GetValidTokens(context.Background(), "s1", "gh")
	if err != nil || c.AccessToken != "gh-access-1" {
		t.Fatalf("patient caller got %+v, %v", c, err)
	}
	if n := ref.calls.Load(); n != 1 {
		t.Errorf("refresher called %d times, want 1", n)
	}
	stored, _ := st.Get(context.Background(), "s1", "gh")
	if stored.RefreshToken != "gh-refresh-1" {
		t.Errorf("rotated refresh token lost: %q", stored.RefreshToken)
	}
}

func TestStaleReadDoesNotRedeemTwice(t *testing.T) {
	stale := row("gh", t0.Add(-time.Minute), "rt")
	st := newStore(t, stale)
	ref := &fakeRefresher{rotate: true}
	svc := newService(st, ref)
	if _, err := svc.GetValidTokens(context.Background(), "s1", "gh"); err != nil {
		t.Fatal(err)
	}
	// A request that read the row before that refresh was stored now asks
	// again with the spent refresh token: the re-read must serve the new one.
	stored, _ := st.Get(context.Background(), "s1", "gh")
	stale.CreatedAt, stale.UpdatedAt = stored.CreatedAt, stored.UpdatedAt
	got, err := svc.refresh(context.Background(), stale, 30*time.Second, TriggerCheck)
	if err != nil || got.AccessToken != "gh-access-1" {
		t.Fatalf("got %+v, %v", got, err)
	}
	if n := ref.calls.Load(); n != 1 {
		t.Errorf("refresh token redeemed %d times, want 1 (seen %v)", n, ref.seen)
	}
}

// barrierRefresher succeeds only when all n refreshes are in flight at once,
// which sequential refreshing can never achieve.
type barrierRefresher struct {
	n       int
	mu      sync.Mutex
	arrived int
	all     chan struct{}
}

func (b *barrierRefresher) Refresh(ctx context.Context, provider, rt string) (store.Tokens, error) {
	b.mu.Lock()
	b.arrived++
	if b.arrived == b.n {
		close(b.all)
	}
	b.mu.Unlock()
	select {
	case <-b.all:
		return store.Tokens{AccessToken: provider + "-new"}, nil
	case <-time.After(10 * time.Second):
		return store.Tokens{}, fmt.Errorf("%w: %s refreshed alone", ErrUpstreamUnavailable, provider)
	}
}

func TestRefreshInParallel(t *testing.T) {
	expired := t0.Add(-time.Minute)
	st := newStore(t, row("gh", expired, "rt"), row("google", expired, "rt"), row("okta", expired, "rt"))
	svc := newService(st, &barrierRefresher{n: 3, all: make(chan struct{})})
	res, err := svc.Lookup(context.Background(), "s1", Binding{Subject: "alice", ClientID: "app"}, "gh", "google", "okta")
	if err != nil || res.NumCredentials() != 3 || len(res.Failures) != 0 {
		t.Fatalf("got %d credentials, failures %v, %v; want three providers refreshed together", res.NumCredentials(), res.Failures, err)
	}
}

func TestRetryAfter(t *testing.T) {
	if got := RetryAfter(errors.New("x")); got != time.Second {
		t.Errorf("default = %v", got)
	}
	err := errors.Join(ErrUpstreamUnavailable, fmt.Errorf("wrapped: %w", retryErr(7*time.Second)))
	if got := RetryAfter(err); got != 7*time.Second {
		t.Errorf("hint = %v", got)
	}
}

type retryErr time.Duration

func (r retryErr) Error() string             { return "retry" }
func (r retryErr) RetryAfter() time.Duration { return time.Duration(r) }

// flakyStorage fails CompleteRefresh a number of times, with failWith or
// else ErrUnavailable.
type flakyStorage struct {
	Storage
	mu       sync.Mutex
	failures int
	attempts int
	failWith error
}

func (f *flakyStorage) CompleteRefresh(ctx context.Context, sessionID, provider string, l store.Lease, t store.Tokens) (store.Row, error) {
	f.mu.Lock()
	f.attempts++
	fail := f.attempts <= f.failures
	f.mu.Unlock()
	if fail && f.failWith != nil {
		return store.Row{}, f.failWith
	}
	if fail {
		return store.Row{}, fmt.Errorf("%w: connection reset", store.ErrUnavailable)
	}
	return f.Storage.CompleteRefresh(ctx, sessionID, provider, l, t)
}

func TestRefreshedTokensPersistedDespiteTransientStoreErrors(t *testing.T) {
	st := newStore(t, row("gh", t0.Add(-time.Minute), "rt"))
	flaky := &flakyStorage{Storage: st, failures: 2}
	ref := &fakeRefresher{rotate: true}
	c, err := newService(flaky, ref).GetValidTokens(context.Background(), "s1", "gh")
	if err != nil || c.AccessToken != "gh-access-1" {
		t.Fatalf("got %+v, %v", c, err)
	}
	stored, _ := st.Get(context.Background(), "s1", "gh")
	if stored.RefreshToken != "gh-refresh-1" || flaky.attempts != 3 {
		t.Errorf("stored refresh token %q after %d attempts; want the rotated one after 3", stored.RefreshToken, flaky.attempts)
	}
}

func TestRefreshedTokensRefusedByTheStoreIsUnavailable(t *testing.T) {
	// A store that refuses the write (rather than failing to answer) is
	// not asked again: the refresh is a transient failure.
	st := newStore(t, row("gh", t0.Add(-time.Minute), "rt"))
	flaky := &flakyStorage{Storage: st, failures: 100, failWith: fmt.Errorf("%w: value too long", store.ErrInvalid)}
	svc := newService(flaky, &fakeRefresher{rotate: true})
	_, err := svc.GetValidTokens(context.Background(), "s1", "gh")
	if !errors.Is(err, ErrUpstreamUnavailable) || flaky.attempts != 1 {
		t.Fatalf("err = %v after %d attempts; want ErrUpstreamUnavailable after 1", err, flaky.attempts)
	}
	if svc.pending.count.Load() != 0 {
		t.Error("a write the store refused was deferred")
	}
}

// hasAccessToken reports whether res holds a credential with an access
// token for provider.
func hasAccessToken(res *Result, provider string) bool {
	c, ok := res.Credential(provider)
	return ok && c.AccessToken != ""
}
