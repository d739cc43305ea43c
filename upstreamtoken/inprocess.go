package upstreamtoken

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/extauthz/extauthz/store"
)

// Storage is what InProcessService needs from a store. Every store backend
// (store/postgres, store/memory) satisfies it.
type Storage interface {
	Get(ctx context.Context, sessionID, provider string) (store.Row, error)
	GetSession(ctx context.Context, sessionID string) ([]store.Row, error)
	store.RefreshCoordinator
}

// Refresher redeems a refresh token at a provider. It must ask the provider
// every time it is called. On success the returned RefreshToken is the rotated
// one, or the one passed in when the provider returned none. A permanent
// refusal wraps ErrRefreshFailed; anything transient wraps
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
// ErrInvalidBinding on a mismatch. Without it those two methods do not check
// the binding at all: a caller serving requests must use it, or call Lookup,
// which always checks.
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

// WithRefreshTimeout bounds one call to the provider's token endpoint.
// Default 10 s.
func WithRefreshTimeout(d time.Duration) Option {
	return func(s *InProcessService) { s.refreshTimeout = d }
}

// WithPersistTimeout bounds storing a refresh's result, retries included,
// separately from the provider call. Default 5 s.
func WithPersistTimeout(d time.Duration) Option {
	return func(s *InProcessService) { s.persistTimeout = d }
}

// WithLockTimeout sets how long a refresh lease lasts: the time after which
// another process may act on a row whose refresh owner died or hung. It is
// raised to at least the refresh and persist time-outs plus one second, so
// that no lease can lapse while its owner may still be waiting on the
// provider. Default 30 s.
func WithLockTimeout(d time.Duration) Option {
	return func(s *InProcessService) { s.lockTimeout = d }
}

// WithBackoff sets the bounds of the per-provider back-off after a transient
// failure (5xx, 429, time-out, network, rejected client credentials): the
// first failure pauses refreshes at that provider for min (or the provider's
// Retry-After, if longer), each further failure doubles the pause up to max,
// and a success ends it. Defaults 1 s and 1 min.
func WithBackoff(min, max time.Duration) Option {
	return func(s *InProcessService) { s.backoff.min, s.backoff.max = min, max }
}

// WithIDTokenVerifier makes refreshed ID tokens be verified (see
// IDTokenVerifier).
func WithIDTokenVerifier(v IDTokenVerifier) Option {
	return func(s *InProcessService) { s.idTokens = v }
}

// WithLogger makes the service log one line per refresh it coordinates, with
// the outcome, provider and a short session hash, never a token.
func WithLogger(l *slog.Logger) Option { return func(s *InProcessService) { s.log = l } }

// WithRefreshObserver makes the service call observe once per refresh it
// coordinates, where the refresh's outcome is logged, with the provider, the
// outcome (one of RefreshOutcomes, the same word as the log line's) and the
// time since the refresh began (waiting for another process's lease
// included).
//
// observe is called on the refresh's goroutine: it must be quick and safe
// for concurrent use. It never receives a token or a session ID.
func WithRefreshObserver(observe func(provider, outcome string, elapsed time.Duration)) Option {
	return func(s *InProcessService) { s.observe = observe }
}

// WithOwner names this process in refresh leases (default host:pid). Each
// claim adds a random suffix.
func WithOwner(name string) Option { return func(s *InProcessService) { s.owner = name } }

// WithClock injects the clock used to decide expiry and back-off.
func WithClock(now func() time.Time) Option { return func(s *InProcessService) { s.now = now } }

