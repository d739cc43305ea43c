package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/testutil"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/internal/testop"
	"github.com/extauthz/extauthz/jwtauth/jwttest"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/encrypted"
	"github.com/extauthz/extauthz/store/postgres"
	"github.com/extauthz/extauthz/tokencrypt"
)

// syncBuffer collects output written concurrently.
type syncBuffer = testutil.SyncBuffer

// tokenEndpoint is a provider's token endpoint. Refresh tokens script its
// answers: "refused-*" gets invalid_grant, "busy-*" a 503 with Retry-After,
// "misconfigured-*" invalid_client, anything else a new rotated pair.
type tokenEndpoint struct {
	mu    sync.Mutex
	calls map[string]int // refresh token -> requests
	forms []map[string]string
	// idToken, when set, signs the ID tokens of refresh tokens "oidc-<sub>-*"
	// for subject <sub>, as an OIDC provider would.
	idToken func(sub string) string
}

func (te *tokenEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", 400)
		return
	}
	if r.URL.Path == "/revoke" {
		// RFC 7009: recorded with the form, 200 whatever the token.
		form := map[string]string{"path": "/revoke"}
		for k := range r.PostForm {
			form[k] = r.PostForm.Get(k)
		}
		if u, p, ok := r.BasicAuth(); ok {
			form["basic_user"], form["basic_password"] = u, p
		}
		te.mu.Lock()
		te.forms = append(te.forms, form)
		te.mu.Unlock()
		return
	}
	rt := r.PostForm.Get("refresh_token")
	te.mu.Lock()
	te.calls[rt]++
	n := te.calls[rt]
	form := map[string]string{}
	for k := range r.PostForm {
		form[k] = r.PostForm.Get(k)
	}
	if u, _, ok := r.BasicAuth(); ok {
		form["basic_user"] = u
	}
	te.forms = append(te.forms, form)
	te.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	switch {
	case strings.HasPrefix(rt, "refused-"):
		w.WriteHeader(400)
		fmt.Fprint(w, `{"error":"invalid_grant","error_description":"token revoked"}`)
	case strings.HasPrefix(rt, "busy-"):
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(503)
		fmt.Fprint(w, `{"error":"temporarily_unavailable"}`)
	case strings.HasPrefix(rt, "misconfigured-"):
		w.WriteHeader(401)
		fmt.Fprint(w, `{"error":"invalid_client"}`)
	case strings.HasPrefix(rt, "oidc-"):
		sub, _, _ := strings.Cut(strings.TrimPrefix(rt, "oidc-"), "-")
		fmt.Fprintf(w, `{"access_token":"new-access-%s-%d","refresh_token":"new-refresh-%s-%d","id_token":%q,"expires_in":3600}`, rt, n, rt, n, te.idToken(sub))
	default:
		fmt.Fprintf(w, `{"access_token":"new-access-%s-%d","refresh_token":"new-refresh-%s-%d","id_token":"new-id-%s","token_type":"Bearer","expires_in":3600}`, rt, n, rt, n, rt)
	}
}

func (te *tokenEndpoint) count(rt string) int {
	te.mu.Lock()
	defer te.mu.Unlock()
	return te.calls[rt]
}

// e2e is a running extauthz server wired to real PostgreSQL, an httptest
// JWKS and an httptest token endpoint.
type e2e struct {
	client authv3.AuthorizationClient
	conn   *grpc.ClientConn
	store  *encrypted.Store // what the service sees
	raw    *postgres.Store  // what is on disk
	signer *jwttest.Signer
	tokens *tokenEndpoint
	logs   *syncBuffer
	// dsn is the test database; configPath and getenv are the server's
	// configuration file and environment, for running commands (tokens,
	// keys rotate) against the same database with the same keys.
	dsn        string
	configPath string
	getenv     func(string) string
	// admin is the session API's address (e2eOptions.admin), else nil.
	admin net.Addr
	// keys is the server's encryption keyring.
	keys *tokencrypt.Keyring
	// connect is the connect flow's address (e2eOptions.connect), else
	// nil.
	connect net.Addr
}

// e2eKey is one encryption key of an e2e server's configuration.
type e2eKey struct {
	ID, Secret string // Secret is base64, as from tokencrypt.GenerateKey
}

