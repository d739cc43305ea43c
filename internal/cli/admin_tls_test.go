package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/internal/tlsreload/tlstest"
	"github.com/extauthz/extauthz/jwtauth/jwttest"
	"github.com/extauthz/extauthz/store/encrypted"
	"github.com/extauthz/extauthz/store/postgres"
	"github.com/extauthz/extauthz/tokencrypt"
)

// TestSessionAPIClientCertificates: on a TLS listen.admin, a caller is
// accepted by its client certificate alone when it carries one of
// admin.client_identities, or by a bearer token without any certificate;
// a certificate the CA issued to another workload, or nothing at all, is
// refused and writes nothing.
func TestSessionAPIClientCertificates(t *testing.T) {
	dsn := pgtest.New(t)
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "extauthz CA")
	certFile, keyFile, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	server := ca.Server(t, "extauthz")
	server.WriteFiles(t, certFile, keyFile)
	tlstest.WriteFile(t, caFile, ca.PEM)
	signer := jwttest.NewSigner(t)
	const keycloak = "spiffe://cluster.local/ns/auth/sa/keycloak"
	env := map[string]string{"DB": dsn, "KEY": tokencrypt.GenerateKey()}
	text := fmt.Sprintf(`
listen:
  grpc: 127.0.0.1:0
  metrics: 127.0.0.1:0
  admin: ":0"
database:
  url: ${DB}
jwt:
  issuer: https://as.test
  audiences: [api]
  jwks_file: %s
providers:
  gh: {token_url: "https://gh.test/token", client_id: gh, auth_style: params}
default_providers: [gh]
shutdown:
  drain_delay: 0s
admin:
  audience: extauthz-admin
  client_identities: [%s]
  tls:
%sencryption:
  keys:
    - id: k1
      key: ${KEY}
`, signer.WriteJWKSFile(t), keycloak, tlsBlock(certFile, keyFile, caFile, nil))
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string { return env[k] }
	cfg, err := config.Load(path, getenv)
	if err != nil {
		t.Fatal(err)
	}
	s := runInProcess(t, cfg, getenv)
	pg, err := postgres.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	st := encrypted.New(pg, cfg.Keyring())

	now := time.Now()
	bearer := signer.Sign(t, map[string]any{"iss": "https://as.test", "aud": "extauthz-admin", "sub": "as", "client_id": "as",
		"scope": "extauthz:sessions", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()})
	const upstream = "gho_ADMIN_TLS_upstream"
	put := func(t *testing.T, session string, client *tlstest.Leaf, tok string) (int, error) {
		t.Helper()
		tc := &tls.Config{RootCAs: ca.Pool()}
		if client != nil {
			cert := client.TLSCertificate(t)
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
		}
		c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
		defer c.CloseIdleConnections()
		_, port, err := net.SplitHostPort(s.admin.String())
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest("PUT", "https://localhost:"+port+"/v1/sessions/"+session+"/providers/gh",
			strings.NewReader(`{"subject":"alice","client_id":"app","access_token":"`+upstream+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	stored := func(session string) bool {
		rows, err := st.GetSession(context.Background(), session)
		return err == nil && len(rows) == 1 && rows[0].AccessToken == upstream
	}

	if status, err := put(t, "s-cert", ca.ClientWithSANs(t, "keycloak", keycloak), ""); err != nil || status != 201 || !stored("s-cert") {
		t.Errorf("the accepted certificate: %d, %v (stored %v)", status, err, stored("s-cert"))
	}
	if status, err := put(t, "s-bearer", nil, bearer); err != nil || status != 201 || !stored("s-bearer") {
		t.Errorf("a bearer token without a certificate: %d, %v (stored %v)", status, err, stored("s-bearer"))
	}
	if status, err := put(t, "s-other", ca.ClientWithSANs(t, "api", "spiffe://cluster.local/ns/api/sa/api"), ""); err != nil || status != 403 || stored("s-other") {
		t.Errorf("another workload's certificate: %d, %v; want 403, nothing stored", status, err)
	}
	if status, err := put(t, "s-none", nil, ""); err != nil || status != 401 || stored("s-none") {
		t.Errorf("no credentials: %d, %v; want 401, nothing stored", status, err)
	}
	stranger := tlstest.NewCA(t, "another CA").ClientWithSANs(t, "keycloak", keycloak)
	if status, err := put(t, "s-stranger", stranger, ""); err == nil || stored("s-stranger") {
		t.Errorf("a certificate of another CA: %d; want the handshake refused", status)
	}
	// The admin listener's certificate is watched for expiry; the gRPC
	// listener, plaintext here, has no series.
	resp, err := http.Get("http://" + s.metrics.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := fmt.Sprintf(`extauthz_tls_certificate_expiry_timestamp_seconds{listener="admin"} %g`, float64(server.Cert.NotAfter.Unix()))
	if !strings.Contains(string(metrics), want) || strings.Contains(string(metrics), `extauthz_tls_certificate_expiry_timestamp_seconds{listener="grpc"}`) {
		t.Errorf("/metrics: want %s and no grpc series", want)
	}
	logs := s.logs.String()
	if !strings.Contains(logs, `"caller":"certificate:`+keycloak+`"`) {
		t.Errorf("the certificate caller is not in the audit line:\n%s", logs)
	}
	for _, secret := range []string{upstream, bearer} {
		if strings.Contains(logs, secret) {
			t.Error("a token is in the logs")
		}
	}
}
