package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/jwtauth/jwttest"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/encrypted"
	"github.com/extauthz/extauthz/store/postgres"
	"github.com/extauthz/extauthz/tokencrypt"
)

// httpServer is serve running in process with listen.http.
type httpServer struct {
	client  *http.Client // to the HTTP authorization listener
	base    string       // its URL
	metrics string       // the metrics listener's URL
	signer  *jwttest.Signer
	store   *encrypted.Store
	logs    *syncBuffer
	// tokens is the token endpoint of the providers gh and google.
	tokens *tokenEndpoint
	// configPath and getenv are serve's configuration file and its
	// environment.
	configPath string
	getenv     func(string) string
}

// startHTTPServe runs serve with listen.http (listenHTTP: an address, or
// "unix" for a socket in a temporary directory) against a new database.
// Its providers are gh (the default, in Authorization) and google
// (x-google-token, x-google-id-token), both refreshed at one loopback token
// endpoint; its routes are /admin/ (scope admin required) and /google/
// (provider google). Connect is on (public URL https://api.test/.extauthz):
// denies a link can fix carry one.
func startHTTPServe(t *testing.T, listenHTTP string) *httpServer {
	t.Helper()
	dsn := pgtest.New(t)
	signer := jwttest.NewSigner(t)
	te := &tokenEndpoint{calls: map[string]int{}}
	idp := httptest.NewServer(te)
	t.Cleanup(idp.Close)
	socket := ""
	if listenHTTP == "unix" {
		// Short: a socket path is limited to about 100 bytes.
		dir, err := os.MkdirTemp("", "eaz")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		socket = filepath.Join(dir, "http.sock")
		listenHTTP = "unix:" + socket
	}
	env := map[string]string{"HTTP_TEST_DATABASE_URL": dsn, "HTTP_TEST_TOKEN_KEY": tokencrypt.GenerateKey()}
	text := fmt.Sprintf(`
listen:
  grpc: 127.0.0.1:0
  http: %[1]s
  metrics: 127.0.0.1:0
  connect: 127.0.0.1:0
shutdown:
  drain_delay: 0s
database:
  url: ${HTTP_TEST_DATABASE_URL}
jwt:
  issuer: https://as.test
  audiences: [api]
  jwks_file: %[2]s
providers:
  gh: {token_url: "%[3]s/token", authorization_url: "%[3]s/authorize", client_id: gh, auth_style: params}
  google: {token_url: "%[3]s/token", authorization_url: "%[3]s/authorize", client_id: g, auth_style: params, header: x-google-token, id_token_header: x-google-id-token}
default_providers: [gh]
routes:
  - path_prefix: /admin/
    required_scopes: [admin]
  - path_prefix: /google/
    providers: [google]
deny:
  realm: api
connect:
  public_url: https://api.test/.extauthz
  login: {client_id: login, client_secret: login-secret}
encryption:
  keys:
    - id: k1
      key: ${HTTP_TEST_TOKEN_KEY}
`, listenHTTP, signer.WriteJWKSFile(t), idp.URL)
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string { return env[k] }
	cfg, err := config.Load(path, getenv)
	if err != nil {
		t.Fatal(err)
	}

	if socket != "" {
		t.Cleanup(func() {
			// Runs after serve has stopped (cleanups run last first).
			if _, err := os.Stat(socket); err == nil {
				t.Error("the Unix socket is left behind")
			}
		})
	}
	run := runInProcess(t, cfg, getenv)
	httpAddr, metricsAddr, logs := run.http, run.metrics, run.logs

	s := &httpServer{client: &http.Client{Timeout: 10 * time.Second}, base: "http://" + httpAddr.String(),
		metrics: "http://" + metricsAddr.String(), signer: signer, logs: logs, tokens: te, configPath: path, getenv: getenv}
	if socket != "" {
		if st, err := os.Stat(socket); err != nil || st.Mode().Perm() != unixSocketMode {
			t.Errorf("socket mode %v, %v; want %v", st.Mode().Perm(), err, os.FileMode(unixSocketMode))
		}
		s.base = "http://extauthz"
		s.client.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}}
	}
	pg, err := postgres.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	s.store = encrypted.New(pg, cfg.Keyring())
	return s
}

// jwt returns a valid JWT of alice's client app for session, with scopes
// (space-separated).
func (s *httpServer) jwt(t *testing.T, session string, scopes string) string {
	return s.jwtWith(t, session, scopes, nil)
}

