// Package proxyconfig writes the reverse-proxy configuration that puts a
// proxy in front of extauthz's HTTP authorization listener without letting
// a client smuggle its own credential headers past it.
package proxyconfig

import (
	"fmt"
	"net"
	"net/textproto"
	"net/url"
	"regexp"
	"strings"
)

// AuthLocation is the internal nginx location that forwards the auth
// subrequest to extauthz.
const AuthLocation = "/_extauthz"

// Nginx is what an nginx configuration is derived from.
type Nginx struct {
	// Headers are every header name the configuration could set on an
	// allowed answer, lower-case (authz.Config.HeaderNames).
	Headers []string
	// Auth is the proxy_pass target of the auth location: extauthz's
	// listen.http with the /auth path (see AuthURL).
	Auth string
	// Backend, when set, is the protected location's proxy_pass target;
	// otherwise a placeholder comment stands in for it.
	Backend string
}

// varName is the part of an nginx variable name that a header name maps to:
// nginx reads a response header "X-Foo-Bar" as $upstream_http_x_foo_bar,
// and a variable name holds only letters, digits and '_'.
var varName = regexp.MustCompile(`^[a-z0-9-]+$`)

// NginxVar returns the variable-name form of a lower-case header name:
// '-' becomes '_'. A header whose name holds anything else (an '_', a '.',
// ...) cannot be read through an nginx variable unambiguously: that is an
// error.
func NginxVar(header string) (string, error) {
	if !varName.MatchString(header) {
		return "", fmt.Errorf("header %q cannot be read by nginx: use only lower-case letters, digits and '-' in header names", header)
	}
	return strings.ReplaceAll(header, "-", "_"), nil
}

// AuthURL returns the nginx proxy_pass target of listen.http (network
// "tcp" or "unix" and address, as config.Listen.HTTPAddr gives them) with
// the /auth path, over https when tls is set. A TCP address without a host,
// or with an unspecified one (0.0.0.0, ::), is reached on loopback.
func AuthURL(network, addr string, tls bool) (string, error) {
	scheme := "http"
	if tls {
		scheme = "https"
	}
	if network == "unix" {
		if !strings.HasPrefix(addr, "/") || strings.ContainsAny(addr, " \t\r\n;{}\"'#\\:") {
			return "", fmt.Errorf("unix socket path %q cannot be written into an nginx configuration", addr)
		}
		return scheme + "://unix:" + addr + ":/auth", nil
	}
	hostport, err := dialAddr(addr)
	if err != nil {
		return "", err
	}
	return (&url.URL{Scheme: scheme, Host: hostport, Path: "/auth"}).String(), nil
}

// dialAddr returns the host:port a proxy dials to reach the TCP address
// addr of listen.http: an address without a host, or with an unspecified
// one (0.0.0.0, ::), is reached on loopback. A port of 0 and a host that
// cannot be written into a proxy configuration are errors.
func dialAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if port == "0" {
		return "", fmt.Errorf("port 0 is chosen when extauthz starts: give listen.http a fixed port")
	}
	switch ip := net.ParseIP(host); {
	case host == "" || ip != nil && ip.To4() != nil && ip.IsUnspecified():
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		host = "::1"
	}
	hostport := net.JoinHostPort(host, port)
	if strings.ContainsAny(hostport, " \t\r\n;{}\"'#\\") {
		return "", fmt.Errorf("listen.http host %q cannot be written into a proxy configuration", host)
	}
	return hostport, nil
}

// CheckBackend refuses a backend that is not an http(s) URL or that would
// break out of its proxy_pass directive.
func CheckBackend(b string) error {
	u, err := url.Parse(b)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("backend %q: want an http:// or https:// URL (e.g. http://backend or http://127.0.0.1:8080)", b)
	}
	if strings.ContainsAny(b, " \t\r\n;{}\"'#\\$") {
		return fmt.Errorf("backend %q: must not contain spaces, quotes or any of ; { } # \\ $", b)
	}
	return nil
}

