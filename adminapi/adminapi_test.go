package adminapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extauthz/extauthz/adminapi"
	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/jwtauth"
	"github.com/extauthz/extauthz/jwtauth/jwttest"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/memory"
)

// Secrets the tests write; none may appear in an answer or a log line.
const (
	secretAccess  = "gho_ADMIN-SECRET-access"
	secretRefresh = "ghr_ADMIN-SECRET-refresh"
	secretID      = "eyJ.ADMIN-SECRET-id.sig"
)

const (
	issuer   = "https://as.test"
	audience = "extauthz-admin"
	scope    = "extauthz:sessions"
)

// revoker records what it was asked to revoke and answers per provider.
type revoker struct {
	mu     sync.Mutex
	asked  []string
	answer map[string]adminapi.Revocation
}

func (r *revoker) Revoke(_ context.Context, rows []store.Row) []adminapi.Revocation {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []adminapi.Revocation
	for _, row := range rows {
		r.asked = append(r.asked, row.Provider)
		out = append(out, r.answer[row.Provider])
	}
	return out
}

// fixtureNow is the fixtures' clock.
var fixtureNow = time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)

type fixture struct {
	h      http.Handler
	st     *memory.Store
	signer *jwttest.Signer
	logs   *testutil.SyncBuffer
	rev    *revoker
	now    time.Time
	// seen are the routes and statuses answered (see conforms).
	seen map[routeStatus]bool
}