// jwtWith is jwt with its claims changed by edit (when not nil) before
// signing.
func (s *httpServer) jwtWith(t *testing.T, session, scopes string, edit func(claims map[string]any)) string {
	now := time.Now()
	claims := map[string]any{"iss": "https://as.test", "aud": "api", "sub": "alice", "client_id": "app",
		"tsid": session, "scope": scopes, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if edit != nil {
		edit(claims)
	}
	return s.signer.Sign(t, claims)
}

func (s *httpServer) do(t *testing.T, target string, headers map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", s.base+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// TestServeHTTPFront: serve answers forward auth and Envoy's http_service
// on listen.http (here a Unix socket) from the same store and keys as gRPC,
// counts the decisions with transport "http", and never logs a token.
func TestServeHTTPFront(t *testing.T) {
	s := startHTTPServe(t, "unix")
	const upstream = "gho_http_front_upstream"
	if err := s.store.Put(context.Background(), store.Row{SessionID: "s1", Provider: "gh", Subject: "alice", ClientID: "app",
		Tokens: store.Tokens{AccessToken: upstream, ExpiresAt: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	jwt := s.jwt(t, "s1", "read")

	resp, body := s.do(t, "/auth", map[string]string{"X-Original-URI": "/repos?x=1", "X-Forwarded-Host": "api.test", "Authorization": "Bearer " + jwt})
	if resp.StatusCode != 200 || resp.Header.Get("Authorization") != "Bearer "+upstream || body != "" {
		t.Errorf("forward auth allow: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	resp, _ = s.do(t, "/envoy/repos", map[string]string{"Host": "api.test", "authorization": "Bearer " + jwt})
	if resp.StatusCode != 200 || resp.Header.Get("Authorization") != "Bearer "+upstream ||
		resp.Header.Get("X-Envoy-Auth-Headers-To-Remove") != "x-google-id-token,x-google-token" {
		t.Errorf("envoy allow: %d %v", resp.StatusCode, resp.Header)
	}

	resp, body = s.do(t, "/auth", map[string]string{"X-Original-URI": "/repos", "X-Forwarded-Host": "api.test"})
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer realm="api"` ||
		resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(body, `"error":"unauthorized"`) {
		t.Errorf("forward auth without a token: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	resp, body = s.do(t, "/envoy/admin/users", map[string]string{"Host": "api.test", "authorization": "Bearer " + jwt})
	if resp.StatusCode != 403 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="insufficient_scope", scope="admin"`) ||
		!strings.Contains(body, "insufficient_scope") {
		t.Errorf("envoy without the route's scope: %d %v %s", resp.StatusCode, resp.Header, body)
	}

	resp, body = s.do(t, "/auth", map[string]string{"X-Forwarded-Host": "api.test", "Authorization": "Bearer " + jwt})
	if resp.StatusCode != 400 || !strings.Contains(body, "invalid_request") {
		t.Errorf("forward auth without the original URI: %d %s", resp.StatusCode, body)
	}

	mresp, err := http.Get(s.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{
		`extauthz_check_decisions_total{reason="ok",result="ok",transport="http"} 2`,
		`extauthz_check_decisions_total{reason="no_token",result="denied",transport="http"} 1`,
		`extauthz_check_decisions_total{reason="insufficient_scope",result="denied",transport="http"} 1`,
		`extauthz_check_decisions_total{reason="ok",result="ok",transport="grpc"} 0`,
		`extauthz_check_duration_seconds_count{transport="http"} 4`,
		`extauthz_http_refused_total{shape="forward_auth"} 1`,
		`extauthz_http_refused_total{shape="envoy"} 0`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	logs := s.logs.String()
	if !strings.Contains(logs, "serving HTTP authorization") {
		t.Errorf("logs:\n%s", logs)
	}
	for _, secret := range []string{upstream, jwt} {
		if strings.Contains(logs, secret) {
			t.Error("a token is in the logs")
		}
	}
}

// TestServeHTTPOverTCP: listen.http on a loopback port.
func TestServeHTTPOverTCP(t *testing.T) {
	s := startHTTPServe(t, "127.0.0.1:0")
	resp, _ := s.do(t, "/envoy/x", map[string]string{"Host": "api.test", "Authorization": "Bearer not-a-jwt"})
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("%d %v", resp.StatusCode, resp.Header)
	}
	if resp, _ := s.do(t, "/", nil); resp.StatusCode != 404 {
		t.Errorf("GET / = %d", resp.StatusCode)
	}
}
