// Package memory is an in-process implementation of store.Store, for tests
// and for development. Its contents live in a map guarded by a mutex and are
// lost when the process ends.
//
// It behaves like the PostgreSQL store in every way the store contract
// specifies: times are truncated to the microsecond and returned in UTC, an
// empty token type is stored as "Bearer", and rows are returned by value, so
// that a caller can never change what the store holds.
//
// Its clock, which WithClock may replace, plays the part of the database's
// clock: it stamps CreatedAt and UpdatedAt, times refresh leases and decides
// which sessions DeleteExpired finds expired.
package memory

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/extauthz/extauthz/store"
)

// Store is an in-memory store.Store. The zero value is not usable: build one
// with New. A Store is safe for concurrent use.
type Store struct {
	now func() time.Time

	// gcMu is the collection lock of RunExclusive, taken with TryLock.
	gcMu sync.Mutex

	mu          sync.Mutex
	unavailable bool
	sessions    map[string]map[string]entry // session ID -> provider -> row
}

// entry is a stored row with its refresh lease, which store.Row does not
// carry. An entry without a lease has an empty leaseOwner and a zero
// leaseUntil.
type entry struct {
	row        store.Row
	leaseOwner string
	leaseUntil time.Time
}

var (
	_ store.Store     = (*Store)(nil)
	_ store.Rewriter  = (*Store)(nil)
	_ store.Collector = (*Store)(nil)
)

// Option configures a Store built by New.
type Option func(*Store)

