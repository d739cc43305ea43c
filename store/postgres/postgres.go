// Package postgres implements store.Store on PostgreSQL with a pgx connection
// pool. The schema is created by package migrations, which must have been
// applied to the database before the store is used.
//
// Errors returned by a Store always wrap one of the store sentinels and never
// the driver's own error: their text names the operation and, for errors
// reported by the server, the SQLSTATE code, but never a token, a parameter
// value or the password of the connection string.
//
// Times are stored as timestamptz, so they come back truncated to the
// microsecond, and are returned in UTC. The zero time.Time is stored as NULL.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/extauthz/extauthz/store"
)

// Store is a store.Store backed by PostgreSQL. It is safe for concurrent use.
type Store struct {
	pool     *pgxpool.Pool
	ownsPool bool
}

var _ store.Store = (*Store)(nil)

// Option configures a Store built by New.
type Option func(*pgxpool.Config)

// WithPoolConfig lets the caller adjust the pool configuration parsed from
// the connection string before the pool is created (pool sizes, a tracer, a
// query execution mode suited to PgBouncer, and so on).
func WithPoolConfig(fn func(*pgxpool.Config)) Option {
	return Option(fn)
}

// New returns a Store connected to the database at dsn, a PostgreSQL URL or
// keyword/value connection string. It fails only if dsn cannot be parsed (an
// error wrapping store.ErrInvalid): the pool connects lazily, so New succeeds
// while the database is down, and the calls fail with store.ErrUnavailable
// until it is up. Use Ping to check the connection. The caller must Close the
// Store.
//
// Behind PgBouncer in transaction mode, prepared statements must be avoided:
// add default_query_exec_mode=exec (or simple_protocol) to dsn, or set
// ConnConfig.DefaultQueryExecMode with WithPoolConfig.
func New(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parser's message may quote the connection string, password
		// included, so it is not passed on.
		return nil, fmt.Errorf("%w: postgres: cannot parse the database URL", store.ErrInvalid)
	}
	for _, opt := range opts {
		opt(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: postgres: cannot create the connection pool", store.ErrInvalid)
	}
	return &Store{pool: pool, ownsPool: true}, nil
}

// NewFromPool returns a Store that uses pool. The caller keeps ownership of
// pool: Close on the returned Store does not close it.
func NewFromPool(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool}
}

// Close closes the connection pool if New created it, waiting for the
// connections in use to be returned. The Store must not be used afterwards.
func (s *Store) Close() {
	if s.ownsPool {
		s.pool.Close()
	}
}

// Ping checks that the database answers. Its error wraps
// store.ErrUnavailable.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return mapError(ctx, "ping", err)
	}
	return nil
}

// columns lists the columns of upstream_tokens in the order scanRow reads
// them.
const columns = `session_id, provider, access_token, refresh_token, id_token, token_type,
	expires_at, subject, client_id, upstream_subject, session_expires_at, needs_reauth,
	created_at, updated_at`

const (
	getSQL = `SELECT ` + columns + ` FROM upstream_tokens
	WHERE session_id = $1 AND provider = $2`

	getSessionSQL = `SELECT ` + columns + ` FROM upstream_tokens
	WHERE session_id = $1
	ORDER BY provider COLLATE "C"`

	putSQL = `INSERT INTO upstream_tokens (
		session_id, provider, access_token, refresh_token, id_token, token_type,
		expires_at, subject, client_id, upstream_subject, session_expires_at, needs_reauth,
		created_at, updated_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, false, now(), now())
	ON CONFLICT (session_id, provider) DO UPDATE SET
		access_token = EXCLUDED.access_token,
		refresh_token = EXCLUDED.refresh_token,
		id_token = EXCLUDED.id_token,
		token_type = EXCLUDED.token_type,
		expires_at = EXCLUDED.expires_at,
		subject = EXCLUDED.subject,
		client_id = EXCLUDED.client_id,
		upstream_subject = EXCLUDED.upstream_subject,
		session_expires_at = EXCLUDED.session_expires_at,
		needs_reauth = false,
		updated_at = now()`

	updateTokensSQL = `UPDATE upstream_tokens SET
		access_token = $3,
		refresh_token = $4,
		id_token = $5,
		token_type = $6,
		expires_at = $7,
		updated_at = now()
	WHERE session_id = $1 AND provider = $2
	RETURNING ` + columns

	markReauthSQL = `UPDATE upstream_tokens SET needs_reauth = true, updated_at = now()
	WHERE session_id = $1 AND provider = $2`

	deleteSQL = `DELETE FROM upstream_tokens WHERE session_id = $1 AND provider = $2`

	deleteSessionSQL = `DELETE FROM upstream_tokens WHERE session_id = $1`
)

// Get implements store.Reader.
func (s *Store) Get(ctx context.Context, sessionID, provider string) (store.Row, error) {
	if err := checkKey(sessionID, provider); err != nil {
		return store.Row{}, err
	}
	row, err := scanRow(s.pool.QueryRow(ctx, getSQL, sessionID, provider))
	if err != nil {
		return store.Row{}, mapError(ctx, "get", err)
	}
	return row, nil
}

