package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/extauthz/extauthz/store/encrypted"
	"github.com/extauthz/extauthz/store/postgres"
	"github.com/extauthz/extauthz/tokencrypt"
)

// seeder writes the sessions' upstream tokens the way an authorization
// server written in Go would: store/postgres under store/encrypted, with the
// key the service's configuration holds.
type seeder struct {
	dsn  string
	keys *tokencrypt.Keyring
}

const seedWorkers = 8

// seed upserts one row per session for the benchmark provider: access token
// "at.<session>.<epoch>.0" expiring at expiresAt, refresh token
// "rt.<session>.<epoch>.0" (which the token endpoint accepts in that epoch),
// and the binding of the session's access token.
//
// Its connections are closed on return, which makes their backends report
// their statistics at once (see database.transactions).
func (s *seeder) seed(ctx context.Context, sessions, epoch int, expiresAt time.Time) error {
	pg, err := postgres.New(ctx, s.dsn, postgres.WithPoolConfig(func(c *pgxpool.Config) { c.MaxConns = seedWorkers }))
	if err != nil {
		return err
	}
	defer pg.Close()
	st := encrypted.New(pg, s.keys)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	errc := make(chan error, seedWorkers)
	var wg sync.WaitGroup
	for range seedWorkers {
		wg.Go(func() {
			for i := range next {
				err := st.Put(ctx, benchRow(i, epoch, expiresAt))
				if err != nil {
					errc <- fmt.Errorf("seed %s: %w", sessionID(i), err)
					cancel()
					return
				}
			}
		})
	}
feed:
	for i := range sessions {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return ctx.Err()
	}
}
