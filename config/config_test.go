package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const valid = `
listen:
  grpc: 127.0.0.1:9001
database:
  url: ${DB}
jwt:
  issuer: https://as.example
  audiences: [api]
  jwks_url: https://as.example/jwks
  leeway: 10s
providers:
  github:
    token_url: https://github.com/login/oauth/access_token
    client_id: gh
    client_secret: ${GH_SECRET}
    auth_style: params
  google:
    token_url: https://oauth2.googleapis.com/token
    client_id: g
    auth_style: header
    header: X-Google-Token
    id_token_header: x-google-id-token
    scopes: [openid, email]
default_providers: [github]
refresh:
  skew: 1m
encryption:
  keys:
    - id: k1
      key: ${TOKEN_KEY}
`

const testKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes, base64

func env(m map[string]string) func(string) string {
	return func(k string) string {
		if k == "TOKEN_KEY" {
			return testKey
		}
		return m[k]
	}
}

func TestParseValid(t *testing.T) {
	c, err := Parse([]byte(valid), env(map[string]string{"DB": "postgres://u@db/x", "GH_SECRET": "s3cr3t: {not yaml}"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Database.URL != "postgres://u@db/x" {
		t.Errorf("database.url = %q", c.Database.URL)
	}
	if got := c.Providers["github"].ClientSecret; got != "s3cr3t: {not yaml}" {
		t.Errorf("an expanded value must stay one scalar, got %q", got)
	}
	if got := c.Providers["github"].Header; got != "authorization" {
		t.Errorf("default header = %q", got)
	}
	if got := c.Providers["google"].Header; got != "x-google-token" {
		t.Errorf("header names are lower-cased, got %q", got)
	}
	if c.Refresh.Skew.D() != time.Minute || c.Refresh.Timeout.D() != 10*time.Second || c.JWT.Leeway.D() != 10*time.Second {
		t.Errorf("durations: skew %v timeout %v leeway %v", c.Refresh.Skew.D(), c.Refresh.Timeout.D(), c.JWT.Leeway.D())
	}
	if c.Deny.Realm != "extauthz" || c.Log.Format != "json" || c.Log.Level != "info" {
		t.Errorf("defaults not applied: %+v %+v", c.Deny, c.Log)
	}
}

func TestDatabaseURLFromEnvironment(t *testing.T) {
	c, err := Parse([]byte(valid), env(map[string]string{"DB": "postgres://file/x", "GH_SECRET": "x", "DATABASE_URL": "postgres://env/y"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Database.URL != "postgres://env/y" {
		t.Errorf("DATABASE_URL must override database.url, got %q", c.Database.URL)
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	bad := `
listen:
  grcp: ":1"
jwt:
  audiences: []
  jwks_url: ftp://x
  leeway: soon
providers:
  gh:
    token_url: /relative
    auth_style: auto
    header: "bad header"
  other:
    token_url: https://x/token
    client_id: o
    auth_style: header
    id_token_header: Authorization
default_providers: [nope]
refresh:
  timeout: 0s
`
	_, err := Parse([]byte(bad), env(nil))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	for _, want := range []string{
		`unknown key "listen.grcp"`,
		"database.url is required",
		"jwt.issuer is required",
		"jwt.audiences",
		"jwt.leeway is not a duration",
		"providers.gh.token_url",
		"providers.gh.client_id is required",
		"providers.gh.auth_style",
		`"bad header" is not a valid header name`,
		"providers.other: header and id_token_header must differ",
		`default_providers: "nope"`,
		"refresh.timeout must be positive",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestUnsetVariable(t *testing.T) {
	_, err := Parse([]byte(valid), env(map[string]string{"DB": "postgres://x/y"}))
	if err == nil || !strings.Contains(err.Error(), "GH_SECRET is not set") {
		t.Fatalf("err = %v", err)
	}
}

func TestSecretsNotEchoed(t *testing.T) {
	// A bad value next to a secret must not bring the secret into the error.
	src := strings.Replace(valid, "skew: 1m", "skew: nope", 1)
	_, err := Parse([]byte(src), env(map[string]string{"DB": "postgres://x/y", "GH_SECRET": "topsecretvalue"}))
	if err == nil || strings.Contains(err.Error(), "topsecretvalue") {
		t.Fatalf("err = %v", err)
	}
}

func TestProvidersShareHeaderUnlessOnOneRoute(t *testing.T) {
	base := `
database: {url: "postgres://x/y"}
jwt: {issuer: "https://as", audiences: [api], jwks_file: /k.json}
providers:
  github: {token_url: "https://gh/token", client_id: a, auth_style: params}
  google: {token_url: "https://g/token", client_id: b, auth_style: params}
default_providers: %s
encryption: {keys: [{id: k, key: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}]}
`
	if _, err := Parse([]byte(fmt.Sprintf(base, "[github]")), env(nil)); err != nil {
		t.Errorf("two providers writing authorization on different routes must be allowed: %v", err)
	}
	_, err := Parse([]byte(fmt.Sprintf(base, "[github, google]")), env(nil))
	if err == nil || !strings.Contains(err.Error(), `"github" and "google" both write header "authorization"`) {
		t.Errorf("default route with two authorization writers: err = %v", err)
	}
}

func TestEncryptionKeys(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "k2")
	if err := os.WriteFile(keyFile, []byte(testKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := strings.Replace(valid, "encryption:\n  keys:\n    - id: k1\n      key: ${TOKEN_KEY}\n", "", 1)
	tests := []struct {
		name, section string
		wantErr       []string
		primary       string
	}{
		{"one key is primary", "encryption: {keys: [{id: k1, key: '${TOKEN_KEY}'}]}", nil, "k1"},
		{"key file", fmt.Sprintf("encryption: {primary: k2, keys: [{id: k1, key: '${TOKEN_KEY}'}, {id: k2, key_file: %s}]}", keyFile), nil, "k2"},
		{"missing", "", []string{"encryption.keys is required"}, ""},
		{"two keys, no primary", fmt.Sprintf("encryption: {keys: [{id: k1, key: '${TOKEN_KEY}'}, {id: k2, key_file: %s}]}", keyFile), []string{"encryption.primary must name"}, ""},
		{"bad key, missing file, both", "encryption: {primary: a, keys: [{id: a, key: c2hvcnQ=}, {id: b, key_file: /nonexistent}, {id: c, key: x, key_file: y}]}",
			[]string{"encryption.keys[a]: a key must be 32 random bytes", "encryption.keys[b].key_file: cannot read /nonexistent", "encryption.keys[c]: set key or key_file, not both"}, ""},
		{"primary not a key", "encryption: {primary: zz, keys: [{id: k1, key: '${TOKEN_KEY}'}]}", []string{`primary key "zz" is not among the keys`}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(base+tc.section+"\n"), env(map[string]string{"DB": "postgres://x/y", "GH_SECRET": "x"}))
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if c.Keyring() == nil || c.Keyring().Primary() != tc.primary {
					t.Fatalf("keyring primary = %v, want %q", c.Keyring(), tc.primary)
				}
				return
			}
			for _, want := range tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v, want %q", err, want)
				}
			}
			if err != nil && strings.Contains(err.Error(), testKey) {
				t.Error("error contains key material")
			}
		})
	}
}

func TestEncryptionAcceptV1(t *testing.T) {
	base := strings.Replace(valid, "encryption:\n  keys:\n    - id: k1\n      key: ${TOKEN_KEY}\n", "", 1)
	for _, tc := range []struct {
		section string
		want    bool
	}{
		{"encryption: {keys: [{id: k1, key: '${TOKEN_KEY}'}]}", true},
		{"encryption: {accept_v1: true, keys: [{id: k1, key: '${TOKEN_KEY}'}]}", true},
		{"encryption: {accept_v1: false, keys: [{id: k1, key: '${TOKEN_KEY}'}]}", false},
	} {
		c, err := Parse([]byte(base+tc.section+"\n"), env(map[string]string{"DB": "postgres://x/y", "GH_SECRET": "x"}))
		if err != nil {
			t.Fatalf("%s: %v", tc.section, err)
		}
		if got := c.Encryption.AcceptsV1(); got != tc.want {
			t.Errorf("%s: AcceptsV1 = %v, want %v", tc.section, got, tc.want)
		}
	}
}

func TestListenTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key, ca := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	for _, p := range []string{cert, key, ca} {
		if err := os.WriteFile(p, []byte("PEM"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "missing.crt")
	withTLS := func(tls string) string {
		return strings.Replace(valid, "  grpc: 127.0.0.1:9001\n", "  grpc: 127.0.0.1:9001\n  tls:\n"+tls, 1)
	}
	vars := env(map[string]string{"DB": "postgres://x/y", "GH_SECRET": "s", "TLS_DIR": dir})

	c, err := Parse([]byte(withTLS("    cert: ${TLS_DIR}/tls.crt\n    key: "+key+"\n    client_ca: "+ca+"\n")), vars)
	if err != nil {
		t.Fatal(err)
	}
	if want := (TLS{Cert: cert, Key: key, ClientCA: ca}); !reflect.DeepEqual(c.Listen.TLS, want) {
		t.Errorf("listen.tls = %+v, want %+v", c.Listen.TLS, want)
	}
	if c, err := Parse([]byte(valid), vars); err != nil || !reflect.DeepEqual(c.Listen.TLS, TLS{}) {
		t.Errorf("without listen.tls the listener is plaintext: %+v, %v", c, err)
	}

	for _, tc := range []struct {
		name, tls string
		want      []string
	}{
		{"cert without key", "    cert: " + cert + "\n", []string{"listen.tls.cert and listen.tls.key must be set together"}},
		{"key without cert", "    key: " + key + "\n", []string{"listen.tls.cert and listen.tls.key must be set together"}},
		{"client_ca alone", "    client_ca: " + ca + "\n", []string{"listen.tls.client_ca requires listen.tls.cert and listen.tls.key"}},
		{"missing files", "    cert: " + missing + "\n    key: " + dir + "\n    client_ca: " + missing + "\n", []string{
			`listen.tls.cert: cannot read "` + missing + `": no such file or directory`,
			`listen.tls.key: "` + dir + `" is not a regular file`,
			`listen.tls.client_ca: cannot read "` + missing + `"`,
		}},
		{"misspelt key", "    client-ca: " + ca + "\n", []string{`unknown key "listen.tls.client-ca"`}},
	} {
		_, err := Parse([]byte(withTLS(tc.tls)), vars)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", tc.name, err)
			continue
		}
		for _, want := range tc.want {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error lacks %q:\n%v", tc.name, want, err)
			}
		}
	}
}

func TestListenMetricsAndShutdown(t *testing.T) {
	base := env(map[string]string{"DB": "postgres://u@db/x", "GH_SECRET": "x"})
	c, err := Parse([]byte(valid), base)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.Metrics != ":9090" || c.Shutdown.DrainDelay.D() != 5*time.Second || c.Shutdown.Timeout.D() != 15*time.Second {
		t.Errorf("defaults: listen.metrics %q, shutdown %v/%v", c.Listen.Metrics, c.Shutdown.DrainDelay.D(), c.Shutdown.Timeout.D())
	}
	set := strings.Replace(valid, "  grpc: 127.0.0.1:9001\n", "  grpc: 127.0.0.1:9001\n  metrics: 127.0.0.1:9102\n", 1) +
		"shutdown:\n  drain_delay: 0s\n  timeout: 30s\n"
	c, err = Parse([]byte(set), base)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.Metrics != "127.0.0.1:9102" || c.Shutdown.DrainDelay.D() != 0 || c.Shutdown.Timeout.D() != 30*time.Second {
		t.Errorf("set: listen.metrics %q, shutdown %v/%v", c.Listen.Metrics, c.Shutdown.DrainDelay.D(), c.Shutdown.Timeout.D())
	}
	off := strings.Replace(valid, "  grpc: 127.0.0.1:9001\n", "  grpc: 127.0.0.1:9001\n  metrics: \"off\"\n", 1)
	if c, err = Parse([]byte(off), base); err != nil || c.Listen.Metrics != MetricsOff {
		t.Errorf("listen.metrics off: %v %v", c, err)
	}
	bad := strings.Replace(valid, "  grpc: 127.0.0.1:9001\n", "  grpc: 127.0.0.1:9001\n  metrics: nope\n", 1) +
		"shutdown:\n  drain_delay: -1s\n  timeout: 0s\n"
	_, err = Parse([]byte(bad), base)
	for _, want := range []string{"listen.metrics must be", "shutdown.drain_delay must not be negative", "shutdown.timeout must be positive"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestGC(t *testing.T) {
	base := env(map[string]string{"DB": "postgres://u@db/x", "GH_SECRET": "x"})
	c, err := Parse([]byte(valid), base)
	if err != nil {
		t.Fatal(err)
	}
	if c.GC.Interval.D() != 10*time.Minute || c.GC.Batch != 1000 {
		t.Errorf("defaults: gc.interval %v, gc.batch %d; want 10m, 1000", c.GC.Interval.D(), c.GC.Batch)
	}
	for _, tt := range []struct {
		yaml     string
		interval time.Duration
		batch    int
	}{
		{"gc: {interval: 1h, batch: 50}", time.Hour, 50},
		{"gc: {interval: 0}", 0, 1000},
		{"gc: {interval: 0s, batch: 1}", 0, 1},
	} {
		c, err := Parse([]byte(valid+tt.yaml+"\n"), base)
		if err != nil {
			t.Errorf("%s: %v", tt.yaml, err)
			continue
		}
		if c.GC.Interval.D() != tt.interval || c.GC.Batch != tt.batch {
			t.Errorf("%s: gc.interval %v, gc.batch %d; want %v, %d", tt.yaml, c.GC.Interval.D(), c.GC.Batch, tt.interval, tt.batch)
		}
	}
	for _, tt := range []struct{ yaml, want string }{
		{"gc: {interval: -1m}", "gc.interval must be 0 (disabled) or at least 1s"},
		{"gc: {interval: 10ms}", "gc.interval must be 0 (disabled) or at least 1s"},
		{"gc: {interval: often}", `gc.interval is not a duration`},
		{"gc: {batch: -5}", "gc.batch must be positive"},
		{"gc: {batches: 5}", `unknown key "gc.batches"`},
	} {
		_, err := Parse([]byte(valid+tt.yaml+"\n"), base)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want it to contain %q", tt.yaml, err, tt.want)
		}
	}
}

func TestRoutes(t *testing.T) {
	base := `
database: {url: "postgres://x/y"}
jwt: {issuer: "https://as", audiences: [api], jwks_file: /k.json}
providers:
  github: {token_url: "https://gh/token", client_id: a, auth_style: params}
  gitlab: {token_url: "https://gl/token", client_id: b, auth_style: params}
  google: {token_url: "https://g/token", client_id: c, auth_style: params, header: x-google-token, id_token_header: x-google-id}
default_providers: [github]
encryption: {keys: [{id: k, key: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}]}
routes:
`
	good := base + `
  - {host: API.Example.com, path_prefix: /github/, providers: [github], required_scopes: [repo, "read:org"]}
  - {path_prefix: /github/, providers: [github, google]}
  - {host: "::1", path_prefix: /github/}
  - {path_prefix: /, required_scopes: ["https://graph.microsoft.com/.default"]}
`
	c, err := Parse([]byte(good), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Route{Host: "api.example.com", PathPrefix: "/github/", Providers: []string{"github"}, RequiredScopes: []string{"repo", "read:org"}}
	if len(c.Routes) != 4 || fmt.Sprint(c.Routes[0]) != fmt.Sprint(want) {
		t.Errorf("routes = %+v", c.Routes)
	}

	bad := base + `
  - {path_prefix: github/}
  - {host: api.example.com}
  - {host: "api.example.com:8443", path_prefix: /a/}
  - {host: "*.example.com", path_prefix: /b/}
  - {host: "bad host", path_prefix: /c/}
  - {path_prefix: "/d?x=1"}
  - {path_prefix: "/e/../f/"}
  - {path_prefix: "/%7Eg/"}
  - {path_prefix: /h/, providers: [nope]}
  - {path_prefix: /i/, providers: [github, gitlab]}
  - {path_prefix: /j/, required_scopes: ["repo read"]}
  - {path_prefix: /k/, required_scopes: ['a"b', ""]}
  - {host: API.example.com, path_prefix: /l/}
  - {host: api.example.com., path_prefix: /l/}
  - {path_prefix: /l/, colour: blue}
`
	_, err = Parse([]byte(bad), env(nil))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	for _, want := range []string{
		`routes[0].path_prefix: "github/" must start with "/"`,
		`routes[1].path_prefix is required`,
		`routes[2].host: "api.example.com:8443": give the host without a port`,
		`routes[3].host: "*.example.com": wildcards are not supported`,
		`routes[4].host: "bad host" is not a host name or IP address`,
		`routes[5].path_prefix: "/d?x=1" must not contain a query`,
		`routes[6].path_prefix: "/e/../f/" is not in normal form`,
		`write "/f/"`,
		`routes[7].path_prefix: "/%7Eg/" is not in normal form`,
		`write "/~g/"`,
		`routes[8].providers: "nope" is not defined under providers`,
		`routes[9].providers: "github" and "gitlab" both write header "authorization"`,
		`routes[10].required_scopes: "repo read" is not a scope-token`,
		`routes[11].required_scopes: "a\"b" is not a scope-token`,
		`routes[11].required_scopes: "" is not a scope-token`,
		`routes[13]: same host and path_prefix as routes[12]`,
		`unknown key "routes.colour"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if n := strings.Count(err.Error(), "\n  - "); n != 15 {
		t.Errorf("%d problems reported, want 15 (every one at once):\n%v", n, err)
	}
}

func TestTypeErrorsDoNotQuoteValues(t *testing.T) {
	src := strings.Replace(valid, "    client_secret: ${GH_SECRET}\n", "    client_secret: ${GH_SECRET}\n    scopes: ${GH_SECRET}\n", 1)
	_, err := Parse([]byte(src), env(map[string]string{"DB": "postgres://x/y", "GH_SECRET": "s3cretvalue"}))
	if err == nil || !strings.Contains(err.Error(), "cannot unmarshal") {
		t.Fatalf("err = %v, want a type error", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("type error quotes a secret: %v", err)
	}
}

func TestRouteCaseDefaultRouteAndRoutesOnly(t *testing.T) {
	base := `
database: {url: "postgres://x/y"}
jwt: {issuer: "https://as", audiences: [api], jwks_file: /k.json}
providers:
  github: {token_url: "https://gh/token", client_id: a, auth_style: params}
  gitlab: {token_url: "https://gl/token", client_id: b, auth_style: params}
  google: {token_url: "https://g/token", client_id: c, auth_style: params, header: x-google-token}
default_providers: [github]
encryption: {keys: [{id: k, key: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}]}
`
	good := base + `
routes_only: true
default_route: {providers: [google], required_scopes: [api]}
routes:
  - {path_prefix: /GitHub/, providers: [github]}
  - {path_prefix: /github/, case_sensitive: true, required_scopes: [repo]}
  - {path_prefix: /GITHUB/, case_sensitive: true}
`
	c, err := Parse([]byte(good), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !c.RoutesOnly || fmt.Sprint(c.DefaultRoute) != fmt.Sprint(DefaultRoute{Providers: []string{"google"}, RequiredScopes: []string{"api"}}) {
		t.Errorf("routes_only %v, default_route %+v", c.RoutesOnly, c.DefaultRoute)
	}
	if c.Routes[0].CaseSensitive || !c.Routes[1].CaseSensitive {
		t.Errorf("case_sensitive: %+v", c.Routes)
	}
	if c, err := Parse([]byte(base), env(nil)); err != nil || c.RoutesOnly || len(c.DefaultRoute.Providers)+len(c.DefaultRoute.RequiredScopes) != 0 {
		t.Errorf("defaults: routes_only false, empty default_route: %+v, %v", c, err)
	}

	bad := base + `
default_route: {providers: [nope, github, gitlab], required_scopes: ["two words"], path_prefix: /}
routes:
  - {path_prefix: /GitHub/}
  - {path_prefix: /github/}
  - {path_prefix: /Docs/, case_sensitive: true}
  - {path_prefix: /Docs/, case_sensitive: true}
  - {path_prefix: /docs/}
`
	_, err = Parse([]byte(bad), env(nil))
	for _, want := range []string{
		`default_route.providers: "nope" is not defined under providers`,
		`default_route.providers: "github" and "gitlab" both write header "authorization"`,
		`default_route.required_scopes: "two words" is not a scope-token`,
		`unknown key "default_route.path_prefix"`,
		`routes[1]: same host and path_prefix as routes[0]`,
		`routes[3]: same host and path_prefix as routes[2]`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if err != nil && strings.Contains(err.Error(), "routes[4]") {
		t.Errorf("a case-insensitive /docs/ and a case-sensitive /Docs/ are distinct routes:\n%v", err)
	}
}

func TestClientIdentities(t *testing.T) {
	dir := t.TempDir()
	cert, key, ca := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	for _, p := range []string{cert, key, ca} {
		if err := os.WriteFile(p, []byte("PEM"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	withTLS := func(tls string) string {
		return strings.Replace(valid, "  grpc: 127.0.0.1:9001\n", "  grpc: 127.0.0.1:9001\n  tls:\n"+tls, 1)
	}
	vars := env(map[string]string{"DB": "postgres://x/y", "GH_SECRET": "s"})
	files := "    cert: " + cert + "\n    key: " + key + "\n"
	const gw = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"

	c, err := Parse([]byte(withTLS(files+"    client_ca: "+ca+"\n    client_identities: ["+gw+", envoy.internal]\n")), vars)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Listen.TLS.ClientIdentities; len(got) != 2 || got[0] != gw || got[1] != "envoy.internal" {
		t.Errorf("client_identities = %q", got)
	}
	for _, tc := range []struct {
		name, tls string
		want      []string
	}{
		{"without client_ca", files + "    client_identities: [" + gw + "]\n",
			[]string{"listen.tls.client_identities requires listen.tls.client_ca"}},
		{"malformed", files + "    client_ca: " + ca + "\n    client_identities: [\"*.internal\", \"spiffe://td/x?secret=1\", \"\"]\n", []string{
			"listen.tls.client_identities[0]: invalid client identity: wildcards",
			"listen.tls.client_identities[1]: invalid client identity",
			"listen.tls.client_identities[2]: invalid client identity",
		}},
	} {
		_, err := Parse([]byte(withTLS(tc.tls)), vars)
		for _, want := range tc.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error lacks %q:\n%v", tc.name, want, err)
			}
		}
		if err != nil && strings.Contains(err.Error(), "secret=1") {
			t.Errorf("%s: error quotes a value:\n%v", tc.name, err)
		}
	}
}

// TestInsecureHTTP: the URLs that carry secrets or the keys that verify
// JWTs must be https, unless to a loopback host or allowed explicitly; the
// error names the key and never the URL.
func TestInsecureHTTP(t *testing.T) {
	const tmpl = `
database: {url: "postgres://x/y"}
jwt: {issuer: "http://as.example", audiences: [api], jwks_url: "%s"}
providers:
  github: {token_url: "%s", client_id: a, client_secret: "${GH_SECRET}", auth_style: params, issuer: "%s"}
default_providers: [github]
deny: {resource_metadata: "http://api.example/.well-known/oauth-protected-resource"}
encryption: {keys: [{id: k, key: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}]}
%s
`
	const secretURL = "http://idp.example/token?key=s3cret"
	tests := []struct {
		name                string
		jwks, token, issuer string
		extra               string
		want                []string // problems; none means valid
	}{
		{"https everywhere", "https://as.example/jwks", "https://idp.example/token", "https://idp.example", "", nil},
		{"loopback IPv4", "http://127.0.0.1:8080/jwks", "http://127.5.6.7/token", "http://localhost:9000", "", nil},
		{"loopback IPv6 and LOCALHOST", "http://[::1]:8080/jwks", "http://LOCALHOST/token", "http://localhost./x", "", nil},
		{"plain http to other hosts", "http://as.example/jwks", secretURL, "http://idp.example", "", []string{
			"jwt.jwks_url must use https", "providers.github.token_url must use https", "providers.github.issuer must use https"}},
		{"names that only look local", "http://127.0.0.1.nip.io/jwks", "http://localhost.example/token", "http://[::2]/", "", []string{
			"jwt.jwks_url must use https", "providers.github.token_url must use https", "providers.github.issuer must use https"}},
		{"private addresses are not loopback", "http://10.0.0.1/jwks", "http://192.168.1.1/token", "http://[fd00::1]/", "", []string{
			"jwt.jwks_url must use https", "providers.github.token_url must use https", "providers.github.issuer must use https"}},
		{"allow_insecure_http", "http://as.example/jwks", secretURL, "http://idp.example", "allow_insecure_http: true", nil},
		{"credentials in the token URL", "https://as.example/jwks", "https://user:pa55word@idp.example/token?key=s3cret", "https://idp.example", "",
			[]string{"providers.github.token_url must not carry credentials"}},
		{"allow_insecure_http false", "http://as.example/jwks", "https://idp.example/token", "", "allow_insecure_http: false", []string{"jwt.jwks_url must use https"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := fmt.Sprintf(tmpl, tc.jwks, tc.token, tc.issuer, tc.extra)
			if tc.issuer == "" {
				src = strings.Replace(src, `, issuer: ""`, "", 1)
			}
			_, err := Parse([]byte(src), env(map[string]string{"GH_SECRET": "gh-s3cret"}))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q:\n%v", want, err)
				}
			}
			if n := strings.Count(err.Error(), "\n  - "); n != len(tc.want) {
				t.Errorf("%d problems, want %d:\n%v", n, len(tc.want), err)
			}
			for _, leak := range []string{"pa55word", "s3cret", "idp.example", "as.example", "10.0.0.1"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error quotes a URL (%q):\n%v", leak, err)
				}
			}
		})
	}
}

// TestRevocationURL: providers.NAME.revocation_url is optional, checked by
// the OAuth client (absolute http(s), no credentials) and by the transport
// rule of token_url; the error names the key and never the URL.
func TestRevocationURL(t *testing.T) {
	const tmpl = `
database: {url: "postgres://x/y"}
jwt: {issuer: "https://as.example", audiences: [api], jwks_url: "https://as.example/jwks"}
providers:
  github: {token_url: "https://idp.example/token", client_id: a, auth_style: header, revocation_url: "%s"}
default_providers: [github]
encryption: {keys: [{id: k, key: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}]}
%s
`
	for _, tc := range []struct {
		name, url, extra string
		want             string // the problem; "" means valid
	}{
		{"unset", "", "", ""},
		{"https", "https://idp.example/oauth/revoke?tenant=s3cret", "", ""},
		{"loopback http", "http://127.0.0.1:8080/revoke", "", ""},
		{"plain http", "http://idp.example/revoke?tenant=s3cret", "", "providers.github.revocation_url must use https"},
		{"plain http allowed", "http://idp.example/revoke?tenant=s3cret", "allow_insecure_http: true", ""},
		{"credentials", "https://u:pa55word@idp.example/revoke", "", "providers.github.revocation_url must not carry credentials"},
		{"relative", "/revoke?tenant=s3cret", "", "providers.github.revocation_url must be an absolute http(s) URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(fmt.Sprintf(tmpl, tc.url, tc.extra)), env(nil))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := c.Providers["github"].OAuthClient().RevocationURL; got != tc.url {
					t.Errorf("OAuthClient().RevocationURL = %q, want %q", got, tc.url)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if n := strings.Count(err.Error(), "\n  - "); n != 1 {
				t.Errorf("%d problems, want 1:\n%v", n, err)
			}
			for _, leak := range []string{"pa55word", "s3cret", "idp.example"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error quotes the URL (%q):\n%v", leak, err)
				}
			}
		})
	}
}
