package cli

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/internal/gc"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/observed"
	"github.com/extauthz/extauthz/store/postgres"
)

// startGC runs garbage collection on c in the background, as cfg says,
// until ctx is done or stop is called; stop waits for it to end, so that
// the store can be closed afterwards. serve runs it with
// defer startGC(...)().
func startGC(ctx context.Context, c store.Collector, cfg config.GC, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		gc.Run(ctx, c, cfg.Interval.D(), cfg.Batch, log)
	}()
	return func() {
		cancel()
		<-done
	}
}

// measuredGC is the database's garbage collection with each DeleteExpired
// measured as the store operation delete_expired. RunExclusive is not
// measured: its time is the whole pass.
type measuredGC struct {
	store.Collector
	obs *observed.Store
}

// DeleteExpired implements store.Collector.
func (m measuredGC) DeleteExpired(ctx context.Context, limit int) (int, error) {
	var n int
	err := m.obs.Measure(ctx, "delete_expired", func(ctx context.Context) (err error) {
		n, err = m.Collector.DeleteExpired(ctx, limit)
		return err
	})
	return n, err
}

// gcCmd runs one garbage collection pass by hand. It exits 0 when the pass
// ran, and also when another replica's pass held the lock (that pass is
// doing the work), saying so; it exits 1 when the database fails.
func gcCmd(ctx context.Context, args []string, env Env) error {
	fs := newFlags("gc", env)
	db := addDBFlags(fs)
	batch := fs.Int("batch", 0, fmt.Sprintf("rows per DELETE (default: gc.batch from --config, else %d)", gc.DefaultBatch))
	if err := parse(fs, args); err != nil {
		return err
	}
	if *batch < 0 {
		return usageErr("--batch must be positive")
	}
	dsn, cfg, err := db.resolve(env)
	if err != nil {
		return err
	}
	if *batch == 0 {
		*batch = gc.DefaultBatch
		if cfg != nil {
			*batch = cfg.GC.Batch
		}
	}
	pg, err := postgres.New(ctx, dsn)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	defer pg.Close()
	r, err := gc.Pass(ctx, pg, *batch)
	if err != nil {
		return fmt.Errorf("after deleting %d expired session rows: %w", r.Deleted, err)
	}
	if !r.Ran {
		fmt.Fprintln(env.Stdout, "gc: skipped: another replica holds the GC lock and is collecting")
		return nil
	}
	fmt.Fprintf(env.Stdout, "gc: deleted %d expired session rows in %d batches (%v)\n",
		r.Deleted, r.Batches, r.Duration.Round(time.Millisecond))
	return nil
}