// e2eOptions vary the server startE2E starts; the zero value is the default.
type e2eOptions struct {
	// dsn, when set, is an existing migrated database to use (another
	// server's), instead of a new one.
	dsn string
	// keys are encryption.keys (default: one new key "k1"); primary is
	// encryption.primary (default: none, which a single key allows).
	keys    []e2eKey
	primary string
	// skew is refresh.skew (default 1m).
	skew string
	// noAhead turns refresh ahead off (refresh.ahead.enabled: false), for
	// tests in which only Checks may refresh.
	noAhead bool
	// admin serves the session API on a loopback port for bearer tokens
	// of audience e2eAdminAudience from the test issuer, client keycloak
	// only.
	admin bool
	// connect sets listen.connect and connect.public_url
	// (e2eConnectURL), the login client, authorization endpoints for the
	// providers, and a route /mcp/ with deny_style mcp.
	connect bool
	// connectOP, with connect, makes connect real: listen.connect on
	// connectAddr (a free loopback port) with public URL
	// e2eConnectBase(connectAddr), the login client "login" (secret
	// login-secret) at connectOP, and a provider "op" at connectOP
	// (client op-client, secret op-secret, client_secret_post, discovery
	// from its issuer).
	connectOP   *testop.OP
	connectAddr string
	// pgbouncer sets database.url to the database through PgBouncer in
	// transaction mode (pgtest.PgBouncer) and database.direct_url to it
	// directly, as docs/operations.md says to deploy behind PgBouncer.
	pgbouncer bool
}

// e2eConnectBase is the connect public URL of a server whose
// listen.connect is addr.
func e2eConnectBase(addr string) string { return "http://" + addr + "/.extauthz" }

const (
	e2eConnectURL    = "https://api.test/.extauthz"
	e2eIssuer        = "https://as.test"
	e2eAudience      = "api"
	e2eAdminAudience = "extauthz-admin"
)

func startE2E(t *testing.T, options ...e2eOptions) *e2e {
	t.Helper()
	var opts e2eOptions
	if len(options) > 0 {
		opts = options[0]
	}
	dsn := opts.dsn
	if dsn == "" {
		dsn = pgtest.New(t)
	}
	tokenKeys := opts.keys
	if len(tokenKeys) == 0 {
		tokenKeys = []e2eKey{{ID: "k1", Secret: tokencrypt.GenerateKey()}}
	}
	skew := opts.skew
	if skew == "" {
		skew = "1m"
	}
	env := map[string]string{"E2E_DATABASE_URL": dsn, "E2E_GH_SECRET": "gh-secret"}
	database := "database:\n  url: ${E2E_DATABASE_URL}\n"
	if opts.pgbouncer {
		env["E2E_DATABASE_URL"], env["E2E_DIRECT_URL"] = pgtest.PgBouncer(t, dsn), dsn
		database += "  direct_url: ${E2E_DIRECT_URL}\n"
	}
	var encryption strings.Builder
	if opts.primary != "" {
		fmt.Fprintf(&encryption, "  primary: %s\n", opts.primary)
	}
	encryption.WriteString("  keys:\n")
	for i, k := range tokenKeys {
		v := fmt.Sprintf("E2E_TOKEN_KEY_%d", i)
		env[v] = k.Secret
		fmt.Fprintf(&encryption, "    - id: %s\n      key: ${%s}\n", k.ID, v)
	}
	signer := jwttest.NewSigner(t)
	jwks := signer.Server(t)
	te := &tokenEndpoint{calls: map[string]int{}}
	provider := httptest.NewServer(te)
	t.Cleanup(provider.Close)
	// An OIDC issuer for the "okta" provider: discovery and keys.
	oidcKeys := jwttest.NewSigner(t)
	keys := oidcKeys.Server(t)
	issuerMux := http.NewServeMux()
	issuer := httptest.NewServer(issuerMux)
	t.Cleanup(issuer.Close)
	issuerMux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q,"id_token_signing_alg_values_supported":["ES256"]}`, issuer.URL, keys.URL+"/jwks")
	})
	te.idToken = func(sub string) string {
		return oidcKeys.Sign(t, map[string]any{"iss": issuer.URL, "aud": "okta-client", "sub": sub,
			"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
	}

	listenAdmin, adminSection, mcpRoute, authorizationURL, opProvider := "", "", "", "", ""
	if opts.connect {
		listenAdmin = "  connect: 127.0.0.1:0\n"
		adminSection = "connect:\n  public_url: " + e2eConnectURL + "\n  ticket_ttl: 5m\n" +
			"  login:\n    client_id: login\n    client_secret: ${E2E_LOGIN_SECRET}\n"
		mcpRoute = "  - path_prefix: /mcp/\n    deny_style: mcp\n"
		authorizationURL = "    authorization_url: " + provider.URL + "/authorize\n"
		env["E2E_LOGIN_SECRET"] = "login-secret"
	}
	if op := opts.connectOP; op != nil {
		listenAdmin = "  connect: " + opts.connectAddr + "\n"
		adminSection = "connect:\n  public_url: " + e2eConnectBase(opts.connectAddr) + "\n  ticket_ttl: 5m\n" +
			"  login:\n    issuer: " + op.Issuer + "\n    client_id: login\n    client_secret: ${E2E_LOGIN_SECRET}\n"
		opProvider = "  op:\n    issuer: " + op.Issuer + "\n    client_id: op-client\n    client_secret: op-secret\n" +
			"    token_endpoint_auth: client_secret_post\n    scopes: [offline_access]\n    header: x-op-token\n" +
			"    authorization_params: {prompt: consent}\n"
	}
	if opts.admin {
		listenAdmin += "  admin: 127.0.0.1:0\n"
		adminSection += "admin:\n  audience: " + e2eAdminAudience + "\n  allowed_clients: [keycloak]\n"
	}
	cfgText := fmt.Sprintf(`
