// Package store defines the storage contract for upstream identity-provider
// tokens: the row type, the interfaces every backend implements, and the
// sentinel errors callers test with errors.Is.
//
// A backend never lets its driver's errors escape: every failure it returns
// wraps one of the sentinels below, so that callers can tell "not there" from
// "cannot tell right now" without importing a driver package.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

var (
	// ErrNotFound means the requested row does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrUnavailable means the backend could not be reached or did not answer
	// in time. The operation may succeed if retried later.
	ErrUnavailable = errors.New("store: unavailable")
	// ErrInvalid means the caller passed a row or key that the store refuses
	// (an empty session ID or provider, for example).
	ErrInvalid = errors.New("store: invalid argument")
)

// Tokens are the secret parts of a row, as issued by the upstream provider.
type Tokens struct {
	// AccessToken is the upstream access token. Never empty in a stored row.
	AccessToken string
	// RefreshToken may be empty: then an expired access token cannot be renewed.
	RefreshToken string
	// IDToken is the OIDC ID token, if the provider issued one. May be empty.
	IDToken string
	// TokenType is the token type the provider named ("Bearer" if it named none).
	TokenType string
	// ExpiresAt is when the access token expires. The zero time means the
	// token never expires (stored as NULL).
	ExpiresAt time.Time
}

// Row is one session's tokens at one upstream provider, keyed by
// (SessionID, Provider).
type Row struct {
	SessionID string
	Provider  string
	Tokens
	// Subject and ClientID are the authorization server's subject and client
	// ID the session was issued to: the binding that every request's JWT must
	// match.
	Subject  string
	ClientID string
	// UpstreamSubject is the provider's own subject (the IdP's "sub"), used to
	// check ID tokens returned by a refresh. May be empty.
	UpstreamSubject string
	// SessionExpiresAt is when the whole session may be garbage collected.
	// The zero time means never.
	SessionExpiresAt time.Time
	// NeedsReauth is set when the provider refused the refresh token for good:
	// the row is kept (so the client is told to re-authenticate) but never
	// redeemed again. Put clears it.
	NeedsReauth bool
	// CreatedAt and UpdatedAt are maintained by the store; values passed to
	// Put are ignored.
	CreatedAt time.Time
	UpdatedAt time.Time
	// Version is maintained by the store: a new row starts at 1, and it
	// grows by one on every write of the row's tokens, binding or
	// re-authentication mark (Put, CompleteRefresh, ReleaseRefresh with
	// reauth), never on claiming or releasing a lease alone. Values passed
	// in are ignored.
	Version int64
}

// ErrLeaseLost means a refresh lease is no longer held by the caller: it
// expired and another owner claimed it, or the row changed (a Put, another
// refresh) since the claim. The caller must not write its result. When the
// lease is lost because the row was deleted, the error wraps ErrNotFound as
// well.
var ErrLeaseLost = errors.New("store: refresh lease lost")

// Lease identifies a claim on a row's refresh: who holds it and the row
// version it was taken on. Owners must be unique per claim (a random value
// per ClaimRefresh call, say), not per process.
type Lease struct {
	Owner   string
	Version int64
}

// Claim is the outcome of ClaimRefresh.
type Claim struct {
	// Row is the row as it is now (re-read in the same operation as the
	// claim).
	Row Row
	// Held is true when the caller now holds the lease. When false another
	// owner holds a live lease and Row is what it was when asked.
	Held bool
	// Lease identifies the claim when Held.
	Lease Lease
	// Remaining is how long another owner's live lease still runs, when not
	// Held, by the store's clock.
	Remaining time.Duration
}

