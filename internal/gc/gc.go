// Package gc garbage-collects expired sessions: it deletes the rows whose
// session expiry has passed, by the store's clock, in batches, one replica
// at a time.
//
// A pass runs under the store's collection lock (store.Collector's
// RunExclusive): when another replica's pass holds it, the pass does
// nothing. Within a pass, batches of at most batch rows are deleted, each in
// its own statement (and transaction), until one deletes fewer than batch,
// so that no statement runs long or locks many rows and Checks go on
// meanwhile.
package gc

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/extauthz/extauthz/store"
)

// Defaults for the configuration keys gc.interval and gc.batch.
const (
	DefaultInterval = 10 * time.Minute
	DefaultBatch    = 1000
)

// Result is what one pass did.
type Result struct {
	// Ran is false when another pass held the collection lock: then the
	// pass deleted nothing.
	Ran bool
	// Deleted is how many rows the pass deleted, in Batches statements.
	Deleted int
	Batches int
	// Duration is how long the pass took, taking the lock included.
	Duration time.Duration
}

// Pass runs one garbage collection pass on c: under its collection lock, it
// deletes expired rows batch at a time until a batch deletes fewer than
// batch rows. On error, the Result says what was done before it. A batch
// that is not positive is refused with an error wrapping store.ErrInvalid.
func Pass(ctx context.Context, c store.Collector, batch int) (Result, error) {
	if batch <= 0 {
		return Result{}, fmt.Errorf("%w: gc batch is not positive", store.ErrInvalid)
	}
	start := time.Now()
	var r Result
	ran, err := c.RunExclusive(ctx, func(ctx context.Context) error {
		for {
			n, err := c.DeleteExpired(ctx, batch)
			if err != nil {
				return err
			}
			r.Batches++
			r.Deleted += n
			if n < batch {
				return nil
			}
		}
	})
	r.Ran = ran
	r.Duration = time.Since(start)
	return r, err
}

// Run runs a pass (see Pass) about every interval until ctx is done. Each
// wait, the first included, is drawn at random between half and one and a
// half times interval, so that replicas started together do not all try at
// once. An interval that is not positive disables collection: Run returns
// at once. A batch that is not positive means DefaultBatch. log may be nil.
//
// Run logs one line per pass that deleted rows, with their number, the
// batches and the duration ("outcome": "deleted"), and one warning per pass
// that failed ("failed", with the rows deleted before the failure); a pass
// skipped because another replica holds the lock is logged at debug level,
// a pass that deleted nothing not at all. Lines never name a session.
func Run(ctx context.Context, c store.Collector, interval time.Duration, batch int, log *slog.Logger) {
	if interval <= 0 {
		return
	}
	if batch <= 0 {
		batch = DefaultBatch
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timer := time.NewTimer(jitter(interval))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		r, err := Pass(ctx, c, batch)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("gc", "outcome", "failed", "rows", r.Deleted, "batches", r.Batches, "duration", r.Duration, "error", err)
		case r.Deleted > 0:
			log.Info("gc", "outcome", "deleted", "rows", r.Deleted, "batches", r.Batches, "duration", r.Duration)
		case err == nil && !r.Ran:
			log.Debug("gc", "outcome", "skipped", "reason", "another replica holds the lock")
		}
		timer.Reset(jitter(interval))
	}
}

// jitter returns a duration drawn uniformly from [d/2, 3d/2).
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d)
}
