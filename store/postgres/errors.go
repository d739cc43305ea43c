package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/extauthz/extauthz/store"
)

// mapError turns an error from pgx into one that wraps a store sentinel, for
// the operation op. The driver's error is not wrapped and its text is not
// copied: a server message may quote a parameter (a token) and a connection
// error may describe the connection string. Context errors, which carry
// nothing secret, are wrapped as well, so that errors.Is(err,
// context.Canceled) works.
func mapError(ctx context.Context, op string, err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: postgres %s: no row for this session and provider", store.ErrNotFound, op)
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%w: postgres %s: %w", store.ErrUnavailable, op, ctxErr)
	}
	for _, ctxErr := range []error{context.DeadlineExceeded, context.Canceled} {
		if errors.Is(err, ctxErr) {
			return fmt.Errorf("%w: postgres %s: %w", store.ErrUnavailable, op, ctxErr)
		}
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		reason, sentinel := classify(pgErr.Code)
		return fmt.Errorf("%w: postgres %s: %s (SQLSTATE %s)", sentinel, op, reason, pgErr.Code)
	}
	return fmt.Errorf("%w: postgres %s: %s", store.ErrUnavailable, op, reason(err))
}

// classify maps a SQLSTATE code to a sentinel and a short description. Data
// exceptions (class 22) and integrity constraint violations (class 23) mean
// that the database refused the values it was given; anything else means
// that it could not do the work right now or that its schema is not the one
// this package expects (class 42, for a database whose migrations were not
// applied), and is reported as unavailable.
func classify(code string) (reason string, sentinel error) {
	switch code {
	case "26000", "42P05":
		// A prepared statement missing, or already there, on the server
		// session: what a pooler in transaction mode that does not track
		// prepared statements (PgBouncer 1.18) does to pgx's statement
		// cache.
		return "prepared statement missing or duplicated on the server session " +
			"(behind PgBouncer in transaction mode, add default_query_exec_mode=exec to the database URL)", store.ErrUnavailable
	}
	class := code
	if len(class) > 2 {
		class = class[:2]
	}
	switch class {
	case "22":
		return "value refused by the database", store.ErrInvalid
	case "23":
		return "constraint violated", store.ErrInvalid
	case "08":
		return "connection failed", store.ErrUnavailable
	case "40":
		return "transaction rolled back", store.ErrUnavailable
	case "42":
		return "schema mismatch (are the migrations applied?)", store.ErrUnavailable
	case "53":
		return "server out of resources", store.ErrUnavailable
	case "57":
		return "server shutting down or query cancelled", store.ErrUnavailable
	default:
		return "database error", store.ErrUnavailable
	}
}

// reason describes an error that the server did not report.
func reason(err error) string {
	if pgconn.Timeout(err) {
		return "timed out"
	}
	if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
		return "connection failed"
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return "network error"
	}
	return "query failed"
}
