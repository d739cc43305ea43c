package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/internal/proxyconfig"
)

// proxyKinds are the proxies whose configuration proxy-config writes.
var proxyKinds = []string{"nginx", "caddy", "traefik", "envoy-http"}

// proxyConfigCmd is "proxy-config KIND --config FILE [--backend URL]": it
// prints the proxy configuration derived from the configured providers and
// listen.http.
func proxyConfigCmd(_ context.Context, args []string, env Env) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fmt.Fprint(env.Stdout, proxyConfigUsage)
			return nil
		}
		return usageErr("name the proxy first: nginx, caddy, traefik or envoy-http\n%s", proxyConfigUsage)
	}
	kind := args[0]
	if !slices.Contains(proxyKinds, kind) {
		return usageErr("unknown proxy %q: nginx, caddy, traefik or envoy-http", kind)
	}
	fs := newFlags("proxy-config "+kind, env)
	path := fs.String("config", "", "configuration file (YAML)")
	backend := fs.String("backend", "", "the protected upstream, e.g. http://backend (default: a placeholder comment)")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if *path == "" {
		return usageErr("--config FILE is required")
	}
	if *backend != "" {
		if err := proxyconfig.CheckBackend(*backend); err != nil {
			return usageErr("--backend: %v", err)
		}
	}
	cfg, err := config.Load(*path, env.Getenv)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", errUsage, *path, err)
	}
	if cfg.Listen.HTTP == "" {
		return usageErr("%s: listen.http is not set: the proxy needs extauthz's HTTP authorization listener", *path)
	}
	network, addr := cfg.Listen.HTTPAddr()
	tls := cfg.HTTP.TLS.Cert != ""
	headers := cfg.Authz().HeaderNames()
	// Each proxy's generator; err, when set, is about listen.http.
	var gen interface{ Config() (string, error) }
	switch kind {
	case "nginx":
		var auth string
		auth, err = proxyconfig.AuthURL(network, addr, tls)
		gen = proxyconfig.Nginx{Headers: headers, Auth: auth, Backend: *backend}
	case "caddy":
		_, err = proxyconfig.CaddyUpstream(network, addr, tls)
		gen = proxyconfig.Caddy{Headers: headers, Network: network, Addr: addr, TLS: tls, Backend: *backend}
	case "traefik":
		_, err = proxyconfig.TraefikAddress(network, addr, tls)
		gen = proxyconfig.Traefik{Headers: headers, Network: network, Addr: addr, TLS: tls, Backend: *backend}
	case "envoy-http":
		// Config checks listen.http itself.
		if *backend != "" {
			return usageErr("--backend: not used by envoy-http (the route's cluster is yours)")
		}
		gen = proxyconfig.EnvoyHTTP{Headers: headers, Network: network, Addr: addr,
			TLS: tls, ClientCert: cfg.HTTP.TLS.ClientCA != "", Timeout: envoyTimeout(cfg.Refresh.Timeout.D())}
	}
	if err != nil {
		return usageErr("%s: listen.http: %v", *path, err)
	}
	out, err := gen.Config()
	if err != nil {
		return usageErr("%s: %v", *path, err)
	}
	_, err = fmt.Fprint(env.Stdout, out)
	return err
}

// envoyTimeout is the ext_authz time-out for a refresh.timeout: a Check
// that refreshes waits for the store and the lease (milliseconds), the
// provider (at most refresh.timeout) and the write; two seconds cover the
// rest, as in envoy/envoy.yaml.
func envoyTimeout(refresh time.Duration) time.Duration { return refresh + 2*time.Second }

const proxyConfigUsage = `Usage: extauthz proxy-config nginx|caddy|traefik|envoy-http --config FILE [--backend URL]

Prints the proxy configuration derived from the configured providers, their
headers and listen.http (which must be set): for nginx two locations, for
caddy a route for a site block, for traefik a dynamic configuration for its
file provider (listen.http must then be a host:port: Traefik cannot dial a
Unix socket), for envoy-http the ext_authz filter (http_service) and its
cluster. --backend names the protected upstream (not for envoy-http: the
route's cluster is yours).
`
