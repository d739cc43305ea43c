package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/idtoken"
	"github.com/extauthz/extauthz/jwtauth"
	"github.com/extauthz/extauthz/refresh"
	"github.com/extauthz/extauthz/server"
	"github.com/extauthz/extauthz/store/encrypted"
	"github.com/extauthz/extauthz/store/postgres"
	"github.com/extauthz/extauthz/upstreamtoken"
)

func serveCmd(ctx context.Context, args []string, env Env) error {
	fs := newFlags("serve", env)
	path := fs.String("config", "", "configuration file (YAML)")
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

// serve runs the gRPC server until ctx is done, then stops gracefully. When
// ready is not nil it receives the listening address once the server
// accepts connections.
func serve(ctx context.Context, cfg *config.Config, env Env, ready func(addr net.Addr)) error {
	log := newLogger(cfg.Log, env)

	pg, err := postgres.New(ctx, cfg.Database.URL)
	if err != nil {
		return fmt.Errorf("%w: database.url: %w", errUsage, err)
	}
	defer pg.Close()
	st := encrypted.New(pg, cfg.Keyring())

	verifier, err := jwtauth.New(ctx, jwtauth.Config{
		Issuer:    cfg.JWT.Issuer,
		Audiences: cfg.JWT.Audiences,
		JWKSURL:   cfg.JWT.JWKSURL,
		JWKSFile:  cfg.JWT.JWKSFile,
		Leeway:    cfg.JWT.Leeway.D(),
	})
	if err != nil {
		return fmt.Errorf("%w: jwt: %w", errUsage, err)
	}
	if cfg.JWT.JWKSURL != "" {
		// Warm the key cache; a JWKS that is down now is fetched again on use.
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := verifier.Prefetch(pctx); err != nil {
			log.Warn("JWKS not reachable at start; Checks answer 503 until it is", "error", err)
		}
		cancel()
	}

	oidcProviders := map[string]idtoken.Provider{}
	providers := make(map[string]refresh.Provider, len(cfg.Providers))
	headers := make(map[string]authz.Provider, len(cfg.Providers))
	for name, p := range cfg.Providers {
		style, err := refresh.ParseAuthStyle(p.AuthStyle)
		if err != nil {
			return fmt.Errorf("%w: providers.%s.auth_style: %w", errUsage, name, err)
		}
		providers[name] = refresh.Provider{TokenURL: p.TokenURL, ClientID: p.ClientID, ClientSecret: p.ClientSecret, AuthStyle: style, Scopes: p.Scopes}
		headers[name] = authz.Provider{Header: p.Header, IDTokenHeader: p.IDTokenHeader}
		if p.Issuer != "" {
			oidcProviders[name] = idtoken.Provider{Issuer: p.Issuer, ClientID: p.ClientID}
		}
	}
	idTokens, err := idtoken.New(oidcProviders)
	if err != nil {
		return fmt.Errorf("%w: providers: %w", errUsage, err)
	}
	// No client time-out: each refresh runs under refresh.timeout.
	refresher, err := refresh.New(providers)
	if err != nil {
		return fmt.Errorf("%w: providers: %w", errUsage, err)
	}

	svc := upstreamtoken.NewInProcessService(st, refresher,
		upstreamtoken.WithSkew(cfg.Refresh.Skew.D()),
		upstreamtoken.WithRefreshTimeout(cfg.Refresh.Timeout.D()),
		upstreamtoken.WithPersistTimeout(config.PersistTimeout),
		upstreamtoken.WithLockTimeout(cfg.Refresh.LockTimeout.D()),
		upstreamtoken.WithBackoff(cfg.Refresh.BackoffMin.D(), cfg.Refresh.BackoffMax.D()),
		upstreamtoken.WithIDTokenVerifier(idTokens),
		upstreamtoken.WithLogger(log))
	decider := authz.New(authz.Config{
		Providers:        headers,
		DefaultProviders: cfg.DefaultProviders,
		Realm:            cfg.Deny.Realm,
		ResourceMetadata: cfg.Deny.ResourceMetadata,
	}, verifier, svc, log)

	tlsOpts, err := grpcTLS(cfg.Listen.TLS, log)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.Listen.GRPC)
	if err != nil {
		return fmt.Errorf("listen.grpc: %w", err)
	}
	srv, health := server.New(decider, server.Options{Reflection: cfg.Listen.Reflection, Logger: log, ServerOptions: tlsOpts})
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	log.Info("serving", "grpc", lis.Addr().String(), "version", versionString())
	if ready != nil {
		ready(lis.Addr())
	}

	select {
	case err := <-errc:
		return fmt.Errorf("grpc server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	health.Shutdown()
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(cfg.Refresh.Timeout.D() + config.PersistTimeout + time.Second):
		srv.Stop()
	}
	if err := <-errc; err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("grpc server: %w", err)
	}
	return nil
}
