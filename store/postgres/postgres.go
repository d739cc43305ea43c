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
//
// Refresh leases are the columns lease_owner and lease_until of the row,
// claimed and checked by single UPDATE statements and timed by the
// database's clock (now()); no connection or transaction is held while a
// lease is.
//
// Garbage collection (store.Collector) deletes rows whose session_expires_at
// has passed by the database's clock. RunExclusive takes the transaction-level
// advisory lock GCLockKey with pg_try_advisory_xact_lock in a transaction
// opened on a connection of its own, which stays open, idle, for the whole
// pass, and rolls it back at the end: the lock is released then, or by the
// server as soon as that connection dies, so a crashed replica never leaves
// it held. A transaction-level lock (rather than a session lock) is what
// keeps this correct behind PgBouncer in transaction mode, which pins the
// server connection to the client until the transaction ends. The pass's
// deletes run on other connections of the pool and commit batch by batch, so
// a pass needs two connections; the open transaction has written nothing and
// holds no snapshot, so it holds back neither vacuum nor other sessions. A
// server idle_in_transaction_session_timeout shorter than a pass ends it,
// and with it the lock, early: another replica may then start a pass, which
// does no harm.
//
// Prepared statements: every statement is a constant string run through the
// pool in pgx's default mode, QueryExecModeCacheStatement, so each is
// prepared once per connection and then executed in a single exchange
// (Bind, Execute, Sync): a read costs one round trip. Nothing here defeats
// the statement cache: no statement text is built per call, and only the
// garbage collection lock's SELECT uses the simple protocol on purpose (see
// RunExclusive). Behind PgBouncer in transaction mode, either PgBouncer must
// track protocol-level prepared statements (1.21 or later, with
// max_prepared_statements set) or the URL must say
// default_query_exec_mode=exec.
//
// Listener (listener.go) keeps caches of rows (store/cached) consistent
// across processes with LISTEN/NOTIFY on a connection of its own.
//
// Every statement a Store runs is bounded by the server's statement_timeout,
// which New sets on the pool's connections (see New and
// WithStatementTimeout): a statement stuck behind a lock or on an overloaded
// server fails with store.ErrUnavailable instead of holding a connection.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
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

var (
	_ store.Store     = (*Store)(nil)
	_ store.Rewriter  = (*Store)(nil)
	_ store.Collector = (*Store)(nil)
)

// GCLockKey is the key of the advisory lock that RunExclusive takes with
// pg_try_advisory_xact_lock(bigint): the ASCII bytes of "xauth-gc". Holding
// it from another session, in a transaction, makes every replica skip its
// garbage collection passes until that transaction ends.
const GCLockKey int64 = 0x78617574682d6763

// DefaultStatementTimeout is the statement_timeout New sets unless told
// otherwise.
const DefaultStatementTimeout = 5 * time.Second

// Option configures a Store built by New.
type Option func(*options)

// options is what the Options of New configure.
type options struct {
	pool             *pgxpool.Config
	statementTimeout time.Duration
}

// WithPoolConfig lets the caller adjust the pool configuration parsed from
// the connection string before the pool is created (pool sizes, a tracer, a
// query execution mode suited to PgBouncer, and so on).
func WithPoolConfig(fn func(*pgxpool.Config)) Option {
	return func(o *options) { fn(o.pool) }
}

// WithStatementTimeout sets the statement_timeout that New gives the pool's
// connections when the connection configuration does not set one, instead
// of DefaultStatementTimeout. It is rounded up to the millisecond. A d that
// is not positive sets none: the server's own setting (for the database or
// the role, say) then applies.
func WithStatementTimeout(d time.Duration) Option {
	return func(o *options) { o.statementTimeout = d }
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
//
// Statement time-out: New sends the run-time parameter statement_timeout,
// DefaultStatementTimeout unless WithStatementTimeout says otherwise, when
// the pool's connections are opened, so that the server cancels any of the
// Store's statements that runs longer (the call then fails with
// store.ErrUnavailable). It leaves the setting alone when the connection
// configuration already has one: a statement_timeout parameter in dsn (or
// set with WithPoolConfig), or an options parameter (or PGOPTIONS) that
// mentions it, such as options=-c%20statement_timeout=10s. It sets no other
// time-out (lock_timeout in particular). PgBouncer refuses start-up
// parameters it does not know: behind it, add statement_timeout to its
// ignore_startup_parameters, or use WithStatementTimeout(0) and set the
// time-out on the database or role instead.
func New(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parser's message may quote the connection string, password
		// included, so it is not passed on.
		return nil, fmt.Errorf("%w: postgres: cannot parse the database URL", store.ErrInvalid)
	}
	o := options{pool: cfg, statementTimeout: DefaultStatementTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	params := cfg.ConnConfig.RuntimeParams
	if o.statementTimeout > 0 && !setsStatementTimeout(params) {
		params["statement_timeout"] = milliseconds(o.statementTimeout)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: postgres: cannot create the connection pool", store.ErrInvalid)
	}
	return &Store{pool: pool, ownsPool: true}, nil
}

// NewFromPool returns a Store that uses pool. The caller keeps ownership of
// pool: Close on the returned Store does not close it. The pool is used as
// it is: no statement_timeout is set on it.
func NewFromPool(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool}
}