// RefreshCoordinator lets several processes sharing one store agree on
// which of them redeems a row's refresh token. Lease times are measured by
// the store's clock (the database's, for PostgreSQL), so the processes'
// clocks do not matter. No connection is held while a lease is held.
//
// A lease is live until its time runs out. Once it has run out, another
// owner may claim the row; until then its owner may still complete or
// release it, since nothing else has acted on the row.
type RefreshCoordinator interface {
	// ClaimRefresh atomically takes the row's refresh lease for owner for
	// ttl, unless a live lease is held (by any owner, owner included: a live
	// lease is never granted twice), and returns the current row either way.
	// It does not look at NeedsReauth: the caller checks the returned row. A
	// missing row is ErrNotFound; an empty key or owner, or a ttl that is not
	// positive, is ErrInvalid.
	ClaimRefresh(ctx context.Context, sessionID, provider, owner string, ttl time.Duration) (Claim, error)
	// CompleteRefresh replaces the row's tokens with refreshed ones (an
	// empty token type stored as "Bearer"), leaving its binding and
	// NeedsReauth alone, and releases the lease, only if lease.Owner still
	// holds the row's lease and the row is still at lease.Version; it
	// returns the updated row. A lease
	// that has run out without anyone else claiming the row still counts as
	// held. Otherwise it writes nothing and returns ErrLeaseLost (wrapping
	// ErrNotFound too if the row is gone). Tokens with an empty access token,
	// an empty key or owner are ErrInvalid.
	CompleteRefresh(ctx context.Context, sessionID, provider string, lease Lease, t Tokens) (Row, error)
	// ReleaseRefresh gives the lease up without new tokens; with reauth it
	// also sets NeedsReauth (and moves Version on). It is a no-op returning
	// ErrLeaseLost (wrapping ErrNotFound too if the row is gone) when the
	// lease is no longer held or the row changed, with the same meaning of
	// held as for CompleteRefresh. An empty key or owner is ErrInvalid.
	ReleaseRefresh(ctx context.Context, sessionID, provider string, lease Lease, reauth bool) error
}

// Reader reads rows.
type Reader interface {
	// Get returns the row for (sessionID, provider), or an error wrapping
	// ErrNotFound.
	Get(ctx context.Context, sessionID, provider string) (Row, error)
	// GetSession returns every row of a session in one round trip, ordered by
	// provider. An unknown session yields an empty slice and a nil error.
	GetSession(ctx context.Context, sessionID string) ([]Row, error)
}

// Writer writes rows.
type Writer interface {
	// Put inserts or replaces the row for (row.SessionID, row.Provider),
	// including its binding, and clears NeedsReauth and any refresh lease (a
	// new login supersedes a refresh in flight).
	Put(ctx context.Context, row Row) error
	// Delete removes the row for (sessionID, provider); with an empty provider
	// it removes every row of the session. Deleting nothing is not an error.
	Delete(ctx context.Context, sessionID, provider string) error
}

// BatchWriter writes many rows at once: the fast path for loading sessions
// in bulk (an authorization server importing its users, a benchmark).
// Backends implement it; store/encrypted passes it through (sealing each
// row), since a row written around it is unreadable to the service; over an
// inner store without PutBatch it writes row by row with Put, and is then
// not atomic.
type BatchWriter interface {
	// PutBatch writes each row as Put does, atomically: all of them or, on
	// error, none. Rows must be valid (Row.Validate) and name distinct
	// keys (see CheckBatch), else the batch is refused with ErrInvalid. An
	// empty batch writes nothing.
	PutBatch(ctx context.Context, rows []Row) error
}

// CheckBatch reports, wrapping ErrInvalid, the first row of rows that fails
// Row.Validate or names the same key as an earlier one.
func CheckBatch(rows []Row) error {
	seen := make(map[Key]bool, len(rows))
	for i := range rows {
		if err := rows[i].Validate(); err != nil {
			return fmt.Errorf("batch row %d: %w", i, err)
		}
		k := Key{rows[i].SessionID, rows[i].Provider}
		if seen[k] {
			return fmt.Errorf("%w: batch row %d: the same session and provider as an earlier row", ErrInvalid, i)
		}
		seen[k] = true
	}
	return nil
}

// ErrUnreadable means a stored row's tokens cannot be decrypted (a key was
// removed too early, or the row was tampered with). It is an operator's
// problem, not the user's.
var ErrUnreadable = errors.New("store: stored tokens cannot be decrypted")

// ErrConflict means a conditional rewrite found the row changed.
var ErrConflict = errors.New("store: row changed since it was read")

// Key names a row.
type Key struct {
	SessionID string
	Provider  string
}

