package cli_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/extauthz/extauthz/internal/cli"
	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/store"
)

// revSecret is the client secret of the revoking providers in
// TestTokensDeleteRevoke; it must never be printed.
const revSecret = "cs-revoke-9f8e7d6c"

// revRequest is what the RFC 7009 endpoint received.
type revRequest struct {
	provider          string // the path's first segment
	token, hint       string
	basicUser, basicP string
	basicOK           bool
	clientID          string
	clientSecret      string
	secretInForm      bool
	contentType       string
	method            string
}

// revEndpoint is a fake RFC 7009 revocation endpoint for several providers,
// one path each (/PROVIDER/revoke), that records every request.
type revEndpoint struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []revRequest
}

func newRevEndpoint(t *testing.T) *revEndpoint {
	t.Helper()
	e := &revEndpoint{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		u, p, ok := r.BasicAuth()
		u, _ = url.QueryUnescape(u)
		p, _ = url.QueryUnescape(p)
		_, secretInForm := form["client_secret"]
		req := revRequest{
			provider: strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")[0],
			token:    form.Get("token"), hint: form.Get("token_type_hint"),
			basicUser: u, basicP: p, basicOK: ok,
			clientID: form.Get("client_id"), clientSecret: form.Get("client_secret"), secretInForm: secretInForm,
			contentType: r.Header.Get("Content-Type"), method: r.Method,
		}
		e.mu.Lock()
		e.reqs = append(e.reqs, req)
		e.mu.Unlock()
		switch {
		case req.provider == "down":
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusServiceUnavailable)
		case req.provider == "gitlab" && req.hint == "refresh_token":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"unsupported_token_type","error_description":"`+req.token+`"}`)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// requests returns the recorded requests for provider.
func (e *revEndpoint) requests(provider string) []revRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []revRequest
	for _, r := range e.reqs {
		if r.provider == provider {
			out = append(out, r)
		}
	}
	return out
}

func (e *revEndpoint) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.reqs)
}

// revProvider is the YAML of provider name (client ID name-client) in a
// providers section, with its endpoints on the server at base; with revoke
// it has a revocation_url, without secret it is a public client.
func revProvider(base, name, authStyle, secret string, revoke bool) string {
	y := "\n  " + name + ":\n    token_url: " + base + "/" + name + "/token\n    client_id: " + name + "-client\n    auth_style: " + authStyle
	if secret != "" {
		y += "\n    client_secret: " + secret
	}
	if revoke {
		y += "\n    revocation_url: " + base + "/" + name + "/revoke"
	}
	return y
}

// TestTokensDeleteRevoke: tokens delete --revoke reads the sealed rows,
// revokes each at its provider's RFC 7009 endpoint with the provider's
// client authentication, says per provider how that went, and deletes the
// rows whatever the outcome, exiting 0.
func TestTokensDeleteRevoke(t *testing.T) {
	dsn := pgtest.New(t)
	e := newRevEndpoint(t)
	base := e.srv.URL
	cfg := tokConfigWith(t, dsn, revProvider(base, "github", "header", revSecret, true)+revProvider(base, "gitlab", "params", revSecret, true)+
		revProvider(base, "down", "params", "", true)+revProvider(base, "google", "params", "", false))
	raw := tokOpenStore(t, dsn)

	type tokens struct{ access, refresh string }
	put := func(session, provider string, tok tokens) {
		t.Helper()
		args := append(tokRequired(dsn, cfg.path, session, provider), "--access-token", tok.access)
		if tok.refresh != "" {
			args = append(args, "--refresh-token", tok.refresh)
		}
		tokExpectCode(t, tokRun(t, nil, "", args...), cli.ExitOK, "put "+session+"/"+provider)
	}
	rev := map[string]tokens{
		"github": {"at-gh-1a2b3c", "rt-gh-4d5e6f"},
		"gitlab": {"at-gl-7a8b9c", "rt-gl-0d1e2f"},
		"down":   {"at-down-3a4b5c", ""},
		"google": {"at-g-6d7e8f", "rt-g-9a0b1c"},
	}
	for p, tok := range rev {
		put("sess-rev", p, tok)
	}
	other := map[string]tokens{"github": {"at-other-gh-2c3d", "rt-other-gh-4e5f"}, "gitlab": {"at-other-gl-6a7b", "rt-other-gl-8c9d"}}
	for p, tok := range other {
		put("sess-other", p, tok)
	}
	secrets := []string{revSecret}
	for _, m := range []map[string]tokens{rev, other} {
		for _, tok := range m {
			secrets = append(secrets, tok.access, tok.refresh)
		}
	}
	left := func(session string) int {
		t.Helper()
		rows, err := raw.GetSession(t.Context(), session)
		if err != nil {
			t.Fatal(err)
		}
		return len(rows)
	}

	t.Run("needs --config", func(t *testing.T) {
		r := tokRun(t, nil, "", "tokens", "delete", "--database-url", dsn, "--session", "sess-rev", "--revoke")
		tokExpectCode(t, r, cli.ExitUsage, "delete --revoke without --config")
		if !strings.Contains(r.stderr, "--config") {
			t.Errorf("stderr lacks --config:\n%s", r.stderr)
		}
		if e.count() != 0 || left("sess-rev") != 4 {
			t.Errorf("%d revocation requests, %d rows left; want none and 4", e.count(), left("sess-rev"))
		}
	})

	t.Run("whole session", func(t *testing.T) {
		r := tokRun(t, nil, "", "tokens", "delete", "--database-url", dsn, "--config", cfg.path, "--session", "sess-rev", "--revoke")
		tokExpectCode(t, r, cli.ExitOK, "delete --revoke")
		tokNoSecrets(t, r, secrets...)
		for _, want := range []string{
			"revocation: github: revoked (refresh_token)",
			"revocation: gitlab: revoked (access_token)",
			"revocation: down: failed: unavailable",
			"HTTP 503",
			"revocation: google: not revoked (no revocation_url)",
			"deleted",
			"revocation failed at: down (",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
			}
		}
		if n := left("sess-rev"); n != 0 {
			t.Errorf("%d rows left in the session, want none", n)
		}
		if n := left("sess-other"); n != 2 {
			t.Errorf("other session has %d rows, want 2", n)
		}

		// github: HTTP Basic, the refresh token.
		gh := e.requests("github")
		if len(gh) != 1 {
			t.Fatalf("github endpoint saw %d requests, want 1", len(gh))
		}
		if g := gh[0]; g.method != http.MethodPost || g.contentType != "application/x-www-form-urlencoded" ||
			g.token != rev["github"].refresh || g.hint != "refresh_token" ||
			!g.basicOK || g.basicUser != "github-client" || g.basicP != revSecret || g.clientID != "" || g.secretInForm {
			t.Errorf("github request: %s %s, refresh token sent %v, hint %q, basic ok=%v user=%q secret ok=%v, form client_id=%q secret in form=%v",
				g.method, g.contentType, g.token == rev["github"].refresh, g.hint, g.basicOK, g.basicUser, g.basicP == revSecret, g.clientID, g.secretInForm)
		}
		// gitlab: credentials in the form; the refresh token is not a
		// type it revokes, so the access token follows.
		gl := e.requests("gitlab")
		if len(gl) != 2 {
			t.Fatalf("gitlab endpoint saw %d requests, want 2", len(gl))
		}
		for i, want := range []struct{ token, hint string }{{rev["gitlab"].refresh, "refresh_token"}, {rev["gitlab"].access, "access_token"}} {
			g := gl[i]
			if g.token != want.token || g.hint != want.hint || g.basicOK || g.clientID != "gitlab-client" || g.clientSecret != revSecret {
				t.Errorf("gitlab request %d: right token %v, hint %q (want %q), basic %v, client_id %q, secret ok %v",
					i, g.token == want.token, g.hint, want.hint, g.basicOK, g.clientID, g.clientSecret == revSecret)
			}
		}
		// down: a public client, the access token (there is no refresh
		// token).
		dn := e.requests("down")
		if len(dn) != 1 {
			t.Fatalf("down endpoint saw %d requests, want 1", len(dn))
		}
		if g := dn[0]; g.token != rev["down"].access || g.hint != "access_token" || g.clientID != "down-client" || g.secretInForm || g.basicOK {
			t.Errorf("down request: right token %v, hint %q, client_id %q, secret in form %v, basic %v",
				g.token == rev["down"].access, g.hint, g.clientID, g.secretInForm, g.basicOK)
		}
		if n := len(e.requests("google")); n != 0 {
			t.Errorf("google (no revocation_url) saw %d requests", n)
		}
	})

	t.Run("one provider", func(t *testing.T) {
		before := len(e.requests("github"))
		r := tokRun(t, nil, "", "tokens", "delete", "--database-url", dsn, "--config", cfg.path,
			"--session", "sess-other", "--provider", "github", "--revoke")
		tokExpectCode(t, r, cli.ExitOK, "delete --provider --revoke")
		tokNoSecrets(t, r, secrets...)
		if !strings.Contains(r.stdout, "revocation: github: revoked (refresh_token)") || strings.Contains(r.stdout, "gitlab") ||
			strings.Contains(r.stdout, "failed") {
			t.Errorf("stdout:\n%s", r.stdout)
		}
		gh := e.requests("github")
		if len(gh) != before+1 || gh[len(gh)-1].token != other["github"].refresh {
			t.Errorf("github endpoint saw %d new requests, want 1 with the other session's refresh token", len(gh)-before)
		}
		if _, err := raw.Get(t.Context(), "sess-other", "github"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get deleted row = %v, want ErrNotFound", err)
		}
		if n := left("sess-other"); n != 1 {
			t.Errorf("other session has %d rows, want 1 (gitlab)", n)
		}
	})

	t.Run("undecryptable rows are deleted unrevoked", func(t *testing.T) {
		// The same providers under another key: the rows do not open.
		wrongKey := tokConfigWith(t, dsn, revProvider(base, "github", "header", revSecret, true))
		put("sess-lost", "github", tokens{"at-lost-5f6a", "rt-lost-7b8c"})
		before := e.count()
		r := tokRun(t, nil, "", "tokens", "delete", "--database-url", dsn, "--config", wrongKey.path, "--session", "sess-lost", "--revoke")
		tokExpectCode(t, r, cli.ExitOK, "delete --revoke with the wrong key")
		tokNoSecrets(t, r, append(secrets, "at-lost-5f6a", "rt-lost-7b8c")...)
		for _, want := range []string{"revocation: github: failed: unreadable", "deleted", "revocation failed at: github"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
			}
		}
		if e.count() != before || left("sess-lost") != 0 {
			t.Errorf("%d requests, %d rows left; want none and none", e.count()-before, left("sess-lost"))
		}
	})

	t.Run("unknown session", func(t *testing.T) {
		before := e.count()
		r := tokRun(t, nil, "", "tokens", "delete", "--database-url", dsn, "--config", cfg.path, "--session", "sess-nobody", "--revoke")
		tokExpectCode(t, r, cli.ExitOK, "delete --revoke of an unknown session")
		if e.count() != before || strings.Contains(r.stdout, "revocation") || !strings.Contains(r.stdout, "deleted") {
			t.Errorf("%d requests; stdout:\n%s", e.count()-before, r.stdout)
		}
	})
}
