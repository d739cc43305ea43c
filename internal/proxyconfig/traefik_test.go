package proxyconfig

import (
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestTraefikAddress(t *testing.T) {
	for _, tc := range []struct {
		network, addr string
		tls           bool
		want, err     string
	}{
		{"tcp", "127.0.0.1:9002", false, "http://127.0.0.1:9002/auth", ""},
		{"tcp", ":9002", false, "http://127.0.0.1:9002/auth", ""},
		{"tcp", "0.0.0.0:9002", true, "https://127.0.0.1:9002/auth", ""},
		{"tcp", "[::]:9002", false, "http://[::1]:9002/auth", ""},
		{"tcp", "extauthz:9002", false, "http://extauthz:9002/auth", ""},
		{"unix", "/run/extauthz/http.sock", false, "", "Unix socket"},
		{"tcp", "127.0.0.1:0", false, "", "fixed port"},
		{"tcp", "nohost", false, "", "port"},
	} {
		got, err := TraefikAddress(tc.network, tc.addr, tc.tls)
		if got != tc.want || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("TraefikAddress(%q, %q, %v) = %q, %v; want %q, error containing %q", tc.network, tc.addr, tc.tls, got, err, tc.want, tc.err)
		}
	}
}

// traefikDynamic mirrors the keys of Traefik's dynamic configuration that
// the generator writes (the deploy module decodes the same text into
// Traefik's own types). Decoding with KnownFields refuses any other key.
type traefikDynamic struct {
	HTTP struct {
		Middlewares map[string]struct {
			Chain *struct {
				Middlewares []string `yaml:"middlewares"`
			} `yaml:"chain"`
			Headers *struct {
				CustomRequestHeaders map[string]string `yaml:"customRequestHeaders"`
			} `yaml:"headers"`
			ForwardAuth *struct {
				Address             string   `yaml:"address"`
				TrustForwardHeader  *bool    `yaml:"trustForwardHeader"`
				AuthResponseHeaders []string `yaml:"authResponseHeaders"`
			} `yaml:"forwardAuth"`
		} `yaml:"middlewares"`
		Routers map[string]struct {
			Rule        string   `yaml:"rule"`
			Middlewares []string `yaml:"middlewares"`
			Service     string   `yaml:"service"`
		} `yaml:"routers"`
		Services map[string]struct {
			LoadBalancer struct {
				Servers []struct {
					URL string `yaml:"url"`
				} `yaml:"servers"`
			} `yaml:"loadBalancer"`
		} `yaml:"services"`
	} `yaml:"http"`
}

