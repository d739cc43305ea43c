package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/internal/tlsreload/tlstest"
	"github.com/extauthz/extauthz/oauthclient"
)

// TestProviderAuthentication: token_endpoint_auth, its older spelling
// auth_style, the files of each method, ca_file, and issuer in place of
// token_url; each problem is named by its key, once.
func TestProviderAuthentication(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile := filepath.Join(dir, "jwt-key.pem")
	tlstest.WriteFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	ca := tlstest.NewCA(t, "idp ca")
	caFile, cert, certKey := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	tlstest.WriteFile(t, caFile, ca.PEM)
	ca.Client(t, "extauthz").WriteFiles(t, cert, certKey)
	missing := filepath.Join(dir, "missing.pem")

	const tmpl = `
database: {url: "postgres://x/y"}
jwt: {issuer: "https://as.example", audiences: [api], jwks_url: "https://as.example/jwks"}
providers:
  idp: {client_id: a, %s}
default_providers: [idp]
encryption: {keys: [{id: k, key: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}]}
`
	const tokenURL = `token_url: "https://idp.example/token"`
	for _, tc := range []struct {
		name, settings string
		method         oauthclient.AuthMethod // when valid
		want           []string               // the problems; none: valid
	}{
		{"auth_style header", tokenURL + `, auth_style: header`, oauthclient.ClientSecretBasic, nil},
		{"auth_style params", tokenURL + `, auth_style: params`, oauthclient.ClientSecretPost, nil},
		{"client_secret_basic", tokenURL + `, token_endpoint_auth: client_secret_basic, client_secret: s3cret`, oauthclient.ClientSecretBasic, nil},
		{"client_secret_post", tokenURL + `, token_endpoint_auth: client_secret_post`, oauthclient.ClientSecretPost, nil},
		{"private_key_jwt", tokenURL + fmt.Sprintf(`, token_endpoint_auth: private_key_jwt, private_key_file: %q, key_id: k1`, keyFile), oauthclient.PrivateKeyJWT, nil},
		{"private_key_jwt issuer audience", fmt.Sprintf(`issuer: "https://idp.example", token_endpoint_auth: private_key_jwt, private_key_file: %q, key_id: k1, assertion_audience: issuer`, keyFile), oauthclient.PrivateKeyJWT, nil},
		{"tls_client_auth", tokenURL + fmt.Sprintf(`, token_endpoint_auth: tls_client_auth, client_cert_file: %q, client_key_file: %q, ca_file: %q`, cert, certKey, caFile), oauthclient.TLSClientAuth, nil},
		{"issuer instead of token_url", `issuer: "https://idp.example", authorization_url: "https://idp.example/authorize", auth_style: header`, oauthclient.ClientSecretBasic, nil},
		{"both keys", tokenURL + `, auth_style: header, token_endpoint_auth: client_secret_basic`, 0,
			[]string{"providers.idp: set token_endpoint_auth or auth_style (its older spelling), not both"}},
		{"neither key", tokenURL, 0, []string{"providers.idp.token_endpoint_auth must be client_secret_basic, client_secret_post, private_key_jwt or tls_client_auth"}},
		{"bad auth_style", tokenURL + `, auth_style: basic`, 0, []string{`providers.idp.auth_style must be "header" or "params"`}},
		{"bad token_endpoint_auth", tokenURL + `, token_endpoint_auth: client_secret_jwt`, 0, []string{"providers.idp.token_endpoint_auth must be"}},
		{"neither token_url nor issuer", `auth_style: header`, 0, []string{"providers.idp.token_url is required (or issuer"}},
		{"private_key_jwt without file and kid", tokenURL + `, token_endpoint_auth: private_key_jwt`, 0,
			[]string{"providers.idp.key_id is required", "providers.idp.private_key_file is required"}},
		{"private_key_jwt missing file", tokenURL + fmt.Sprintf(`, token_endpoint_auth: private_key_jwt, private_key_file: %q, key_id: k1`, missing), 0,
			[]string{"providers.idp.private_key_file: cannot read"}},
		{"private_key_jwt with a secret", tokenURL + fmt.Sprintf(`, token_endpoint_auth: private_key_jwt, private_key_file: %q, key_id: k1, client_secret: s3cret`, keyFile), 0,
			[]string{"providers.idp.client_secret must not be set with private_key_jwt"}},
		{"tls_client_auth without files", tokenURL + `, token_endpoint_auth: tls_client_auth`, 0,
			[]string{"providers.idp.client_cert_file and client_key_file are required"}},
		{"tls_client_auth key file is not the certificate's", tokenURL + fmt.Sprintf(`, token_endpoint_auth: tls_client_auth, client_cert_file: %q, client_key_file: %q`, cert, keyFile), 0,
			[]string{"providers.idp.client_cert_file: private key file"}},
		{"key file with another method", tokenURL + fmt.Sprintf(`, auth_style: header, private_key_file: %q`, keyFile), 0,
			[]string{"providers.idp.private_key_file is used only with token_endpoint_auth private_key_jwt"}},
		{"missing ca_file", tokenURL + fmt.Sprintf(`, auth_style: header, ca_file: %q`, missing), 0, []string{"providers.idp.ca_file: CA file"}},
		{"plain http authorization_url", tokenURL + `, auth_style: header, authorization_url: "http://idp.example/authorize"`, 0,
			[]string{"providers.idp.authorization_url must use https"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(fmt.Sprintf(tmpl, tc.settings)), env(nil))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if got := c.Providers["idp"].OAuthClient().AuthMethod; got != tc.method {
					t.Errorf("method = %v, want %v", got, tc.method)
				}
				return
			}
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			// One problem per line, each said once.
			if n, want := strings.Count(err.Error(), "\n  - "), len(tc.want); n != want {
				t.Errorf("%d problems, want %d:\n%v", n, want, err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error quotes the secret:\n%v", err)
			}
		})
	}
}
