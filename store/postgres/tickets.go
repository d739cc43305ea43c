package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/extauthz/extauthz/store"
)

// TicketIDSize is the size of a single-use ticket ID.
const TicketIDSize = 16

// useTicketSQL records ticket $1, expiring at $2, unless it is recorded
// already, and deletes up to 16 records whose expiry passed more than an
// hour ago (by the database's clock; the hour covers replicas whose clocks
// disagree), skipping those another statement holds. It returns one row,
// true, when it recorded the ticket.
const useTicketSQL = `WITH gone AS (
		DELETE FROM extauthz_connect_tickets
		WHERE id IN (
			SELECT id FROM extauthz_connect_tickets
			WHERE expires_at < now() - interval '1 hour'
			ORDER BY expires_at
			LIMIT 16
			FOR UPDATE SKIP LOCKED)
	)
	INSERT INTO extauthz_connect_tickets (id, expires_at)
	VALUES ($1, $2)
	ON CONFLICT (id) DO NOTHING
	RETURNING true`

// UseTicket records the redemption of the single-use ticket id, which
// expires at expiresAt, in one statement. It returns true the first time an
// ID is recorded and false every later time, from any process using the
// same database. An ID that is not TicketIDSize bytes is refused with an
// error wrapping store.ErrInvalid; other errors wrap store.ErrUnavailable
// (or ErrInvalid for a time the database refuses). A record is kept until an
// hour after expiresAt at least, then deleted by a later UseTicket.
func (s *Store) UseTicket(ctx context.Context, id []byte, expiresAt time.Time) (bool, error) {
	if len(id) != TicketIDSize {
		return false, fmt.Errorf("%w: a ticket ID is %d bytes", store.ErrInvalid, TicketIDSize)
	}
	rows, err := s.pool.Query(ctx, useTicketSQL, id, expiresAt)
	if err != nil {
		return false, mapError(ctx, "use ticket", err)
	}
	defer rows.Close()
	first := rows.Next()
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, mapError(ctx, "use ticket", err)
	}
	return first, nil
}
