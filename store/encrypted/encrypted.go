// Package encrypted is a store.Store that keeps tokens encrypted at rest: it
// wraps another store, sealing the access, refresh and ID tokens of every row
// it writes and opening them on every read, with each ciphertext bound to its
// session, provider and column and to the row's binding (subject, client ID,
// upstream subject; see package tokencrypt).
//
// A row that cannot be opened (its key was removed, it was tampered with, or
// its binding was changed behind the service's back) is reported as
// store.ErrUnreadable: its tokens are served to nobody. Rows under a key that
// is no longer primary, or in tokencrypt's earlier format (which did not bind
// the binding), are sealed again by Rotate. Rows holding a token that is not
// a ciphertext at all are never sealed by this package: they are unreadable
// here, and Rotate reports them.
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
	inner      store.Store
	keys       *tokencrypt.Keyring
	legacyRead func(provider string)
	refuseV1   bool
}

var _ store.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithLegacyReadObserver makes the Store call fn, with the row's provider,
// each time it opens a row holding a ciphertext of tokencrypt's earlier
// format (v1), whose binding is not sealed: until 'extauthz keys rotate' has
// sealed it again, a change of such a row's binding goes unnoticed. fn must
// be cheap and safe for concurrent use.
func WithLegacyReadObserver(fn func(provider string)) Option {
	return func(s *Store) { s.legacyRead = fn }
}

// WithoutV1 makes the Store refuse ciphertexts of tokencrypt's earlier
// format (v1) as unreadable (store.ErrUnreadable), for deployments whose rows
// have all been sealed again ('extauthz keys rotate'): then an old v1
// ciphertext written back into a row, with a changed binding, is not served.
func WithoutV1() Option {
	return func(s *Store) { s.refuseV1 = true }
}

