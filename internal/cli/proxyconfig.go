package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/internal/proxyconfig"
)

// proxyKinds are the proxies proxy-config names, with whether it writes
// their configuration yet.
var proxyKinds = map[string]bool{"nginx": true, "caddy": true, "traefik": true, "envoy-http": false}

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
	supported, known := proxyKinds[kind]
	switch {
	case !known:
		return usageErr("unknown proxy %q: nginx, caddy, traefik or envoy-http", kind)
	case !supported:
		return usageErr("%s: not supported yet (nginx, caddy and traefik are)", kind)
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

const proxyConfigUsage = `Usage: extauthz proxy-config nginx|caddy|traefik --config FILE [--backend URL]

Prints the proxy configuration derived from the configured providers, their
headers and listen.http (which must be set): for nginx two locations, for
caddy a route for a site block, for traefik a dynamic configuration for its
file provider (listen.http must then be a host:port: Traefik cannot dial a
Unix socket). --backend names the protected upstream. envoy-http is not
supported yet.
`
