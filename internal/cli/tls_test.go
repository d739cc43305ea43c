package cli

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/internal/tlsreload/tlstest"
	"github.com/extauthz/extauthz/jwtauth/jwttest"
)

// tlsServeConfig writes a configuration serving mTLS on listen.grpc from
// the given files, with extraTLS lines (indented) added to listen.tls.
func tlsServeConfig(t *testing.T, cert, key, clientCA string, extraTLS ...string) (path string, getenv func(string) string) {
	return writeServeConfig(t, "  tls:\n"+tlsBlock(cert, key, clientCA, extraTLS), "")
}

// httpTLSServeConfig writes a configuration serving listen.http (on a
// loopback port) with mTLS from the given files, extraTLS lines added to
// http.tls; listen.grpc is plaintext.
func httpTLSServeConfig(t *testing.T, cert, key, clientCA string, extraTLS ...string) (path string, getenv func(string) string) {
	return writeServeConfig(t, "  http: 127.0.0.1:0\n", "http:\n  tls:\n"+tlsBlock(cert, key, clientCA, extraTLS))
}

// tlsBlock is the content of a TLS section (listen.tls, http.tls).
func tlsBlock(cert, key, clientCA string, extra []string) string {
	return fmt.Sprintf("    cert: %s\n    key: %s\n    client_ca: %s\n%s\n", cert, key, clientCA, strings.Join(extra, "\n"))
}

// writeServeConfig writes a configuration with listen lines added to
// listen and top added at the top level. The database is never reached:
// health checks and a Check without credentials do not need it.
func writeServeConfig(t *testing.T, listen, top string) (path string, getenv func(string) string) {
	t.Helper()
	jwks := jwttest.NewSigner(t).WriteJWKSFile(t)
	text := fmt.Sprintf(`
listen:
  grpc: 127.0.0.1:0
  metrics: "off"
%s
%s
database:
  url: postgres://extauthz@127.0.0.1:1/unused
jwt:
  issuer: https://as.test
  audiences: [api]
  jwks_file: %s
providers:
  gh: {token_url: "https://gh.test/token", client_id: gh, auth_style: params}
default_providers: [gh]
shutdown:
  drain_delay: 0s
encryption:
  keys:
    - id: k1
      key: ${TLS_TEST_TOKEN_KEY}
`, listen, top, jwks)
	path = filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	vars := map[string]string{"TLS_TEST_TOKEN_KEY": hex.EncodeToString(secret)}
	return path, func(k string) string { return vars[k] }
}

func TestServeMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "extauthz CA")
	certFile, keyFile, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	ca.Server(t, "extauthz").WriteFiles(t, certFile, keyFile)
	tlstest.WriteFile(t, caFile, ca.PEM)
	path, getenv := tlsServeConfig(t, certFile, keyFile, caFile)
	cfg, err := config.Load(path, getenv)
	if err != nil {
		t.Fatal(err)
	}

	addr, logs := serveInProcess(t, cfg, getenv)

	dial := func(t *testing.T, tc *tls.Config) *grpc.ClientConn {
		t.Helper()
		tc.RootCAs = ca.Pool()
		conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	rpcCtx := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		return ctx
	}

	t.Run("health and Check over mTLS", func(t *testing.T) {
		conn := dial(t, &tls.Config{Certificates: []tls.Certificate{ca.Client(t, "envoy").TLSCertificate(t)}})
		h, err := healthpb.NewHealthClient(conn).Check(rpcCtx(t), &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName})
		if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health = %v, %v", h, err)
		}
		resp, err := authv3.NewAuthorizationClient(conn).Check(rpcCtx(t), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/"}},
		}})
		if err != nil || resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
			t.Fatalf("Check without credentials = %v, %v; want a 401 deny", resp, err)
		}
	})
	t.Run("no client certificate refused", func(t *testing.T) {
		conn := dial(t, &tls.Config{})
		if _, err := healthpb.NewHealthClient(conn).Check(rpcCtx(t), &healthpb.HealthCheckRequest{}); err == nil {
			t.Fatal("health check without a client certificate succeeded")
		}
	})
	if !strings.Contains(logs.String(), "TLS certificate loaded") {
		t.Errorf("logs:\n%s", logs)
	}
}