// WithClock makes the store read the time for CreatedAt and UpdatedAt, and
// for the refresh leases, from now instead of time.Now. A test moves the
// store's clock forward to let a lease run out.
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// New returns an empty store.
func New(opts ...Option) *Store {
	s := &Store{
		now:      time.Now,
		sessions: make(map[string]map[string]entry),
	}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// SetUnavailable makes every later call fail with an error wrapping
// store.ErrUnavailable while down is true, as a database that cannot be
// reached would. The contents are kept and are served again once down is
// false.
func (s *Store) SetUnavailable(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unavailable = down
}

// Get implements store.Reader.
func (s *Store) Get(ctx context.Context, sessionID, provider string) (store.Row, error) {
	if err := store.CheckKey(sessionID, provider); err != nil {
		return store.Row{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return store.Row{}, err
	}
	e, ok := s.sessions[sessionID][provider]
	if !ok {
		return store.Row{}, errNotFound()
	}
	return e.row, nil
}

// GetSession implements store.Reader. Rows are ordered by provider, byte by
// byte.
func (s *Store) GetSession(ctx context.Context, sessionID string) ([]store.Row, error) {
	if sessionID == "" {
		return nil, fmt.Errorf("%w: session ID is empty", store.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	rows := make([]store.Row, 0, len(s.sessions[sessionID]))
	for _, e := range s.sessions[sessionID] {
		rows = append(rows, e.row)
	}
	slices.SortFunc(rows, func(a, b store.Row) int { return strings.Compare(a.Provider, b.Provider) })
	return rows, nil
}

// Put implements store.Writer. A row that fails store.Row.Validate is
// refused with an error wrapping store.ErrInvalid. CreatedAt is kept when an
// existing row is replaced, Version is 1 for a new row and moves on for a
// replaced one, and any refresh lease is cleared.
func (s *Store) Put(ctx context.Context, row store.Row) error {
	if err := row.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	now := s.clock()
	row.Tokens = normalizeTokens(row.Tokens)
	row.SessionExpiresAt = normalizeTime(row.SessionExpiresAt)
	row.NeedsReauth = false
	row.CreatedAt = now
	row.UpdatedAt = now
	row.Version = 1
	session := s.sessions[row.SessionID]
	if session == nil {
		session = make(map[string]entry)
		s.sessions[row.SessionID] = session
	}
	if old, ok := session[row.Provider]; ok {
		row.CreatedAt = old.row.CreatedAt
		row.Version = old.row.Version + 1
	}
	session[row.Provider] = entry{row: row}
	return nil
}

// Delete implements store.Writer. An empty sessionID is refused with an error
// wrapping store.ErrInvalid.
func (s *Store) Delete(ctx context.Context, sessionID, provider string) error {
	if sessionID == "" {
		return fmt.Errorf("%w: session ID is empty", store.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	if provider == "" {
		delete(s.sessions, sessionID)
		return nil
	}
	if session, ok := s.sessions[sessionID]; ok {
		delete(session, provider)
		if len(session) == 0 {
			delete(s.sessions, sessionID)
		}
	}
	return nil
}

// ClaimRefresh implements store.RefreshCoordinator. The lease runs for ttl
// rounded up to the microsecond, by the store's clock.
func (s *Store) ClaimRefresh(ctx context.Context, sessionID, provider, owner string, ttl time.Duration) (store.Claim, error) {
	if err := store.CheckLease(sessionID, provider, owner); err != nil {
		return store.Claim{}, err
	}
	if ttl <= 0 {
		return store.Claim{}, fmt.Errorf("%w: lease time-to-live is not positive", store.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return store.Claim{}, err
	}
	e, ok := s.sessions[sessionID][provider]
	if !ok {
		return store.Claim{}, errNotFound()
	}
	now := s.clock()
	if e.leaseUntil.After(now) {
		return store.Claim{Row: e.row, Remaining: e.leaseUntil.Sub(now)}, nil
	}
	e.leaseOwner = owner
	e.leaseUntil = now.Add(ceilMicrosecond(ttl))
	s.sessions[sessionID][provider] = e
	return store.Claim{
		Row:   e.row,
		Held:  true,
		Lease: store.Lease{Owner: owner, Version: e.row.Version},
	}, nil
}

// CompleteRefresh implements store.RefreshCoordinator.
func (s *Store) CompleteRefresh(ctx context.Context, sessionID, provider string, lease store.Lease, t store.Tokens) (store.Row, error) {
	if err := store.CheckLease(sessionID, provider, lease.Owner); err != nil {
		return store.Row{}, err
	}
	if err := t.Check(); err != nil {
		return store.Row{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return store.Row{}, err
	}
	e, err := s.leased(sessionID, provider, lease)
	if err != nil {
		return store.Row{}, err
	}
	e = s.writeTokens(e, t)
	s.sessions[sessionID][provider] = e
	return e.row, nil
}

// ReleaseRefresh implements store.RefreshCoordinator.
func (s *Store) ReleaseRefresh(ctx context.Context, sessionID, provider string, lease store.Lease, reauth bool) error {
	if err := store.CheckLease(sessionID, provider, lease.Owner); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	e, err := s.leased(sessionID, provider, lease)
	if err != nil {
		return err
	}
	e.leaseOwner, e.leaseUntil = "", time.Time{}
	if reauth {
		e.row.NeedsReauth = true
		e.row.UpdatedAt = s.clock()
		e.row.Version++
	}
	s.sessions[sessionID][provider] = e
	return nil
}

// Scan implements store.Rewriter. Keys are compared byte by byte. A limit
// that is not positive is refused with an error wrapping store.ErrInvalid.
func (s *Store) Scan(ctx context.Context, after store.Key, limit int) ([]store.Row, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: scan limit is not positive", store.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var rows []store.Row
	for sessionID, session := range s.sessions {
		if sessionID < after.SessionID {
			continue
		}
		for provider, e := range session {
			if sessionID == after.SessionID && provider <= after.Provider {
				continue
			}
			rows = append(rows, e.row)
		}
	}
	slices.SortFunc(rows, func(a, b store.Row) int {
		if c := strings.Compare(a.SessionID, b.SessionID); c != 0 {
			return c
		}
		return strings.Compare(a.Provider, b.Provider)
	})
	if len(rows) > limit {
		rows = rows[:limit]
	}
	if rows == nil {
		rows = []store.Row{}
	}
	return slices.Clip(rows), nil
}

// RewriteTokens implements store.Rewriter. Like CompleteRefresh, it stores
// an empty token type as "Bearer"; unlike it, it leaves Version, UpdatedAt
// and any refresh lease as they are. Tokens with an empty access token are
// refused with an error wrapping store.ErrInvalid.
func (s *Store) RewriteTokens(ctx context.Context, sessionID, provider string, version int64, t store.Tokens) error {
	if err := store.CheckKey(sessionID, provider); err != nil {
		return err
	}
	if err := t.Check(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	e, ok := s.sessions[sessionID][provider]
	if !ok {
		return errNotFound()
	}
	if e.row.Version != version {
		return fmt.Errorf("%w: memory: row is at version %d, not %d", store.ErrConflict, e.row.Version, version)
	}
	e.row.Tokens = normalizeTokens(t)
	s.sessions[sessionID][provider] = e
	return nil
}

// DeleteExpired implements store.Collector: it deletes at most limit rows
// whose SessionExpiresAt is at or before the store's clock, those that
// expired first first.
func (s *Store) DeleteExpired(ctx context.Context, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("%w: delete limit is not positive", store.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	now := s.clock()
	var expired []store.Row
	for _, session := range s.sessions {
		for _, e := range session {
			if at := e.row.SessionExpiresAt; !at.IsZero() && !at.After(now) {
				expired = append(expired, e.row)
			}
		}
	}
	slices.SortFunc(expired, func(a, b store.Row) int { return a.SessionExpiresAt.Compare(b.SessionExpiresAt) })
	if len(expired) > limit {
		expired = expired[:limit]
	}
	for _, r := range expired {
		delete(s.sessions[r.SessionID], r.Provider)
		if len(s.sessions[r.SessionID]) == 0 {
			delete(s.sessions, r.SessionID)
		}
	}
	return len(expired), nil
}

// RunExclusive implements store.Collector with a mutex of the Store: passes
// on one Store exclude each other, passes on different Stores do not.
func (s *Store) RunExclusive(ctx context.Context, fn func(ctx context.Context) error) (bool, error) {
	if fn == nil {
		return false, fmt.Errorf("%w: no function to run", store.ErrInvalid)
	}
	s.mu.Lock()
	err := s.check(ctx)
	s.mu.Unlock()
	if err != nil {
		return false, err
	}
	if !s.gcMu.TryLock() {
		return false, nil
	}
	defer s.gcMu.Unlock()
	return true, fn(ctx)
}

// leased returns the entry for (sessionID, provider) if lease still holds
// it, expired or not, and an error wrapping store.ErrLeaseLost otherwise.
// s.mu must be held.
func (s *Store) leased(sessionID, provider string, lease store.Lease) (entry, error) {
	e, ok := s.sessions[sessionID][provider]
	if !ok {
		return entry{}, fmt.Errorf("%w: %w: memory: no row for this session and provider", store.ErrLeaseLost, store.ErrNotFound)
	}
	if e.leaseOwner != lease.Owner || e.row.Version != lease.Version {
		return entry{}, fmt.Errorf("%w: memory: the lease was taken over or the row changed", store.ErrLeaseLost)
	}
	return e, nil
}

// writeTokens returns e with the tokens t, a new version and no lease.
// s.mu must be held.
func (s *Store) writeTokens(e entry, t store.Tokens) entry {
	e.row.Tokens = normalizeTokens(t)
	e.row.UpdatedAt = s.clock()
	e.row.Version++
	e.leaseOwner, e.leaseUntil = "", time.Time{}
	return e
}

// check reports why the store cannot serve a call right now. s.mu must be held.
func (s *Store) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: memory: %w", store.ErrUnavailable, err)
	}
	if s.unavailable {
		return fmt.Errorf("%w: memory: store set unavailable", store.ErrUnavailable)
	}
	return nil
}

// clock returns the store's current time as the store keeps it.
func (s *Store) clock() time.Time {
	return normalizeTime(s.now())
}

func errNotFound() error {
	return fmt.Errorf("%w: memory: no row for this session and provider", store.ErrNotFound)
}

// ceilMicrosecond rounds d up to a whole number of microseconds, the
// precision at which times are kept.
func ceilMicrosecond(d time.Duration) time.Duration {
	if r := d % time.Microsecond; r != 0 && d <= math.MaxInt64-time.Microsecond {
		d += time.Microsecond - r
	}
	return d
}

func normalizeTokens(t store.Tokens) store.Tokens {
	if t.TokenType == "" {
		t.TokenType = "Bearer"
	}
	t.ExpiresAt = normalizeTime(t.ExpiresAt)
	return t
}

// normalizeTime does to t what a round trip through a PostgreSQL timestamptz
// column does: it keeps microseconds, drops the monotonic clock reading and
// the location, and keeps the zero time (NULL) as it is.
func normalizeTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Truncate(time.Microsecond).UTC()
}
