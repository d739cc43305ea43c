package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestConnect(t *testing.T) {
	vars := env(map[string]string{"DB": "postgres://x/y", "GH_SECRET": "s", "LOGIN_SECRET": "ls"})
	// with turns connect on at listen (when set), with the providers'
	// authorization endpoints and extra YAML; a "connect:" section in
	// extra gets the login client unless it has one, and providers at its
	// end join the file's.
	with := func(listen, extra string) string {
		s := valid
		if listen != "" {
			s = strings.Replace(s, "  grpc: 127.0.0.1:9001\n", "  grpc: 127.0.0.1:9001\n  connect: "+listen+"\n", 1)
			s = strings.Replace(s, "    client_id: gh\n", "    client_id: gh\n    authorization_url: https://github.com/login/oauth/authorize\n", 1)
			s = strings.Replace(s, "    client_id: g\n", "    client_id: g\n    issuer: https://accounts.google.com\n", 1)
			if strings.HasPrefix(extra, "connect:\n") && !strings.Contains(extra, "  login:") {
				extra = strings.Replace(extra, "connect:\n", "connect:\n  login:\n    client_id: extauthz\n    client_secret: ${LOGIN_SECRET}\n", 1)
			}
		}
		// Providers in extra join the file's.
		if before, more, ok := strings.Cut(extra, "providers:\n"); ok {
			s = strings.Replace(s, "providers:\n", "providers:\n"+more, 1)
			extra = before
		}
		return s + extra
	}

	c, err := Parse([]byte(valid), vars)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.Connect != "" || c.Connect.PublicURL != "" {
		t.Errorf("connect is on by default: %+v %+v", c.Listen.Connect, c.Connect)
	}

	for _, tc := range []struct {
		name, listen, extra string
		ttl                 time.Duration
		mcpRoute            bool
	}{
		{name: "default ttl", listen: "127.0.0.1:9003", extra: "connect:\n  public_url: https://api.example.com/.extauthz\n", ttl: 10 * time.Minute},
		{name: "ttl, mcp routes", listen: "127.0.0.1:9003",
			extra: "connect:\n  public_url: https://api.example.com/.extauthz/\n  ticket_ttl: 5m\n" +
				"routes:\n  - path_prefix: /mcp\n    deny_style: mcp\ndefault_route:\n  deny_style: mcp\n",
			ttl: 5 * time.Minute, mcpRoute: true},
		{name: "http on loopback", listen: ":9003", extra: "connect:\n  public_url: http://127.0.0.1:9003\n", ttl: 10 * time.Minute},
	} {
		c, err := Parse([]byte(with(tc.listen, tc.extra)), vars)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if l := c.Connect.Login; l.Issuer != "https://as.example" || l.ClientSecret != "ls" || l.TokenEndpointAuth != LoginSecretBasic ||
			!slices.Equal(l.Scopes, []string{"openid"}) {
			t.Errorf("%s: login defaults: issuer %q, secret expanded %v, auth %q, scopes %v", tc.name, l.Issuer, l.ClientSecret == "ls",
				l.TokenEndpointAuth, l.Scopes)
		}
		if c.Connect.TicketTTL.D() != tc.ttl {
			t.Errorf("%s: ticket_ttl %v, want %v", tc.name, c.Connect.TicketTTL.D(), tc.ttl)
		}
		a := c.Authz()
		if tc.mcpRoute && (a.Routes[0].DenyStyle != "mcp" || a.DefaultRoute.DenyStyle != "mcp") {
			t.Errorf("%s: deny styles not passed to the decision: %+v %+v", tc.name, a.Routes, a.DefaultRoute)
		}
	}

	c, err = Parse([]byte(with("127.0.0.1:9003", "connect:\n  public_url: https://a.example\n  return_url: https://app.example/\n"+
		"  login:\n    issuer: https://login.example\n    client_id: x\n    client_secret: y\n    token_endpoint_auth: client_secret_post\n    scopes: [openid, profile]\n"+
		"providers:\n  dex:\n    issuer: https://dex.example\n    client_id: d\n    auth_style: header\n    authorization_params: {access_type: offline, prompt: consent}\n")), vars)
	if err != nil {
		t.Fatal(err)
	}
	if l := c.Connect.Login; l.Issuer != "https://login.example" || l.TokenEndpointAuth != LoginSecretPost || len(l.Scopes) != 2 ||
		c.Connect.ReturnURL != "https://app.example/" || c.Providers["dex"].AuthorizationParams["access_type"] != "offline" {
		t.Errorf("connect settings not read: issuer %q, auth %q, scopes %v, return %q, params %v", l.Issuer, l.TokenEndpointAuth, l.Scopes, c.Connect.ReturnURL, c.Providers["dex"].AuthorizationParams)
	}

	for _, tc := range []struct {
		name, listen, extra, want string
	}{
		{"no public_url", "127.0.0.1:9003", "", "connect.public_url is required with listen.connect"},
		{"no login", "127.0.0.1:9003", "", "connect.login.client_id and client_secret are required with listen.connect"},
		{"login without secret", "127.0.0.1:9003", "connect:\n  public_url: https://a.example\n  login:\n    client_id: x\n",
			"connect.login.client_id and client_secret are required"},
		{"login issuer http", "127.0.0.1:9003", "connect:\n  public_url: https://a.example\n  login:\n    issuer: http://as.example\n    client_id: x\n    client_secret: y\n",
			"connect.login.issuer must use https"},
		{"login issuer relative", "127.0.0.1:9003", "connect:\n  public_url: https://a.example\n  login:\n    issuer: /as\n    client_id: x\n    client_secret: y\n",
			"connect.login.issuer must be an absolute http(s) URL"},
		{"login auth", "127.0.0.1:9003", "connect:\n  public_url: https://a.example\n  login:\n    client_id: x\n    client_secret: y\n    token_endpoint_auth: private_key_jwt\n",
			"connect.login.token_endpoint_auth must be client_secret_basic or client_secret_post"},
		{"return_url", "127.0.0.1:9003", "connect:\n  public_url: https://a.example\n  return_url: app\n", "connect.return_url must be an absolute http(s) URL"},
		{"tls half", "127.0.0.1:9003", "connect:\n  public_url: https://a.example\n  tls:\n    cert: /c.pem\n", "connect.tls.cert and connect.tls.key must be set together"},
		{"login without listener", "", "connect:\n  login:\n    client_id: x\n", "connect is set but listen.connect is not"},
		{"provider without authorization endpoint", "127.0.0.1:9003", "connect:\n  public_url: https://a.example\nproviders:\n  dex:\n    token_url: https://dex.example/token\n    client_id: d\n    auth_style: header\n",
			"providers.dex: set authorization_url, or issuer"},
		{"protocol parameter", "127.0.0.1:9003", "connect:\n  public_url: https://a.example\nproviders:\n  dex:\n    issuer: https://dex.example\n    client_id: d\n    auth_style: header\n    authorization_params: {state: x, prompt: consent}\n",
			`providers.dex.authorization_params: "state" is set by the connect flow itself`},
		{"http public_url", "127.0.0.1:9003", "connect:\n  public_url: http://api.example.com/x\n", "connect.public_url must use https"},
		{"relative public_url", "127.0.0.1:9003", "connect:\n  public_url: /x\n", "connect.public_url must be an absolute https URL"},
		{"query in public_url", "127.0.0.1:9003", "connect:\n  public_url: https://a.example/x?y=1\n", "connect.public_url must be an absolute https URL"},
		{"short ttl", "127.0.0.1:9003", "connect:\n  public_url: https://a.example\n  ticket_ttl: 10s\n", "connect.ticket_ttl must be between 1m and 24h"},
		{"bad ttl", "127.0.0.1:9003", "connect:\n  public_url: https://a.example\n  ticket_ttl: soon\n", "connect.ticket_ttl is not a duration"},
		{"no port", "127.0.0.1", "connect:\n  public_url: https://a.example\n", "listen.connect must be host:port or :port"},
		{"same as grpc", "127.0.0.1:9001", "connect:\n  public_url: https://a.example\n", "listen.connect must differ from the other listeners"},
		{"connect without listener", "", "connect:\n  public_url: https://a.example\n", "connect is set but listen.connect is not"},
		{"mcp without connect", "", "routes:\n  - path_prefix: /mcp\n    deny_style: mcp\n", "routes[0].deny_style: mcp needs listen.connect"},
		{"mcp default route without connect", "", "default_route:\n  deny_style: mcp\n", "default_route.deny_style: mcp needs listen.connect"},
		{"unknown deny style", "127.0.0.1:9003", "connect:\n  public_url: https://a.example\nroutes:\n  - path_prefix: /x\n    deny_style: html\n", `routes[0].deny_style: "html" is not a deny style`},
	} {
		_, err := Parse([]byte(with(tc.listen, tc.extra)), vars)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v\nwant one containing %q", tc.name, err, tc.want)
		}
	}
}
