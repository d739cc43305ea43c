package proxyconfig

import (
	"strings"
	"testing"
)

func TestCaddyUpstream(t *testing.T) {
	for _, tc := range []struct {
		network, addr string
		tls           bool
		want          string
	}{
		{"tcp", "127.0.0.1:9002", false, "127.0.0.1:9002"},
		{"tcp", ":9002", false, "127.0.0.1:9002"},
		{"tcp", "0.0.0.0:9002", true, "https://127.0.0.1:9002"},
		{"tcp", "[::]:9002", false, "[::1]:9002"},
		{"tcp", "extauthz.internal:9002", false, "extauthz.internal:9002"},
		{"unix", "/run/extauthz/http.sock", false, "unix//run/extauthz/http.sock"},
		{"unix", "/run/extauthz/http.sock", true, ""},
		{"unix", "/run/a b.sock", false, ""},
		{"tcp", "127.0.0.1:0", false, ""},
		{"tcp", "nohost", false, ""},
	} {
		got, err := CaddyUpstream(tc.network, tc.addr, tc.tls)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("CaddyUpstream(%q, %q, %v) = %q, %v; want %q", tc.network, tc.addr, tc.tls, got, err, tc.want)
		}
	}
}

// TestCaddyConfig: every configured header is copied from the answer and
// deleted from the client's request first (but Authorization, which
// carries the JWT), the X-Extauthz-* headers are deleted, and what cannot
// be written safely is refused.
func TestCaddyConfig(t *testing.T) {
	tcp := func(c Caddy) Caddy { c.Network, c.Addr = "tcp", "127.0.0.1:9002"; return c }
	for _, tc := range []struct {
		name    string
		in      Caddy
		want    []string // lines (trimmed) that must appear, in this order
		notWant []string
		err     string
	}{
		{
			name: "authorization only, placeholder backend",
			in:   tcp(Caddy{Headers: []string{"authorization"}}),
			want: []string{
				"route {",
				"request_header -X-Extauthz-Providers", "request_header -X-Extauthz-Required-Scopes",
				"request_header -X-Original-Uri",
				"forward_auth 127.0.0.1:9002 {", "uri /auth", "copy_headers Authorization", "}",
				"# reverse_proxy BACKEND  (your upstream: extauthz proxy-config caddy --backend URL)",
				"}",
			},
			notWant: []string{"request_header -Authorization"},
		},
		{
			name: "provider and ID-token headers, backend",
			in:   tcp(Caddy{Headers: []string{"authorization", "x-google-id-token", "x-google-token"}, Backend: "http://backend:8080"}),
			want: []string{
				"request_header -X-Google-Id-Token", "request_header -X-Google-Token",
				"request_header -X-Extauthz-Providers", "request_header -X-Extauthz-Required-Scopes",
				"forward_auth 127.0.0.1:9002 {",
				"copy_headers Authorization X-Google-Id-Token X-Google-Token",
				"reverse_proxy http://backend:8080",
			},
			notWant: []string{"request_header -Authorization", "# reverse_proxy BACKEND  (your upstream: extauthz proxy-config caddy --backend URL)"},
		},
		{
			name: "unix socket",
			in:   Caddy{Headers: []string{"authorization"}, Network: "unix", Addr: "/run/extauthz/http.sock"},
			want: []string{"forward_auth unix//run/extauthz/http.sock {"},
		},
		{
			name: "tls: transport hints",
			in:   tcp(Caddy{Headers: []string{"authorization"}, TLS: true}),
			want: []string{"forward_auth https://127.0.0.1:9002 {", "#       tls_trusted_ca_certs CA.pem"},
		},
		{
			name: "repeated header written once",
			in:   tcp(Caddy{Headers: []string{"authorization", "x-t", "x-t"}}),
			want: []string{"request_header -X-T", "copy_headers Authorization X-T"},
		},
		{name: "header with a space", in: tcp(Caddy{Headers: []string{"authorization", "x t"}}), err: `"x t"`},
		{name: "no authorization", in: tcp(Caddy{Headers: []string{"x-t"}}), err: "authorization"},
		{name: "no auth target", in: Caddy{Headers: []string{"authorization"}}, err: "auth target"},
		{name: "backend not a URL", in: tcp(Caddy{Headers: []string{"authorization"}, Backend: "backend"}), err: "http://"},
		{name: "backend with a path", in: tcp(Caddy{Headers: []string{"authorization"}, Backend: "http://b/x"}), err: "host:port only"},
		{name: "backend breaking out", in: tcp(Caddy{Headers: []string{"authorization"}, Backend: "http://b/x}"}), err: "must not contain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.Config()
			if !configured(t, err, tc.err) {
				return
			}
			linesInOrder(t, got, tc.want, tc.notWant)
			// Every header other than Authorization is deleted once, before
			// forward_auth.
			fa := strings.Index(got, "\tforward_auth ")
			for h := range distinct(tc.in.Headers) {
				if h == "authorization" {
					continue
				}
				line := "request_header -" + canonical(h)
				if n := strings.Count(got, line+"\n"); n != 1 || strings.Index(got, line) > fa {
					t.Errorf("%q: %d lines, want 1 before forward_auth", line, n)
				}
			}
			if strings.Count(uncommented(got), "{") != strings.Count(uncommented(got), "}") {
				t.Errorf("unbalanced braces:\n%s", got)
			}
		})
	}
}

func canonical(h string) string {
	parts := strings.Split(h, "-")
	for i, p := range parts {
		if p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, "-")
}

// uncommented is s without its comment lines.
func uncommented(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