listen:
  grpc: 127.0.0.1:0
  metrics: "off"
%sshutdown:
  drain_delay: 0s
%[16]sjwt:
  issuer: %[2]s
  audiences: [other, %s]
  jwks_url: %s/jwks
  leeway: 5s
providers:
  gh:
    token_url: %[5]s/token
    revocation_url: %[5]s/revoke
    client_id: gh-client
    client_secret: ${E2E_GH_SECRET}
    auth_style: params
    scopes: [repo, read:user]
%[13]s  google:
    token_url: %[6]s/token
    client_id: google-client
    client_secret: google-secret
    auth_style: header
    header: x-google-token
    id_token_header: x-google-id-token
%[13]s%[14]s  okta:
    token_url: %[7]s/token
    client_id: okta-client
    auth_style: params
    header: x-okta-token
    id_token_header: x-okta-id-token
    issuer: %[8]s
default_providers: [gh]
routes:
  - host: api.test
    path_prefix: /calendar/
    providers: [google]
    required_scopes: [calendar]
%[9]srefresh:
  skew: %[10]s
  timeout: 5s
  ahead: {enabled: %[15]t}
deny:
  realm: api
  resource_metadata: https://api.test/.well-known/oauth-protected-resource
log:
  level: debug
%[11]sencryption:
%[12]s`, listenAdmin, e2eIssuer, e2eAudience, jwks.URL, provider.URL, provider.URL, provider.URL, issuer.URL, mcpRoute, skew, adminSection,
		encryption.String(), authorizationURL, opProvider, !opts.noAhead, database)
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string { return env[k] }
	cfg, err := config.Load(path, getenv)
	if err != nil {
		t.Fatal(err)
	}

	served := runInProcess(t, cfg, getenv)
	addr, logs := served.grpc, served.logs

	conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	pg, err := postgres.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	return &e2e{client: authv3.NewAuthorizationClient(conn), conn: conn, store: encrypted.New(pg, cfg.Keyring()), raw: pg,
		signer: signer, tokens: te, logs: logs, dsn: dsn, configPath: path, getenv: getenv, admin: served.admin, keys: cfg.Keyring(),
		connect: served.connect}
}

func (e *e2e) put(t *testing.T, r store.Row) {
	t.Helper()
	if r.Subject == "" {
		r.Subject = "alice"
	}
	if r.ClientID == "" {
		r.ClientID = "app"
	}
	if err := e.store.Put(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

// jwt signs an access token for session; overrides replace or (with a nil
// value) remove claims.
func (e *e2e) jwt(t *testing.T, session string, overrides map[string]any) string {
	t.Helper()
	now := time.Now()
	claims := map[string]any{
		"iss": e2eIssuer, "aud": e2eAudience, "sub": "alice", "client_id": "app", "tsid": session,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	for k, v := range overrides {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	return e.signer.Sign(t, claims)
}

func (e *e2e) check(t *testing.T, headers map[string]string, providers string) *authv3.CheckResponse {
	t.Helper()
	var ext map[string]string
	if providers != "" {
		ext = map[string]string{"upstream_providers": providers}
	}
	return e.checkAt(t, "api.test", "/api", headers, ext)
}

// checkAt sends a Check for a GET of host and path with the given context
// extensions.
func (e *e2e) checkAt(t *testing.T, host, path string, headers, ext map[string]string) *authv3.CheckResponse {
	t.Helper()
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		ContextExtensions: ext,
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: path, Host: host, Headers: headers,
		}},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := e.client.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

func respHeaders(resp *authv3.CheckResponse) map[string]string {
	m := map[string]string{}
	hs := resp.GetOkResponse().GetHeaders()
	if d := resp.GetDeniedResponse(); d != nil {
		hs = d.GetHeaders()
	}
	for _, h := range hs {
		m[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		//lint:ignore SA1019 older Envoys read the deprecated append field: it must be false.
		if h.GetAppend() == nil || h.GetAppend().GetValue() || h.GetAppendAction().String() != "OVERWRITE_IF_EXISTS_OR_ADD" {
			panic(fmt.Sprintf("header %q not set to overwrite", h.GetHeader().GetKey()))
		}
	}
	return m
}

const e2eChallenge = `Bearer realm="api", resource_metadata="https://api.test/.well-known/oauth-protected-resource"`

func TestEndToEndDenyTable(t *testing.T) {
	e := startE2E(t)
	fresh, expired := time.Now().Add(time.Hour), time.Now().Add(-time.Hour)
	e.put(t, store.Row{SessionID: "s-ok", Provider: "gh", Tokens: store.Tokens{AccessToken: "gh-access", ExpiresAt: fresh}})
	e.put(t, store.Row{SessionID: "s-norefresh", Provider: "gh", Tokens: store.Tokens{AccessToken: "old", ExpiresAt: expired}})
	e.put(t, store.Row{SessionID: "s-refused", Provider: "gh", Tokens: store.Tokens{AccessToken: "old", RefreshToken: "refused-1", ExpiresAt: expired}})
	e.put(t, store.Row{SessionID: "s-busy", Provider: "gh", Tokens: store.Tokens{AccessToken: "old", RefreshToken: "busy-1", ExpiresAt: expired}})
	// Back-off is per provider: the misconfigured case uses another provider
	// than the 503 case, or it would only see gh's pause.
	e.put(t, store.Row{SessionID: "s-misconf", Provider: "google", Tokens: store.Tokens{AccessToken: "old", RefreshToken: "misconfigured-1", ExpiresAt: expired}})
	e.put(t, store.Row{SessionID: "s-crlf", Provider: "gh", Tokens: store.Tokens{AccessToken: "evil\r\nx-admin: yes", ExpiresAt: fresh}})
	// Past its session expiry, not yet collected: gone for Checks.
	e.put(t, store.Row{SessionID: "s-ended", Provider: "gh", Tokens: store.Tokens{AccessToken: "gh-access", RefreshToken: "rt", ExpiresAt: expired}, SessionExpiresAt: expired})

	invalid := e2eChallenge + `, error="invalid_token", error_description="the access token is invalid"`
	session := e2eChallenge + `, error="invalid_token", error_description="the token's session is not valid for this resource"`
	reauth := e2eChallenge + `, error="invalid_token", error_description="upstream authorization has expired; re-authentication required"`
	tests := []struct {
		name      string
		auth      string
		providers string
		status    int32
		grpcCode  codes.Code
		www       string
		retry     string
	}{
		{"no authorization header", "", "", 401, codes.Unauthenticated, e2eChallenge, ""},
		{"other scheme", "Basic YWxpY2U6cHc=", "", 401, codes.Unauthenticated, e2eChallenge, ""},
		{"empty bearer", "Bearer ", "", 401, codes.Unauthenticated, invalid, ""},
		{"not a JWT", "Bearer not.a.jwt", "", 401, codes.Unauthenticated, invalid, ""},
		{"expired JWT", "Bearer " + e.jwt(t, "s-ok", map[string]any{"exp": time.Now().Add(-time.Minute).Unix()}), "", 401, codes.Unauthenticated, invalid, ""},
		{"wrong issuer", "Bearer " + e.jwt(t, "s-ok", map[string]any{"iss": "https://evil.test"}), "", 401, codes.Unauthenticated, invalid, ""},
		{"wrong audience", "Bearer " + e.jwt(t, "s-ok", map[string]any{"aud": "nope"}), "", 401, codes.Unauthenticated, invalid, ""},
		{"no tsid", "Bearer " + e.jwt(t, "s-ok", map[string]any{"tsid": nil}), "", 401, codes.Unauthenticated, invalid, ""},
		{"tsid not a string", "Bearer " + e.jwt(t, "s-ok", map[string]any{"tsid": 42}), "", 401, codes.Unauthenticated, invalid, ""},
		{"unknown session", "Bearer " + e.jwt(t, "s-unknown", nil), "", 401, codes.Unauthenticated, session, ""},
		{"provider missing from session", "Bearer " + e.jwt(t, "s-ok", nil), "gh,google", 401, codes.Unauthenticated, session, ""},
		{"session expired, not yet collected: re-authentication", "Bearer " + e.jwt(t, "s-ended", nil), "", 401, codes.Unauthenticated, reauth, ""},
		{"binding: other subject", "Bearer " + e.jwt(t, "s-ok", map[string]any{"sub": "mallory"}), "", 401, codes.Unauthenticated, session, ""},
		{"binding: other client", "Bearer " + e.jwt(t, "s-ok", map[string]any{"client_id": "evil-app"}), "", 401, codes.Unauthenticated, session, ""},
		{"no refresh token", "Bearer " + e.jwt(t, "s-norefresh", nil), "", 401, codes.Unauthenticated, reauth, ""},
		{"provider refused refresh", "Bearer " + e.jwt(t, "s-refused", nil), "", 401, codes.Unauthenticated, reauth, ""},
		{"provider 503", "Bearer " + e.jwt(t, "s-busy", nil), "", 503, codes.Unavailable, "", "5"},
		{"provider says invalid_client", "Bearer " + e.jwt(t, "s-misconf", nil), "google", 503, codes.Unavailable, "", "1"},
		{"provider backing off", "Bearer " + e.jwt(t, "s-busy", nil), "", 503, codes.Unavailable, "", "5"},
		{"unknown provider on route", "Bearer " + e.jwt(t, "s-ok", nil), "gh,gitlab", 500, codes.Internal, "", ""},
		{"token with CR LF never emitted", "Bearer " + e.jwt(t, "s-crlf", nil), "", 502, codes.Internal, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			headers := map[string]string{}
			if tc.auth != "" {
				headers["authorization"] = tc.auth
			}
			resp := e.check(t, headers, tc.providers)
			d := resp.GetDeniedResponse()
			if d == nil {
				t.Fatalf("allowed, want deny %d", tc.status)
			}
			if got := int32(d.GetStatus().GetCode()); got != tc.status {
				t.Errorf("HTTP status = %d, want %d", got, tc.status)
			}
			if got := codes.Code(resp.GetStatus().GetCode()); got != tc.grpcCode {
				t.Errorf("status code = %v, want %v", got, tc.grpcCode)
			}
			h := respHeaders(resp)
			if h["www-authenticate"] != tc.www {
				t.Errorf("WWW-Authenticate = %q\nwant %q", h["www-authenticate"], tc.www)
			}
			if h["retry-after"] != tc.retry {
				t.Errorf("Retry-After = %q, want %q", h["retry-after"], tc.retry)
			}
			var body map[string]string
			if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil || body["error"] == "" || body["error_description"] == "" || h["content-type"] != "application/json" {
				t.Errorf("body %q (content-type %q) is not the JSON error document", d.GetBody(), h["content-type"])
			}
		})
	}

	// The refused refresh token is marked: a second Check does not redeem it again.
	resp := e.check(t, map[string]string{"authorization": "Bearer " + e.jwt(t, "s-refused", nil)}, "")
	if got := resp.GetDeniedResponse().GetStatus().GetCode(); got != 401 {
		t.Errorf("second Check on a refused session: status %d, want 401", got)
	}
	if n := e.tokens.count("refused-1"); n != 1 {
		t.Errorf("refused refresh token redeemed %d times, want 1", n)
	}
	row, err := e.store.Get(context.Background(), "s-refused", "gh")
	if err != nil || !row.NeedsReauth {
		t.Errorf("refused row not marked for re-authentication: %+v %v", row.NeedsReauth, err)
	}
	// Transient failures leave the row untouched.
	for _, k := range [][2]string{{"s-busy", "gh"}, {"s-misconf", "google"}} {
		s := k[0]
		row, err := e.store.Get(context.Background(), s, k[1])
		if err != nil || row.NeedsReauth || row.AccessToken != "old" {
			t.Errorf("%s: a transient failure changed the row: reauth=%v %v", s, row.NeedsReauth, err)
		}
	}
	e.assertNoSecretsLogged(t, "gh-access", "refused-1", "busy-1", "misconfigured-1", "evil", "gh-secret")
}

func TestEndToEndAllowAndRefresh(t *testing.T) {
	e := startE2E(t)
	fresh := time.Now().Add(time.Hour)
	e.put(t, store.Row{SessionID: "s1", Provider: "gh", Tokens: store.Tokens{AccessToken: "gh-access", RefreshToken: "gh-rt", ExpiresAt: fresh}})
	e.put(t, store.Row{SessionID: "s1", Provider: "google", Tokens: store.Tokens{AccessToken: "g-access", IDToken: "g-id", RefreshToken: "g-rt"}})
	jwt := e.jwt(t, "s1", nil)
	forged := map[string]string{
		"authorization":     "Bearer " + jwt,
		"x-google-token":    "Bearer forged",
		"x-google-id-token": "forged-id",
	}

	t.Run("default provider: authorization replaced, forged headers removed", func(t *testing.T) {
		resp := e.check(t, forged, "")
		ok := resp.GetOkResponse()
		if ok == nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Fatalf("denied: %v", resp.GetDeniedResponse())
		}
		if got, want := respHeaders(resp), map[string]string{"authorization": "Bearer gh-access"}; !reflect.DeepEqual(got, want) {
			t.Errorf("headers = %v, want %v", got, want)
		}
		if got, want := sorted(ok.GetHeadersToRemove()), []string{"x-google-id-token", "x-google-token", "x-okta-id-token", "x-okta-token"}; !reflect.DeepEqual(got, want) {
			t.Errorf("headers_to_remove = %v, want %v", got, want)
		}
	})
	t.Run("custom-header provider: client's JWT removed, ID token raw", func(t *testing.T) {
		resp := e.check(t, forged, "google")
		want := map[string]string{"x-google-token": "Bearer g-access", "x-google-id-token": "g-id"}
		if got := respHeaders(resp); !reflect.DeepEqual(got, want) {
			t.Errorf("headers = %v, want %v", got, want)
		}
		if got, want := sorted(resp.GetOkResponse().GetHeadersToRemove()), []string{"authorization", "x-okta-id-token", "x-okta-token"}; !reflect.DeepEqual(got, want) {
			t.Errorf("headers_to_remove = %v, want %v", got, want)
		}
	})
	t.Run("two providers on one route", func(t *testing.T) {
		resp := e.check(t, forged, "gh,google")
		want := map[string]string{"authorization": "Bearer gh-access", "x-google-token": "Bearer g-access", "x-google-id-token": "g-id"}
		if got := respHeaders(resp); !reflect.DeepEqual(got, want) {
			t.Errorf("headers = %v, want %v", got, want)
		}
		if got, want := sorted(resp.GetOkResponse().GetHeadersToRemove()), []string{"x-okta-id-token", "x-okta-token"}; !reflect.DeepEqual(got, want) {
			t.Errorf("headers_to_remove = %v, want %v", got, want)
		}
	})

	t.Run("expired token refreshed once and persisted", func(t *testing.T) {
		e.put(t, store.Row{SessionID: "s2", Provider: "gh", Tokens: store.Tokens{AccessToken: "stale", RefreshToken: "rt-exp", ExpiresAt: time.Now().Add(-time.Minute)}})
		jwt := e.jwt(t, "s2", nil)
		var wg sync.WaitGroup
		got := make([]string, 8)
		for i := range got {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i] = respHeaders(e.check(t, map[string]string{"authorization": "Bearer " + jwt}, ""))["authorization"]
			}()
		}
		wg.Wait()
		for i, g := range got {
			if g != "Bearer new-access-rt-exp-1" {
				t.Errorf("concurrent Check %d got %q", i, g)
			}
		}
		if n := e.tokens.count("rt-exp"); n != 1 {
			t.Fatalf("token endpoint called %d times, want 1", n)
		}
		row, err := e.store.Get(context.Background(), "s2", "gh")
		if err != nil {
			t.Fatal(err)
		}
		if row.AccessToken != "new-access-rt-exp-1" || row.RefreshToken != "new-refresh-rt-exp-1" || row.IDToken != "new-id-rt-exp" ||
			time.Until(row.ExpiresAt) < 50*time.Minute {
			t.Errorf("refresh not persisted: access %q refresh %q id %q expires in %v", row.AccessToken, row.RefreshToken, row.IDToken, time.Until(row.ExpiresAt))
		}
		raw, err := e.raw.Get(context.Background(), "s2", "gh")
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{raw.AccessToken, raw.RefreshToken, raw.IDToken} {
			if strings.Contains(v, "rt-exp") || !strings.HasPrefix(v, "v2.k1.") {
				t.Errorf("refreshed token stored as %q, not encrypted", v)
			}
		}
		// A second Check serves the stored token without calling the endpoint.
		if h := respHeaders(e.check(t, map[string]string{"authorization": "Bearer " + jwt}, "")); h["authorization"] != "Bearer new-access-rt-exp-1" {
			t.Errorf("second Check got %q", h["authorization"])
		}
		if n := e.tokens.count("rt-exp"); n != 1 || e.tokens.count("new-refresh-rt-exp-1") != 0 {
			t.Errorf("second Check called the token endpoint again")
		}
	})

	t.Run("token inside the skew refreshed; scope and client credentials sent as configured", func(t *testing.T) {
		e.put(t, store.Row{SessionID: "s3", Provider: "gh", Tokens: store.Tokens{AccessToken: "nearly", RefreshToken: "rt-skew", ExpiresAt: time.Now().Add(20 * time.Second)}})
		e.put(t, store.Row{SessionID: "s3", Provider: "google", Tokens: store.Tokens{AccessToken: "g-nearly", RefreshToken: "rt-g-skew", ExpiresAt: time.Now().Add(20 * time.Second)}})
		resp := e.check(t, map[string]string{"authorization": "Bearer " + e.jwt(t, "s3", nil)}, "gh,google")
		h := respHeaders(resp)
		if h["authorization"] != "Bearer new-access-rt-skew-1" || h["x-google-token"] != "Bearer new-access-rt-g-skew-1" {
			t.Fatalf("headers = %v: tokens inside the 1m skew must be refreshed", h)
		}
		e.tokens.mu.Lock()
		defer e.tokens.mu.Unlock()
		for _, f := range e.tokens.forms {
			switch f["refresh_token"] {
			case "rt-skew": // params style, scopes configured
				if f["client_id"] != "gh-client" || f["client_secret"] != "gh-secret" || f["basic_user"] != "" || f["scope"] != "repo read:user" || f["grant_type"] != "refresh_token" {
					t.Errorf("gh refresh form = %v", redactForm(f))
				}
			case "rt-g-skew": // header style, no scopes
				if f["basic_user"] != "google-client" || f["client_secret"] != "" || f["client_id"] != "" || f["scope"] != "" {
					t.Errorf("google refresh form = %v", redactForm(f))
				}
			}
		}
	})
	e.assertNoSecretsLogged(t, "gh-access", "g-access", "g-id", "gh-rt", "rt-exp", "new-access", "new-refresh", "gh-secret", "google-secret")
}

// TestEndToEndPerRoutePolicy: required scopes from context_extensions and
// from the routes section, a 403 before any store access or refresh, and
// context_extensions winning over routes.
func TestEndToEndPerRoutePolicy(t *testing.T) {
	e := startE2E(t)
	expired := time.Now().Add(-time.Hour)
	e.put(t, store.Row{SessionID: "s-scope", Provider: "gh", Tokens: store.Tokens{AccessToken: "gh-stale", RefreshToken: "rt-scope", ExpiresAt: expired}})
	e.put(t, store.Row{SessionID: "s-scope", Provider: "google", Tokens: store.Tokens{AccessToken: "g-access"}})
	auth := func(scope any) map[string]string {
		return map[string]string{"authorization": "Bearer " + e.jwt(t, "s-scope", map[string]any{"scope": scope})}
	}
	scopeChallenge := e2eChallenge + `, error="insufficient_scope", scope=`

	t.Run("context_extensions required_scopes: 403 without refresh", func(t *testing.T) {
		resp := e.checkAt(t, "api.test", "/api", auth("repo"), map[string]string{"required_scopes": "repo read:org"})
		d := resp.GetDeniedResponse()
		if d.GetStatus().GetCode() != 403 || codes.Code(resp.GetStatus().GetCode()) != codes.PermissionDenied {
			t.Fatalf("got %v, want 403 PermissionDenied", resp)
		}
		h := respHeaders(resp)
		if want := scopeChallenge + `"repo read:org"`; h["www-authenticate"] != want {
			t.Errorf("WWW-Authenticate = %q\nwant %q", h["www-authenticate"], want)
		}
		if want := `{"error":"insufficient_scope","error_description":"the access token lacks a scope this resource requires"}`; d.GetBody() != want || h["content-type"] != "application/json" {
			t.Errorf("body %s (content-type %q)", d.GetBody(), h["content-type"])
		}
		if n := e.tokens.count("rt-scope"); n != 0 {
			t.Errorf("a token without the scope caused %d refreshes", n)
		}
		if row, err := e.store.Get(context.Background(), "s-scope", "gh"); err != nil || row.AccessToken != "gh-stale" {
			t.Errorf("row changed: %q %v", row.AccessToken, err)
		}
	})
	t.Run("context_extensions required_scopes present: allowed and refreshed", func(t *testing.T) {
		resp := e.checkAt(t, "api.test", "/api", auth("read:org repo"), map[string]string{"required_scopes": "repo read:org"})
		if got := respHeaders(resp)["authorization"]; got != "Bearer new-access-rt-scope-1" {
			t.Fatalf("authorization = %q (%v)", got, resp.GetDeniedResponse())
		}
	})
	t.Run("routes: host and path choose providers and scopes", func(t *testing.T) {
		resp := e.checkAt(t, "API.test:443", "/calendar/events?owner=me", auth("calendar"), nil)
		if got := respHeaders(resp); got["x-google-token"] != "Bearer g-access" || got["authorization"] != "" {
			t.Fatalf("headers = %v (%v), want the route's provider google", got, resp.GetDeniedResponse())
		}
		resp = e.checkAt(t, "api.test", "/calendar/events", auth("repo"), nil)
		if resp.GetDeniedResponse().GetStatus().GetCode() != 403 || respHeaders(resp)["www-authenticate"] != scopeChallenge+`"calendar"` {
			t.Errorf("route scope missing: got %v", resp)
		}
		// Another host: no route, default provider, no scope required.
		resp = e.checkAt(t, "other.test", "/calendar/events", auth("repo"), nil)
		if got := respHeaders(resp)["authorization"]; got != "Bearer new-access-rt-scope-1" {
			t.Errorf("other host: authorization = %q (%v)", got, resp.GetDeniedResponse())
		}
		// context_extensions win: the route's provider and scope are not used.
		resp = e.checkAt(t, "api.test", "/calendar/events", auth("repo"), map[string]string{"upstream_providers": "gh"})
		if got := respHeaders(resp); got["authorization"] != "Bearer new-access-rt-scope-1" || got["x-google-token"] != "" {
			t.Errorf("context_extensions over routes: headers %v (%v)", got, resp.GetDeniedResponse())
		}
	})
	e.assertNoSecretsLogged(t, "gh-stale", "g-access", "rt-scope", "new-access")
}

func TestEndToEndHealth(t *testing.T) {
	e := startE2E(t)
	resp, err := healthpb.NewHealthClient(e.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", resp, err)
	}
}

func redactForm(f map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range f {
		if k == "client_secret" || k == "refresh_token" {
			v = fmt.Sprintf("(%d bytes)", len(v))
		}
		out[k] = v
	}
	return out
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

func (e *e2e) assertNoSecretsLogged(t *testing.T, secrets ...string) {
	t.Helper()
	logs := e.logs.String()
	if !strings.Contains(logs, "check denied") && !strings.Contains(logs, "check allowed") {
		t.Errorf("no Check was logged; the leak check would be vacuous")
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain the secret %q", s)
		}
	}
}

func TestEndToEndOIDCRefreshedIDToken(t *testing.T) {
	e := startE2E(t)
	expired := time.Now().Add(-time.Minute)
	e.put(t, store.Row{SessionID: "s-same", Provider: "okta", UpstreamSubject: "octocat",
		Tokens: store.Tokens{AccessToken: "old", RefreshToken: "oidc-octocat-1", ExpiresAt: expired}})
	e.put(t, store.Row{SessionID: "s-other", Provider: "okta", UpstreamSubject: "octocat",
		Tokens: store.Tokens{AccessToken: "old", RefreshToken: "oidc-mallory-1", ExpiresAt: expired}})

	resp := e.check(t, map[string]string{"authorization": "Bearer " + e.jwt(t, "s-same", nil)}, "okta")
	h := respHeaders(resp)
	if h["x-okta-token"] != "Bearer new-access-oidc-octocat-1-1" || strings.Count(h["x-okta-id-token"], ".") != 2 {
		t.Fatalf("verified ID token of the same subject: headers %v", h)
	}

	resp = e.check(t, map[string]string{"authorization": "Bearer " + e.jwt(t, "s-other", nil)}, "okta")
	if got := resp.GetDeniedResponse().GetStatus().GetCode(); got != 401 ||
		!strings.Contains(respHeaders(resp)["www-authenticate"], "re-authentication required") {
		t.Fatalf("ID token for another subject: status %d %v, want 401 re-authentication", got, respHeaders(resp))
	}
	row, err := e.store.Get(context.Background(), "s-other", "okta")
	if err != nil || !row.NeedsReauth || row.AccessToken != "old" {
		t.Errorf("row after a subject mismatch: reauth %v access %q %v; want marked and the new tokens discarded", row.NeedsReauth, row.AccessToken, err)
	}
}

// served is a serve running in the test's process: its listeners'
// addresses (http and metrics nil when not configured) and its logs.
type served struct {
	grpc, http, metrics, admin, connect net.Addr
	logs                                *syncBuffer
}

// runInProcess runs serve for cfg until t ends (failing t if serve then
// returns an error) and returns once the gRPC listener accepts connections.
func runInProcess(t *testing.T, cfg *config.Config, getenv func(string) string) *served {
	t.Helper()
	s := &served{logs: &syncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, cfg, Env{Stdout: s.logs, Stderr: s.logs, Getenv: getenv}, serveHooks{
			http:    func(a net.Addr) { s.http = a },
			metrics: func(a net.Addr) { s.metrics = a },
			admin:   func(a net.Addr) { s.admin = a },
			connect: func(a net.Addr) { s.connect = a },
			grpc:    func(a net.Addr) { s.grpc = a; close(ready) },
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v\n%s", err, s.logs)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve returned %v", err)
		}
	})
	return s
}

// serveInProcess is runInProcess for tests of the gRPC listener.
func serveInProcess(t *testing.T, cfg *config.Config, getenv func(string) string) (net.Addr, *syncBuffer) {
	t.Helper()
	s := runInProcess(t, cfg, getenv)
	return s.grpc, s.logs
}