// newFixture builds the API over a memory store, with bearer tokens of the
// test issuer for clients keycloak and reader, the providers gh and
// google, and a revoker; change adjusts the options before New.
func newFixture(t *testing.T, change ...func(*adminapi.Options)) *fixture {
	t.Helper()
	f := &fixture{st: memory.New(), signer: jwttest.NewSigner(t), logs: &testutil.SyncBuffer{},
		now: fixtureNow, seen: map[routeStatus]bool{},
		rev: &revoker{answer: map[string]adminapi.Revocation{
			"gh":     {Provider: "gh", Revoked: true, TokenType: "refresh_token"},
			"google": {Provider: "google", Error: "unavailable"},
		}}}
	v, err := jwtauth.New(context.Background(), jwtauth.Config{Issuer: issuer, Audiences: []string{audience},
		JWKSFile: f.signer.WriteJWKSFile(t), WithoutSession: true, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	opts := adminapi.Options{
		Store:     f.st,
		Auth:      adminapi.Auth{Tokens: v, Scope: scope, AllowedClients: []string{"keycloak", "reader"}},
		Providers: []string{"gh", "google"},
		Revoker:   f.rev,
		Logger:    slog.New(slog.NewTextHandler(f.logs, nil)),
		Now:       func() time.Time { return f.now },
	}
	for _, c := range change {
		c(&opts)
	}
	h, err := adminapi.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.h = h
	return f
}

// token signs a client-credentials token; over replaces or removes (nil)
// claims.
func (f *fixture) token(t *testing.T, over map[string]any) string {
	claims := map[string]any{"iss": issuer, "aud": audience, "sub": "keycloak", "client_id": "keycloak",
		"scope": scope, "iat": f.now.Unix(), "exp": f.now.Add(5 * time.Minute).Unix()}
	for k, v := range over {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	return f.signer.Sign(t, claims)
}

type answer struct {
	status int
	header http.Header
	body   string
}

// do sends a request with the bearer token (none when "") and the JSON
// body (none when "") through send.
func (f *fixture) do(t *testing.T, method, target, token, body string) answer {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return f.send(t, req, body)
}

// send serves req (whose body is body) and returns the answer, failing the
// test when a token is in the answer or the logs, or when the answer does
// not conform to the OpenAPI document.
func (f *fixture) send(t *testing.T, req *http.Request, body string) answer {
	t.Helper()
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Body)
	for _, s := range []string{secretAccess, secretRefresh, secretID} {
		if strings.Contains(string(b), s) || strings.Contains(f.logs.String(), s) {
			t.Fatalf("%s %s: a token is in the answer or the logs", req.Method, req.URL.Path)
		}
	}
	a := answer{rec.Code, rec.Header(), string(b)}
	f.conforms(t, req, body, a)
	return a
}

func writeBody(over map[string]any) string {
	body := map[string]any{"subject": "alice", "client_id": "app", "access_token": secretAccess,
		"refresh_token": secretRefresh, "id_token": secretID, "expires_in": 3600,
		"session_expires_at": "2026-12-06T10:00:00Z", "upstream_subject": "gh-42"}
	for k, v := range over {
		if v == nil {
			delete(body, k)
		} else {
			body[k] = v
		}
	}
	b, _ := json.Marshal(body)
	return string(b)
}

func problemOf(t *testing.T, a answer) (detail string, fields map[string]string) {
	t.Helper()
	if ct := a.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json (status %d)", ct, a.status)
	}
	var p struct {
		Type   string                `json:"type"`
		Title  string                `json:"title"`
		Status int                   `json:"status"`
		Detail string                `json:"detail"`
		Errors []adminapi.FieldError `json:"errors"`
	}
	if err := json.Unmarshal([]byte(a.body), &p); err != nil {
		t.Fatalf("problem does not decode: %v", err)
	}
	if p.Status != a.status || p.Type != "about:blank" || p.Title != http.StatusText(a.status) {
		t.Errorf("problem %+v for status %d", p, a.status)
	}
	fields = map[string]string{}
	for _, e := range p.Errors {
		fields[e.Field] = e.Message
	}
	return p.Detail, fields
}

func TestPutGetDelete(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, nil)
	const row = "/v1/sessions/s-1/providers/gh"

	a := f.do(t, "PUT", row, tok, writeBody(nil))
	if a.status != 201 {
		t.Fatalf("create: %d %s", a.status, a.body)
	}
	got, err := f.st.Get(context.Background(), "s-1", "gh")
	if err != nil || got.AccessToken != secretAccess || got.RefreshToken != secretRefresh || got.IDToken != secretID ||
		got.Subject != "alice" || got.ClientID != "app" || got.UpstreamSubject != "gh-42" || got.TokenType != "Bearer" ||
		!got.ExpiresAt.Equal(f.now.Add(time.Hour)) || !got.SessionExpiresAt.Equal(f.now.Add(24*time.Hour)) {
		t.Fatalf("stored row differs (err %v)", err)
	}
	if a := f.do(t, "PUT", row, tok, writeBody(map[string]any{"expires_in": nil, "expires_at": "2026-12-05T12:00:00+01:00"})); a.status != 200 {
		t.Fatalf("replace: %d %s", a.status, a.body)
	}
	if got, _ := f.st.Get(context.Background(), "s-1", "gh"); !got.ExpiresAt.Equal(f.now.Add(time.Hour)) {
		t.Errorf("expires_at %v", got.ExpiresAt)
	}
	f.do(t, "PUT", "/v1/sessions/s-1/providers/google", tok, writeBody(nil))

	a = f.do(t, "GET", "/v1/sessions/s-1", tok, "")
	var meta struct {
		Session   string `json:"session"`
		Providers []struct {
			Provider    string `json:"provider"`
			AccessToken struct {
				Present bool `json:"present"`
				Length  int  `json:"length"`
			} `json:"access_token"`
			ExpiresAt *string `json:"expires_at"`
		} `json:"providers"`
	}
	if err := json.Unmarshal([]byte(a.body), &meta); err != nil || a.status != 200 || len(meta.Providers) != 2 ||
		meta.Providers[0].Provider != "gh" || !meta.Providers[0].AccessToken.Present ||
		meta.Providers[0].AccessToken.Length != len(secretAccess) || meta.Providers[0].ExpiresAt == nil {
		t.Fatalf("GET session: %d %s (%v)", a.status, a.body, err)
	}
	if a := f.do(t, "GET", row, tok, ""); a.status != 200 || !strings.Contains(a.body, `"provider":"gh"`) {
		t.Errorf("GET row: %d %s", a.status, a.body)
	}
	if a := f.do(t, "GET", "/v1/sessions/s-none", tok, ""); a.status != 404 {
		t.Errorf("GET unknown session: %d", a.status)
	} else {
		problemOf(t, a)
	}

	a = f.do(t, "DELETE", "/v1/sessions/s-1?revoke=true", tok, "")
	var del struct {
		Deleted     int                   `json:"deleted"`
		Revocations []adminapi.Revocation `json:"revocations"`
	}
	if err := json.Unmarshal([]byte(a.body), &del); err != nil || a.status != 200 || del.Deleted != 2 || len(del.Revocations) != 2 ||
		!del.Revocations[0].Revoked || del.Revocations[1].Revoked || del.Revocations[1].Error != "unavailable" {
		t.Fatalf("DELETE ?revoke=true: %d %s", a.status, a.body)
	}
	if rows, _ := f.st.GetSession(context.Background(), "s-1"); len(rows) != 0 {
		t.Errorf("a failed revocation kept %d rows; the user logged out", len(rows))
	}
	if !strings.Contains(f.logs.String(), "revocation failed") {
		t.Errorf("failed revocation not logged")
	}
	if a := f.do(t, "DELETE", row, tok, ""); a.status != 200 || !strings.Contains(a.body, `"deleted":0`) {
		t.Errorf("DELETE of nothing: %d %s", a.status, a.body)
	}

	// One audit line per write and delete, naming the caller, the session
	// by hash, the provider and the status; reads are not audited.
	audits := 0
	for _, line := range strings.Split(f.logs.String(), "\n") {
		if strings.Contains(line, "msg=audit") {
			audits++
			if strings.Contains(line, "s-1") || !strings.Contains(line, "caller=\"client:keycloak sub:keycloak\"") ||
				!strings.Contains(line, "session_hash="+adminapi.SessionHash("s-1")) {
				t.Errorf("audit line %q", line)
			}
		}
	}
	if audits != 5 {
		t.Errorf("%d audit lines, want 5 (3 puts, 2 deletes)", audits)
	}
}