// New returns a Store that keeps inner's tokens encrypted with keys.
func New(inner store.Store, keys *tokencrypt.Keyring, opts ...Option) *Store {
	s := &Store{inner: inner, keys: keys}
	for _, o := range opts {
		o(s)
	}
	return s
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

// binding is what of a row, besides its key, its ciphertexts are bound to.
type binding struct {
	subject, clientID, upstreamSubject string
}

func bindingOf(r *store.Row) binding {
	return binding{r.Subject, r.ClientID, r.UpstreamSubject}
}

func place(sessionID, provider, column string, b binding) tokencrypt.Place {
	return tokencrypt.Place{SessionID: sessionID, Provider: provider, Column: column,
		Subject: b.subject, ClientID: b.clientID, UpstreamSubject: b.upstreamSubject}
}

// seal returns t sealed for the row (sessionID, provider) with binding b.
func (s *Store) seal(sessionID, provider string, b binding, t store.Tokens) (store.Tokens, error) {
	for _, c := range tokenColumns(&t) {
		ct, err := s.keys.Seal(*c.v, place(sessionID, provider, c.name, b))
		if err != nil {
			return store.Tokens{}, err
		}
		*c.v = ct
	}
	return t, nil
}

// open returns r with its tokens opened, or an error wrapping
// store.ErrUnreadable when any of them does not open at r's place with r's
// binding.
func (s *Store) open(r store.Row) (store.Row, error) {
	b := bindingOf(&r)
	legacy := false
	for _, c := range tokenColumns(&r.Tokens) {
		if s.refuseV1 {
			if info, ok := tokencrypt.Inspect(*c.v); ok && info.Format == tokencrypt.FormatV1 {
				return store.Row{}, fmt.Errorf("%w: provider %q, %s: format v1 refused (encryption.accept_v1 is false)", store.ErrUnreadable, r.Provider, c.name)
			}
		}
		pt, err := s.keys.Open(*c.v, place(r.SessionID, r.Provider, c.name, b))
		if err != nil {
			return store.Row{}, fmt.Errorf("%w: provider %q, %s: %w", store.ErrUnreadable, r.Provider, c.name, err)
		}
		if !legacy && s.legacyRead != nil {
			info, _ := tokencrypt.Inspect(*c.v)
			legacy = info.Format == tokencrypt.FormatV1
		}
		*c.v = pt
	}
	if legacy {
		s.legacyRead(r.Provider)
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
	t, err := s.seal(row.SessionID, row.Provider, bindingOf(&row), row.Tokens)
	if err != nil {
		return err
	}
	row.Tokens = t
	return s.inner.Put(ctx, row)
}

// PutBatch implements store.BatchWriter: it seals every row as Put does and
// writes them with the inner store's PutBatch, or, when the inner store is
// not a store.BatchWriter, with its Put one row at a time (then not
// atomically).
func (s *Store) PutBatch(ctx context.Context, rows []store.Row) error {
	if err := store.CheckBatch(rows); err != nil {
		return err
	}
	sealed := make([]store.Row, len(rows))
	for i, row := range rows {
		t, err := s.seal(row.SessionID, row.Provider, bindingOf(&row), row.Tokens)
		if err != nil {
			return err
		}
		row.Tokens = t
		sealed[i] = row
	}
	if bw, ok := s.inner.(store.BatchWriter); ok {
		return bw.PutBatch(ctx, sealed)
	}
	for _, row := range sealed {
		if err := s.inner.Put(ctx, row); err != nil {
			return err
		}
	}
	return nil
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

// CompleteRefresh implements store.RefreshCoordinator. A refresh keeps the
// row's binding: the row is read again (one more round trip), and t is
// sealed with its binding, provided the row is still at the lease's version
// (else the error wraps store.ErrLeaseLost, as the inner store's would) and
// its tokens open with that binding (else it wraps store.ErrUnreadable, and
// the lease is left to lapse or be released). The inner CompleteRefresh then
// writes only if the row is still at that version, which every legitimate
// change of the binding moves on.
func (s *Store) CompleteRefresh(ctx context.Context, sessionID, provider string, lease store.Lease, t store.Tokens) (store.Row, error) {
	if err := store.CheckLease(sessionID, provider, lease.Owner); err != nil {
		return store.Row{}, err
	}
	if err := t.Check(); err != nil {
		return store.Row{}, err
	}
	cur, err := s.inner.Get(ctx, sessionID, provider)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.Row{}, fmt.Errorf("%w: %w: encrypted complete refresh: no row for this session and provider", store.ErrLeaseLost, store.ErrNotFound)
	case err != nil:
		return store.Row{}, err
	case cur.Version != lease.Version:
		return store.Row{}, fmt.Errorf("%w: encrypted complete refresh: the row changed since the claim", store.ErrLeaseLost)
	}
	if _, err := s.open(cur); err != nil {
		return store.Row{}, err
	}
	sealed, err := s.seal(sessionID, provider, bindingOf(&cur), t)
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
	// Scanned rows were looked at; Rewritten ones were sealed again, under
	// the primary key and in the current format; Upgraded counts those of
	// them that held a ciphertext of the earlier format (v1), whose binding
	// is sealed now; Conflicts counts rewrites retried because the row
	// changed meanwhile (a refresh or a login wrote it).
	Scanned, Rewritten, Upgraded, Conflicts int
	// Plaintext names the rows left as they are because a token in them is
	// not a ciphertext: written before encryption existed, or by something
	// that bypassed this package. They are unreadable to the service.
	Plaintext []store.Key
}

// Rotatable is what Rotate needs of the store that holds the ciphertexts:
// its rows as stored, read one at a time, walked in order and rewritten in
// place. *postgres.Store and *memory.Store implement it.
type Rotatable interface {
	Get(ctx context.Context, sessionID, provider string) (store.Row, error)
	store.Rewriter
}

// maxRotateAttempts bounds the retries of one row that keeps changing.
const maxRotateAttempts = 5

// Rotate seals again, under the primary key and in the current format, every
// token not already so sealed: tokens under another key, and tokens of the
// earlier format (v1) even under the primary key, so that every row's
// binding ends up sealed with its tokens. It never seals a token that is
// not a ciphertext (a plaintext value in the table could have been put
// there by anyone who can write to it): such rows are left as they are and
// listed in RotateStats.Plaintext, and the rotation goes on.
//
// It works in batches of batch rows while the service keeps serving, and
// rewrites a row only if it is unchanged since it was read (compare-and-swap
// on its version), re-reading it otherwise, so it never writes an older
// token over one a concurrent refresh just stored. A row that cannot be
// opened with keys stops the rotation with store.ErrUnreadable: removing its
// key would lose it. rows is the store that holds the ciphertexts, the one
// a Store wraps; progress, if not nil, is called after each batch.
//
// A v1 row's binding is taken as it stands when it is sealed again: run
// Rotate once the tokens' writers and the table are trusted.
func Rotate(ctx context.Context, rows Rotatable, keys *tokencrypt.Keyring, batch int, progress func(RotateStats)) (RotateStats, error) {
	var st RotateStats
	var after store.Key
	for {
		read, err := rows.Scan(ctx, after, batch)
		if err != nil {
			return st, err
		}
		if len(read) == 0 {
			return st, nil
		}
		for _, r := range read {
			after = store.Key{SessionID: r.SessionID, Provider: r.Provider}
			st.Scanned++
			if err := rotateRow(ctx, rows, keys, r, &st); err != nil {
				return st, err
			}
		}
		if progress != nil {
			progress(st)
		}
	}
}

func rotateRow(ctx context.Context, rows Rotatable, keys *tokencrypt.Keyring, r store.Row, st *RotateStats) error {
	for attempt := 1; ; attempt++ {
		t, need, err := reseal(keys, r)
		if err != nil {
			return err
		}
		switch need {
		case upToDate:
			return nil
		case plaintext:
			st.Plaintext = append(st.Plaintext, store.Key{SessionID: r.SessionID, Provider: r.Provider})
			return nil
		}
		err = rows.RewriteTokens(ctx, r.SessionID, r.Provider, r.Version, t)
		switch {
		case err == nil:
			st.Rewritten++
			if need == upgrade {
				st.Upgraded++
			}
			return nil
		case errors.Is(err, store.ErrNotFound):
			return nil
		case !errors.Is(err, store.ErrConflict):
			return err
		case attempt == maxRotateAttempts:
			return fmt.Errorf("encrypted: provider %q row kept changing during rotation; run rotate again", r.Provider)
		}
		st.Conflicts++
		if r, err = rows.Get(ctx, r.SessionID, r.Provider); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		}
	}
}

// need is what a row needs from Rotate.
type need int

const (
	upToDate  need = iota // every token under the primary key, in the current format
	rekey                 // some token under another key
	upgrade               // some token in the earlier format
	plaintext             // some token is not a ciphertext: leave the row alone
)

// reseal returns r's tokens sealed under the primary key in the current
// format, and what the row needed. For a row that is upToDate or holds
// plaintext, the tokens returned are not to be written.
func reseal(keys *tokencrypt.Keyring, r store.Row) (store.Tokens, need, error) {
	t := r.Tokens
	n := upToDate
	for _, c := range tokenColumns(&t) {
		if *c.v == "" {
			continue
		}
		info, ok := tokencrypt.Inspect(*c.v)
		switch {
		case !ok:
			return store.Tokens{}, plaintext, nil
		case info.Format == tokencrypt.FormatV1:
			n = upgrade
		case info.KeyID != keys.Primary() && n == upToDate:
			n = rekey
		}
	}
	if n == upToDate {
		return t, n, nil
	}
	b := bindingOf(&r)
	for _, c := range tokenColumns(&t) {
		p := place(r.SessionID, r.Provider, c.name, b)
		plain, err := keys.Open(*c.v, p)
		if err != nil {
			return store.Tokens{}, n, fmt.Errorf("%w: provider %q, %s: %w", store.ErrUnreadable, r.Provider, c.name, err)
		}
		if *c.v, err = keys.Seal(plain, p); err != nil {
			return store.Tokens{}, n, err
		}
	}
	return t, n, nil
}