// Rewriter lets maintenance jobs (re-encryption under a new key) walk and
// rewrite rows while the service keeps serving. Backends implement it;
// decorators do not pass it through: a maintenance job takes the backend.
type Rewriter interface {
	// Scan returns up to limit rows whose keys come after after, in
	// (session ID, provider) byte order. An empty result means the end.
	Scan(ctx context.Context, after Key, limit int) ([]Row, error)
	// RewriteTokens replaces the row's tokens with t only if its Version is
	// still version, else it writes nothing and returns ErrConflict (or
	// ErrNotFound if the row is gone). It changes neither Version nor
	// UpdatedAt nor any lease: the tokens' meaning is unchanged, so a
	// concurrent refresh's CompleteRefresh still succeeds and its newer
	// tokens win.
	RewriteTokens(ctx context.Context, sessionID, provider string, version int64, t Tokens) error
}

// Collector deletes the rows of expired sessions (garbage collection). The
// service runs it periodically; several replicas may try at the same time,
// and RunExclusive makes all but one of them skip the pass. Backends
// implement it; decorators do not pass it through: garbage collection takes
// the backend.
type Collector interface {
	// DeleteExpired deletes at most limit rows whose SessionExpiresAt is at
	// or before now by the store's clock (the database's now() for
	// PostgreSQL, so that the replicas' clocks do not matter), and returns
	// how many it deleted. A row without a session expiry is never deleted.
	// Rows are deleted whole, whatever their refresh lease or re-
	// authentication mark: a refresh in flight on a deleted row then fails
	// with ErrLeaseLost. A limit that is not positive is ErrInvalid.
	DeleteExpired(ctx context.Context, limit int) (deleted int, err error)
	// RunExclusive runs fn, one garbage collection pass, unless another
	// pass holds the store's collection lock: then it returns false at once
	// without calling fn. The lock is shared by every process using the
	// same store (every replica on one database) and is held until fn
	// returns, or until the process or its connection dies. It returns
	// whether fn ran and fn's error; failing to take the lock is an error
	// wrapping ErrUnavailable, with ran false. fn is called with ctx. The
	// lock only keeps passes from piling up on one another: DeleteExpired
	// is safe to call without it.
	RunExclusive(ctx context.Context, fn func(ctx context.Context) error) (ran bool, err error)
}

// Store is the full contract that every backend implements.
type Store interface {
	Reader
	Writer
	RefreshCoordinator
}

// CheckKey reports, wrapping ErrInvalid, what makes (sessionID, provider)
// unfit to name a row. Backends call it before touching storage.
func CheckKey(sessionID, provider string) error {
	if errs := keyProblems(sessionID, provider); len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// CheckLease is CheckKey for a lease operation, which also needs an owner.
func CheckLease(sessionID, provider, owner string) error {
	if err := CheckKey(sessionID, provider); err != nil {
		return err
	}
	if owner == "" {
		return fmt.Errorf("%w: lease owner is empty", ErrInvalid)
	}
	return nil
}

func keyProblems(sessionID, provider string) []error {
	var errs []error
	if sessionID == "" {
		errs = append(errs, errors.New("session ID is empty"))
	}
	if provider == "" {
		errs = append(errs, errors.New("provider is empty"))
	}
	return errs
}

// Check reports, wrapping ErrInvalid, why t cannot be stored: a stored row
// always has an access token.
func (t Tokens) Check() error {
	if t.AccessToken == "" {
		return fmt.Errorf("%w: access token is empty", ErrInvalid)
	}
	return nil
}

// Validate reports, wrapping ErrInvalid, what makes row unfit to be stored.
func (r Row) Validate() error {
	errs := keyProblems(r.SessionID, r.Provider)
	if r.AccessToken == "" {
		errs = append(errs, errors.New("access token is empty"))
	}
	if r.Subject == "" {
		errs = append(errs, errors.New("subject is empty"))
	}
	if r.ClientID == "" {
		errs = append(errs, errors.New("client ID is empty"))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
}

// SessionExpired reports whether the row's session has expired: its
// SessionExpiresAt is set and at or before now. Such a row no longer
// stands for a session, whether or not garbage collection has removed it.
func (r Row) SessionExpired(now time.Time) bool {
	return !r.SessionExpiresAt.IsZero() && !now.Before(r.SessionExpiresAt)
}

// Expired reports whether the access token expires at or before now+skew.
// A token without expiry never expires.
func (t Tokens) Expired(now time.Time, skew time.Duration) bool {
	return !t.ExpiresAt.IsZero() && !now.Add(skew).Before(t.ExpiresAt)
}
