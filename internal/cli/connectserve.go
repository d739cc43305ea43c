package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/connect"
	"github.com/extauthz/extauthz/internal/tlsreload"
	"github.com/extauthz/extauthz/oauthclient"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/upstreamtoken"
)

// codeExchanger is the connect flow's Exchanger over the OAuth client: the
// code exchange with each provider's own client authentication. The
// client classifies an unknown 4xx error code as passing (as for a
// refresh, where another request may succeed); for a code, which the flow
// cannot ask again, it is a refusal.
type codeExchanger struct {
	client *oauthclient.Client
}

// errExchangeRefused is how codeExchanger reports an unknown refusal: it
// does not wrap upstreamtoken.ErrUpstreamUnavailable.
var errExchangeRefused = errors.New("code exchange refused")

// Exchange implements connect.Exchanger.
func (e codeExchanger) Exchange(ctx context.Context, provider, code, redirectURI, verifier string) (store.Tokens, error) {
	tokens, err := e.client.Exchange(ctx, provider, code, redirectURI, verifier)
	if errors.Is(err, upstreamtoken.ErrUnknownRefusal) {
		// The message names the provider, status and code, never a secret.
		return store.Tokens{}, fmt.Errorf("%w: %s", errExchangeRefused, err.Error())
	}
	return tokens, err
}

// authorizationEndpoints is the connect flow's Endpoints over the OAuth
// client: the discovered authorization endpoint of a provider configured
// with an issuer only.
type authorizationEndpoints struct {
	client *oauthclient.Client
}

// AuthorizationEndpoint implements connect.Endpoints.
func (a authorizationEndpoints) AuthorizationEndpoint(ctx context.Context, provider string) (string, error) {
	ep, err := a.client.Endpoints(ctx, provider)
	if err != nil {
		return "", err
	}
	if ep.AuthorizationURL == "" {
		return "", fmt.Errorf("%w: provider %q: the discovery document names no authorization_endpoint (set authorization_url)",
			upstreamtoken.ErrProviderMisconfigured, provider)
	}
	return ep.AuthorizationURL, nil
}

// connectHTTPClient is the client with which the flow talks to the primary
// authorization server and to the OIDC providers' discovery documents and
// key sets: the system's roots together with every provider's ca_file.
// Its errors are usage errors.
func connectHTTPClient(cfg *config.Config) (*http.Client, error) {
	var roots *x509.CertPool
	for _, name := range slices.Sorted(maps.Keys(cfg.Providers)) {
		if f := cfg.Providers[name].CAFile; f != "" {
			var err error
			if roots, err = tlsreload.LoadRoots(f, roots); err != nil {
				return nil, fmt.Errorf("%w: providers.%s.ca_file: %w", errUsage, name, err)
			}
		}
	}
	return rootsClient(roots), nil
}

// connectHandler builds the connect flow of the configuration: tickets
// redeemed in the database (used), tokens stored through sessions (the
// service's sealed store, so that its token cache sees them), codes
// exchanged and endpoints discovered by client. Its errors are usage
// errors.
func connectHandler(cfg *config.Config, tickets *connect.Tickets, sessions connect.Sessions, client *oauthclient.Client, log *slog.Logger) (*connect.Handler, error) {
	httpClient, err := connectHTTPClient(cfg)
	if err != nil {
		return nil, err
	}
	l := cfg.Connect.Login
	providers := make(map[string]connect.Provider, len(cfg.Providers))
	for name, p := range cfg.Providers {
		providers[name] = connect.Provider{AuthorizationURL: p.AuthorizationURL, ClientID: p.ClientID, Scopes: p.Scopes,
			AuthParams: p.AuthorizationParams, Issuer: p.Issuer}
	}
	h, err := connect.NewHandler(connect.Options{
		PublicURL: cfg.Connect.PublicURL,
		Tickets:   tickets,
		Keys:      cfg.Keyring(),
		Login: connect.Login{Issuer: l.Issuer, ClientID: l.ClientID, ClientSecret: l.ClientSecret,
			SecretInBody: l.TokenEndpointAuth == config.LoginSecretPost, Scopes: l.Scopes},
		Providers:  providers,
		Exchanger:  codeExchanger{client: client},
		Endpoints:  authorizationEndpoints{client: client},
		Sessions:   sessions,
		ReturnURL:  cfg.Connect.ReturnURL,
		HTTPClient: httpClient,
		Logger:     log.With("component", "connect"),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: connect: %w", errUsage, err)
	}
	return h, nil
}

// listenConnect listens on listen.connect (TLS when tlsConfig is not nil)
// and returns the server of the connect flow h, not yet serving.
func listenConnect(cfg *config.Config, h http.Handler, tlsConfig *tls.Config, log *slog.Logger) (*httpListener, error) {
	lis, err := net.Listen("tcp", cfg.Listen.Connect)
	if err != nil {
		return nil, fmt.Errorf("listen.connect: %w", err)
	}
	if tlsConfig != nil {
		lis = tls.NewListener(lis, tlsConfig)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// The callbacks wait on the servers' token endpoints.
		WriteTimeout: 2 * time.Minute,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(log.With("component", "connect").Handler(), slog.LevelWarn),
	}
	return &httpListener{name: "connect", srv: srv, lis: lis}, nil
}

// connectTLS returns the TLS configuration of listen.connect from
// connect.tls, or nil (plaintext, behind the public host's proxy).
func connectTLS(cfg config.TLS, log *slog.Logger, certs tlsCerts) (*tls.Config, error) {
	return listenerTLS("connect", "connect.tls", "connect", cfg, log, certs)
}
