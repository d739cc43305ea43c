package cli

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/adminapi"
	"github.com/extauthz/extauthz/store"
)

// adminCall sends a request to the session API of e with the bearer token
// tok ("" for none) and returns the status and body.
func (e *e2e) adminCall(t *testing.T, method, path, tok, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+e.admin.String()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// adminToken signs a client-credentials token of the test issuer for the
// session API; overrides replace or (nil) remove claims.
func (e *e2e) adminToken(t *testing.T, overrides map[string]any) string {
	now := time.Now()
	claims := map[string]any{"iss": e2eIssuer, "aud": e2eAdminAudience, "sub": "keycloak", "client_id": "keycloak",
		"scope": "openid extauthz:sessions", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
	for k, v := range overrides {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	return e.signer.Sign(t, claims)
}

// TestSessionAPIEndToEnd: an authorization server writes a session through
// the session API with a client-credentials token; a gRPC Check then swaps
// the caller's JWT for the upstream token written. Tokens without the
// scope, for another audience, expired or from a client not allowed write
// nothing. No token is logged or answered.
func TestSessionAPIEndToEnd(t *testing.T) {
	e := startE2E(t, e2eOptions{admin: true})
	const upstream = "gho_SESSION_API_upstream"
	body := `{"subject":"alice","client_id":"app","access_token":"` + upstream + `","expires_in":3600}`

	for _, tc := range []struct {
		name   string
		tok    string
		status int
	}{
		{"no token", "", 401},
		{"without the scope", e.adminToken(t, map[string]any{"scope": "openid"}), 403},
		{"another audience", e.adminToken(t, map[string]any{"aud": e2eAudience}), 401},
		{"expired", e.adminToken(t, map[string]any{"exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix()}), 401},
		{"client not allowed", e.adminToken(t, map[string]any{"client_id": "mallory", "sub": "mallory"}), 403},
		{"a user's token", e.jwt(t, "s-api", map[string]any{"aud": e2eAdminAudience, "scope": "extauthz:sessions"}), 403},
	} {
		status, answer := e.adminCall(t, "PUT", "/v1/sessions/s-api/providers/gh", tc.tok, body)
		if status != tc.status || !strings.Contains(answer, `"status":`) {
			t.Errorf("%s: %d %s, want %d with a problem", tc.name, status, answer, tc.status)
		}
		if rows, err := e.store.GetSession(context.Background(), "s-api"); err != nil || len(rows) != 0 {
			t.Fatalf("%s: %d rows written (%v)", tc.name, len(rows), err)
		}
	}

	// The OpenAPI document is served, without authentication.
	if status, answer := e.adminCall(t, "GET", "/v1/openapi.json", "", ""); status != 200 || answer != string(adminapi.OpenAPI()) {
		t.Errorf("GET /v1/openapi.json: %d, %d bytes", status, len(answer))
	}

	tok := e.adminToken(t, nil)
	if status, answer := e.adminCall(t, "PUT", "/v1/sessions/s-api/providers/gh", tok, body); status != 201 {
		t.Fatalf("PUT: %d %s", status, answer)
	}
	resp := e.check(t, map[string]string{"authorization": "Bearer " + e.jwt(t, "s-api", nil)}, "")
	if resp.GetOkResponse() == nil || respHeaders(resp)["authorization"] != "Bearer "+upstream {
		t.Fatalf("Check after the PUT is not swapped: %v", resp.GetDeniedResponse().GetStatus())
	}
	if status, answer := e.adminCall(t, "GET", "/v1/sessions/s-api", tok, ""); status != 200 ||
		!strings.Contains(answer, `"access_token":{"present":true,"length":`) || strings.Contains(answer, upstream) {
		t.Errorf("GET: %d %s", status, answer)
	}
	// A new login during a refresh in flight wins: the refresh's write
	// then loses and the Check serves what the PUT wrote.
	const rt = "ghr_SESSION_API_refresh"
	e.put(t, store.Row{SessionID: "s-race", Provider: "gh", Tokens: store.Tokens{AccessToken: "old", RefreshToken: "rt-race",
		ExpiresAt: time.Now().Add(-time.Minute)}})
	claim, err := e.store.ClaimRefresh(context.Background(), "s-race", "gh", "other-replica", time.Minute)
	if err != nil || !claim.Held {
		t.Fatalf("claim held %v, %v", claim.Held, err)
	}
	if status, answer := e.adminCall(t, "PUT", "/v1/sessions/s-race/providers/gh", tok,
		`{"subject":"alice","client_id":"app","access_token":"`+upstream+`","refresh_token":"`+rt+`","expires_in":3600}`); status != 200 {
		t.Fatalf("PUT during a refresh: %d %s", status, answer)
	}
	if _, err := e.store.CompleteRefresh(context.Background(), "s-race", "gh", claim.Lease, store.Tokens{AccessToken: "from-the-refresh"}); err == nil {
		t.Error("the refresh's write won over the PUT")
	}
	resp = e.check(t, map[string]string{"authorization": "Bearer " + e.jwt(t, "s-race", nil)}, "")
	if respHeaders(resp)["authorization"] != "Bearer "+upstream {
		t.Errorf("after a PUT during a refresh the Check does not serve the PUT's token")
	}

	// DELETE ?revoke=true revokes the refresh token at gh's revocation_url
	// with gh's client authentication (params), then deletes.
	status, answer := e.adminCall(t, "DELETE", "/v1/sessions/s-race?revoke=true", tok, "")
	if status != 200 || !strings.Contains(answer, `{"provider":"gh","revoked":true,"token_type":"refresh_token"}`) ||
		!strings.Contains(answer, `"deleted":1`) {
		t.Errorf("DELETE ?revoke=true: %d %s", status, answer)
	}
	var revoked []map[string]string
	e.tokens.mu.Lock()
	for _, f := range e.tokens.forms {
		if f["path"] == "/revoke" {
			revoked = append(revoked, f)
		}
	}
	e.tokens.mu.Unlock()
	if len(revoked) != 1 || revoked[0]["token"] != rt || revoked[0]["token_type_hint"] != "refresh_token" ||
		revoked[0]["client_id"] != "gh-client" || revoked[0]["client_secret"] != "gh-secret" {
		t.Errorf("revocation requests: %d (right token and client: %v)", len(revoked),
			len(revoked) == 1 && revoked[0]["token"] == rt && revoked[0]["client_secret"] == "gh-secret")
	}
	if rows, _ := e.store.GetSession(context.Background(), "s-race"); len(rows) != 0 {
		t.Errorf("%d rows left after DELETE", len(rows))
	}
	if status, answer := e.adminCall(t, "DELETE", "/v1/sessions/s-api", tok, ""); status != 200 {
		t.Errorf("DELETE: %d %s", status, answer)
	}
	resp = e.check(t, map[string]string{"authorization": "Bearer " + e.jwt(t, "s-api", nil)}, "")
	if resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
		t.Errorf("Check after the DELETE: %v", resp)
	}
	if !strings.Contains(e.logs.String(), `"msg":"audit"`) {
		t.Error("no audit line")
	}
	e.assertNoSecretsLogged(t, upstream, tok, rt)
}

// python3 returns the python3 on PATH. Without one the test is skipped,
// or fails when CI is "true" (Debian machines have it).
func python3(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is not on PATH")
		}
		t.Skip("python3 is not on PATH: the Python example of docs/session-api.md is not run")
	}
	return p
}

// TestSessionAPIPythonExample runs docs/examples/session_api.py against a
// live server: it writes a session with a client-credentials token from
// the environment and prints the metadata it reads back, never a token.
// The row is in the store and a Check swaps the session's JWT for it.
func TestSessionAPIPythonExample(t *testing.T) {
	py := python3(t)
	e := startE2E(t, e2eOptions{admin: true})
	const (
		upstream = "gho_PYTHON_EXAMPLE_upstream"
		refresh  = "ghr_PYTHON_EXAMPLE_refresh"
		session  = "s-python/1" // a slash, which the script must escape
	)
	tok := e.adminToken(t, nil)
	run := func(env ...string) (stdout, stderr string, err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, py, "../../docs/examples/session_api.py", session, "gh", "alice", "app", "--expires-in", "3600")
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "EXTAUTHZ_ADMIN_URL=http://" + e.admin.String(),
			"UPSTREAM_ACCESS_TOKEN=" + upstream, "UPSTREAM_REFRESH_TOKEN=" + refresh}, env...)
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err = cmd.Run()
		return out.String(), errOut.String(), err
	}

	// A token without the scope: the script fails with the API's problem.
	_, stderr, err := run("EXTAUTHZ_ADMIN_TOKEN=" + e.adminToken(t, map[string]any{"scope": "openid"}))
	if err == nil || !strings.Contains(stderr, "HTTP 403") {
		t.Errorf("without the scope: err %v, stderr %q", err, stderr)
	}
	if rows, err := e.store.GetSession(context.Background(), session); err != nil || len(rows) != 0 {
		t.Fatalf("a refused write stored %d rows (%v)", len(rows), err)
	}

	before := time.Now()
	stdout, stderr, err := run("EXTAUTHZ_ADMIN_TOKEN=" + tok)
	if err != nil {
		t.Fatalf("session_api.py: %v\n%s", err, stderr)
	}
	for _, s := range []string{upstream, refresh, tok} {
		if strings.Contains(stdout+stderr, s) {
			t.Fatal("session_api.py printed a token")
		}
	}
	first, metadata, _ := strings.Cut(stdout, "\n")
	var meta struct {
		Provider    string `json:"provider"`
		AccessToken struct {
			Present bool `json:"present"`
			Length  int  `json:"length"`
		} `json:"access_token"`
		RefreshToken struct {
			Length int `json:"length"`
		} `json:"refresh_token"`
		ExpiresAt *string `json:"expires_at"`
	}
	if err := json.Unmarshal([]byte(metadata), &meta); err != nil || first != "created" || meta.Provider != "gh" ||
		!meta.AccessToken.Present || meta.AccessToken.Length != len(upstream) || meta.RefreshToken.Length != len(refresh) ||
		meta.ExpiresAt == nil {
		t.Fatalf("session_api.py printed %q (%v)", stdout, err)
	}

	row, err := e.store.Get(context.Background(), session, "gh")
	if err != nil || row.AccessToken != upstream || row.RefreshToken != refresh || row.Subject != "alice" || row.ClientID != "app" ||
		row.ExpiresAt.Before(before.Add(time.Hour)) {
		t.Fatalf("the stored row differs from what the script wrote (err %v)", err)
	}
	resp := e.check(t, map[string]string{"authorization": "Bearer " + e.jwt(t, session, nil)}, "")
	if resp.GetOkResponse() == nil || respHeaders(resp)["authorization"] != "Bearer "+upstream {
		t.Fatalf("Check after the script is not swapped: %v", resp.GetDeniedResponse().GetStatus())
	}
	if stdout, _, err := run("EXTAUTHZ_ADMIN_TOKEN=" + tok); err != nil || !strings.HasPrefix(stdout, "replaced\n") {
		t.Errorf("a second run: %v, first line %q", err, strings.SplitN(stdout, "\n", 2)[0])
	}
	e.assertNoSecretsLogged(t, upstream, refresh, tok)
}
