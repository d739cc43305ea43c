// Package encrypted is a store.Store that keeps tokens encrypted at rest: it
// wraps another store, sealing the access, refresh and ID tokens of every row
// it writes and opening them on every read, with each ciphertext bound to its
// session, provider and column (see package tokencrypt).
//
// A row that cannot be opened (its key was removed, or it was tampered with)
// is reported as store.ErrUnreadable. Rows written before encryption, or under
// a key that is no longer primary, are brought under the primary key by
// Rotate.
package encrypted

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/tokencrypt"
)

// Column names bound into ciphertexts.
const (
	ColumnAccess  = "access_token"
	ColumnRefresh = "refresh_token"
	ColumnID      = "id_token"
)

// Store seals and opens tokens around an inner store. It is safe for
// concurrent use when the inner store is.
type Store struct {
	inner store.Store
	keys  *tokencrypt.Keyring
}

var _ store.Store = (*Store)(nil)

// New returns a Store that keeps inner's tokens encrypted with keys.
func New(inner store.Store, keys *tokencrypt.Keyring) *Store {
	return &Store{inner: inner, keys: keys}
}

// tokenColumns lists a Tokens' secret fields with their column names.
func tokenColumns(t *store.Tokens) [3]struct {
	name string
	v    *string
} {
	return [3]struct {
		name string
		v    *string
	}{{ColumnAccess, &t.AccessToken}, {ColumnRefresh, &t.RefreshToken}, {ColumnID, &t.IDToken}}
}

func (s *Store) seal(sessionID, provider string, t store.Tokens) (store.Tokens, error) {
	for _, c := range tokenColumns(&t) {
		ct, err := s.keys.Seal(*c.v, tokencrypt.Place{SessionID: sessionID, Provider: provider, Column: c.name})
		if err != nil {
			return store.Tokens{}, err
		}
		*c.v = ct
	}
	return t, nil
}

func (s *Store) open(r store.Row) (store.Row, error) {
	for _, c := range tokenColumns(&r.Tokens) {
		pt, err := s.keys.Open(*c.v, tokencrypt.Place{SessionID: r.SessionID, Provider: r.Provider, Column: c.name})
		if err != nil {
			return store.Row{}, fmt.Errorf("%w: provider %q, %s: %w", store.ErrUnreadable, r.Provider, c.name, err)
		}
		*c.v = pt
	}
	return r, nil
}

// Get implements store.Reader.
func (s *Store) Get(ctx context.Context, sessionID, provider string) (store.Row, error) {
	r, err := s.inner.Get(ctx, sessionID, provider)
	if err != nil {
		return store.Row{}, err
	}
	return s.open(r)
}

