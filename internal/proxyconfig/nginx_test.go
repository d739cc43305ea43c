package proxyconfig

import (
	"strings"
	"testing"
)

func TestNginxVar(t *testing.T) {
	for _, tc := range []struct {
		header, want string
		ok           bool
	}{
		{"authorization", "authorization", true},
		{"x-google-token", "x_google_token", true},
		{"x-gh-id-token-2", "x_gh_id_token_2", true},
		{"x_google_token", "", false}, // nginx reads '-' and '_' alike
		{"x.token", "", false},
		{"X-Upper", "", false},
		{"", "", false},
	} {
		got, err := NginxVar(tc.header)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("NginxVar(%q) = %q, %v; want %q, ok %v", tc.header, got, err, tc.want, tc.ok)
		}
	}
}

func TestAuthURL(t *testing.T) {
	for _, tc := range []struct {
		network, addr string
		tls           bool
		want          string
	}{
		{"tcp", "127.0.0.1:9002", false, "http://127.0.0.1:9002/auth"},
		{"tcp", ":9002", false, "http://127.0.0.1:9002/auth"},
		{"tcp", "0.0.0.0:9002", true, "https://127.0.0.1:9002/auth"},
		{"tcp", "[::]:9002", false, "http://[::1]:9002/auth"},
		{"tcp", "extauthz.internal:9002", true, "https://extauthz.internal:9002/auth"},
		{"unix", "/run/extauthz/http.sock", false, "http://unix:/run/extauthz/http.sock:/auth"},
		{"tcp", "127.0.0.1:0", false, ""},
		{"tcp", "nohost", false, ""},
		{"unix", "/run/a;b.sock", false, ""},
	} {
		got, err := AuthURL(tc.network, tc.addr, tc.tls)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("AuthURL(%q, %q, %v) = %q, %v; want %q", tc.network, tc.addr, tc.tls, got, err, tc.want)
		}
	}
}

// TestNginxConfig: every configured header is taken from the auth answer
// and set on the proxied request, the client's X-Extauthz-* copies are
// stripped, and what cannot be written safely is refused.
func TestNginxConfig(t *testing.T) {
	const auth = "http://127.0.0.1:9002/auth"
	for _, tc := range []struct {
		name    string
		in      Nginx
		want    []string // lines (trimmed) that must appear
		notWant []string
		err     string
	}{
		{
			name: "authorization only, placeholder backend",
			in:   Nginx{Headers: []string{"authorization"}, Auth: auth},
			want: []string{
				"location = /_extauthz {", "internal;", "proxy_pass " + auth + ";",
				"proxy_pass_request_body off;", `proxy_set_header Content-Length "";`,
				"proxy_set_header X-Original-URI $request_uri;",
				"auth_request /_extauthz;",
				"auth_request_set $extauthz_authorization $upstream_http_authorization;",
				"proxy_set_header Authorization $extauthz_authorization;",
				`proxy_set_header X-Extauthz-Providers "";`, `proxy_set_header X-Extauthz-Required-Scopes "";`,
				"# proxy_pass http://BACKEND;  (your upstream: extauthz proxy-config nginx --backend URL)",
			},
		},
		{
			name: "provider and ID-token headers, backend",
			in: Nginx{Headers: []string{"authorization", "x-google-id-token", "x-google-token"}, Auth: auth,
				Backend: "http://backend"},
			want: []string{
				"auth_request_set $extauthz_authorization $upstream_http_authorization;",
				"auth_request_set $extauthz_x_google_token $upstream_http_x_google_token;",
				"auth_request_set $extauthz_x_google_id_token $upstream_http_x_google_id_token;",
				"proxy_set_header Authorization $extauthz_authorization;",
				"proxy_set_header X-Google-Token $extauthz_x_google_token;",
				"proxy_set_header X-Google-Id-Token $extauthz_x_google_id_token;",
				"proxy_pass http://backend;",
			},
			notWant: []string{"# proxy_pass http://BACKEND;"},
		},
		{
			name: "tls: proxy_ssl hints",
			in:   Nginx{Headers: []string{"authorization"}, Auth: "https://127.0.0.1:9002/auth"},
			want: []string{"proxy_pass https://127.0.0.1:9002/auth;", "#   proxy_ssl_verify on; proxy_ssl_trusted_certificate ...;"},
		},
		{
			name: "repeated header written once",
			in:   Nginx{Headers: []string{"authorization", "authorization"}, Auth: auth},
			want: []string{"proxy_set_header Authorization $extauthz_authorization;"},
		},
		{name: "underscore header", in: Nginx{Headers: []string{"authorization", "x_token"}, Auth: auth}, err: `"x_token"`},
		{name: "no headers", in: Nginx{Auth: auth}, err: "authorization"},
		{name: "a provider header named link", in: Nginx{Headers: []string{"authorization", "link"}, Auth: auth}, err: "connect link"},
		{name: "no auth target", in: Nginx{Headers: []string{"authorization"}}, err: "auth target"},
		{name: "backend not a URL", in: Nginx{Headers: []string{"authorization"}, Auth: auth, Backend: "backend"}, err: "http://"},
		{name: "backend breaking out", in: Nginx{Headers: []string{"authorization"}, Auth: auth,
			Backend: "http://b/x;return"}, err: "must not contain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.Config()
			if !configured(t, err, tc.err) {
				return
			}
			lines := map[string]int{}
			for _, l := range strings.Split(got, "\n") {
				lines[strings.TrimSpace(l)]++
			}
			for _, w := range tc.want {
				if lines[w] == 0 {
					t.Errorf("missing line %q in\n%s", w, got)
				}
			}
			for _, w := range tc.notWant {
				if lines[w] != 0 {
					t.Errorf("unexpected line %q in\n%s", w, got)
				}
			}
			// One auth_request_set and one proxy_set_header per header, and
			// one auth_request_set for the connect link.
			if n, want := strings.Count(got, "auth_request_set "), len(distinct(tc.in.Headers))+1; n != want {
				t.Errorf("%d auth_request_set lines, want %d", n, want)
			}
			if strings.Count(got, "{") != strings.Count(got, "}") {
				t.Errorf("unbalanced braces:\n%s", got)
			}
		})
	}
}

func distinct(s []string) map[string]bool {
	m := map[string]bool{}
	for _, v := range s {
		m[v] = true
	}
	return m
}