// InProcessService implements Service and TokenReader on top of a Storage
// and an optional Refresher. Requests that find the same row expired share
// one refresh, within this process through singleflight and across processes
// sharing the store through a refresh lease. It is safe for concurrent use.
type InProcessService struct {
	storage        Storage
	refresher      Refresher
	idTokens       IDTokenVerifier
	log            *slog.Logger
	observe        func(provider, outcome string, elapsed time.Duration)
	observeTrigger func(provider, trigger, outcome string)
	waited         func(provider string)
	ahead          *ahead
	owner          string
	skew           time.Duration
	refreshTimeout time.Duration
	persistTimeout time.Duration
	lockTimeout    time.Duration
	backoff        backoff
	now            func() time.Time
	flights        singleflight.Group
	inflight       inflight
	pending        pending
	closing        atomic.Bool
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
		log:            slog.New(slog.DiscardHandler),
		owner:          defaultOwner(),
		skew:           30 * time.Second,
		refreshTimeout: 10 * time.Second,
		persistTimeout: 5 * time.Second,
		lockTimeout:    30 * time.Second,
		backoff:        backoff{min: time.Second, max: time.Minute},
		now:            time.Now,
		pending:        newPending(),
	}
	for _, o := range opts {
		o(s)
	}
	// Options may set these to nil as well: no-ops then, as by default.
	if s.observe == nil {
		s.observe = func(string, string, time.Duration) {}
	}
	if s.observeTrigger == nil {
		s.observeTrigger = func(string, string, string) {}
	}
	if s.waited == nil {
		s.waited = func(string) {}
	}
	s.lockTimeout = max(s.lockTimeout, MinLockTimeout(s.refreshTimeout, s.persistTimeout))
	s.backoff.now = s.now
	if s.ahead != nil {
		s.ahead.skew = s.skew
	}
	return s
}

// MinLockTimeout is the shortest refresh lease that cannot lapse while its
// owner may still be waiting on the provider or storing the result.
func MinLockTimeout(refreshTimeout, persistTimeout time.Duration) time.Duration {
	return refreshTimeout + persistTimeout + time.Second
}

// Lookup returns valid credentials for the given providers of a session,
// refreshing expired ones in parallel. With no providers it covers every
// provider the session has. Every stored row of the session must carry
// binding's subject and client ID (a zero Binding matches no stored row,
// since every row has both), else the error is ErrInvalidBinding. A row whose session has
// expired (SessionExpiresAt past) counts as absent, and is never refreshed.
//
// The returned error is for the session as a whole: ErrSessionNotFound (no
// row at all), ErrInvalidBinding, or ErrUpstreamUnavailable (the store could
// not be read). Per-provider outcomes are in the Result.
//
// Tokens that this process refreshed but could not store yet (the store
// failed after the provider answered) are served in place of the stored
// row they replace, and, while the store cannot be read, on their own.
func (s *InProcessService) Lookup(ctx context.Context, sessionID string, binding Binding, providers ...string) (Result, error) {
	return s.lookup(ctx, sessionID, &binding, providers)
}

// lookup is Lookup with the binding check skipped when binding is nil.
func (s *InProcessService) lookup(ctx context.Context, sessionID string, binding *Binding, providers []string) (Result, error) {
	var one [1]store.Row // the single row of a one-provider read, kept off the heap
	rows, err := s.readSession(ctx, sessionID, providers, one[:0])
	now := s.now()
	if err != nil {
		if res, ok := s.servePending(sessionID, binding, providers, now, err); ok {
			return res, nil
		}
		return Result{}, err
	}
	stored := len(rows)
	rows = slices.DeleteFunc(rows, func(r store.Row) bool { return r.SessionExpired(now) })
	if len(rows) == 0 {
		if stored > 0 {
			return Result{}, ErrSessionExpired
		}
		return Result{}, ErrSessionNotFound
	}
	if binding != nil {
		for i := range rows {
			if rows[i].Subject != binding.Subject || rows[i].ClientID != binding.ClientID {
				return Result{}, ErrInvalidBinding
			}
		}
	}
	if len(providers) == 0 {
		for i := range rows {
			providers = append(providers, rows[i].Provider)
		}
	}

	var res Result
	// Fresh tokens are served at once; expired ones are refreshed in
	// parallel.
	var due []store.Row
	for _, p := range providers {
		i := findRow(rows, p)
		if i < 0 {
			res.fail(p, fmt.Errorf("%w: no tokens for provider %q", ErrSessionNotFound, p))
			continue
		}
		s.ahead.served(rows[i], now)
		if pr, ok := s.pending.get(sessionID, p, rows[i].Version); ok {
			rows[i].Tokens = pr.Tokens
		}
		if !rows[i].Expired(now, s.skew) {
			res.SetCredential(p, credential(rows[i].Tokens))
		} else {
			due = append(due, rows[i])
		}
	}
	if len(due) == 0 {
		return res, nil
	}
	type outcome struct {
		t   store.Tokens
		err error
	}
	out := make([]outcome, len(due))
	var wg sync.WaitGroup
	for i, row := range due {
		wg.Go(func() {
			s.waited(row.Provider)
			t, err := s.refresh(ctx, row, s.skew, TriggerCheck)
			out[i] = outcome{t, err}
		})
	}
	wg.Wait()
	for i, o := range out {
		if o.err != nil {
			res.fail(due[i].Provider, o.err)
		} else {
			res.SetCredential(due[i].Provider, credential(o.t))
		}
	}
	return res, nil
}