func TestPutRefusesBadInput(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, nil)
	for _, tc := range []struct {
		name, target, body string
		fields             []string
	}{
		{"unknown provider", "/v1/sessions/s/providers/nope", writeBody(nil), []string{"provider"}},
		{"missing binding and token", "/v1/sessions/s/providers/gh",
			writeBody(map[string]any{"subject": nil, "client_id": "", "access_token": nil}), []string{"subject", "client_id", "access_token"}},
		{"token with a newline", "/v1/sessions/s/providers/gh",
			writeBody(map[string]any{"access_token": "abc\r\nx-injected: 1"}), []string{"access_token"}},
		{"token with a space", "/v1/sessions/s/providers/gh", writeBody(map[string]any{"refresh_token": "a b"}), []string{"refresh_token"}},
		{"token too long", "/v1/sessions/s/providers/gh",
			writeBody(map[string]any{"id_token": strings.Repeat("a", adminapi.MaxTokenBytes+1)}), []string{"id_token"}},
		{"not RFC 3339", "/v1/sessions/s/providers/gh",
			writeBody(map[string]any{"expires_in": nil, "expires_at": "tomorrow", "session_expires_at": "2026-12-06"}),
			[]string{"expires_at", "session_expires_at"}},
		{"both expiries", "/v1/sessions/s/providers/gh", writeBody(map[string]any{"expires_at": "2026-12-06T10:00:00Z"}), []string{"expires_in"}},
		{"negative expires_in", "/v1/sessions/s/providers/gh", writeBody(map[string]any{"expires_in": -1}), []string{"expires_in"}},
		{"expires_in not an integer", "/v1/sessions/s/providers/gh", writeBody(map[string]any{"expires_in": "3600"}), []string{"expires_in"}},
		{"unknown member", "/v1/sessions/s/providers/gh", writeBody(map[string]any{"acess_token": "x"}), []string{"acess_token"}},
		{"member in capitals", "/v1/sessions/s/providers/gh", writeBody(map[string]any{"access_token": nil, "ACCESS_TOKEN": "x"}), []string{"ACCESS_TOKEN"}},
		{"member by Unicode folding", "/v1/sessions/s/providers/gh", writeBody(map[string]any{"subject": nil, "\u017fubject": "x"}), []string{"\u017fubject"}},
		{"member twice in two cases", "/v1/sessions/s/providers/gh",
			`{"subject":"a","client_id":"b","access_token":"x","Access_Token":"y"}`, []string{"Access_Token"}},
		{"member twice", "/v1/sessions/s/providers/gh",
			`{"subject":"a","client_id":"b","access_token":"x","access_token":"y"}`, []string{"access_token"}},
		{"two values", "/v1/sessions/s/providers/gh", writeBody(nil) + `{}`, []string{"body"}},
		{"not JSON", "/v1/sessions/s/providers/gh", `subject=alice`, []string{"body"}},
		{"array", "/v1/sessions/s/providers/gh", `[]`, []string{"body"}},
		{"subject with a control character", "/v1/sessions/s/providers/gh", writeBody(map[string]any{"subject": "al\x00ice"}), []string{"subject"}},
		{"session too long", "/v1/sessions/" + strings.Repeat("s", adminapi.MaxNameBytes+1) + "/providers/gh", writeBody(nil), []string{"session"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := f.do(t, "PUT", tc.target, tok, tc.body)
			if a.status != 400 {
				t.Fatalf("status %d, want 400: %s", a.status, a.body)
			}
			_, fields := problemOf(t, a)
			if len(fields) != len(tc.fields) {
				t.Errorf("fields %v, want %v", fields, tc.fields)
			}
			for _, name := range tc.fields {
				if _, ok := fields[name]; !ok {
					t.Errorf("field %s not named: %v", name, fields)
				}
			}
			if rows, _ := f.st.GetSession(context.Background(), "s"); len(rows) != 0 {
				t.Errorf("a refused write stored %d rows", len(rows))
			}
		})
	}
	t.Run("not JSON content type", func(t *testing.T) {
		body := writeBody(nil)
		req := httptest.NewRequest("PUT", "/v1/sessions/s/providers/gh", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if a := f.send(t, req, body); a.status != http.StatusUnsupportedMediaType {
			t.Errorf("status %d", a.status)
		}
	})
}

