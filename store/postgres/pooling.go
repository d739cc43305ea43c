package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/extauthz/extauthz/store"
)

// Pooling is what ProbePooling learned about the way a connection URL
// reaches PostgreSQL. Each true field is proven by what the server answered;
// a false one is not a proof of the opposite (see ProbePooling).
type Pooling struct {
	// Pooled: a connection pooler (PgBouncer, say) stands between the
	// client and the server: the server process that answers a query is
	// not the one the connection announced when it was opened.
	Pooled bool
	// SharedSessions: two client connections, both open, were answered by
	// the same server session. The pooler hands server sessions out per
	// transaction (PgBouncer's pool_mode = transaction or statement), so
	// session state does not stay with a client connection: LISTEN,
	// session advisory locks, SET.
	SharedSessions bool
	// SharedPreparedStatements: a statement prepared on one client
	// connection, by name, was visible on the other. The pooler passes
	// protocol-level prepared statements through without tracking them
	// (PgBouncer before 1.21, or with max_prepared_statements = 0), so
	// pgx's default query execution mode, which prepares and caches
	// statements per connection, fails with "prepared statement ... does
	// not exist" or "... already exists".
	SharedPreparedStatements bool
	// ExecMode is the URL's default query execution mode
	// (default_query_exec_mode; pgx's default is cache_statement).
	ExecMode pgx.QueryExecMode
}

// PreparesStatements reports whether p's query execution mode prepares
// named statements on the server and reuses them later on the same
// connection, which needs a server session that stays with the connection
// or a pooler that tracks prepared statements.
func (p Pooling) PreparesStatements() bool {
	return p.ExecMode == pgx.QueryExecModeCacheStatement
}

// ProbePooling opens two connections to dsn (a PostgreSQL URL or
// keyword/value connection string, as for New) and finds out whether a
// pooler stands in between, and what it shares between client connections
// (see Pooling). It runs a handful of statements and changes nothing but a
// prepared statement of a random name, deallocated at once (behind a pooler
// in transaction mode the deallocation may reach another server session
// and leave the statement where it was: a name nothing else uses).
//
// Its findings hold for the moment of the probe. A pooler in transaction
// mode whose pool is busy with other clients may hand the second
// connection another server session, and then the probe sees no sharing:
// SharedSessions false is not a proof of session mode. Its errors wrap
// store.ErrInvalid (dsn cannot be parsed) or store.ErrUnavailable, and
// never carry dsn's password.
func ProbePooling(ctx context.Context, dsn string) (Pooling, error) {
	// pgxpool's parser takes the pgx and pool settings out of the start-up
	// parameters.
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return Pooling{}, fmt.Errorf("%w: postgres: cannot parse the database URL", store.ErrInvalid)
	}
	cfg := pcfg.ConnConfig
	p := Pooling{ExecMode: cfg.DefaultQueryExecMode}
	cfg.RuntimeParams["application_name"] = "extauthz-probe"
	var conns [2]*pgconn.PgConn
	for i := range conns {
		c, err := pgx.ConnectConfig(ctx, cfg.Copy())
		if err != nil {
			return p, mapError(ctx, "pooling probe", err)
		}
		defer c.Close(context.WithoutCancel(ctx))
		conns[i] = c.PgConn()
	}
	a, b := conns[0], conns[1]

	pidA, err := backendPID(ctx, a, "")
	if err != nil {
		return p, err
	}
	p.Pooled = pidA != a.PID()
	if !p.Pooled {
		return p, nil
	}
	var suffix [8]byte
	_, _ = rand.Read(suffix[:])
	name := "extauthz_probe_" + hex.EncodeToString(suffix[:])
	if _, err := a.Prepare(ctx, name, "SELECT 1", nil); err != nil {
		return p, mapError(ctx, "pooling probe", err)
	}
	defer func() {
		_, _ = a.Exec(context.WithoutCancel(ctx), "DEALLOCATE "+name).ReadAll()
	}()
	pidB, err := backendPID(ctx, b, name)
	switch {
	case errors.Is(err, errPrepared):
		p.SharedPreparedStatements = true
	case err != nil:
		return p, err
	}
	p.SharedSessions = pidB == pidA
	p.SharedPreparedStatements = p.SharedPreparedStatements && p.SharedSessions
	return p, nil
}

// errPrepared says that backendPID found the named prepared statement.
var errPrepared = errors.New("prepared statement visible")

// backendPID returns the process ID of the server session that answers on
// conn, in one exchange that ends no transaction open. With a statement
// name, it also looks that prepared statement up in the same exchange and
// returns the process ID together with errPrepared when it exists.
func backendPID(ctx context.Context, conn *pgconn.PgConn, prepared string) (uint32, error) {
	res := conn.ExecParams(ctx, `SELECT pg_backend_pid(), EXISTS (SELECT FROM pg_prepared_statements WHERE name = $1)`,
		[][]byte{[]byte(prepared)}, nil, nil, nil).Read()
	if res.Err != nil {
		return 0, mapError(ctx, "pooling probe", res.Err)
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 2 {
		return 0, fmt.Errorf("%w: postgres pooling probe: unexpected answer", store.ErrUnavailable)
	}
	pid, err := strconv.ParseUint(string(res.Rows[0][0]), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: postgres pooling probe: unexpected answer", store.ErrUnavailable)
	}
	if string(res.Rows[0][1]) == "t" {
		return uint32(pid), errPrepared
	}
	return uint32(pid), nil
}
