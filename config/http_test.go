package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// tlsFiles writes placeholder certificate, key and CA files (loading only
// checks that they are readable) into a new directory and returns it and
// their paths.
func tlsFiles(t *testing.T) (dir, cert, key, ca string) {
	t.Helper()
	dir = t.TempDir()
	cert, key, ca = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	for _, p := range []string{cert, key, ca} {
		if err := os.WriteFile(p, []byte("PEM"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir, cert, key, ca
}

func TestListenHTTP(t *testing.T) {
	dir, cert, key, ca := tlsFiles(t)
	vars := env(map[string]string{"DB": "postgres://x/y", "GH_SECRET": "s"})
	with := func(listenHTTP, httpSection string) string {
		s := valid
		if listenHTTP != "" {
			s = strings.Replace(s, "  grpc: 127.0.0.1:9001\n", "  grpc: 127.0.0.1:9001\n  http: "+listenHTTP+"\n", 1)
		}
		if httpSection != "" {
			s += "http:\n" + httpSection
		}
		return s
	}

	c, err := Parse([]byte(valid), vars)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.HTTP != "" {
		t.Errorf("listen.http is on by default: %q", c.Listen.HTTP)
	}

	for _, tc := range []struct {
		name, listen, section string
		network, address      string
		tls                   TLS
	}{
		{name: "tcp", listen: "127.0.0.1:9002", network: "tcp", address: "127.0.0.1:9002"},
		{name: "any interface", listen: `":9002"`, network: "tcp", address: ":9002"},
		{name: "unix socket", listen: "unix:/run/extauthz/http.sock", network: "unix", address: "/run/extauthz/http.sock"},
		{name: "mTLS", listen: "127.0.0.1:9002",
			section: "  tls:\n    cert: " + cert + "\n    key: " + key + "\n    client_ca: " + ca + "\n    client_identities: [nginx.internal]\n",
			network: "tcp", address: "127.0.0.1:9002",
			tls: TLS{Cert: cert, Key: key, ClientCA: ca, ClientIdentities: []string{"nginx.internal"}}},
	} {
		c, err := Parse([]byte(with(tc.listen, tc.section)), vars)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if n, a := c.Listen.HTTPAddr(); n != tc.network || a != tc.address {
			t.Errorf("%s: HTTPAddr = %s %s, want %s %s", tc.name, n, a, tc.network, tc.address)
		}
		if !reflect.DeepEqual(c.HTTP.TLS, tc.tls) {
			t.Errorf("%s: http.tls = %+v, want %+v", tc.name, c.HTTP.TLS, tc.tls)
		}
	}

	for _, tc := range []struct {
		name, listen, section string
		want                  []string
	}{
		{"no port", "127.0.0.1", "", []string{"listen.http must be host:port, :port or unix:/absolute/path"}},
		{"relative socket", "unix:run/x.sock", "", []string{`listen.http: a Unix socket is "unix:" and an absolute path`}},
		{"empty socket", `"unix:"`, "", []string{`listen.http: a Unix socket is "unix:" and an absolute path`}},
		{"same as grpc", "127.0.0.1:9001", "", []string{"listen.http must differ from listen.grpc and listen.metrics"}},
		{"tls without listener", "", "  tls:\n    cert: " + cert + "\n    key: " + key + "\n",
			[]string{"http.tls is set but listen.http is not"}},
		{"identities without listener", "", "  tls:\n    client_identities: [nginx]\n",
			[]string{"http.tls is set but listen.http is not"}},
		{"cert without key", "127.0.0.1:9002", "  tls:\n    cert: " + cert + "\n",
			[]string{"http.tls.cert and http.tls.key must be set together"}},
		{"identities without CA", "127.0.0.1:9002", "  tls:\n    cert: " + cert + "\n    key: " + key + "\n    client_identities: [nginx]\n",
			[]string{"http.tls.client_identities requires http.tls.client_ca"}},
		{"bad identity", "127.0.0.1:9002", "  tls:\n    cert: " + cert + "\n    key: " + key + "\n    client_ca: " + ca + "\n    client_identities: ['*.internal']\n",
			[]string{"http.tls.client_identities[0]: invalid client identity: wildcards"}},
		{"missing file", "127.0.0.1:9002", "  tls:\n    cert: " + dir + "/nope\n    key: " + key + "\n",
			[]string{`http.tls.cert: cannot read "` + dir + `/nope"`}},
		{"misspelt key", "127.0.0.1:9002", "  tls:\n    client-ca: " + ca + "\n", []string{`unknown key "http.tls.client-ca"`}},
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