// GetSession implements store.Reader in a single query. Rows are ordered by
// provider, byte by byte, whatever the database's collation.
func (s *Store) GetSession(ctx context.Context, sessionID string) ([]store.Row, error) {
	if sessionID == "" {
		return nil, fmt.Errorf("%w: session ID is empty", store.ErrInvalid)
	}
	rows, err := s.pool.Query(ctx, getSessionSQL, sessionID)
	if err != nil {
		return nil, mapError(ctx, "get session", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Row, error) { return scanRow(r) })
	if err != nil {
		return nil, mapError(ctx, "get session", err)
	}
	if out == nil {
		out = []store.Row{}
	}
	return out, nil
}

// Put implements store.Writer. A row that fails store.Row.Validate is
// refused with an error wrapping store.ErrInvalid, without a round trip. An
// empty token type is stored as "Bearer". CreatedAt is kept when an existing
// row is replaced.
func (s *Store) Put(ctx context.Context, row store.Row) error {
	if err := row.Validate(); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, putSQL,
		row.SessionID, row.Provider,
		row.AccessToken, row.RefreshToken, row.IDToken, tokenType(row.TokenType), nullTime(row.ExpiresAt),
		row.Subject, row.ClientID, row.UpstreamSubject, nullTime(row.SessionExpiresAt),
	)
	if err != nil {
		return mapError(ctx, "put", err)
	}
	return nil
}

// UpdateTokens implements store.Writer. It leaves NeedsReauth as it is: only
// Put clears it. Tokens with an empty access token are refused with an error
// wrapping store.ErrInvalid. An empty token type is stored as "Bearer".
func (s *Store) UpdateTokens(ctx context.Context, sessionID, provider string, t store.Tokens) (store.Row, error) {
	if err := checkKey(sessionID, provider); err != nil {
		return store.Row{}, err
	}
	if t.AccessToken == "" {
		return store.Row{}, fmt.Errorf("%w: access token is empty", store.ErrInvalid)
	}
	row, err := scanRow(s.pool.QueryRow(ctx, updateTokensSQL,
		sessionID, provider,
		t.AccessToken, t.RefreshToken, t.IDToken, tokenType(t.TokenType), nullTime(t.ExpiresAt),
	))
	if err != nil {
		return store.Row{}, mapError(ctx, "update tokens", err)
	}
	return row, nil
}

// MarkReauth implements store.Writer.
func (s *Store) MarkReauth(ctx context.Context, sessionID, provider string) error {
	if err := checkKey(sessionID, provider); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, markReauthSQL, sessionID, provider); err != nil {
		return mapError(ctx, "mark reauth", err)
	}
	return nil
}

// Delete implements store.Writer. An empty sessionID is refused with an error
// wrapping store.ErrInvalid.
func (s *Store) Delete(ctx context.Context, sessionID, provider string) error {
	if sessionID == "" {
		return fmt.Errorf("%w: session ID is empty", store.ErrInvalid)
	}
	var err error
	if provider == "" {
		_, err = s.pool.Exec(ctx, deleteSessionSQL, sessionID)
	} else {
		_, err = s.pool.Exec(ctx, deleteSQL, sessionID, provider)
	}
	if err != nil {
		return mapError(ctx, "delete", err)
	}
	return nil
}

// scanRow reads one row selected with columns.
func scanRow(r pgx.Row) (store.Row, error) {
	var (
		row                         store.Row
		expiresAt, sessionExpiresAt pgtype.Timestamptz
	)
	err := r.Scan(
		&row.SessionID, &row.Provider,
		&row.AccessToken, &row.RefreshToken, &row.IDToken, &row.TokenType,
		&expiresAt, &row.Subject, &row.ClientID, &row.UpstreamSubject, &sessionExpiresAt,
		&row.NeedsReauth, &row.CreatedAt, &row.UpdatedAt,
	)
	if err != nil {
		return store.Row{}, err
	}
	row.ExpiresAt = fromTimestamptz(expiresAt)
	row.SessionExpiresAt = fromTimestamptz(sessionExpiresAt)
	row.CreatedAt = row.CreatedAt.UTC()
	row.UpdatedAt = row.UpdatedAt.UTC()
	return row, nil
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

func tokenType(t string) string {
	if t == "" {
		return "Bearer"
	}
	return t
}

// nullTime returns the query argument for t: NULL for the zero time.
func nullTime(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: t, Valid: true}
}

// fromTimestamptz returns the time read from a nullable column: the zero time
// (never) for NULL and 'infinity', the Unix epoch (long past) for '-infinity'.
// The store itself never writes an infinity, but an operator may.
func fromTimestamptz(ts pgtype.Timestamptz) time.Time {
	switch {
	case !ts.Valid || ts.InfinityModifier == pgtype.Infinity:
		return time.Time{}
	case ts.InfinityModifier == pgtype.NegativeInfinity:
		return time.Unix(0, 0).UTC()
	}
	return ts.Time.UTC()
}
