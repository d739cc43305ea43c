package upstreamtoken

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/extauthz/extauthz/store"
)

// Storage is what InProcessService needs from a store. Every store backend
// (store/postgres, store/memory) satisfies it.
type Storage interface {
	Get(ctx context.Context, sessionID, provider string) (store.Row, error)
	GetSession(ctx context.Context, sessionID string) ([]store.Row, error)
	UpdateTokens(ctx context.Context, sessionID, provider string, t store.Tokens) (store.Row, error)
	MarkReauth(ctx context.Context, sessionID, provider string) error
}

// Refresher redeems a refresh token at a provider. It must ask the provider
// every time it is called. On success the returned RefreshToken is the rotated
// one, or the one passed in when the provider returned none. A permanent
// refusal wraps ErrRefreshFailed; anything passing wraps
// ErrUpstreamUnavailable.
type Refresher interface {
	Refresh(ctx context.Context, provider, refreshToken string) (store.Tokens, error)
}

// Binding is the identity a request presents: the authorization server's
// subject and client ID from the caller's JWT. A stored session answers only
// to the binding it was written with.
type Binding struct {
	Subject  string
	ClientID string
}

type bindingKey struct{}

// WithBinding returns a context that makes GetValidTokens and
// GetAllUpstreamCredentials check the stored rows against b, failing with
// ErrInvalidBinding on a mismatch.
func WithBinding(ctx context.Context, b Binding) context.Context {
	return context.WithValue(ctx, bindingKey{}, b)
}

func bindingFrom(ctx context.Context) *Binding {
	if b, ok := ctx.Value(bindingKey{}).(Binding); ok {
		return &b
	}
	return nil
}

// Option configures an InProcessService.
type Option func(*InProcessService)

// WithSkew makes a token that expires within d count as expired, so it is
// refreshed before a backend could see it expire. Default 30 s.
func WithSkew(d time.Duration) Option { return func(s *InProcessService) { s.skew = d } }

// WithRefreshTimeout bounds one shared refresh, including persisting its
// result. Default 10 s.
func WithRefreshTimeout(d time.Duration) Option {
	return func(s *InProcessService) { s.refreshTimeout = d }
}

// WithPersistTimeout bounds storing a refresh's result, retries included,
// separately from the refresh itself. Default 5 s.
func WithPersistTimeout(d time.Duration) Option {
	return func(s *InProcessService) { s.persistTimeout = d }
}

// WithClock injects the clock used to decide expiry.
func WithClock(now func() time.Time) Option { return func(s *InProcessService) { s.now = now } }

// InProcessService implements Service and TokenReader on top of a Storage
// and an optional Refresher. Concurrent requests that find the same row
// expired share one refresh. It is safe for concurrent use.
type InProcessService struct {
	storage        Storage
	refresher      Refresher
	skew           time.Duration
	refreshTimeout time.Duration
	persistTimeout time.Duration
	now            func() time.Time
	flights        singleflight.Group
}

var (
	_ Service     = (*InProcessService)(nil)
	_ TokenReader = (*InProcessService)(nil)
)