// setsStatementTimeout reports whether the start-up parameters params set
// statement_timeout, directly or within options. Parameter names are
// case-insensitive, and a command-line option may spell them with dashes.
func setsStatementTimeout(params map[string]string) bool {
	for k, v := range params {
		switch {
		case strings.EqualFold(k, "statement_timeout"):
			return true
		case strings.EqualFold(k, "options"):
			v = strings.ReplaceAll(strings.ToLower(v), "-", "_")
			if strings.Contains(v, "statement_timeout") {
				return true
			}
		}
	}
	return false
}

// milliseconds returns d as a statement_timeout value: whole milliseconds,
// rounded up, at most the largest value the server accepts.
func milliseconds(d time.Duration) string {
	ms := d / time.Millisecond
	if d%time.Millisecond != 0 {
		ms++
	}
	ms = min(ms, math.MaxInt32)
	return strconv.FormatInt(int64(ms), 10) + "ms"
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
	created_at, updated_at, version`

const (
	getSQL = `SELECT ` + columns + ` FROM upstream_tokens
	WHERE session_id = $1 AND provider = $2`

	getSessionSQL = `SELECT ` + columns + ` FROM upstream_tokens
	WHERE session_id = $1
	ORDER BY provider COLLATE "C"`

	putSQL = putInsert + `
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, false, now(), now())` + putConflict

	// putBatchSQL is putSQL for many rows at once: each parameter is an
	// array holding one column of the rows, in the order of putSQL's.
	putBatchSQL = putInsert + `
	SELECT s, p, a, r, i, tt, e, sub, c, us, se, false, now(), now()
	FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
		$7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::timestamptz[])
		AS t(s, p, a, r, i, tt, e, sub, c, us, se)` + putConflict

	putInsert = `INSERT INTO upstream_tokens (
		session_id, provider, access_token, refresh_token, id_token, token_type,
		expires_at, subject, client_id, upstream_subject, session_expires_at, needs_reauth,
		created_at, updated_at)`

	putConflict = `
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
		updated_at = now(),
		version = upstream_tokens.version + 1,
		lease_owner = NULL,
		lease_until = NULL`

	// claimSQL takes the lease if nobody holds a live one: $3 is the owner,
	// $4 the time-to-live in microseconds.
	claimSQL = `UPDATE upstream_tokens SET
		lease_owner = $3,
		lease_until = now() + $4::bigint * interval '1 microsecond'
	WHERE session_id = $1 AND provider = $2
		AND (lease_until IS NULL OR lease_until <= now())
	RETURNING ` + columns

	// leaseSQL reads the row and how many microseconds its lease still runs
	// (0 without a lease, negative for one that has run out).
	leaseSQL = `SELECT ` + columns + `,
		coalesce((extract(epoch FROM lease_until - now()) * 1000000)::bigint, 0)
	FROM upstream_tokens
	WHERE session_id = $1 AND provider = $2`

	// completeSQL writes refreshed tokens if lease $3, taken on version $4,
	// still holds the row, whether or not its time has run out.
	completeSQL = `UPDATE upstream_tokens SET
		access_token = $5,
		refresh_token = $6,
		id_token = $7,
		token_type = $8,
		expires_at = $9,
		updated_at = now(),
		version = version + 1,
		lease_owner = NULL,
		lease_until = NULL
	WHERE session_id = $1 AND provider = $2 AND lease_owner = $3 AND version = $4
	RETURNING ` + columns

	releaseSQL = `UPDATE upstream_tokens SET lease_owner = NULL, lease_until = NULL
	WHERE session_id = $1 AND provider = $2 AND lease_owner = $3 AND version = $4`

	releaseReauthSQL = `UPDATE upstream_tokens SET
		lease_owner = NULL,
		lease_until = NULL,
		needs_reauth = true,
		updated_at = now(),
		version = version + 1
	WHERE session_id = $1 AND provider = $2 AND lease_owner = $3 AND version = $4`

	// scanSQL reads the rows after the key ($1, $2), in the byte order of
	// the "C" collation of the columns, along the primary key.
	scanSQL = `SELECT ` + columns + ` FROM upstream_tokens
	WHERE (session_id, provider) > ($1, $2)
	ORDER BY session_id COLLATE "C", provider COLLATE "C"
	LIMIT $3`

	// rewriteSQL replaces the tokens of the row at version $3, leaving the
	// version, updated_at and the lease alone.
	rewriteSQL = `UPDATE upstream_tokens SET
		access_token = $4,
		refresh_token = $5,
		id_token = $6,
		token_type = $7,
		expires_at = $8
	WHERE session_id = $1 AND provider = $2 AND version = $3`

	existsSQL = `SELECT EXISTS (SELECT 1 FROM upstream_tokens WHERE session_id = $1 AND provider = $2)`

	deleteSQL = `DELETE FROM upstream_tokens WHERE session_id = $1 AND provider = $2`

	deleteSessionSQL = `DELETE FROM upstream_tokens WHERE session_id = $1`

	// deleteExpiredSQL deletes up to $1 rows whose session has expired,
	// oldest expiry first, along the partial index on session_expires_at.
	// Rows locked by a write in progress are skipped, not waited for: a
	// later pass deletes them.
	deleteExpiredSQL = `DELETE FROM upstream_tokens
	WHERE (session_id, provider) IN (
		SELECT session_id, provider FROM upstream_tokens
		WHERE session_expires_at <= now()
		ORDER BY session_expires_at
		LIMIT $1
		FOR UPDATE SKIP LOCKED)`

	gcLockSQL = `SELECT pg_try_advisory_xact_lock($1)`
)

// Get implements store.Reader.
func (s *Store) Get(ctx context.Context, sessionID, provider string) (store.Row, error) {
	if err := store.CheckKey(sessionID, provider); err != nil {
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
	return s.queryRows(ctx, "get session", getSessionSQL, sessionID)
}

// queryRows runs a query returning whole rows; no rows is an empty,
// non-nil slice.
func (s *Store) queryRows(ctx context.Context, op, sql string, args ...any) ([]store.Row, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, mapError(ctx, op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Row, error) { return scanRow(r) })
	if err != nil {
		return nil, mapError(ctx, op, err)
	}
	if out == nil {
		out = []store.Row{}
	}
	return out, nil
}

// Put implements store.Writer. A row that fails store.Row.Validate is
// refused with an error wrapping store.ErrInvalid, without a round trip. An
// empty token type is stored as "Bearer". CreatedAt is kept when an existing
// row is replaced, Version is 1 for a new row and moves on for a replaced
// one, and any refresh lease is cleared.
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

// PutBatch implements store.BatchWriter with one statement (and so one
// transaction) for all the rows: each row is written as Put writes it, and
// either all are written or none. A batch with an invalid row, or two rows
// with the same key, is refused with an error wrapping store.ErrInvalid,
// without a round trip; an empty batch writes nothing. The rows travel as
// one array parameter per column, so the statement needs no temporary
// table and works through PgBouncer in transaction mode; a few thousand
// rows per batch is a good size.
func (s *Store) PutBatch(ctx context.Context, rows []store.Row) error {
	if len(rows) == 0 {
		return nil
	}
	if err := store.CheckBatch(rows); err != nil {
		return err
	}
	var (
		sessions, providers, access, refresh, id, types = make([]string, len(rows)), make([]string, len(rows)),
			make([]string, len(rows)), make([]string, len(rows)), make([]string, len(rows)), make([]string, len(rows))
		subjects, clients, upstream = make([]string, len(rows)), make([]string, len(rows)), make([]string, len(rows))
		expires, sessionExpires     = make([]pgtype.Timestamptz, len(rows)), make([]pgtype.Timestamptz, len(rows))
	)
	for i := range rows {
		r := &rows[i]
		sessions[i], providers[i] = r.SessionID, r.Provider
		access[i], refresh[i], id[i], types[i] = r.AccessToken, r.RefreshToken, r.IDToken, tokenType(r.TokenType)
		subjects[i], clients[i], upstream[i] = r.Subject, r.ClientID, r.UpstreamSubject
		expires[i], sessionExpires[i] = nullTime(r.ExpiresAt), nullTime(r.SessionExpiresAt)
	}
	_, err := s.pool.Exec(ctx, putBatchSQL, sessions, providers, access, refresh, id, types, expires,
		subjects, clients, upstream, sessionExpires)
	if err != nil {
		return mapError(ctx, "put batch", err)
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

// maxClaimAttempts bounds the rounds of ClaimRefresh. A round that neither
// takes the lease nor finds a live one saw the lease end between its two
// statements, which needs another owner to release it or let it run out in
// that instant: a second round is almost never needed.
const maxClaimAttempts = 5

// ClaimRefresh implements store.RefreshCoordinator. The lease runs for ttl,
// rounded up to the microsecond, from the database's now(). The claim is one
// UPDATE; only when it does not take the lease is the row read again, to
// report who holds it for how long.
func (s *Store) ClaimRefresh(ctx context.Context, sessionID, provider, owner string, ttl time.Duration) (store.Claim, error) {
	if err := store.CheckLease(sessionID, provider, owner); err != nil {
		return store.Claim{}, err
	}
	if ttl <= 0 {
		return store.Claim{}, fmt.Errorf("%w: lease time-to-live is not positive", store.ErrInvalid)
	}
	micros := int64(ttl / time.Microsecond)
	if ttl%time.Microsecond != 0 {
		micros++
	}
	for attempt := 1; ; attempt++ {
		row, err := scanRow(s.pool.QueryRow(ctx, claimSQL, sessionID, provider, owner, micros))
		if err == nil {
			return store.Claim{Row: row, Held: true, Lease: store.Lease{Owner: owner, Version: row.Version}}, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return store.Claim{}, mapError(ctx, "claim refresh", err)
		}
		var remaining int64
		row, err = scanRow(s.pool.QueryRow(ctx, leaseSQL, sessionID, provider), &remaining)
		if err != nil {
			return store.Claim{}, mapError(ctx, "claim refresh", err)
		}
		if remaining > 0 {
			return store.Claim{Row: row, Remaining: time.Duration(remaining) * time.Microsecond}, nil
		}
		if attempt == maxClaimAttempts {
			// Report a lease about to end rather than none, so that the
			// caller waits a little and asks again.
			return store.Claim{Row: row, Remaining: time.Millisecond}, nil
		}
	}
}

// CompleteRefresh implements store.RefreshCoordinator. An empty token type
// is stored as "Bearer".
func (s *Store) CompleteRefresh(ctx context.Context, sessionID, provider string, lease store.Lease, t store.Tokens) (store.Row, error) {
	if err := store.CheckLease(sessionID, provider, lease.Owner); err != nil {
		return store.Row{}, err
	}
	if err := t.Check(); err != nil {
		return store.Row{}, err
	}
	row, err := scanRow(s.pool.QueryRow(ctx, completeSQL,
		sessionID, provider, lease.Owner, lease.Version,
		t.AccessToken, t.RefreshToken, t.IDToken, tokenType(t.TokenType), nullTime(t.ExpiresAt),
	))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Row{}, s.leaseLost(ctx, "complete refresh", sessionID, provider)
	}
	if err != nil {
		return store.Row{}, mapError(ctx, "complete refresh", err)
	}
	return row, nil
}

// ReleaseRefresh implements store.RefreshCoordinator.
func (s *Store) ReleaseRefresh(ctx context.Context, sessionID, provider string, lease store.Lease, reauth bool) error {
	if err := store.CheckLease(sessionID, provider, lease.Owner); err != nil {
		return err
	}
	sql := releaseSQL
	if reauth {
		sql = releaseReauthSQL
	}
	tag, err := s.pool.Exec(ctx, sql, sessionID, provider, lease.Owner, lease.Version)
	if err != nil {
		return mapError(ctx, "release refresh", err)
	}
	if tag.RowsAffected() == 0 {
		return s.leaseLost(ctx, "release refresh", sessionID, provider)
	}
	return nil
}

// Scan implements store.Rewriter in a single query along the primary key.
// Keys are compared byte by byte, whatever the database's collation. A limit
// that is not positive is refused with an error wrapping store.ErrInvalid.
func (s *Store) Scan(ctx context.Context, after store.Key, limit int) ([]store.Row, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: scan limit is not positive", store.ErrInvalid)
	}
	return s.queryRows(ctx, "scan", scanSQL, after.SessionID, after.Provider, limit)
}

// RewriteTokens implements store.Rewriter with one conditional UPDATE; only
// when it writes nothing is the row looked for, to tell store.ErrConflict
// from store.ErrNotFound. Like CompleteRefresh, it stores an empty token
// type as "Bearer"; unlike it, it leaves version, updated_at and the lease
// columns as they are. Tokens with an empty access token are refused with an error
// wrapping store.ErrInvalid.
func (s *Store) RewriteTokens(ctx context.Context, sessionID, provider string, version int64, t store.Tokens) error {
	if err := store.CheckKey(sessionID, provider); err != nil {
		return err
	}
	if err := t.Check(); err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, rewriteSQL,
		sessionID, provider, version,
		t.AccessToken, t.RefreshToken, t.IDToken, tokenType(t.TokenType), nullTime(t.ExpiresAt),
	)
	if err != nil {
		return mapError(ctx, "rewrite tokens", err)
	}
	if tag.RowsAffected() != 0 {
		return nil
	}
	var exists bool
	if err := s.pool.QueryRow(ctx, existsSQL, sessionID, provider).Scan(&exists); err != nil {
		return mapError(ctx, "rewrite tokens", err)
	}
	if !exists {
		return fmt.Errorf("%w: postgres rewrite tokens: no row for this session and provider", store.ErrNotFound)
	}
	return fmt.Errorf("%w: postgres rewrite tokens: the row is no longer at version %d", store.ErrConflict, version)
}

// DeleteExpired implements store.Collector with one DELETE statement, by
// the database's clock: a row is expired when session_expires_at <= now().
// A row whose session_expires_at is NULL or 'infinity' never is; one at
// '-infinity' always is. A limit that is not positive is refused with an
// error wrapping store.ErrInvalid.
func (s *Store) DeleteExpired(ctx context.Context, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("%w: delete limit is not positive", store.ErrInvalid)
	}
	tag, err := s.pool.Exec(ctx, deleteExpiredSQL, limit)
	if err != nil {
		return 0, mapError(ctx, "delete expired", err)
	}
	return int(tag.RowsAffected()), nil
}

// gcReleaseTimeout bounds the rollback that releases the collection lock.
const gcReleaseTimeout = 5 * time.Second

// RunExclusive implements store.Collector with the transaction-level
// advisory lock GCLockKey, held on a connection taken from the pool for the
// duration of fn (see the package documentation). fn must be able to get
// another connection from the pool.
func (s *Store) RunExclusive(ctx context.Context, fn func(ctx context.Context) error) (bool, error) {
	if fn == nil {
		return false, fmt.Errorf("%w: no function to run", store.ErrInvalid)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, mapError(ctx, "gc lock", err)
	}
	defer conn.Release()
	// Read committed, whatever the server's default: between statements the
	// transaction then holds no snapshot.
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return false, mapError(ctx, "gc lock", err)
	}
	// Rolling back releases the lock. If the rollback fails, pgx closes the
	// connection, and the server releases the lock when it notices.
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), gcReleaseTimeout)
		defer cancel()
		_ = tx.Rollback(rctx)
	}()
	// The simple protocol leaves no portal open, which would keep its
	// snapshot while the transaction idles.
	var locked bool
	if err := tx.QueryRow(ctx, gcLockSQL, pgx.QueryExecModeSimpleProtocol, GCLockKey).Scan(&locked); err != nil {
		return false, mapError(ctx, "gc lock", err)
	}
	if !locked {
		return false, nil
	}
	return true, fn(ctx)
}

// leaseLost returns the error for a lease that no longer holds the row: one
// wrapping store.ErrLeaseLost, and store.ErrNotFound too if the row is gone.
func (s *Store) leaseLost(ctx context.Context, op, sessionID, provider string) error {
	var exists bool
	if err := s.pool.QueryRow(ctx, existsSQL, sessionID, provider).Scan(&exists); err != nil {
		return mapError(ctx, op, err)
	}
	if !exists {
		return fmt.Errorf("%w: %w: postgres %s: no row for this session and provider", store.ErrLeaseLost, store.ErrNotFound, op)
	}
	return fmt.Errorf("%w: postgres %s: the lease was taken over or the row changed", store.ErrLeaseLost, op)
}

// scanRow reads one row selected with columns, followed by the columns
// read into extra.
func scanRow(r pgx.Row, extra ...any) (store.Row, error) {
	var (
		row                         store.Row
		expiresAt, sessionExpiresAt pgtype.Timestamptz
	)
	dest := []any{
		&row.SessionID, &row.Provider,
		&row.AccessToken, &row.RefreshToken, &row.IDToken, &row.TokenType,
		&expiresAt, &row.Subject, &row.ClientID, &row.UpstreamSubject, &sessionExpiresAt,
		&row.NeedsReauth, &row.CreatedAt, &row.UpdatedAt, &row.Version,
	}
	err := r.Scan(append(dest, extra...)...)
	if err != nil {
		return store.Row{}, err
	}
	row.ExpiresAt = fromTimestamptz(expiresAt)
	row.SessionExpiresAt = fromTimestamptz(sessionExpiresAt)
	row.CreatedAt = row.CreatedAt.UTC()
	row.UpdatedAt = row.UpdatedAt.UTC()
	return row, nil
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
