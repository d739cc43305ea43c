package proxyconfig

import (
	"testing"
	"time"
)

// TestEnvoyHTTPConfig: every configured header is an allowed upstream
// header, the policy headers are disallowed, the cluster reaches listen.http,
// and what cannot be written safely is refused. (envoy/envoyhttp_test.go
// reads the output with Envoy's types.)
func TestEnvoyHTTPConfig(t *testing.T) {
	base := func(e EnvoyHTTP) EnvoyHTTP {
		if e.Network == "" {
			e.Network = "tcp"
		}
		if e.Addr == "" {
			e.Addr = "127.0.0.1:9002"
		}
		if e.Headers == nil {
			e.Headers = []string{"authorization"}
		}
		if e.Timeout == 0 {
			e.Timeout = 12 * time.Second
		}
		return e
	}
	for _, tc := range []struct {
		name    string
		in      EnvoyHTTP
		want    []string // lines (trimmed) that must appear, in this order
		notWant []string // lines (trimmed) that must not appear
		err     string
	}{
		{
			name: "authorization only",
			in:   base(EnvoyHTTP{}),
			want: []string{
				"- name: envoy.filters.http.ext_authz", "failure_mode_allow: false", "status_on_error: { code: 503 }",
				"patterns: [{ exact: authorization }]",
				"patterns: [{ exact: x-extauthz-providers }, { exact: x-extauthz-required-scopes }]",
				"uri: http://127.0.0.1:9002   # Envoy dials the cluster; Host is the client's",
				"cluster: extauthz_http", "timeout: 12s", "path_prefix: /envoy",
				"allowed_upstream_headers:", "patterns:", "- { exact: authorization }",
				"patterns: [{ exact: www-authenticate }, { exact: retry-after }, { exact: content-type }, { exact: link }]",
				"- name: extauthz_http", "type: STATIC",
				`socket_address: { address: "127.0.0.1", port_value: 9002 }`,
			},
			notWant: []string{"transport_socket:", "with_request_body:"},
		},
		{
			name: "provider headers, each once",
			in:   base(EnvoyHTTP{Headers: []string{"authorization", "x-google-id-token", "x-google-token", "x-google-token"}}),
			want: []string{"- { exact: authorization }", "- { exact: x-google-id-token }", "- { exact: x-google-token }"},
		},
		{
			name: "a name, fractional time-out",
			in:   base(EnvoyHTTP{Addr: "extauthz:9002", Timeout: 10500 * time.Millisecond}),
			want: []string{"timeout: 10.5s", "type: STRICT_DNS", `socket_address: { address: "extauthz", port_value: 9002 }`},
		},
		{
			name: "unspecified host: loopback",
			in:   base(EnvoyHTTP{Addr: "[::]:9002"}),
			want: []string{"uri: http://[::1]:9002   # Envoy dials the cluster; Host is the client's", `socket_address: { address: "::1", port_value: 9002 }`},
		},
		{
			name: "unix socket",
			in:   base(EnvoyHTTP{Network: "unix", Addr: "/run/extauthz/http.sock"}),
			want: []string{"type: STATIC", "pipe: { path: /run/extauthz/http.sock }"},
		},
		{
			name: "mutual TLS",
			in:   base(EnvoyHTTP{Addr: "extauthz:9002", TLS: true, ClientCert: true}),
			want: []string{"uri: https://extauthz:9002   # Envoy dials the cluster; Host is the client's",
				"transport_socket:", "sni: extauthz", "tls_certificates:", "trusted_ca: { filename: /etc/envoy/tls/extauthz-ca.crt }",
				"- { san_type: DNS, matcher: { exact: extauthz } }"},
		},
		{
			name:    "TLS without a client certificate",
			in:      base(EnvoyHTTP{TLS: true}),
			want:    []string{"transport_socket:", "trusted_ca: { filename: /etc/envoy/tls/extauthz-ca.crt }"},
			notWant: []string{"tls_certificates:", "sni: 127.0.0.1"},
		},
		{name: "no authorization", in: base(EnvoyHTTP{Headers: []string{"x-t"}}), err: "authorization"},
		{name: "upper-case header", in: base(EnvoyHTTP{Headers: []string{"authorization", "X-T"}}), err: `"X-T"`},
		{name: "header breaking out", in: base(EnvoyHTTP{Headers: []string{"authorization", "x }"}}), err: `"x }"`},
		{name: "port 0", in: base(EnvoyHTTP{Addr: "127.0.0.1:0"}), err: "fixed port"},
		{name: "named port", in: base(EnvoyHTTP{Addr: "extauthz:http"}), err: "port number"},
		{name: "socket path breaking out", in: base(EnvoyHTTP{Network: "unix", Addr: "/run/a }.sock"}), err: "cannot be written"},
		{name: "no time-out", in: base(EnvoyHTTP{Timeout: -1}), err: "time-out"},
		{name: "no auth target", in: EnvoyHTTP{Network: "tcp", Headers: []string{"authorization"}, Timeout: time.Second}, err: "auth target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.Config()
			if configured(t, err, tc.err) {
				linesInOrder(t, got, tc.want, tc.notWant)
			}
		})
	}
}