// NewInProcessService returns a service reading from storage. refresher may
// be nil: then an expired token yields ErrNoRefreshToken.
func NewInProcessService(storage Storage, refresher Refresher, opts ...Option) *InProcessService {
	s := &InProcessService{
		storage:        storage,
		refresher:      refresher,
		skew:           30 * time.Second,
		refreshTimeout: 10 * time.Second,
		persistTimeout: 5 * time.Second,
		now:            time.Now,
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Result is the outcome of Lookup.
type Result struct {
	// Credentials holds a valid credential for each provider that has one.
	Credentials map[string]UpstreamCredential
	// Failures holds, for each requested provider without a credential, why:
	// an error wrapping ErrSessionNotFound (the session has no row for it),
	// ErrNoRefreshToken, ErrRefreshFailed or ErrUpstreamUnavailable.
	Failures map[string]error
}

// Lookup returns valid credentials for the given providers of a session,
// refreshing expired ones in parallel. With no providers it covers every
// provider the session has. When binding is not nil every stored row of the
// session must carry that subject and client ID.
//
// The returned error is for the session as a whole: ErrSessionNotFound (no
// row at all), ErrInvalidBinding, or ErrUpstreamUnavailable (the store could
// not be read). Per-provider outcomes are in the Result.
func (s *InProcessService) Lookup(ctx context.Context, sessionID string, binding *Binding, providers ...string) (Result, error) {
	rows, err := s.readSession(ctx, sessionID, providers)
	if err != nil {
		return Result{}, err
	}
	if len(rows) == 0 {
		return Result{}, ErrSessionNotFound
	}
	if binding != nil {
		for _, r := range rows {
			if r.Subject != binding.Subject || r.ClientID != binding.ClientID {
				return Result{}, ErrInvalidBinding
			}
		}
	}
	byProvider := make(map[string]store.Row, len(rows))
	for _, r := range rows {
		byProvider[r.Provider] = r
	}
	if len(providers) == 0 {
		for _, r := range rows {
			providers = append(providers, r.Provider)
		}
	}

	res := Result{Credentials: make(map[string]UpstreamCredential, len(providers))}
	var mu sync.Mutex
	var wg sync.WaitGroup
	record := func(p string, c UpstreamCredential, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			res.Credentials[p] = c
			return
		}
		if res.Failures == nil {
			res.Failures = make(map[string]error)
		}
		res.Failures[p] = err
	}
	for _, p := range providers {
		row, ok := byProvider[p]
		switch {
		case !ok:
			record(p, UpstreamCredential{}, fmt.Errorf("%w: no tokens for provider %q", ErrSessionNotFound, p))
		case !row.Expired(s.now(), s.skew):
			record(p, credential(row.Tokens), nil)
		default:
			wg.Add(1)
			go func() {
				defer wg.Done()
				t, err := s.refresh(ctx, row)
				record(p, credential(t), err)
			}()
		}
	}
	wg.Wait()
	return res, nil
}

// readSession reads the rows needed for providers: one row with Get when a
// single provider is asked for, else the whole session in one round trip.
func (s *InProcessService) readSession(ctx context.Context, sessionID string, providers []string) ([]store.Row, error) {
	if len(providers) == 1 {
		row, err := s.storage.Get(ctx, sessionID, providers[0])
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, nil
		case err != nil:
			return nil, storeErr(err)
		}
		return []store.Row{row}, nil
	}
	rows, err := s.storage.GetSession(ctx, sessionID)
	if err != nil {
		return nil, storeErr(err)
	}
	return rows, nil
}

func storeErr(err error) error {
	if errors.Is(err, store.ErrInvalid) {
		return fmt.Errorf("%w: %w", ErrSessionNotFound, err)
	}
	return fmt.Errorf("%w: %w", ErrUpstreamUnavailable, err)
}

func credential(t store.Tokens) UpstreamCredential {
	return UpstreamCredential{AccessToken: t.AccessToken, IDToken: t.IDToken}
}

// refresh renews row's access token. Callers that find the same row expired
// at the same moment share one refresh, which runs on a context that none of
// them owns (bounded by the refresh timeout), so a caller giving up does not
// abort the redemption for the others or lose a rotated refresh token. The
// result is persisted before anyone sees it.
func (s *InProcessService) refresh(ctx context.Context, row store.Row) (store.Tokens, error) {
	if row.NeedsReauth {
		return store.Tokens{}, fmt.Errorf("%w: provider %q refused this session's refresh token earlier", ErrRefreshFailed, row.Provider)
	}
	if s.refresher == nil || row.RefreshToken == "" {
		return store.Tokens{}, fmt.Errorf("%w: provider %q", ErrNoRefreshToken, row.Provider)
	}
	key := row.SessionID + "\x00" + row.Provider + "\x00" + row.Subject + "\x00" + row.ClientID
	ch := s.flights.DoChan(key, func() (any, error) {
		shared, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.refreshTimeout)
		defer cancel()
		return s.redeem(shared, row)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return store.Tokens{}, r.Err
		}
		return r.Val.(store.Tokens), nil
	case <-ctx.Done():
		return store.Tokens{}, fmt.Errorf("%w: waiting for refresh at provider %q: %w", ErrUpstreamUnavailable, row.Provider, ctx.Err())
	}
}