// servePending answers a Lookup whose store read failed with readErr from
// this process's deferred writes: each named provider with one (for the
// binding, if any, and a live session) is served, the others fail with
// readErr. It reports false when there is nothing to serve, or no provider
// was named (the session's full set of providers is unknown then).
func (s *InProcessService) servePending(sessionID string, binding *Binding, providers []string, now time.Time, readErr error) (Result, bool) {
	if len(providers) == 0 {
		return Result{}, false
	}
	var res Result
	for _, p := range providers {
		r, ok := s.pending.get(sessionID, p, 0)
		if !ok || r.SessionExpired(now) || r.Expired(now, s.skew) ||
			(binding != nil && (r.Subject != binding.Subject || r.ClientID != binding.ClientID)) {
			res.fail(p, readErr)
			continue
		}
		res.SetCredential(p, credential(r.Tokens))
	}
	return res, res.NumCredentials() > 0
}

// findRow returns the index of provider's row in rows, or -1. A session has
// a few providers: a linear scan beats building a map.
func findRow(rows []store.Row, provider string) int {
	for i := range rows {
		if rows[i].Provider == provider {
			return i
		}
	}
	return -1
}

// readSession reads the rows needed for providers: one row with Get when a
// single provider is asked for (appended to buf), else the whole session in
// one round trip.
func (s *InProcessService) readSession(ctx context.Context, sessionID string, providers []string, buf []store.Row) ([]store.Row, error) {
	if len(providers) == 1 {
		row, err := s.storage.Get(ctx, sessionID, providers[0])
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, nil
		case err != nil:
			return nil, storeErr(err)
		}
		return append(buf, row), nil
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

// GetValidTokens implements Service. When ctx carries a Binding (see
// WithBinding) the stored row must match it.
func (s *InProcessService) GetValidTokens(ctx context.Context, sessionID, providerName string) (*UpstreamCredential, error) {
	res, err := s.lookup(ctx, sessionID, bindingFrom(ctx), []string{providerName})
	if err != nil {
		return nil, err
	}
	if err := res.Failures[providerName]; err != nil {
		return nil, err
	}
	c, _ := res.Credential(providerName)
	return &c, nil
}

// GetAllUpstreamCredentials implements TokenReader. When ctx carries a
// Binding (see WithBinding) every stored row must match it, else the error is
// ErrInvalidBinding; without one the binding is not checked.
func (s *InProcessService) GetAllUpstreamCredentials(ctx context.Context, sessionID string) (map[string]UpstreamCredential, []string, error) {
	res, err := s.lookup(ctx, sessionID, bindingFrom(ctx), nil)
	switch {
	case errors.Is(err, ErrSessionNotFound):
		return map[string]UpstreamCredential{}, nil, nil
	case err != nil:
		return nil, nil, err
	}
	creds := make(map[string]UpstreamCredential, res.NumCredentials())
	for p, c := range res.Credentials() {
		creds[p] = c
	}
	var failed, transient []string
	for p, ferr := range res.Failures {
		if errors.Is(ferr, ErrInvalidBinding) {
			return nil, nil, ferr
		}
		if errors.Is(ferr, ErrUpstreamUnavailable) {
			transient = append(transient, p)
			continue
		}
		failed = append(failed, p)
	}
	sort.Strings(failed)
	if len(transient) == 0 {
		return creds, failed, nil
	}
	// The other providers' outcomes stand; the error names the providers
	// to retry and carries their causes (and Retry-After hints).
	sort.Strings(transient)
	errs := make([]error, len(transient))
	for i, p := range transient {
		errs[i] = res.Failures[p]
	}
	return creds, failed, fmt.Errorf("providers %q unavailable: %w", transient, errors.Join(errs...))
}
