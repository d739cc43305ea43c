package config

import (
	"errors"
	"fmt"
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
`

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

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
		"soon",
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
`
	if _, err := Parse([]byte(fmt.Sprintf(base, "[github]")), env(nil)); err != nil {
		t.Errorf("two providers writing authorization on different routes must be allowed: %v", err)
	}
	_, err := Parse([]byte(fmt.Sprintf(base, "[github, google]")), env(nil))
	if err == nil || !strings.Contains(err.Error(), `"github" and "google" both write header "authorization"`) {
		t.Errorf("default route with two authorization writers: err = %v", err)
	}
}
