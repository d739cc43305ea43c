package cli

import (
	"context"
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/encrypted"
	"github.com/extauthz/extauthz/tokencrypt"
	"github.com/extauthz/extauthz/tokencrypt/tokencrypttest"
	"github.com/extauthz/extauthz/upstreamtoken"
)

// sqlExec runs one statement on e's database as someone with write access
// to the table would, outside the service.
func (e *e2e) sqlExec(t *testing.T, sql string, args ...any) int64 {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tag, err := conn.Exec(t.Context(), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return tag.RowsAffected()
}

// assertNeverServed Checks session with jwt until the answer is a 503
// (within the cache's staleness bound and a margin): every answer until then
// is a deny, and no answer carries any of tokens. Once the 503 came, a few
// more Checks must get it too.
func (e *e2e) assertNeverServed(t *testing.T, jwt string, tokens ...string) {
	t.Helper()
	e.assertUnreadable(t, jwt, "", tokens)
}

// assertUnreadable is assertNeverServed for a JWT whose own token owned may
// be served until the row's change reaches the token cache (the cache read
// the row before the change; serving it to its owner then leaks nothing):
// an allow is accepted only before the first 503, and only with owned.
func (e *e2e) assertUnreadable(t *testing.T, jwt, owned string, tokens []string) {
	t.Helper()
	check := func(stale bool) bool {
		resp := e.check(t, map[string]string{"authorization": "Bearer " + jwt}, "")
		h := respHeaders(resp)
		if resp.GetDeniedResponse() == nil {
			if stale && owned != "" && h["authorization"] == "Bearer "+owned {
				return false // the owner's own token, read before the change
			}
			t.Fatalf("allowed (%d headers), want a deny", len(h))
		}
		for k, v := range h {
			for _, tok := range tokens {
				if strings.Contains(v, tok) {
					t.Fatalf("header %s serves the token %q", k, tok)
				}
			}
		}
		return resp.GetDeniedResponse().GetStatus().GetCode() == 503
	}
	testutil.Eventually(t, 3*time.Second, "a 503 deny", func() bool { return check(true) })
	for range 3 {
		if !check(false) {
			t.Fatal("a Check after the 503 was not a 503")
		}
	}
}

var storeUnavailableLog = regexp.MustCompile(`"msg":"check denied","reason":"store_unavailable","session":"([0-9a-f]+)"`)

// TestEncryptionBindingSealed writes rows through the service's paths
// ('tokens put' and the store the service uses), then changes their binding
// with SQL on the real database, as anyone with write access to the table
// could: rebinding a victim's tokens to another subject or client, or
// blanking the upstream subject to switch off the ID-token subject check.
// The service, with its token cache, answers 503 store_unavailable (logged)
// for the JWT of the new binding and for the old one, and serves the token
// to nobody; 'tokens get' refuses the row too.
func TestEncryptionBindingSealed(t *testing.T) {
	e := startE2E(t)
	fresh := time.Now().Add(time.Hour)
	cases := []struct {
		session, column, value string
		jwt                    map[string]any // the attacker's JWT claims
	}{
		{"s-bind-subject", "subject", "mallory", map[string]any{"sub": "mallory"}},
		{"s-bind-client", "client_id", "mallory-app", map[string]any{"client_id": "mallory-app"}},
		{"s-bind-upstream", "upstream_subject", "", nil},
	}
	var tokens, owned []string
	for i, c := range cases {
		access := fmt.Sprintf("bind-victim-access-%d", i)
		owned = append(owned, access)
		tokens = append(tokens, access, fmt.Sprintf("bind-victim-refresh-%d", i))
		if i%2 == 0 {
			code, stdout, stderr := e.run(t, "tokens", "put", "--config", e.configPath, "--session", c.session, "--provider", "gh",
				"--subject", "alice", "--client-id", "app", "--upstream-subject", "gh-alice", "--access-token", access,
				"--refresh-token", tokens[len(tokens)-1], "--expires-at", fresh.UTC().Format(time.RFC3339))
			if code != ExitOK {
				t.Fatalf("tokens put: exit %d\n%s%s", code, stdout, stderr)
			}
		} else {
			e.put(t, store.Row{SessionID: c.session, Provider: "gh", UpstreamSubject: "gh-alice",
				Tokens: store.Tokens{AccessToken: access, RefreshToken: tokens[len(tokens)-1], ExpiresAt: fresh}})
		}
		// Served to its owner, and cached.
		e.checkBearer(t, c.session, "Bearer "+access)
	}

	for i, c := range cases {
		t.Run(c.column, func(t *testing.T) {
			if n := e.sqlExec(t, fmt.Sprintf(`UPDATE upstream_tokens SET %s = $1 WHERE session_id = $2 AND provider = 'gh'`, c.column),
				c.value, c.session); n != 1 {
				t.Fatalf("%d rows updated", n)
			}
			if c.jwt != nil {
				e.assertNeverServed(t, e.jwt(t, c.session, c.jwt), tokens...)
			}
			// The owner's JWT: its own token until the change reaches the
			// cache (milliseconds), then 503 for good.
			e.assertUnreadable(t, e.jwt(t, c.session, nil), owned[i], tokens)
			raw, err := e.raw.Get(t.Context(), c.session, "gh")
			if err != nil || raw.NeedsReauth {
				t.Errorf("row after the Checks: reauth %v, %v; want it left for the operator", raw.NeedsReauth, err)
			}
			code, stdout, stderr := e.run(t, "tokens", "get", "--config", e.configPath, "--session", c.session)
			if code != ExitFailure || stdout != "" || !strings.Contains(stderr, "cannot be decrypted") {
				t.Errorf("tokens get: exit %d, stdout %q, stderr %q; want 1 and 'cannot be decrypted'", code, stdout, stderr)
			}
		})
	}
	logged := map[string]bool{}
	for _, m := range storeUnavailableLog.FindAllStringSubmatch(e.logs.String(), -1) {
		logged[m[1]] = true
	}
	for _, c := range cases {
		if !logged[upstreamtoken.SessionHash(c.session)] {
			t.Errorf("%s: no store_unavailable deny logged", c.session)
		}
	}
	e.assertNoSecretsLogged(t, tokens...)
}

// TestEncryptionV1RowsUpgradedByRotate: rows sealed before the binding was
// sealed too (format v1) keep being served; 'keys rotate' with the same
// primary key seals them again (and says how many); afterwards a changed
// binding makes them unreadable. A row holding a plaintext token is listed
// by session hash, left as it is, and makes 'keys rotate' exit 1.
func TestEncryptionV1RowsUpgradedByRotate(t *testing.T) {
	secret := tokencrypt.GenerateKey()
	e := startE2E(t, e2eOptions{keys: []e2eKey{{ID: "k1", Secret: secret}}})
	raw, err := base64.StdEncoding.DecodeString(secret)
	if err != nil {
		t.Fatal(err)
	}
	key := tokencrypt.Key{ID: "k1", Secret: raw}
	fresh := time.Now().Add(time.Hour)
	v1 := func(session, column, v string) string {
		return tokencrypttest.SealV1(key, v, tokencrypt.Place{SessionID: session, Provider: "gh", Column: column})
	}
	for _, s := range []string{"s-v1-a", "s-v1-b"} {
		if err := e.raw.Put(t.Context(), store.Row{SessionID: s, Provider: "gh", Subject: "alice", ClientID: "app",
			Tokens: store.Tokens{AccessToken: v1(s, encrypted.ColumnAccess, "v1-access-"+s),
				RefreshToken: v1(s, encrypted.ColumnRefresh, "v1-refresh-"+s), ExpiresAt: fresh}}); err != nil {
			t.Fatal(err)
		}
		e.checkBearer(t, s, "Bearer v1-access-"+s)
	}
	const planted = "planted-plaintext-token"
	if err := e.raw.Put(t.Context(), store.Row{SessionID: "s-plain-secret-id", Provider: "gh", Subject: "alice", ClientID: "app",
		Tokens: store.Tokens{AccessToken: planted, ExpiresAt: fresh}}); err != nil {
		t.Fatal(err)
	}
	e.putCLI(t, "s-v2", "v2-access", "", "", fresh)

	code, stdout, stderr := e.run(t, "keys", "rotate", "--config", e.configPath)
	if code != ExitFailure {
		t.Errorf("keys rotate: exit %d, want %d (a plaintext row)\nstdout:\n%s\nstderr:\n%s", code, ExitFailure, stdout, stderr)
	}
	if !strings.Contains(stdout, "4 rows scanned, 2 re-encrypted") || !strings.Contains(stdout, "2 upgraded from format v1, 1 left in plaintext") {
		t.Errorf("keys rotate summary: %q", stdout)
	}
	if want := "session " + upstreamtoken.SessionHash("s-plain-secret-id") + ` provider "gh": a token is not encrypted`; !strings.Contains(stderr, want) {
		t.Errorf("keys rotate stderr lacks %q:\n%s", want, stderr)
	}
	for _, secret := range []string{"s-plain-secret-id", planted, "v1-access-", "v1-refresh-"} {
		if strings.Contains(stdout+stderr, secret) {
			t.Errorf("keys rotate output reveals %q", secret)
		}
	}
	if r, err := e.raw.Get(t.Context(), "s-plain-secret-id", "gh"); err != nil || r.AccessToken != planted {
		t.Errorf("the plaintext row was changed: %v", err)
	}

	rows, err := e.raw.Scan(t.Context(), store.Key{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.SessionID == "s-plain-secret-id" {
			continue
		}
		for _, v := range []string{r.AccessToken, r.RefreshToken} {
			if v != "" && !strings.HasPrefix(v, "v2.k1.") {
				t.Errorf("%s: stored %.8q..., want v2.k1.", r.SessionID, v)
			}
		}
	}
	for _, s := range []string{"s-v1-a", "s-v1-b"} {
		e.checkBearer(t, s, "Bearer v1-access-"+s)
	}
	e.sqlExec(t, `UPDATE upstream_tokens SET subject = 'mallory' WHERE session_id = 's-v1-a'`)
	e.assertNeverServed(t, e.jwt(t, "s-v1-a", map[string]any{"sub": "mallory"}), "v1-access-s-v1-a")
	e.checkBearer(t, "s-v1-b", "Bearer v1-access-s-v1-b")
}
