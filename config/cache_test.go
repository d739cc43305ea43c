package config

import (
	"strings"
	"testing"
	"time"
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
		stale      time.Duration // 0: the default
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
			problem: "database.direct_url must be a PostgreSQL connection string"},
		{name: "direct URL, other scheme with a query", yaml: "database:\n  url: ${DB}\n  direct_url: mysql://x/y?a=b\n",
			problem: "database.direct_url must be a PostgreSQL connection string"},
		{name: "direct URL, two hosts", yaml: "database:\n  url: ${DB}\n  direct_url: postgres://a:5432,b:5433/x?target_session_attrs=read-write\n",
			jwt: DefaultJWTCacheSize, token: DefaultTokenCacheSize, direct: "postgres://a:5432,b:5433/x?target_session_attrs=read-write"},
		{name: "direct keyword/value, two hosts", yaml: "database:\n  url: ${DB}\n  direct_url: host=a,b port=5432,5433 dbname=x target_session_attrs=read-write\n",
			jwt: DefaultJWTCacheSize, token: DefaultTokenCacheSize, direct: "host=a,b port=5432,5433 dbname=x target_session_attrs=read-write"},
		{name: "stale if error", yaml: "cache:\n  stale_if_error: 2m\n", jwt: DefaultJWTCacheSize, token: DefaultTokenCacheSize, stale: 2 * time.Minute},
		{name: "stale if error off", yaml: "cache:\n  stale_if_error: 0s\n", jwt: DefaultJWTCacheSize, token: DefaultTokenCacheSize, stale: -1},
		{name: "stale if error negative", yaml: "cache:\n  stale_if_error: -1s\n", problem: "cache.stale_if_error must not be negative"},
		{name: "stale if error not a duration", yaml: "cache:\n  stale_if_error: soon\n", problem: "cache.stale_if_error is not a duration"},
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
			stale := max(tt.stale, 0)
			if tt.stale == 0 {
				stale = DefaultStaleIfError
			}
			if got := c.Cache.StaleIfError.D(); got != stale {
				t.Errorf("stale_if_error = %v, want %v", got, stale)
			}
		})
	}
}

// TestDatabaseURLForms: database.url takes what pgx takes, several hosts
// included, and refuses other schemes without quoting the string.
func TestDatabaseURLForms(t *testing.T) {
	for _, tt := range []struct {
		url string
		ok  bool
	}{
		{"postgres://u:pw@db/x", true},
		{"postgresql://u@db:5432/x?sslmode=disable", true},
		{"postgres://u:pw@h1:5432,h2:5433/x?target_session_attrs=read-write", true},
		{"postgres://u@[::1]:5432,h2:5433/x?target_session_attrs=primary", true},
		{"host=h1,h2 port=5432,5433 dbname=x user=u target_session_attrs=read-write", true},
		{"  host=db dbname=x", true},
		{"mysql://u:pw@db/x", false},
		{"mysql://u:pw@db/x?a=b", false},
		{"postgres://u:pw@db:notaport/x", false},
		{"postgres://u:pw@db/x?target_session_attrs=sometimes", false},
		{"db.example.com", false},
	} {
		t.Run(tt.url, func(t *testing.T) {
			_, err := Parse([]byte(valid), env(map[string]string{"DB": tt.url, "GH_SECRET": "x"}))
			if tt.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tt.ok && (err == nil || !strings.Contains(err.Error(), "database.url must be a PostgreSQL connection string")) {
				t.Fatalf("err = %v, want database.url refused", err)
			}
			if err != nil && strings.Contains(err.Error(), "pw") {
				t.Errorf("the error quotes the password: %v", err)
			}
		})
	}
}
