package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestAdmin(t *testing.T) {
	_, cert, key, ca := tlsFiles(t)
	vars := env(map[string]string{"DB": "postgres://x/y", "GH_SECRET": "s"})
	with := func(listenAdmin, section string) string {
		s := valid
		if listenAdmin != "" {
			s = strings.Replace(s, "  grpc: 127.0.0.1:9001\n", "  grpc: 127.0.0.1:9001\n  admin: "+listenAdmin+"\n", 1)
		}
		if section != "" {
			s += "admin:\n" + section
		}
		return s
	}
	tlsSection := "  tls:\n    cert: " + cert + "\n    key: " + key + "\n    client_ca: " + ca + "\n"

	c, err := Parse([]byte(valid), vars)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.Admin != "" {
		t.Errorf("listen.admin is on by default: %q", c.Listen.Admin)
	}

	t.Run("bearer tokens with jwt's issuer and keys by default", func(t *testing.T) {
		c, err := Parse([]byte(with("127.0.0.1:9003", "  audience: extauthz-admin\n  allowed_clients: [keycloak]\n")), vars)
		if err != nil {
			t.Fatal(err)
		}
		j := c.AdminJWT()
		if j.Issuer != "https://as.example" || j.JWKSURL != "https://as.example/jwks" || !reflect.DeepEqual(j.Audiences, []string{"extauthz-admin"}) ||
			!j.WithoutSession || c.Admin.Scope != DefaultAdminScope {
			t.Errorf("admin JWT config %+v, scope %q", j, c.Admin.Scope)
		}
	})
	t.Run("certificates only, over TLS on any address", func(t *testing.T) {
		c, err := Parse([]byte(with(`":9003"`, tlsSection+"  client_identities: [spiffe://cluster.local/ns/auth/sa/keycloak]\n")), vars)
		if err != nil {
			t.Fatal(err)
		}
		if c.Admin.TLS.ClientCA != ca || len(c.Admin.ClientIdentities) != 1 {
			t.Errorf("admin %+v", c.Admin)
		}
	})

	for _, tc := range []struct {
		name, listen, section string
		want                  []string
	}{
		{"no authentication", "127.0.0.1:9003", "", []string{"listen.admin needs a way to authenticate callers"}},
		{"no authentication, TLS only", "127.0.0.1:9003", tlsSection, []string{"listen.admin needs a way to authenticate callers"}},
		{"plaintext on a public address", `":9003"`, "  audience: a\n", []string{"without admin.tls.cert it must be a loopback address"}},
		{"no port", "127.0.0.1", "  audience: a\n", []string{"listen.admin must be host:port or :port"}},
		{"same as grpc", "127.0.0.1:9001", "  audience: a\n", []string{"listen.admin must differ"}},
		{"identities without CA", "127.0.0.1:9003", "  client_identities: [keycloak.internal]\n",
			[]string{"admin.client_identities requires admin.tls.client_ca"}},
		{"bad identity", "127.0.0.1:9003", tlsSection + "  client_identities: ['*.internal']\n",
			[]string{"admin.client_identities[0]: invalid client identity"}},
		{"allowed clients without tokens", "127.0.0.1:9003", tlsSection + "  client_identities: [a.internal]\n  allowed_clients: [x]\n",
			[]string{"admin.allowed_clients restricts bearer tokens: it needs admin.audience"}},
		{"plain http keys", "127.0.0.1:9003", "  audience: a\n  jwks_url: http://as.example/jwks\n",
			[]string{"admin.jwks_url must use https"}},
		{"both key sources", "127.0.0.1:9003", "  audience: a\n  jwks_url: https://as.example/jwks\n  jwks_file: " + key + "\n",
			[]string{"admin: set only one of jwks_url and jwks_file"}},
		{"admin without listener", "", "  audience: a\n", []string{"admin is set but listen.admin is not"}},
		{"misspelt key", "127.0.0.1:9003", "  audience: a\n  scopes: [x]\n", []string{`unknown key "admin.scopes"`}},
	} {
		_, err := Parse([]byte(with(tc.listen, tc.section)), vars)
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
