package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/extauthz/extauthz/adminapi"
	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/internal/tlsreload"
	"github.com/extauthz/extauthz/jwtauth"
	"github.com/extauthz/extauthz/oauthclient"
	"github.com/extauthz/extauthz/store"
)

// adminSetup is what the session API needs from the configuration, built
// before anything listens so that a bad file or key set is a usage error.
type adminSetup struct {
	auth adminapi.Auth
	tls  *tls.Config // nil: plaintext (loopback only, config checks)
}

// adminAuth builds the session API's authentication and TLS, or returns
// nil without listen.admin. The TLS reloader goes into certs.
func adminAuth(ctx context.Context, cfg *config.Config, log *slog.Logger, certs tlsCerts) (*adminSetup, error) {
	if cfg.Listen.Admin == "" {
		return nil, nil
	}
	a := cfg.Admin
	s := &adminSetup{auth: adminapi.Auth{Scope: a.Scope, AllowedClients: a.AllowedClients}}
	if a.Audience != "" {
		v, err := jwtauth.New(ctx, cfg.AdminJWT())
		if err != nil {
			return nil, fmt.Errorf("%w: admin: %w", errUsage, err)
		}
		s.auth.Tokens = v
	}
	if len(a.ClientIdentities) > 0 {
		ids, err := tlsreload.NewIdentities(a.ClientIdentities)
		if err != nil {
			return nil, fmt.Errorf("%w: admin.client_identities: %w", errUsage, err)
		}
		s.auth.Certificates = ids
	}
	if a.TLS.Cert != "" {
		r, err := tlsreload.New(tlsreload.Files{Cert: a.TLS.Cert, Key: a.TLS.Key, ClientCA: a.TLS.ClientCA},
			tlsreload.Options{Logger: log.With("component", "tls", "listener", "admin"), ClientIdentities: a.TLS.ClientIdentities,
				// Callers with a bearer token need no certificate.
				ClientCertOptional: a.Audience != ""})
		if err != nil {
			return nil, fmt.Errorf("%w: admin.tls: %w", errUsage, err)
		}
		certs["admin"] = r
		s.tls = r.TLSConfig()
	}
	return s, nil
}

// revoker revokes at the providers (RFC 7009) for the session API, all of
// a request's revocations within timeout (refresh.timeout), as tokens
// delete --revoke does.
type revoker struct {
	client  oauthclient.Revoker
	timeout time.Duration
}

// Revoke implements adminapi.Revoker.
func (r revoker) Revoke(ctx context.Context, rows []store.Row) []adminapi.Revocation {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var out []adminapi.Revocation
	for _, rv := range oauthclient.RevokeSession(ctx, r.client, rows) {
		out = append(out, adminapi.Revocation{Provider: rv.Provider, Revoked: rv.Revoked, TokenType: string(rv.TokenType), Error: rv.Kind})
	}
	return out
}

// listenAdmin listens on listen.admin and returns the session API's server
// over st, revoking with client, not yet serving.
func listenAdmin(cfg *config.Config, s *adminSetup, st adminapi.Store, client oauthclient.Revoker, log *slog.Logger) (*httpListener, error) {
	alog := log.With("component", "admin")
	h, err := adminapi.New(adminapi.Options{
		Store:     st,
		Auth:      s.auth,
		Providers: slices.Sorted(maps.Keys(cfg.Providers)),
		Revoker:   revoker{client: client, timeout: cfg.Refresh.Timeout.D()},
		Logger:    alog,
	})
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", cfg.Listen.Admin)
	if err != nil {
		return nil, fmt.Errorf("listen.admin: %w", err)
	}
	if s.tls != nil {
		lis = tls.NewListener(lis, s.tls)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(alog.Handler(), slog.LevelWarn),
	}
	return &httpListener{name: "admin", srv: srv, lis: lis}, nil
}
