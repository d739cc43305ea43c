package config

import (
	"strings"
	"testing"
	"time"
)

func TestConnect(t *testing.T) {
	vars := env(map[string]string{"DB": "postgres://x/y", "GH_SECRET": "s"})
	with := func(listen, extra string) string {
		s := valid
		if listen != "" {
			s = strings.Replace(s, "  grpc: 127.0.0.1:9001\n", "  grpc: 127.0.0.1:9001\n  connect: "+listen+"\n", 1)
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
		if c.Connect.TicketTTL.D() != tc.ttl {
			t.Errorf("%s: ticket_ttl %v, want %v", tc.name, c.Connect.TicketTTL.D(), tc.ttl)
		}
		a := c.Authz()
		if tc.mcpRoute && (a.Routes[0].DenyStyle != "mcp" || a.DefaultRoute.DenyStyle != "mcp") {
			t.Errorf("%s: deny styles not passed to the decision: %+v %+v", tc.name, a.Routes, a.DefaultRoute)
		}
	}

	for _, tc := range []struct {
		name, listen, extra, want string
	}{
		{"no public_url", "127.0.0.1:9003", "", "connect.public_url is required with listen.connect"},
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
