package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/connect"
	"github.com/extauthz/extauthz/httpfront"
	"github.com/extauthz/extauthz/idtoken"
	"github.com/extauthz/extauthz/jwtauth"
	"github.com/extauthz/extauthz/oauthclient"
	"github.com/extauthz/extauthz/server"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/encrypted"
	"github.com/extauthz/extauthz/store/observed"
	"github.com/extauthz/extauthz/store/postgres"
	"github.com/extauthz/extauthz/telemetry"
	"github.com/extauthz/extauthz/upstreamtoken"
)

// storePingInterval is how often the store is pinged to keep
// extauthz_store_up current while no Check uses it.
const storePingInterval = 5 * time.Second

// checkTimeout bounds each reachability check of serve --check-config.
const checkTimeout = 10 * time.Second

func serveCmd(ctx context.Context, args []string, env Env) error {
	fs := newFlags("serve", env)
	path := fs.String("config", "", "configuration file (YAML)")
	check := fs.Bool("check-config", false, "check the configuration, reach the database and the JWKS, and exit without serving:\n"+
		"0 when all is well, 1 when the database or the JWKS cannot be reached, 2 when the configuration is invalid")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageErr("--config FILE is required")
	}
	cfg, err := config.Load(*path, env.Getenv)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", errUsage, *path, err)
	}
	if *check {
		return checkConfig(ctx, cfg, env)
	}
	return serve(ctx, cfg, env, nil)
}

