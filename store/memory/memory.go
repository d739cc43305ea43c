// Package memory is an in-process implementation of store.Store, for tests
// and for development. Its contents live in a map guarded by a mutex and are
// lost when the process ends.
//
// It behaves like the PostgreSQL store in every way the store contract
// specifies: times are truncated to the microsecond and returned in UTC, an
// empty token type is stored as "Bearer", and rows are returned by value, so
// that a caller can never change what the store holds.
package memory

import (
	"context"
	"errors"
	"fmt"
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

	mu          sync.Mutex
	unavailable bool
	sessions    map[string]map[string]store.Row // session ID -> provider -> row
}

var _ store.Store = (*Store)(nil)

// Option configures a Store built by New.
type Option func(*Store)

// WithClock makes the store read the time for CreatedAt and UpdatedAt from
// now instead of time.Now.
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// New returns an empty store.
func New(opts ...Option) *Store {
	s := &Store{
		now:      time.Now,
		sessions: make(map[string]map[string]store.Row),
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
	if err := checkKey(sessionID, provider); err != nil {
		return store.Row{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return store.Row{}, err
	}
	row, ok := s.sessions[sessionID][provider]
	if !ok {
		return store.Row{}, fmt.Errorf("%w: memory: no row for this session and provider", store.ErrNotFound)
	}
	return row, nil
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
	for _, row := range s.sessions[sessionID] {
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(a, b store.Row) int { return strings.Compare(a.Provider, b.Provider) })
	return rows, nil
}

// Put implements store.Writer. A row that fails store.Row.Validate is
// refused with an error wrapping store.ErrInvalid. CreatedAt is kept when an
// existing row is replaced.
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
	session := s.sessions[row.SessionID]
	if session == nil {
		session = make(map[string]store.Row)
		s.sessions[row.SessionID] = session
	}
	if old, ok := session[row.Provider]; ok {
		row.CreatedAt = old.CreatedAt
	}
	session[row.Provider] = row
	return nil
}

// UpdateTokens implements store.Writer. It leaves NeedsReauth as it is: only
// Put clears it. Tokens with an empty access token are refused with an error
// wrapping store.ErrInvalid.
func (s *Store) UpdateTokens(ctx context.Context, sessionID, provider string, t store.Tokens) (store.Row, error) {
	if err := checkKey(sessionID, provider); err != nil {
		return store.Row{}, err
	}
	if t.AccessToken == "" {
		return store.Row{}, fmt.Errorf("%w: access token is empty", store.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return store.Row{}, err
	}
	row, ok := s.sessions[sessionID][provider]
	if !ok {
		return store.Row{}, fmt.Errorf("%w: memory: no row for this session and provider", store.ErrNotFound)
	}
	row.Tokens = normalizeTokens(t)
	row.UpdatedAt = s.clock()
	s.sessions[sessionID][provider] = row
	return row, nil
}

// MarkReauth implements store.Writer.
func (s *Store) MarkReauth(ctx context.Context, sessionID, provider string) error {
	if err := checkKey(sessionID, provider); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	row, ok := s.sessions[sessionID][provider]
	if !ok {
		return nil
	}
	row.NeedsReauth = true
	row.UpdatedAt = s.clock()
	s.sessions[sessionID][provider] = row
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

func checkKey(sessionID, provider string) error {
	var errs []error
	if sessionID == "" {
		errs = append(errs, errors.New("session ID is empty"))
	}
	if provider == "" {
		errs = append(errs, errors.New("provider is empty"))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", store.ErrInvalid, errors.Join(errs...))
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
