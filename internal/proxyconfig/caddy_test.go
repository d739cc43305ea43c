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

// TestCaddyConfig: every configured header is deleted from the client's
// request (Authorization, which carries the JWT, after forward_auth, the
// others before), copied from the answer into a header of its own and set
// from there only when the copy holds a value; the X-Extauthz-* headers are
// deleted before and after; what cannot be written safely is refused.
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
				"request_header -X-Extauthz-*",
				"request_header -X-Original-Uri",
				"forward_auth 127.0.0.1:9002 {", "uri /auth",
				"copy_headers {", "Authorization>X-Extauthz-Copy-Authorization", "}",
				"}",
				"request_header -Authorization",
				`@extauthz-authorization header_regexp X-Extauthz-Copy-Authorization ^[^\x7b]`,
				"request_header @extauthz-authorization Authorization {http.request.header.X-Extauthz-Copy-Authorization}",
				"request_header -X-Extauthz-*",
				"# reverse_proxy BACKEND  (your upstream: extauthz proxy-config caddy --backend URL)",
				"}",
			},
		},
		{
			name: "provider and ID-token headers, backend",
			in:   tcp(Caddy{Headers: []string{"authorization", "x-google-id-token", "x-google-token"}, Backend: "http://backend:8080"}),
			want: []string{
				"request_header -X-Google-Id-Token", "request_header -X-Google-Token",
				"request_header -X-Extauthz-*",
				"forward_auth 127.0.0.1:9002 {",
				"copy_headers {",
				"Authorization>X-Extauthz-Copy-Authorization",
				"X-Google-Id-Token>X-Extauthz-Copy-X-Google-Id-Token",
				"X-Google-Token>X-Extauthz-Copy-X-Google-Token",
				"request_header -Authorization",
				`@extauthz-x-google-id-token header_regexp X-Extauthz-Copy-X-Google-Id-Token ^[^\x7b]`,
				"request_header @extauthz-x-google-id-token X-Google-Id-Token {http.request.header.X-Extauthz-Copy-X-Google-Id-Token}",
				`@extauthz-x-google-token header_regexp X-Extauthz-Copy-X-Google-Token ^[^\x7b]`,
				"request_header @extauthz-x-google-token X-Google-Token {http.request.header.X-Extauthz-Copy-X-Google-Token}",
				"request_header -X-Extauthz-*",
				"reverse_proxy http://backend:8080",
			},
			notWant: []string{"# reverse_proxy BACKEND  (your upstream: extauthz proxy-config caddy --backend URL)"},
		},
		{
			name: "'-' and '_' are different headers with different matchers",
			in:   tcp(Caddy{Headers: []string{"authorization", "x-t", "x_t"}}),
			want: []string{"request_header @extauthz-x-t X-T {http.request.header.X-Extauthz-Copy-X-T}",
				"request_header @extauthz-x_t X_t {http.request.header.X-Extauthz-Copy-X_t}"},
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
			want: []string{"request_header -X-T", "X-T>X-Extauthz-Copy-X-T", "request_header @extauthz-x-t X-T {http.request.header.X-Extauthz-Copy-X-T}"},
		},
		{name: "extauthz's own prefix", in: tcp(Caddy{Headers: []string{"authorization", "x-extauthz-copy-x"}}), err: "X-Extauthz- prefix"},
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
			// Every header is deleted once: Authorization after forward_auth,
			// the others before; each is set once, after forward_auth, under
			// its matcher; the copies are deleted before and after.
			fa := strings.Index(got, "\tforward_auth ")
			for h := range distinct(tc.in.Headers) {
				del := "request_header -" + canonical(h) + "\n"
				if n, at := strings.Count(got, del), strings.Index(got, del); n != 1 || (h == "authorization") != (at > fa) {
					t.Errorf("%q: %d lines, at %d; forward_auth at %d", del, n, at, fa)
				}
				set := "request_header @extauthz-" + h + " " + canonical(h) + " "
				if n, at := strings.Count(got, set), strings.Index(got, set); n != 1 || at < fa {
					t.Errorf("%q: %d lines, at %d; forward_auth at %d", set, n, at, fa)
				}
			}
			if n := strings.Count(got, "\trequest_header -X-Extauthz-*\n"); n != 2 {
				t.Errorf("X-Extauthz-* deleted %d times, want before and after forward_auth", n)
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
