package config

import (
	"strings"
	"testing"
)

func TestCacheDefaults(t *testing.T) {
	c, err := Parse([]byte(valid), env(map[string]string{"DB": "postgres://file/x", "GH_SECRET": "x", "DATABASE_URL": "postgres://env/y"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Cache.JWTEntries() != DefaultJWTCacheSize || c.Cache.TokenEntries() != DefaultTokenCacheSize {
		t.Errorf("cache sizes = %d, %d; want the defaults", c.Cache.JWTEntries(), c.Cache.TokenEntries())
	}
	if c.Database.DirectURL != "postgres://env/y" {
		t.Errorf("database.direct_url = %q, want database.url (as DATABASE_URL set it)", c.Database.DirectURL)
	}
}

func TestCacheSection(t *testing.T) {
	getenv := env(map[string]string{"DB": "postgres://pgbouncer/x", "GH_SECRET": "x"})
	for _, tt := range []struct {
		name       string
		yaml       string
		jwt, token int
		direct     string
		problem    string
	}{
		{name: "sizes", yaml: "cache:\n  jwt_size: 5\n  token_size: 7\n", jwt: 5, token: 7},
		{name: "zero disables one", yaml: "cache:\n  jwt_size: 0\n", jwt: 0, token: DefaultTokenCacheSize},
		{name: "disabled", yaml: "cache:\n  enabled: false\n  jwt_size: 5\n", jwt: 0, token: 0},
		{name: "enabled", yaml: "cache:\n  enabled: true\n", jwt: DefaultJWTCacheSize, token: DefaultTokenCacheSize},
		{name: "direct URL", yaml: "database:\n  url: ${DB}\n  direct_url: postgres://primary:5432/x\n",
			jwt: DefaultJWTCacheSize, token: DefaultTokenCacheSize, direct: "postgres://primary:5432/x"},
		{name: "negative", yaml: "cache:\n  jwt_size: -1\n  token_size: -2\n",
			problem: "cache.jwt_size must not be negative"},
		{name: "bad direct URL", yaml: "database:\n  url: ${DB}\n  direct_url: mysql://x\n",
			problem: "database.direct_url must be a postgres:// URL"},
		{name: "unknown key", yaml: "cache:\n  size: 3\n", problem: `unknown key "cache.size"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			text := strings.Replace(valid, "database:\n  url: ${DB}\n", "", 1) + tt.yaml
			if !strings.Contains(tt.yaml, "database:") {
				text += "database:\n  url: ${DB}\n"
			}
			c, err := Parse([]byte(text), getenv)
			if tt.problem != "" {
				if err == nil || !strings.Contains(err.Error(), tt.problem) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Cache.JWTEntries() != tt.jwt || c.Cache.TokenEntries() != tt.token {
				t.Errorf("sizes = %d, %d; want %d, %d", c.Cache.JWTEntries(), c.Cache.TokenEntries(), tt.jwt, tt.token)
			}
			want := tt.direct
			if want == "" {
				want = "postgres://pgbouncer/x"
			}
			if c.Database.DirectURL != want {
				t.Errorf("direct_url = %q, want %q", c.Database.DirectURL, want)
			}
		})
	}
}