// TestServeClientIdentities: with listen.tls.client_identities, a caller
// whose certificate the CA issued but that carries none of them cannot call
// Check (nor anything else on the port).
func TestServeClientIdentities(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "extauthz CA")
	certFile, keyFile, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	ca.Server(t, "extauthz").WriteFiles(t, certFile, keyFile)
	tlstest.WriteFile(t, caFile, ca.PEM)
	const gateway = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
	path, getenv := tlsServeConfig(t, certFile, keyFile, caFile, "    client_identities: ["+gateway+"]")
	cfg, err := config.Load(path, getenv)
	if err != nil {
		t.Fatal(err)
	}
	addr, logs := serveInProcess(t, cfg, getenv)

	check := func(client *tlstest.Leaf) (*authv3.CheckResponse, error) {
		cert := client.TLSCertificate(t)
		conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			RootCAs:              ca.Pool(),
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
		})))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/"}},
		}})
	}
	if resp, err := check(ca.ClientWithSANs(t, "gateway", gateway)); err != nil || resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
		t.Errorf("the gateway's Check = %v, %v; want a 401 deny", resp, err)
	}
	if resp, err := check(ca.ClientWithSANs(t, "api", "spiffe://cluster.local/ns/api/sa/api")); err == nil {
		t.Errorf("another workload's Check = %v; want the connection refused", resp)
	}
	if !strings.Contains(logs.String(), "carries none of the allowed client identities") {
		t.Errorf("refusal not logged:\n%s", logs)
	}
}

func TestServeBadTLSFilesExitUsage(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "extauthz CA")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca.Server(t, "extauthz").WriteFiles(t, certFile, keyFile)
	other := ca.Server(t, "other")
	tlstest.WriteFile(t, keyFile, other.KeyPEM) // a key that does not match
	path, getenv := tlsServeConfig(t, certFile, keyFile, certFile)
	var stderr strings.Builder
	// Bounded in case serve starts after all.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := Run(ctx, []string{"serve", "--config", path}, Env{Stdout: &stderr, Stderr: &stderr, Getenv: getenv})
	if code != ExitUsage || !strings.Contains(stderr.String(), "listen.tls: private key file") || !strings.Contains(stderr.String(), "does not match") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr.String())
	}
	if strings.Contains(stderr.String(), strings.Split(string(other.KeyPEM), "\n")[1][:30]) {
		t.Errorf("stderr contains key material:\n%s", stderr.String())
	}
}

// TestServeHTTPClientIdentities: http.tls with client_ca and
// client_identities on listen.http, as listen.tls on gRPC: the proxy whose
// certificate carries an allowed identity is answered; a caller without a
// certificate, or with one the CA issued to another workload, is refused at
// the handshake and never reaches /auth.
func TestServeHTTPClientIdentities(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "extauthz CA")
	certFile, keyFile, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	ca.Server(t, "extauthz").WriteFiles(t, certFile, keyFile)
	tlstest.WriteFile(t, caFile, ca.PEM)
	const proxy = "spiffe://cluster.local/ns/ingress/sa/nginx"
	path, getenv := httpTLSServeConfig(t, certFile, keyFile, caFile, "    client_identities: ["+proxy+"]")
	cfg, err := config.Load(path, getenv)
	if err != nil {
		t.Fatal(err)
	}
	s := runInProcess(t, cfg, getenv)

	get := func(client *tlstest.Leaf) (*http.Response, error) {
		tc := &tls.Config{RootCAs: ca.Pool()}
		if client != nil {
			cert := client.TLSCertificate(t)
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
		}
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
		defer c.CloseIdleConnections()
		req, err := http.NewRequest("GET", "https://"+s.http.String()+"/auth", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Original-URI", "/repos")
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	if resp, err := get(ca.ClientWithSANs(t, "nginx", proxy)); err != nil || resp.StatusCode != 401 ||
		resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("the proxy's request: %v, %v; want a 401 deny", resp, err)
	}
	if resp, err := get(ca.ClientWithSANs(t, "api", "spiffe://cluster.local/ns/api/sa/api")); err == nil {
		t.Errorf("another workload's request = %d; want the connection refused", resp.StatusCode)
	}
	if resp, err := get(nil); err == nil {
		t.Errorf("a request without a client certificate = %d; want the connection refused", resp.StatusCode)
	}
	if !strings.Contains(s.logs.String(), "carries none of the allowed client identities") {
		t.Errorf("refusal not logged:\n%s", s.logs)
	}
}
