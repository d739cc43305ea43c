package cli

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/cached"
	"github.com/extauthz/extauthz/store/postgres"
	"github.com/extauthz/extauthz/telemetry"
)

// withTokenCache puts the upstream token cache (store/cached) above st when
// cache.token_size is not 0, with its invalidation listener on
// database.direct_url running until stop is called: the cache serves rows
// only while the listener is connected and answering (see
// postgres.Listener), or for cache.stale_if_error after that while the
// database cannot be read. Placed above the decryption, a hit costs neither a
// round trip nor an AES-GCM open. The listener outlives ctx, so that the
// cache stays in use while the server drains; stop ends it. The cache's
// metrics are registered with reg.
func withTokenCache(ctx context.Context, cfg *config.Config, st store.Store, log *slog.Logger, reg prometheus.Registerer) (_ store.Store, stop func(), _ error) {
	size := cfg.Cache.TokenEntries()
	if size == 0 {
		return st, func() {}, nil
	}
	c := cached.New(st, cached.Options{Size: size, Skew: cfg.Refresh.Skew.D(), StaleIfError: cfg.Cache.StaleIfError.D()})
	// database.direct_url defaults to database.url at load.
	l, err := postgres.NewListener(cfg.Database.DirectURL, c, postgres.WithListenerLogger(log))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: database.direct_url: %w", errUsage, err)
	}
	if err := registerCacheMetrics(reg, c, l); err != nil {
		return nil, nil, err
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Run(lctx)
	}()
	return c, func() { cancel(); <-done }, nil
}

// registerCacheMetrics exports the token cache's counters and its
// listener's state.
func registerCacheMetrics(reg prometheus.Registerer, c *cached.Store, l *postgres.Listener) error {
	read := func(result string, v func(cached.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        telemetry.MetricTokenCacheReads,
			Help:        "Reads of upstream tokens by the token cache's answer: hit (from memory), miss (read and cached), bypass (read from the database because the cache was not trusted: its listener down or late), stale (from memory although not trusted, because the database could not be read: cache.stale_if_error).",
			ConstLabels: prometheus.Labels{"result": result},
		}, func() float64 { return float64(v(c.Stats())) })
	}
	collectors := []prometheus.Collector{
		read("hit", func(s cached.Stats) uint64 { return s.Hits }),
		read("miss", func(s cached.Stats) uint64 { return s.Misses }),
		read("bypass", func(s cached.Stats) uint64 { return s.Bypassed }),
		read("stale", func(s cached.Stats) uint64 { return s.Stale }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: telemetry.MetricTokenCacheRows,
			Help: "Rows held by the token cache (at most cache.token_size).",
		}, func() float64 { return float64(c.Stats().Rows) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: telemetry.MetricTokenCacheListenerUp,
			Help: "1 while the token cache's LISTEN connection (database.direct_url) is up; while it is 0 the cache is bypassed.",
		}, func() float64 {
			if l.Up() {
				return 1
			}
			return 0
		}),
	}
	for _, col := range collectors {
		if err := reg.Register(col); err != nil {
			return fmt.Errorf("token cache metrics: %w", err)
		}
	}
	return nil
}