// newLogger builds the process logger from the log section.
func newLogger(cfg config.Log, env Env) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "text" {
		return slog.New(slog.NewTextHandler(env.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(env.Stderr, opts))
}

// parts are the service's components built from the configuration, before
// any listener exists.
type parts struct {
	pg        *postgres.Store
	verifier  *jwtauth.Verifier
	refresher *oauthclient.Client
	idTokens  *idtoken.Verifier
	providers *providerSet
}

// build makes what the configuration describes and checks what config.Load
// cannot (the JWKS file, the providers); its errors are usage errors. It
// neither listens nor connects: the pool connects lazily. The caller closes
// pg.
func build(ctx context.Context, cfg *config.Config) (*parts, error) {
	pg, err := postgres.New(ctx, cfg.Database.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: database.url: %w", errUsage, err)
	}
	p, err := buildRest(ctx, cfg)
	if err != nil {
		pg.Close()
		return nil, err
	}
	p.pg = pg
	return p, nil
}

func buildRest(ctx context.Context, cfg *config.Config) (*parts, error) {
	jwtCfg := cfg.JWT.JWTAuth()
	jwtCfg.CacheSize = cfg.Cache.JWTEntries()
	verifier, err := jwtauth.New(ctx, jwtCfg)
	if err != nil {
		return nil, fmt.Errorf("%w: jwt: %w", errUsage, err)
	}
	set, err := newProviderSet(cfg)
	if err != nil {
		return nil, err
	}
	idTokens, err := set.idTokens(cfg)
	if err != nil {
		return nil, err
	}
	// Each refresh runs under refresh.timeout (the OAuth client's own
	// 30 s time-out only backs it up).
	refresher, err := set.oauthClient(cfg)
	if err != nil {
		return nil, err
	}
	return &parts{verifier: verifier, refresher: refresher, idTokens: idTokens, providers: set}, nil
}

// newOAuthClient is the OAuth client of the configured providers, with a
// discovery cache of its own; its errors are usage errors.
func newOAuthClient(cfg *config.Config) (*oauthclient.Client, error) {
	set, err := newProviderSet(cfg)
	if err != nil {
		return nil, err
	}
	return set.oauthClient(cfg)
}

// checkConfig is serve --check-config: the configuration has loaded (else
// the exit code is 2 already); it builds the components (2 on a problem),
// then reaches the database and the JWKS, reporting every failure at once
// (1). It never listens.
func checkConfig(ctx context.Context, cfg *config.Config, env Env) error {
	p, err := build(ctx, cfg)
	if err != nil {
		return err
	}
	defer p.pg.Close()
	certs := tlsCerts{}
	if cfg.Listen.TLS.Cert != "" {
		if _, err := grpcTLS(cfg.Listen.TLS, slog.New(slog.DiscardHandler), certs); err != nil {
			return err
		}
	}
	if cfg.Listen.HTTP != "" && cfg.HTTP.TLS.Cert != "" {
		if _, err := httpTLS(cfg.HTTP.TLS, slog.New(slog.DiscardHandler), certs); err != nil {
			return err
		}
	}
	if cfg.Listen.Connect != "" && cfg.Connect.TLS.Cert != "" {
		if _, err := connectTLS(cfg.Connect.TLS, slog.New(slog.DiscardHandler), certs); err != nil {
			return err
		}
	}
	// What serve would refuse, the check refuses too: the OTEL_* settings.
	if _, err := telemetry.TracingEnabled(env.Getenv); err != nil {
		return fmt.Errorf("%w: tracing: %w", errUsage, err)
	}

	var problems []string
	dctx, cancel := context.WithTimeout(ctx, checkTimeout)
	err = p.pg.Ping(dctx)
	if err == nil {
		// A key no row has: the answer is "not found" when the table is
		// there and readable.
		_, err = p.pg.Get(dctx, "extauthz-check-config", "-")
		if errors.Is(err, store.ErrNotFound) {
			err = nil
		} else if err != nil {
			err = fmt.Errorf("%w (has 'extauthz migrate' run, and may this role read upstream_tokens?)", err)
		}
	}
	cancel()
	if err != nil {
		problems = append(problems, fmt.Sprintf("database: %v", err))
	} else {
		fmt.Fprintln(env.Stdout, "database: reachable, schema present")
	}

	if cfg.Cache.TokenEntries() > 0 && cfg.Database.DirectURL != cfg.Database.URL {
		if err := pingDirect(ctx, cfg.Database.DirectURL); err != nil {
			problems = append(problems, fmt.Sprintf("database.direct_url: %v", err))
		} else {
			fmt.Fprintln(env.Stdout, "database.direct_url: reachable")
		}
	}
	// What serve refuses behind a pooler, the check refuses too (exit 2).
	if err := refusePooling(ctx, cfg, slog.New(slog.DiscardHandler)); err != nil {
		return err
	}

	if cfg.JWT.JWKSURL != "" {
		jctx, cancel := context.WithTimeout(ctx, checkTimeout)
		err := p.verifier.Prefetch(jctx)
		cancel()
		if err != nil {
			problems = append(problems, fmt.Sprintf("jwt.jwks_url: %v", err))
		} else {
			fmt.Fprintln(env.Stdout, "jwt.jwks_url: key set fetched")
		}
	} else {
		fmt.Fprintln(env.Stdout, "jwt.jwks_file: key set loaded")
	}
	if lines := p.providers.prefetch(ctx, cfg); len(lines) > 0 {
		problems = append(problems, lines...)
	} else if p.providers.discovery.Len() > 0 {
		fmt.Fprintln(env.Stdout, "providers: discovery documents fetched")
	}
	if len(problems) > 0 {
		return fmt.Errorf("configuration valid, but:\n  - %s", strings.Join(problems, "\n  - "))
	}
	fmt.Fprintln(env.Stdout, "configuration OK")
	return nil
}

// pingDirect checks that the token cache's listening connection can be
// made. Its errors, like the store's, never carry the URL's password.
func pingDirect(ctx context.Context, dsn string) error {
	direct, err := postgres.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer direct.Close()
	dctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	return direct.Ping(dctx)
}

// serveHooks let callers in this package (dev, tests) learn the listeners'
// addresses.
type serveHooks struct {
	// grpc receives the gRPC listener's address once it accepts
	// connections.
	grpc func(addr net.Addr)
	// metrics receives the metrics listener's address, when there is one,
	// before grpc is called.
	metrics func(addr net.Addr)
	// http receives the HTTP authorization listener's address, when there
	// is one, before grpc is called.
	http func(addr net.Addr)
	// admin receives the session API listener's address, when there is
	// one, before grpc is called.
	admin func(addr net.Addr)
	// connect receives the connect flow's listener address, when there
	// is one, before grpc is called.
	connect func(addr net.Addr)
}

// serve runs the gRPC server until ctx is done, then shuts down gracefully.
// When ready is not nil it receives the listening address once the server
// accepts connections.
func serve(ctx context.Context, cfg *config.Config, env Env, ready func(addr net.Addr)) error {
	return run(ctx, cfg, env, serveHooks{grpc: ready})
}

// run is serve with hooks.
//
// Shutdown, when ctx is done: the gRPC health service turns NOT_SERVING and
// /readyz 503 at once; the listener keeps serving for shutdown.drain_delay,
// so that Envoy's health checks and Kubernetes endpoints move traffic away;
// then it stops accepting and waits for the Checks in flight and the
// refreshes they started, all within shutdown.timeout (after which the
// remaining RPCs are cut); then the metrics listener and the database pool
// close. The HTTP authorization listener (listen.http), when there is one,
// follows the gRPC listener: it keeps answering during the drain delay, each
// answer closing its connection, then stops accepting and waits for its
// requests in flight within the same shutdown.timeout; so do the session API
// (listen.admin) and the connect flow (listen.connect).
func run(ctx context.Context, cfg *config.Config, env Env, hooks serveHooks) error {
	log := newLogger(cfg.Log, env)

	p, err := build(ctx, cfg)
	if err != nil {
		return err
	}
	pg := p.pg
	defer pg.Close()
	// The remaining usage errors before any background work starts.
	if err := refusePooling(ctx, cfg, log); err != nil {
		return err
	}
	certs := tlsCerts{}
	tlsOpts, err := grpcTLS(cfg.Listen.TLS, log, certs)
	if err != nil {
		return err
	}
	var httpTLSConfig *tls.Config
	if cfg.Listen.HTTP != "" {
		if httpTLSConfig, err = httpTLS(cfg.HTTP.TLS, log, certs); err != nil {
			return err
		}
	}
	var connectTLSConfig *tls.Config
	if cfg.Listen.Connect != "" {
		if connectTLSConfig, err = connectTLS(cfg.Connect.TLS, log, certs); err != nil {
			return err
		}
	}
	admin, err := adminAuth(ctx, cfg, log, certs)
	if err != nil {
		return err
	}
	tp, stopTracing, err := setupTracing(ctx, env, log)
	if err != nil {
		return err
	}
	defer func() {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = stopTracing(c)
		cancel()
	}()

	metrics := telemetry.NewMetrics(versionString(), slices.Collect(maps.Keys(cfg.Providers)))
	if err := certs.export(metrics); err != nil {
		return err
	}
	// Every store call is measured and traced right above the database.
	observedDB := observed.New(pg, observed.Options{Recorder: metrics, TracerProvider: tp})
	// Garbage collection of expired sessions (internal/cli/gc.go) works on
	// the database itself, measured as the store operation delete_expired.
	defer startGC(ctx, measuredGC{Collector: pg, obs: observedDB}, cfg.GC, log)()
	legacyRead, err := legacyReadObserver(metrics.Registry(), log, slices.Collect(maps.Keys(cfg.Providers)))
	if err != nil {
		return err
	}
	sealOpts := []encrypted.Option{encrypted.WithLegacyReadObserver(legacyRead)}
	if !cfg.Encryption.AcceptsV1() {
		sealOpts = append(sealOpts, encrypted.WithoutV1())
	}
	sealed := encrypted.New(observedDB, cfg.Keyring(), sealOpts...)
	st, stopCache, err := withTokenCache(ctx, cfg, sealed, log, metrics.Registry())
	if err != nil {
		return err
	}
	defer stopCache()

	if cfg.JWT.JWKSURL != "" {
		// Warm the key cache; a JWKS that is down now is fetched again on use.
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := p.verifier.Prefetch(pctx); err != nil {
			log.Warn("JWKS not reachable at start; Checks answer 503 until it is", "error", err)
		}
		cancel()
	}

	// The providers' discovery documents: one that is down now is fetched
	// again on use (see providerSet.prefetch).
	p.providers.logPrefetch(ctx, cfg, log)

	svcOpts := []upstreamtoken.Option{
		upstreamtoken.WithSkew(cfg.Refresh.Skew.D()),
		upstreamtoken.WithRefreshTimeout(cfg.Refresh.Timeout.D()),
		upstreamtoken.WithPersistTimeout(config.PersistTimeout),
		upstreamtoken.WithLockTimeout(cfg.Refresh.LockTimeout.D()),
		upstreamtoken.WithBackoff(cfg.Refresh.BackoffMin.D(), cfg.Refresh.BackoffMax.D()),
		upstreamtoken.WithIDTokenVerifier(p.idTokens),
		upstreamtoken.WithRefreshObserver(metrics.Refresh),
		upstreamtoken.WithTriggerObserver(metrics.RefreshTrigger),
		upstreamtoken.WithWaitObserver(metrics.CheckWaited),
		upstreamtoken.WithLogger(log),
	}
	if cfg.Refresh.Ahead.On() {
		svcOpts = append(svcOpts, upstreamtoken.WithRefreshAhead(cfg.Refresh.Ahead.Options()))
	}
	svc := upstreamtoken.NewInProcessService(st, telemetry.TraceRefresher(p.refresher, tp), svcOpts...)
	decisions := cfg.Authz()
	decisions.Observer = metrics
	var flow *connect.Handler
	if cfg.Listen.Connect != "" {
		// Denies carry connect links; tickets are redeemed against the
		// database itself. Linked tokens are stored through the same
		// store as the Checks read, so that the token cache sees them.
		tickets := connect.NewTickets(cfg.Keyring(), pg, cfg.Connect.TicketTTL.D())
		links, err := connect.NewLinks(cfg.Connect.PublicURL, tickets)
		if err != nil {
			return fmt.Errorf("%w: connect.public_url: %w", errUsage, err)
		}
		decisions.Connect = links
		if flow, err = connectHandler(cfg, tickets, st, p.refresher, log); err != nil {
			return err
		}
	}
	decider := authz.New(decisions, p.verifier, svc, log)

	lis, err := net.Listen("tcp", cfg.Listen.GRPC)
	if err != nil {
		return fmt.Errorf("listen.grpc: %w", err)
	}
	// The HTTP front decides as the gRPC one does; its own Decider only
	// labels its decisions' metrics with transport "http".
	var front fronts
	if cfg.Listen.HTTP != "" {
		httpDecisions := decisions
		httpDecisions.Observer = metrics.Transport("http")
		httpLis, err := listenHTTP(cfg, authz.New(httpDecisions, p.verifier, svc, log),
			httpfront.Options{RoutesOnly: cfg.RoutesOnly, Logger: log, Refusals: metrics, TracerProvider: tp}, httpTLSConfig, log)
		if err != nil {
			lis.Close()
			return err
		}
		front = append(front, httpLis)
	}
	// The session API writes through the same store as the Checks read,
	// so that the token cache sees its writes.
	if cfg.Listen.Admin != "" {
		adminLis, err := listenAdmin(cfg, admin, st, p.refresher, log)
		if err != nil {
			lis.Close()
			front.close()
			return err
		}
		front = append(front, adminLis)
	}
	if flow != nil {
		connectLis, err := listenConnect(cfg, flow, connectTLSConfig, log)
		if err != nil {
			lis.Close()
			front.close()
			return err
		}
		front = append(front, connectLis)
	}
	srv, health := server.New(decider, server.Options{Reflection: cfg.Listen.Reflection, Logger: log, ServerOptions: tlsOpts, TracerProvider: tp})

	// Readiness: started, configuration loaded, not draining. The store's
	// state is deliberately not part of it (see the README).
	var ready, draining atomic.Bool
	var metricsSrv *http.Server
	metricsErr := make(chan error, 1)
	if cfg.Listen.Metrics != config.MetricsOff {
		mlis, err := net.Listen("tcp", cfg.Listen.Metrics)
		if err != nil {
			lis.Close()
			front.close()
			return fmt.Errorf("listen.metrics: %w", err)
		}
		metricsSrv = &http.Server{Handler: opsHandler(metrics, &ready, &draining), ReadHeaderTimeout: 10 * time.Second}
		go func() { metricsErr <- metricsSrv.Serve(mlis) }()
		log.Info("serving metrics and health", "http", mlis.Addr().String(), "paths", "/metrics /healthz /readyz")
		if hooks.metrics != nil {
			hooks.metrics(mlis.Addr())
		}
	}

	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		observedDB.Watch(watchCtx, storePingInterval)
	}()
	defer func() { stopWatch(); <-watched }()

	frontErr := front.start()
	frontResults := 0
	for _, h := range front {
		switch h.name {
		case "http":
			log.Info("serving HTTP authorization", "http", h.lis.Addr().String(), "paths", httpfront.PathForwardAuth+" "+httpfront.PathEnvoy)
			if hooks.http != nil {
				hooks.http(h.lis.Addr())
			}
		case "admin":
			log.Info("serving the session API", "admin", h.lis.Addr().String(), "paths", "/v1/sessions/ /v1/openapi.json")
			if hooks.admin != nil {
				hooks.admin(h.lis.Addr())
			}
		case "connect":
			log.Info("serving the connect flow", "connect", h.lis.Addr().String(), "public_url", cfg.Connect.PublicURL)
			if hooks.connect != nil {
				hooks.connect(h.lis.Addr())
			}
		}
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	// Refresh ahead runs while the service serves; svc.Shutdown stops it
	// and waits for its refreshes.
	svc.StartRefreshAhead()
	ready.Store(true)
	log.Info("serving", "grpc", lis.Addr().String(), "version", versionString())
	if hooks.grpc != nil {
		hooks.grpc(lis.Addr())
	}

	var serveErr error
	select {
	case err := <-errc:
		serveErr = fmt.Errorf("grpc server: %w", err)
	case err := <-metricsErr:
		serveErr = fmt.Errorf("metrics server: %w", err)
	case err := <-frontErr:
		serveErr = err
		frontResults++
	case <-ctx.Done():
	}

	// Drain: tell Envoy and Kubernetes first, keep serving meanwhile
	// (over HTTP, each answer now closes its connection).
	health.Shutdown()
	draining.Store(true)
	front.drainAll()
	if serveErr == nil {
		log.Info("shutting down: health NOT_SERVING, draining", "drain_delay", cfg.Shutdown.DrainDelay.D())
		select {
		case <-time.After(cfg.Shutdown.DrainDelay.D()):
		case err := <-errc:
			serveErr = fmt.Errorf("grpc server: %w", err)
		}
	}

	// Stop accepting; let the Checks in flight and their refreshes finish.
	deadline, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Shutdown.Timeout.D())
	defer cancel()
	log.Info("shutting down: waiting for Checks in flight", "timeout", cfg.Shutdown.Timeout.D())
	frontsCut := make(chan []string, 1)
	go func() { frontsCut <- front.shutdownAll(deadline) }()
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-deadline.Done():
		log.Warn("shutting down: shutdown.timeout reached; cutting the remaining Checks")
		srv.Stop()
		<-stopped
	}
	if cut := <-frontsCut; len(cut) > 0 {
		log.Warn("shutting down: shutdown.timeout reached; cutting the remaining HTTP requests", "listeners", cut)
	}
	for ; frontResults < len(front); frontResults++ {
		if err := <-frontErr; err != nil && serveErr == nil {
			serveErr = err
		}
	}
	if err := svc.Shutdown(deadline); err != nil {
		log.Warn("shutting down: shutdown.timeout reached with refreshes or deferred writes in flight; their results may be lost")
	}
	if serveErr == nil {
		if err := <-errc; err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, grpc.ErrServerStopped) {
			serveErr = fmt.Errorf("grpc server: %w", err)
		}
	}
	if metricsSrv != nil {
		mctx, mcancel := context.WithTimeout(context.Background(), time.Second)
		_ = metricsSrv.Shutdown(mctx)
		mcancel()
	}
	log.Info("stopped")
	return serveErr
}

// opsHandler serves /metrics, /healthz (200 while the process runs) and
// /readyz (200 once serving and until draining, 503 otherwise).
func opsHandler(m *telemetry.Metrics, ready, draining *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		switch {
		case draining.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "draining")
		case !ready.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "starting")
		default:
			fmt.Fprintln(w, "ready")
		}
	})
	return mux
}