func TestCallersAreAuthenticated(t *testing.T) {
	f := newFixture(t)
	other := jwttest.NewSigner(t)
	for _, tc := range []struct {
		name      string
		token     func() string
		status    int
		challenge string
	}{
		{"no credentials", func() string { return "" }, 401, "Bearer"},
		{"not a JWT", func() string { return "opaque" }, 401, `Bearer error="invalid_token"`},
		{"wrong audience", func() string { return f.token(t, map[string]any{"aud": "api"}) }, 401, `Bearer error="invalid_token"`},
		{"expired", func() string { return f.token(t, map[string]any{"exp": f.now.Add(-time.Hour).Unix()}) }, 401, `Bearer error="invalid_token"`},
		{"another issuer's key", func() string {
			return other.Sign(t, map[string]any{"iss": issuer, "aud": audience, "sub": "k", "client_id": "keycloak", "scope": scope,
				"exp": f.now.Add(time.Minute).Unix()})
		}, 401, `Bearer error="invalid_token"`},
		{"without the scope", func() string { return f.token(t, map[string]any{"scope": "openid"}) }, 403, `Bearer error="insufficient_scope"`},
		{"client not allowed", func() string { return f.token(t, map[string]any{"client_id": "mallory", "sub": "mallory"}) }, 403, `Bearer error="insufficient_scope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, m := range []struct{ method, target, body string }{
				{"PUT", "/v1/sessions/s/providers/gh", writeBody(nil)},
				{"GET", "/v1/sessions/s", ""},
				{"DELETE", "/v1/sessions/s", ""},
			} {
				a := f.do(t, m.method, m.target, tc.token(), m.body)
				if a.status != tc.status || a.header.Get("WWW-Authenticate") != tc.challenge {
					t.Errorf("%s: status %d, challenge %q; want %d %q", m.method, a.status, a.header.Get("WWW-Authenticate"), tc.status, tc.challenge)
				}
				problemOf(t, a)
			}
			if rows, _ := f.st.GetSession(context.Background(), "s"); len(rows) != 0 {
				t.Errorf("a refused caller stored %d rows", len(rows))
			}
		})
	}
	// The OpenAPI document is public.
	if a := f.do(t, "GET", "/v1/openapi.json", "", ""); a.status != 200 || a.body != string(adminapi.OpenAPI()) {
		t.Errorf("openapi.json: %d", a.status)
	}
	if !bytes.Contains([]byte(f.logs.String()), []byte("authenticated=false")) {
		t.Error("refused writes are not audited")
	}
}

func TestStoreUnavailableIs503(t *testing.T) {
	f := newFixture(t)
	f.st.SetUnavailable(true)
	a := f.do(t, "PUT", "/v1/sessions/s/providers/gh", f.token(t, nil), writeBody(nil))
	if a.status != 503 || a.header.Get("Retry-After") == "" {
		t.Errorf("status %d, Retry-After %q", a.status, a.header.Get("Retry-After"))
	}
	problemOf(t, a)
}
