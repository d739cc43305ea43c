package config

import (
	"fmt"
	"github.com/extauthz/extauthz/internal/setting"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/connect"
)

// validateConnect checks listen.connect, the connect section and the routes'
// deny_style, which needs connect.
func (c *Config) validateConnect() []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if c.Listen.Connect == "" {
		if c.Connect.PublicURL != "" || c.Connect.TicketTTL.line != 0 || c.Connect.Login.ClientID != "" ||
			c.Connect.ReturnURL != "" || c.Connect.TLS.Cert != "" {
			add("connect is set but listen.connect is not: set listen.connect to offer connect links")
		}
		for i, r := range c.Routes {
			if r.DenyStyle == authz.DenyStyleMCP {
				add("routes[%d].deny_style: mcp needs listen.connect and connect.public_url (the deny carries the connect link)", i)
			}
		}
		if c.DefaultRoute.DenyStyle == authz.DenyStyleMCP {
			add("default_route.deny_style: mcp needs listen.connect and connect.public_url (the deny carries the connect link)")
		}
		return p
	}
	if _, _, err := net.SplitHostPort(c.Listen.Connect); err != nil {
		add("listen.connect must be host:port or :port")
	} else if sharesListener(c.Listen.Connect, c.Listen.GRPC, c.Listen.Metrics, c.Listen.HTTP, c.Listen.Admin) {
		add("listen.connect must differ from the other listeners")
	}
	switch u, err := url.Parse(c.Connect.PublicURL); {
	case c.Connect.PublicURL == "":
		add("connect.public_url is required with listen.connect (e.g. https://api.example.com/.extauthz)")
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.RawQuery != "" || u.Fragment != "" ||
		strings.ContainsAny(c.Connect.PublicURL, "?#<> \t\r\n"):
		add("connect.public_url must be an absolute https URL without query or fragment")
	case u.Scheme == "http" && !c.AllowInsecureHTTP && !setting.IsLoopback(u.Hostname()):
		add("connect.public_url must use https (plain http is allowed only to a loopback host, or anywhere with allow_insecure_http: true)")
	}
	switch d := c.Connect.TicketTTL; {
	case d.bad != "":
		add("line %d: connect.ticket_ttl is not a duration (use e.g. 10m)", d.line)
	case d.D() < time.Minute || d.D() > 24*time.Hour:
		add("connect.ticket_ttl must be between 1m and 24h")
	}
	p = append(p, c.validateLogin()...)
	if c.Connect.ReturnURL != "" && !isHTTPURL(c.Connect.ReturnURL) {
		add("connect.return_url must be an absolute http(s) URL")
	}
	p = append(p, c.Connect.TLS.validate("connect.tls")...)
	for _, name := range sortedKeys(c.Providers) {
		pr := c.Providers[name]
		if pr.AuthorizationURL == "" && pr.Issuer == "" {
			add("providers.%s: set authorization_url, or issuer (discovery finds it): listen.connect sends browsers there to link an account", name)
		}
		for _, k := range sortedKeys(pr.AuthorizationParams) {
			if connect.ProtocolParam(k) {
				add("providers.%s.authorization_params: %q is set by the connect flow itself", name, k)
			}
		}
	}
	return p
}

// The login client's token endpoint authentication methods.
const (
	LoginSecretBasic = "client_secret_basic"
	LoginSecretPost  = "client_secret_post"
)

// validateLogin checks connect.login, which listen.connect requires.
func (c *Config) validateLogin() []string {
	var p []string
	l := c.Connect.Login
	if l.ClientID == "" || l.ClientSecret == "" {
		p = append(p, "connect.login.client_id and client_secret are required with listen.connect: the client with which "+
			"browsers sign in at the authorization server (redirect URI {connect.public_url}/connect/login)")
	}
	switch {
	case l.Issuer == "":
		p = append(p, "connect.login.issuer (default jwt.issuer) is required with listen.connect")
	case !isHTTPURL(l.Issuer):
		p = append(p, "connect.login.issuer must be an absolute http(s) URL")
	default:
		p = append(p, c.checkTransport("connect.login.issuer", l.Issuer)...)
	}
	if l.TokenEndpointAuth != LoginSecretBasic && l.TokenEndpointAuth != LoginSecretPost {
		p = append(p, "connect.login.token_endpoint_auth must be client_secret_basic or client_secret_post")
	}
	return p
}