// redeem re-reads the row, then performs one refresh and persists it. The
// re-read matters: a caller may have read the row just before an earlier
// refresh stored its result; redeeming the refresh token it read would spend
// a token that the provider has already rotated.
func (s *InProcessService) redeem(ctx context.Context, row store.Row) (store.Tokens, error) {
	cur, err := s.storage.Get(ctx, row.SessionID, row.Provider)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.Tokens{}, fmt.Errorf("%w: session deleted before refresh at provider %q", ErrSessionNotFound, row.Provider)
	case err != nil:
		return store.Tokens{}, storeErr(err)
	case cur.Subject != row.Subject || cur.ClientID != row.ClientID:
		return store.Tokens{}, ErrInvalidBinding
	case cur.NeedsReauth:
		return store.Tokens{}, fmt.Errorf("%w: provider %q refused this session's refresh token earlier", ErrRefreshFailed, row.Provider)
	case !cur.Expired(s.now(), s.skew):
		return cur.Tokens, nil
	case cur.RefreshToken == "":
		return store.Tokens{}, fmt.Errorf("%w: provider %q", ErrNoRefreshToken, row.Provider)
	}
	row = cur
	t, err := s.refresher.Refresh(ctx, row.Provider, row.RefreshToken)
	if err != nil {
		if errors.Is(err, ErrRefreshFailed) {
			// The provider refused for good: make sure nobody redeems it again.
			// A failure to mark is not worth more than the refusal itself.
			_ = s.storage.MarkReauth(ctx, row.SessionID, row.Provider)
		}
		return store.Tokens{}, err
	}
	if t.RefreshToken == "" {
		t.RefreshToken = row.RefreshToken
	}
	if t.IDToken == "" {
		t.IDToken = row.IDToken
	}
	if t.TokenType == "" {
		t.TokenType = "Bearer"
	}
	if err := s.persist(ctx, row, t); err != nil {
		return store.Tokens{}, err
	}
	return t, nil
}

// maxPersistAttempts bounds the writes of one refresh's result.
const maxPersistAttempts = 5

// sleep waits for d and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// persist stores refreshed tokens. The provider may have rotated the
// refresh token, so the write gets a budget of its own, independent of how
// long the provider took, and is retried while the store's failure is
// passing.
func (s *InProcessService) persist(ctx context.Context, row store.Row, t store.Tokens) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.persistTimeout)
	defer cancel()
	var err error
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		_, err = s.storage.UpdateTokens(ctx, row.SessionID, row.Provider, t)
		if err == nil {
			return nil
		}
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: session deleted during refresh at provider %q", ErrSessionNotFound, row.Provider)
		}
		if !errors.Is(err, store.ErrUnavailable) || attempt == maxPersistAttempts || !sleep(ctx, wait) {
			break
		}
		wait *= 2
	}
	return fmt.Errorf("%w: refreshed tokens for provider %q could not be stored: %w", ErrUpstreamUnavailable, row.Provider, err)
}

// GetValidTokens implements Service. When ctx carries a Binding (see
// WithBinding) the stored row must match it.
func (s *InProcessService) GetValidTokens(ctx context.Context, sessionID, providerName string) (*UpstreamCredential, error) {
	res, err := s.Lookup(ctx, sessionID, bindingFrom(ctx), providerName)
	if err != nil {
		return nil, err
	}
	if err := res.Failures[providerName]; err != nil {
		return nil, err
	}
	c := res.Credentials[providerName]
	return &c, nil
}

// GetAllUpstreamCredentials implements TokenReader. When ctx carries a
// Binding (see WithBinding) every stored row must match it, else the error is
// ErrInvalidBinding.
func (s *InProcessService) GetAllUpstreamCredentials(ctx context.Context, sessionID string) (map[string]UpstreamCredential, []string, error) {
	res, err := s.Lookup(ctx, sessionID, bindingFrom(ctx))
	switch {
	case errors.Is(err, ErrSessionNotFound):
		return map[string]UpstreamCredential{}, nil, nil
	case err != nil:
		return nil, nil, err
	}
	var failed []string
	var passing []error
	for p, ferr := range res.Failures {
		if errors.Is(ferr, ErrInvalidBinding) {
			return nil, nil, ferr
		}
		if errors.Is(ferr, ErrUpstreamUnavailable) {
			passing = append(passing, ferr)
			continue
		}
		failed = append(failed, p)
	}
	if len(passing) > 0 {
		return nil, nil, errors.Join(passing...)
	}
	sort.Strings(failed)
	return res.Credentials, failed, nil
}
