package authz

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/extauthz/extauthz/internal/oauthscope"
	"github.com/extauthz/extauthz/internal/setting"
)

// headerName is an RFC 9110 token, lower-case.
var headerName = regexp.MustCompile(`^[a-z0-9!#$%&'*+.^_` + "`" + `|~-]+$`)

// reservedHeaders may not receive upstream tokens: they are pseudo-headers or
// hop-by-hop headers that proxies rewrite.
var reservedHeaders = map[string]bool{
	"host": true, "connection": true, "content-length": true, "transfer-encoding": true,
	"te": true, "upgrade": true, "keep-alive": true, "proxy-connection": true,
	"cookie": true, "set-cookie": true, "content-type": true, "proxy-authorization": true,
	"forwarded": true, "via": true,
}

// routeHost is a DNS name (letters, digits, '-', '_', dots between labels)
// after lower-casing; IP addresses are checked apart.
var routeHost = regexp.MustCompile(`^[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?$`)

// Validate reports every problem of p, joined, each a *setting.Error named
// by the configuration key of its field: Header and IDTokenHeader, when set,
// must be lower-case RFC 9110 header names that may carry a token (not a
// hop-by-hop, framing, cookie or proxy header), and must differ.
func (p Provider) Validate() error {
	var errs []error
	for _, h := range []struct{ key, name string }{{"header", p.Header}, {"id_token_header", p.IDTokenHeader}} {
		switch {
		case h.name == "":
		case !headerName.MatchString(h.name):
			errs = append(errs, setting.Errorf(h.key, ": %q is not a valid header name", h.name))
		case reservedHeaders[h.name]:
			errs = append(errs, setting.Errorf(h.key, ": %q cannot carry a token", h.name))
		case strings.HasPrefix(h.name, "x-envoy-") || strings.HasPrefix(h.name, "x-forwarded-"):
			errs = append(errs, setting.Errorf(h.key, ": %q is a proxy header and cannot carry a token", h.name))
		}
	}
	if p.header() == p.IDTokenHeader {
		errs = append(errs, setting.Errorf("", "header and id_token_header must differ"))
	}
	return errors.Join(errs...)
}

// Validate reports every problem of c, joined, each a *setting.Error named
// by the configuration key of its field (providers.NAME.header,
// default_providers, routes[I].path_prefix, default_route.required_scopes,
// ...): each provider's headers (Provider.Validate); at least one default
// provider; on every route, the default route and the default providers,
// providers that are all defined and of which no two write one header,
// required scopes that are RFC 6749 scope-tokens, and a deny style that is
// empty or DenyStyleMCP; every route's host (a
// host name or IP address, without port or wildcard) and path prefix
// (starting with "/", without query or fragment, in the normal form
// CleanPath gives); and no two routes alike. A Decider built from a Config
// with problems refuses, with ReasonRouteMisconfigured, the Checks that use
// a route it finds wrong.
func (c Config) Validate() error {
	var errs []error
	names := make([]string, 0, len(c.Providers))
	for name := range c.Providers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		errs = append(errs, setting.Within("providers."+name, c.Providers[name].Validate()))
	}
	if len(c.DefaultProviders) == 0 {
		errs = append(errs, setting.Errorf("default_providers", " needs at least one provider"))
	}
	_, err := c.checkProviders("default_providers", c.DefaultProviders)
	errs = append(errs, err)
	seen := map[[3]string]int{}
	for i, r := range c.Routes {
		at := fmt.Sprintf("routes[%d]", i)
		host, err := checkRouteHost(r.Host)
		errs = append(errs, setting.Within(at, err), setting.Within(at, checkPathPrefix(r.PathPrefix)))
		// Two case-insensitive prefixes that differ only in case are the
		// same route; a case-sensitive one is distinct from both.
		key := [3]string{host, r.PathPrefix, "case_sensitive"}
		if !r.CaseSensitive {
			key[1], key[2] = strings.ToLower(r.PathPrefix), ""
		}
		if j, dup := seen[key]; dup {
			errs = append(errs, setting.Errorf(at, ": same host and path_prefix as routes[%d]", j))
		} else {
			seen[key] = i
		}
		_, err = c.checkProviders(at+".providers", r.Providers)
		errs = append(errs, err, oauthscope.Check(at+".required_scopes", r.RequiredScopes), denyStyleProblem(at, r.DenyStyle))
	}
	_, err = c.checkProviders("default_route.providers", c.DefaultRoute.Providers)
	errs = append(errs, err, oauthscope.Check("default_route.required_scopes", c.DefaultRoute.RequiredScopes),
		denyStyleProblem("default_route", c.DefaultRoute.DenyStyle))
	return errors.Join(errs...)
}

// checkRouteHost checks a route's host and returns it as routes are compared
// (lower-case, without brackets or trailing dot).
func checkRouteHost(raw string) (string, error) {
	h := strings.ToLower(raw)
	switch {
	case h == "":
		return "", nil
	case strings.Contains(h, "*"):
		return strings.TrimSuffix(h, "."), setting.Errorf("host", ": %q: wildcards are not supported (leave host empty to match any host)", raw)
	case net.ParseIP(strings.Trim(h, "[]")) != nil:
		return strings.Trim(h, "[]"), nil
	case routeHost.MatchString(h):
		return strings.TrimSuffix(h, "."), nil
	}
	if _, _, err := net.SplitHostPort(h); err == nil {
		return strings.TrimSuffix(h, "."), setting.Errorf("host", ": %q: give the host without a port (the request's port is ignored)", raw)
	}
	return strings.TrimSuffix(h, "."), setting.Errorf("host", ": %q is not a host name or IP address", raw)
}

// checkPathPrefix checks a route's path prefix.
func checkPathPrefix(p string) error {
	switch clean := CleanPath(p); {
	case p == "":
		return setting.Errorf("path_prefix", ` is required (use "/" for every path)`)
	case !strings.HasPrefix(p, "/"):
		return setting.Errorf("path_prefix", `: %q must start with "/"`, p)
	case strings.ContainsAny(p, "?#"):
		return setting.Errorf("path_prefix", ": %q must not contain a query or fragment (they are ignored when matching)", p)
	case clean != p:
		return setting.Errorf("path_prefix", ": %q is not in normal form (paths are matched with unreserved characters decoded and dot-segments removed): write %q", p, clean)
	}
	return nil
}

// checkProviders returns a route's providers without repeats and, joined,
// every problem of the list, named by key: a provider that is not
// configured, two providers that would write the same header.
func (c *Config) checkProviders(key string, names []string) ([]string, error) {
	out := make([]string, 0, len(names))
	writer := make(map[string]string, 2*len(names))
	var errs []error
	for _, n := range names {
		p, ok := c.Providers[n]
		if !ok {
			errs = append(errs, setting.Errorf(key, ": %q is not defined under providers", n))
			continue
		}
		if slices.Contains(out, n) {
			continue
		}
		for _, h := range []string{p.header(), p.IDTokenHeader} {
			if h == "" {
				continue
			}
			if other, taken := writer[h]; taken {
				errs = append(errs, setting.Errorf(key, ": %q and %q both write header %q", other, n, h))
				continue
			}
			writer[h] = n
		}
		out = append(out, n)
	}
	return out, errors.Join(errs...)
}

// denyStyleProblem is the problem of the deny style of the route at, if any.
func denyStyleProblem(at, style string) error {
	if err := checkDenyStyle(style); err != nil {
		return setting.Errorf(at+".deny_style", ": %v", err)
	}
	return nil
}