// Config returns the nginx configuration: the auth location and a
// protected location "/", both to be placed in a server block.
func (n Nginx) Config() (string, error) {
	type header struct{ name, v string }
	var headers []header
	seen := map[string]string{}
	for _, h := range n.Headers {
		v, err := NginxVar(h)
		if err != nil {
			return "", err
		}
		if v == "link" {
			return "", fmt.Errorf("header %q is where a deny's connect link goes: a provider cannot write it", h)
		}
		if other, dup := seen[v]; dup {
			if other == h {
				continue
			}
			return "", fmt.Errorf("headers %q and %q are the same nginx variable", other, h)
		}
		seen[v] = h
		headers = append(headers, header{textproto.CanonicalMIMEHeaderKey(h), v})
	}
	if len(headers) == 0 {
		return "", fmt.Errorf("no header names: authorization at least is expected")
	}
	if n.Auth == "" {
		return "", fmt.Errorf("no auth target")
	}
	if n.Backend != "" {
		if err := CheckBackend(n.Backend); err != nil {
			return "", err
		}
	}

	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p(`# nginx auth_request in front of extauthz, generated by "extauthz proxy-config nginx".`)
	p(`# Place both locations in a server block; regenerate whenever providers or their`)
	p(`# headers change: every header the configuration could set must be listed.`)
	p(``)
	p(`location = %s {`, AuthLocation)
	p(`    internal;`)
	p(`    proxy_pass %s;`, n.Auth)
	if strings.HasPrefix(n.Auth, "https:") {
		p(`    # http.tls is set: name the CA (and, with client_ca, nginx's certificate):`)
		p(`    #   proxy_ssl_verify on; proxy_ssl_trusted_certificate ...;`)
		p(`    #   proxy_ssl_certificate ...; proxy_ssl_certificate_key ...;`)
	}
	p(`    proxy_pass_request_body off;`)
	p(`    proxy_set_header Content-Length "";`)
	p(`    proxy_set_header X-Original-URI $request_uri;`)
	p(`    proxy_set_header X-Forwarded-Host $host;`)
	p(`    # Only X-Original-URI names the path.`)
	p(`    proxy_set_header X-Forwarded-Uri "";`)
	p(`    # A client's copies are removed: routes decide. For a location that names its`)
	p(`    # own providers or scopes, copy this location under another name with fixed`)
	p(`    # values, e.g. proxy_set_header X-Extauthz-Providers "gh,google";`)
	p(`    # and point that location's auth_request at the copy.`)
	p(`    proxy_set_header X-Extauthz-Providers "";`)
	p(`    proxy_set_header X-Extauthz-Required-Scopes "";`)
	p(`}`)
	p(``)
	p(`location / {`)
	p(`    auth_request %s;`, AuthLocation)
	p(`    # Every header the configuration could set is taken from the auth answer;`)
	p(`    # when the answer lacks one its variable is empty and nginx sends no header,`)
	p(`    # so a client's copy never reaches the backend.`)
	for _, h := range headers {
		p(`    auth_request_set $extauthz_%s $upstream_http_%s;`, h.v, h.v)
	}
	p(`    # A deny's connect link (listen.connect) reaches the client with the 401.`)
	p(`    auth_request_set $extauthz_link $upstream_http_link;`)
	p(`    add_header Link $extauthz_link always;`)
	p(`    # A location that sets any proxy_set_header or add_header inherits none`)
	p(`    # from the server block: repeat yours here.`)
	for _, h := range headers {
		p(`    proxy_set_header %s $extauthz_%s;`, h.name, h.v)
	}
	p(`    proxy_set_header X-Extauthz-Providers "";`)
	p(`    proxy_set_header X-Extauthz-Required-Scopes "";`)
	if n.Backend != "" {
		p(`    proxy_pass %s;`, n.Backend)
	} else {
		p(`    # proxy_pass http://BACKEND;  (your upstream: extauthz proxy-config nginx --backend URL)`)
	}
	p(`}`)
	return b.String(), nil
}
