package cli

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

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
