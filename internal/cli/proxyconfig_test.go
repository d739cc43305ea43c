package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/jwtauth/jwttest"
	"github.com/extauthz/extauthz/tokencrypt"
)

// proxyConfigText is a configuration with listen.http set to listenHTTP
// (omitted when empty) and two providers, one with its own header and an
// ID-token header.
func proxyConfigText(t *testing.T, listenHTTP string) string {
	t.Helper()
	listen := "listen:\n  grpc: 127.0.0.1:9001\n"
	if listenHTTP != "" {
		listen += "  http: " + listenHTTP + "\n"
	}
	return listen + fmt.Sprintf(`database:
  url: postgres://extauthz@db.test/extauthz
jwt:
  issuer: https://as.test
  audiences: [api]
  jwks_file: %s
providers:
  gh: {token_url: "https://gh.test/token", client_id: gh, auth_style: params}
  google: {token_url: "https://google.test/token", client_id: g, auth_style: params, header: X-Google-Token, id_token_header: x-google-id-token}
default_providers: [gh]
encryption:
  keys:
    - id: k1
      key: %s
`, jwttest.NewSigner(t).WriteJWKSFile(t), tokencrypt.GenerateKey())
}

// TestProxyConfigCommand: exit codes and messages of proxy-config, and the
// nginx, Caddy, Traefik and Envoy configurations it prints for every
// configured header.
func TestProxyConfigCommand(t *testing.T) {
	good := proxyConfigText(t, "127.0.0.1:9002")
	for _, tc := range []struct {
		name string
		args []string
		text string
		code int
		out  []string
	}{
		{"nginx", []string{"nginx", "--backend", "http://backend"}, good, ExitOK, []string{
			"proxy_pass http://127.0.0.1:9002/auth;",
			"auth_request_set $extauthz_authorization $upstream_http_authorization;",
			"auth_request_set $extauthz_x_google_token $upstream_http_x_google_token;",
			"auth_request_set $extauthz_x_google_id_token $upstream_http_x_google_id_token;",
			"proxy_set_header X-Google-Id-Token $extauthz_x_google_id_token;",
			"proxy_pass http://backend;",
		}},
		{"unix socket", []string{"nginx"}, proxyConfigText(t, "unix:/run/extauthz/http.sock"), ExitOK, []string{
			"proxy_pass http://unix:/run/extauthz/http.sock:/auth;", "# proxy_pass http://BACKEND;",
		}},
		{"no listen.http", []string{"nginx"}, proxyConfigText(t, ""), ExitUsage, []string{"listen.http is not set"}},
		{"port 0", []string{"nginx"}, proxyConfigText(t, "127.0.0.1:0"), ExitUsage, []string{"listen.http", "fixed port"}},
		{"invalid configuration", []string{"nginx"}, strings.Replace(good, "default_providers: [gh]", "default_providers: [nope]", 1),
			ExitUsage, []string{`"nope" is not defined`}},
		{"bad backend", []string{"nginx", "--backend", "backend:80"}, good, ExitUsage, []string{"--backend"}},
		{"caddy", []string{"caddy", "--backend", "http://backend:8080"}, good, ExitOK, []string{
			"request_header -X-Google-Id-Token\n", "request_header -X-Google-Token\n",
			"request_header -X-Extauthz-*\n",
			"forward_auth 127.0.0.1:9002 {", "uri /auth\n",
			"Authorization>X-Extauthz-Copy-Authorization\n",
			"X-Google-Token>X-Extauthz-Copy-X-Google-Token\n",
			"request_header @extauthz-x-google-id-token X-Google-Id-Token {http.request.header.X-Extauthz-Copy-X-Google-Id-Token}\n",
			"reverse_proxy http://backend:8080\n",
		}},
		{"caddy unix socket", []string{"caddy"}, proxyConfigText(t, "unix:/run/extauthz/http.sock"), ExitOK, []string{
			"forward_auth unix//run/extauthz/http.sock {", "# reverse_proxy BACKEND",
		}},
		{"caddy port 0", []string{"caddy"}, proxyConfigText(t, "127.0.0.1:0"), ExitUsage, []string{"listen.http", "fixed port"}},
		{"caddy backend with a path", []string{"caddy", "--backend", "http://backend/api"}, good, ExitUsage, []string{"host:port only"}},
		{"traefik", []string{"traefik", "--backend", "http://backend:8080"}, good, ExitOK, []string{
			`"X-Extauthz-Providers": ""`, `"X-Extauthz-Required-Scopes": ""`, `"X-Original-Uri": ""`,
			"forwardAuth:\n", `address: "http://127.0.0.1:9002/auth"`, "trustForwardHeader: false\n",
			"authResponseHeaders:\n          - \"Authorization\"\n          - \"X-Google-Id-Token\"\n          - \"X-Google-Token\"\n",
			`- url: "http://backend:8080"`,
		}},
		{"traefik without backend", []string{"traefik"}, good, ExitOK, []string{`give each protected router "middlewares: [extauthz]"`}},
		{"traefik unix socket", []string{"traefik"}, proxyConfigText(t, "unix:/run/extauthz/http.sock"), ExitUsage, []string{
			"listen.http: a Unix socket cannot be reached by Traefik's forwardAuth",
		}},
		{"traefik port 0", []string{"traefik"}, proxyConfigText(t, "127.0.0.1:0"), ExitUsage, []string{"listen.http", "fixed port"}},
		{"traefik backend with a path", []string{"traefik", "--backend", "http://backend/api"}, good, ExitUsage, []string{"host:port only"}},
		{"help", []string{"--help"}, good, ExitOK, []string{"nginx|caddy|traefik|envoy-http", "Unix socket"}},
		{"envoy-http", []string{"envoy-http"}, good, ExitOK, []string{
			"- name: envoy.filters.http.ext_authz\n", "path_prefix: /envoy\n", "cluster: extauthz_http\n",
			"timeout: 12s\n", "failure_mode_allow: false\n",
			"- { exact: authorization }\n", "- { exact: x-google-id-token }\n", "- { exact: x-google-token }\n",
			"patterns: [{ exact: x-extauthz-providers }, { exact: x-extauthz-required-scopes }]\n",
			"patterns: [{ exact: www-authenticate }, { exact: retry-after }, { exact: content-type }, { exact: link }]\n",
			`socket_address: { address: "127.0.0.1", port_value: 9002 }`,
		}},
		{"envoy-http unix socket", []string{"envoy-http"}, proxyConfigText(t, "unix:/run/extauthz/http.sock"), ExitOK, []string{
			"pipe: { path: /run/extauthz/http.sock }",
		}},
		{"envoy-http port 0", []string{"envoy-http"}, proxyConfigText(t, "127.0.0.1:0"), ExitUsage, []string{"listen.http", "fixed port"}},
		{"envoy-http with a backend", []string{"envoy-http", "--backend", "http://backend"}, good, ExitUsage, []string{"--backend", "not used"}},
		{"unknown proxy", []string{"haproxy"}, good, ExitUsage, []string{`unknown proxy "haproxy"`}},
		{"no proxy named", nil, good, ExitUsage, []string{"name the proxy first"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"proxy-config"}, tc.args...)
			if len(tc.args) > 0 {
				args = append(args, "--config", path)
			}
			var out bytes.Buffer
			code := Run(context.Background(), args, Env{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }})
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, out.String())
			}
			for _, w := range tc.out {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
