package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"time"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/discovery"
	"github.com/extauthz/extauthz/idtoken"
	"github.com/extauthz/extauthz/internal/tlsreload"
	"github.com/extauthz/extauthz/oauthclient"
)

// discoveryTimeout bounds the fetch of the providers' discovery documents
// when serve starts.
const discoveryTimeout = 10 * time.Second

// providerSet is what talks to the configured providers: one discovery
// cache, shared by the OAuth client and the ID-token verifier so that each
// document is fetched once, and the HTTP client of each provider that has a
// ca_file (for its discovery document and key set; the OAuth client builds
// its own transport with the same roots and the client certificate).
type providerSet struct {
	discovery *discovery.Cache
	clients   map[string]*http.Client
}

// rootsClient is the HTTP client for talking to providers: the default
// transport trusting roots (the system's when roots is nil), TLS 1.2 or
// later, and discovery's time-out.
func rootsClient(roots *x509.CertPool) *http.Client {
	c := &http.Client{Timeout: discovery.DefaultHTTPTimeout}
	if roots != nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		c.Transport = t
	}
	return c
}

// newProviderSet builds the discovery cache of the providers with an issuer.
// Its errors (a ca_file that no longer loads) are usage errors.
func newProviderSet(cfg *config.Config) (*providerSet, error) {
	s := &providerSet{clients: map[string]*http.Client{}}
	sources := map[string]discovery.Source{}
	for name, p := range cfg.Providers {
		if p.CAFile != "" {
			roots, err := tlsreload.LoadRoots(p.CAFile, nil)
			if err != nil {
				return nil, fmt.Errorf("%w: providers.%s.ca_file: %w", errUsage, name, err)
			}
			s.clients[name] = rootsClient(roots)
		}
		if p.Issuer != "" {
			sources[name] = discovery.Source{Issuer: p.Issuer, HTTPClient: s.clients[name]}
		}
	}
	s.discovery = discovery.New(sources, discovery.Options{AllowInsecureHTTP: cfg.AllowInsecureHTTP})
	return s, nil
}

// oauthClient is the OAuth client of the configured providers, which
// refreshes, exchanges and revokes their tokens; its errors are usage
// errors.
func (s *providerSet) oauthClient(cfg *config.Config) (*oauthclient.Client, error) {
	providers := make(map[string]oauthclient.Provider, len(cfg.Providers))
	for name, p := range cfg.Providers {
		providers[name] = p.OAuthClient()
	}
	c, err := oauthclient.New(providers, oauthclient.WithDiscovery(s.discovery))
	if err != nil {
		return nil, fmt.Errorf("%w: providers: %w", errUsage, err)
	}
	return c, nil
}

// idTokens is the verifier of the providers' refreshed ID tokens; its
// errors are usage errors.
func (s *providerSet) idTokens(cfg *config.Config) (*idtoken.Verifier, error) {
	providers := make(map[string]idtoken.Provider, len(cfg.Providers))
	for name, p := range cfg.Providers {
		ip := p.IDToken()
		ip.HTTPClient = s.clients[name]
		providers[name] = ip
	}
	v, err := idtoken.New(providers, idtoken.WithDiscovery(s.discovery))
	if err != nil {
		return nil, fmt.Errorf("%w: providers: %w", errUsage, err)
	}
	return v, nil
}

// prefetch fetches every discovery document within discoveryTimeout and
// returns one line per failure, sorted, naming what the failure means for
// the provider. serve starts all the same: a provider whose document is
// missing is looked up again on use (at most every 5 s), and until then
// its refreshes, code exchanges and revocations that need a discovered
// endpoint fail as the provider being unavailable (503), as do
// verifications of its ID tokens.
func (s *providerSet) prefetch(ctx context.Context, cfg *config.Config) []string {
	ctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	defer cancel()
	var out []string
	for name, err := range s.discovery.Prefetch(ctx) {
		what := "ID tokens cannot be verified"
		if cfg.Providers[name].TokenURL == "" {
			what = "tokens cannot be refreshed (no token_url set)"
		}
		out = append(out, fmt.Sprintf("providers.%s.issuer: discovery failed (%v); until it succeeds %s", name, err, what))
	}
	sort.Strings(out)
	return out
}

// logPrefetch runs prefetch and logs each failure as a warning.
func (s *providerSet) logPrefetch(ctx context.Context, cfg *config.Config, log *slog.Logger) {
	for _, line := range s.prefetch(ctx, cfg) {
		log.Warn("OIDC discovery not reachable at start; retried on use, answering 503 meanwhile", "problem", line)
	}
}