// GetSession implements store.Reader.
func (s *Store) GetSession(ctx context.Context, sessionID string) ([]store.Row, error) {
	rows, err := s.inner.GetSession(ctx, sessionID)
	if err != nil {
		return nil, err
	}
	for i, r := range rows {
		if rows[i], err = s.open(r); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// Put implements store.Writer.
func (s *Store) Put(ctx context.Context, row store.Row) error {
	if err := row.Validate(); err != nil {
		return err
	}
	t, err := s.seal(row.SessionID, row.Provider, row.Tokens)
	if err != nil {
		return err
	}
	row.Tokens = t
	return s.inner.Put(ctx, row)
}

// UpdateTokens implements store.Writer.
func (s *Store) UpdateTokens(ctx context.Context, sessionID, provider string, t store.Tokens) (store.Row, error) {
	sealed, err := s.seal(sessionID, provider, t)
	if err != nil {
		return store.Row{}, err
	}
	r, err := s.inner.UpdateTokens(ctx, sessionID, provider, sealed)
	if err != nil {
		return store.Row{}, err
	}
	return s.open(r)
}

// MarkReauth implements store.Writer.
func (s *Store) MarkReauth(ctx context.Context, sessionID, provider string) error {
	return s.inner.MarkReauth(ctx, sessionID, provider)
}

// Delete implements store.Writer.
func (s *Store) Delete(ctx context.Context, sessionID, provider string) error {
	return s.inner.Delete(ctx, sessionID, provider)
}

// ClaimRefresh implements store.RefreshCoordinator.
func (s *Store) ClaimRefresh(ctx context.Context, sessionID, provider, owner string, ttl time.Duration) (store.Claim, error) {
	c, err := s.inner.ClaimRefresh(ctx, sessionID, provider, owner, ttl)
	if err != nil {
		return store.Claim{}, err
	}
	if c.Row, err = s.open(c.Row); err != nil {
		// The claim cannot be used: give it back rather than let it lapse.
		if c.Held {
			_ = s.inner.ReleaseRefresh(context.WithoutCancel(ctx), sessionID, provider, c.Lease, false)
		}
		return store.Claim{}, err
	}
	return c, nil
}

// CompleteRefresh implements store.RefreshCoordinator.
func (s *Store) CompleteRefresh(ctx context.Context, sessionID, provider string, lease store.Lease, t store.Tokens) (store.Row, error) {
	sealed, err := s.seal(sessionID, provider, t)
	if err != nil {
		return store.Row{}, err
	}
	r, err := s.inner.CompleteRefresh(ctx, sessionID, provider, lease, sealed)
	if err != nil {
		return store.Row{}, err
	}
	return s.open(r)
}

// ReleaseRefresh implements store.RefreshCoordinator.
func (s *Store) ReleaseRefresh(ctx context.Context, sessionID, provider string, lease store.Lease, reauth bool) error {
	return s.inner.ReleaseRefresh(ctx, sessionID, provider, lease, reauth)
}

// RotateStats reports what Rotate did.
type RotateStats struct {
	// Scanned rows were looked at; Rewritten ones were resealed under the
	// primary key; Conflicts counts rewrites retried because the row changed
	// meanwhile (a refresh or a login wrote it).
	Scanned, Rewritten, Conflicts int
}

// maxRotateAttempts bounds the retries of one row that keeps changing.
const maxRotateAttempts = 5

// Rotate reseals, under the primary key, every token not already sealed by
// it, including rows written before encryption existed (plaintext). It works
// in batches of batch rows while the service keeps serving, and rewrites a
// row only if it is unchanged since it was read (compare-and-swap on its
// version), re-reading it otherwise, so it never writes an older token over
// one a concurrent refresh just stored. The inner store must implement
// store.Rewriter. A row that cannot be opened stops the rotation with
// store.ErrUnreadable: removing its key would lose it.
func (s *Store) Rotate(ctx context.Context, batch int, progress func(RotateStats)) (RotateStats, error) {
	var st RotateStats
	rw, ok := s.inner.(store.Rewriter)
	if !ok {
		return st, errors.New("encrypted: the store cannot rewrite rows")
	}
	var after store.Key
	for {
		rows, err := rw.Scan(ctx, after, batch)
		if err != nil {
			return st, err
		}
		if len(rows) == 0 {
			return st, nil
		}
		for _, r := range rows {
			after = store.Key{SessionID: r.SessionID, Provider: r.Provider}
			st.Scanned++
			if err := s.rotateRow(ctx, rw, r, &st); err != nil {
				return st, err
			}
		}
		if progress != nil {
			progress(st)
		}
	}
}

func (s *Store) rotateRow(ctx context.Context, rw store.Rewriter, r store.Row, st *RotateStats) error {
	for attempt := 1; ; attempt++ {
		t, changed, err := s.reseal(r)
		if err != nil || !changed {
			return err
		}
		err = rw.RewriteTokens(ctx, r.SessionID, r.Provider, r.Version, t)
		switch {
		case err == nil:
			st.Rewritten++
			return nil
		case errors.Is(err, store.ErrNotFound):
			return nil
		case !errors.Is(err, store.ErrConflict):
			return err
		case attempt == maxRotateAttempts:
			return fmt.Errorf("encrypted: provider %q row kept changing during rotation; run rotate again", r.Provider)
		}
		st.Conflicts++
		if r, err = s.inner.Get(ctx, r.SessionID, r.Provider); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		}
	}
}

// reseal returns r's tokens sealed under the primary key, and whether any
// needed it. A value that is not a ciphertext is a token written before
// encryption existed, and is sealed as it is.
func (s *Store) reseal(r store.Row) (store.Tokens, bool, error) {
	t := r.Tokens
	changed := false
	for _, c := range tokenColumns(&t) {
		id, encrypted := s.keys.KeyID(*c.v)
		if encrypted && id == s.keys.Primary() {
			continue
		}
		place := tokencrypt.Place{SessionID: r.SessionID, Provider: r.Provider, Column: c.name}
		plain := *c.v
		if encrypted {
			var err error
			if plain, err = s.keys.Open(*c.v, place); err != nil {
				return store.Tokens{}, false, fmt.Errorf("%w: provider %q, %s: %w", store.ErrUnreadable, r.Provider, c.name, err)
			}
		}
		ct, err := s.keys.Seal(plain, place)
		if err != nil {
			return store.Tokens{}, false, err
		}
		*c.v, changed = ct, true
	}
	return t, changed, nil
}