// TestTraefikConfig: the forwardAuth middleware lists every configured
// header in authResponseHeaders, the headers middleware before it deletes a
// client's X-Extauthz-* and X-Original-Uri, the chain runs them in that
// order, and what cannot be written safely is refused.
func TestTraefikConfig(t *testing.T) {
	tcp := func(c Traefik) Traefik { c.Network, c.Addr = "tcp", "127.0.0.1:9002"; return c }
	for _, tc := range []struct {
		name    string
		in      Traefik
		want    []string // lines (trimmed) that must appear, in this order
		notWant []string
		address string
		headers []string // authResponseHeaders
		err     string
	}{
		{
			name: "authorization only, placeholder router",
			in:   tcp(Traefik{Headers: []string{"authorization"}}),
			want: []string{
				"http:", "middlewares:",
				"extauthz:", "chain:", "- extauthz-strip", "- extauthz-forward-auth",
				`"X-Extauthz-Providers": ""`, `"X-Extauthz-Required-Scopes": ""`, `"X-Original-Uri": ""`,
				`address: "http://127.0.0.1:9002/auth"`, "trustForwardHeader: false", `- "Authorization"`,
				`# routers: give each protected router "middlewares: [extauthz]"`,
			},
			notWant: []string{"routers:", "services:"},
			address: "http://127.0.0.1:9002/auth",
			headers: []string{"Authorization"},
		},
		{
			name: "provider and ID-token headers, backend",
			in:   tcp(Traefik{Headers: []string{"authorization", "x-google-id-token", "x-google-token"}, Backend: "http://backend:8080"}),
			want: []string{
				"authResponseHeaders:", `- "Authorization"`, `- "X-Google-Id-Token"`, `- "X-Google-Token"`,
				"routers:", "extauthz-protected:", "rule: \"PathPrefix(`/`)\"", "- extauthz", "service: extauthz-backend",
				"services:", "extauthz-backend:", `- url: "http://backend:8080"`,
			},
			notWant: []string{`# routers: give each protected router "middlewares: [extauthz]"`},
			address: "http://127.0.0.1:9002/auth",
			headers: []string{"Authorization", "X-Google-Id-Token", "X-Google-Token"},
		},
		{
			name:    "tls: client TLS hints",
			in:      Traefik{Headers: []string{"authorization"}, Network: "tcp", Addr: ":9002", TLS: true},
			want:    []string{`address: "https://127.0.0.1:9002/auth"`, "#   tls:", "#     ca: /path/to/ca.pem"},
			address: "https://127.0.0.1:9002/auth",
			headers: []string{"Authorization"},
		},
		{
			name:    "repeated header and YAML words written once, quoted",
			in:      tcp(Traefik{Headers: []string{"authorization", "on", "on", "123"}}),
			want:    []string{`- "Authorization"`, `- "On"`, `- "123"`},
			address: "http://127.0.0.1:9002/auth",
			headers: []string{"Authorization", "On", "123"},
		},
		{name: "unix socket", in: Traefik{Headers: []string{"authorization"}, Network: "unix", Addr: "/run/extauthz/http.sock"}, err: "Unix socket"},
		{name: "header with a colon", in: tcp(Traefik{Headers: []string{"authorization", "x:t"}}), err: `"x:t"`},
		{name: "no authorization", in: tcp(Traefik{Headers: []string{"x-t"}}), err: "authorization"},
		{name: "no auth target", in: Traefik{Headers: []string{"authorization"}}, err: "auth target"},
		{name: "backend not a URL", in: tcp(Traefik{Headers: []string{"authorization"}, Backend: "backend"}), err: "http://"},
		{name: "backend with a path", in: tcp(Traefik{Headers: []string{"authorization"}, Backend: "http://b/x"}), err: "host:port only"},
		{name: "backend breaking out", in: tcp(Traefik{Headers: []string{"authorization"}, Backend: "http://b\"x"}), err: "must not contain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.Config()
			if !configured(t, err, tc.err) {
				return
			}
			linesInOrder(t, got, tc.want, tc.notWant)

			var d traefikDynamic
			dec := yaml.NewDecoder(strings.NewReader(got))
			dec.KnownFields(true)
			if err := dec.Decode(&d); err != nil {
				t.Fatalf("not the expected YAML: %v\n%s", err, got)
			}
			mw := d.HTTP.Middlewares
			if c := mw[TraefikChain].Chain; c == nil || !slices.Equal(c.Middlewares, []string{traefikStrip, traefikForwardAuth}) {
				t.Errorf("chain %s: %+v, want %s then %s", TraefikChain, c, traefikStrip, traefikForwardAuth)
			}
			if h := mw[traefikStrip].Headers; h == nil || len(h.CustomRequestHeaders) != 3 ||
				h.CustomRequestHeaders["X-Extauthz-Providers"] != "" || h.CustomRequestHeaders["X-Original-Uri"] != "" {
				t.Errorf("headers %s: %+v, want the X-Extauthz-* and X-Original-Uri deleted", traefikStrip, h)
			}
			fa := mw[traefikForwardAuth].ForwardAuth
			if fa == nil || fa.Address != tc.address || fa.TrustForwardHeader == nil || *fa.TrustForwardHeader ||
				!slices.Equal(fa.AuthResponseHeaders, tc.headers) {
				t.Errorf("forwardAuth %s: %+v, want address %s, trustForwardHeader false, authResponseHeaders %v", traefikForwardAuth, fa, tc.address, tc.headers)
			}
			if tc.in.Backend == "" {
				return
			}
			r, s := d.HTTP.Routers[traefikRouter], d.HTTP.Services[traefikService]
			if !slices.Equal(r.Middlewares, []string{TraefikChain}) || r.Service != traefikService ||
				len(s.LoadBalancer.Servers) != 1 || s.LoadBalancer.Servers[0].URL != tc.in.Backend {
				t.Errorf("router %+v, service %+v", r, s)
			}
		})
	}
}
