package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/postgres"
	"github.com/extauthz/extauthz/tokencrypt"
)

// run runs a command line in-process with e's environment, so that
// --config e.configPath names e's database and keys.
func (e *e2e) run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(t.Context(), args, Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: e.getenv})
	return code, out.String(), errb.String()
}

// putCLI stores a row for provider gh with `extauthz tokens put`, bound to
// the subject and client of e.jwt's tokens.
func (e *e2e) putCLI(t *testing.T, session, access, refresh, id string, expiresAt time.Time) {
	t.Helper()
	args := []string{"tokens", "put", "--config", e.configPath, "--session", session, "--provider", "gh",
		"--subject", "alice", "--client-id", "app", "--access-token", access,
		"--expires-at", expiresAt.UTC().Format(time.RFC3339)}
	if refresh != "" {
		args = append(args, "--refresh-token", refresh)
	}
	if id != "" {
		args = append(args, "--id-token", id)
	}
	code, stdout, stderr := e.run(t, args...)
	if code != ExitOK {
		t.Fatalf("tokens put %s: exit %d\nstdout:\n%s\nstderr:\n%s", session, code, stdout, stderr)
	}
}

// checkBearer Checks session on e and fails the test unless it is allowed
// with the upstream authorization header want.
func (e *e2e) checkBearer(t *testing.T, session, want string) {
	t.Helper()
	resp := e.check(t, map[string]string{"authorization": "Bearer " + e.jwt(t, session, nil)}, "")
	if resp.GetOkResponse() == nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("%s: denied %d, want allowed", session, resp.GetDeniedResponse().GetStatus().GetCode())
	}
	if got := respHeaders(resp)["authorization"]; got != want {
		t.Fatalf("%s: authorization = %q, want %q", session, got, want)
	}
}

// findPGDump returns the pg_dump binary: on PATH, else the newest in
// /usr/lib/postgresql/*/bin. Without one the test is skipped, or fails on
// CI (CI=true).
func findPGDump(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("pg_dump"); err == nil {
		return p
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_dump")
	version := func(p string) int {
		n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		return n
	}
	sort.Slice(found, func(i, j int) bool { return version(found[i]) > version(found[j]) })
	for _, p := range found {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	const msg = "pg_dump not found on PATH nor in /usr/lib/postgresql/*/bin"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// TestEncryptionPGDumpHoldsNoTokens fills the store through `extauthz tokens
// put` and through the refresh path, then dumps the database with the real
// pg_dump: the rows are there, none of the tokens is.
func TestEncryptionPGDumpHoldsNoTokens(t *testing.T) {
	pgDump := findPGDump(t)
	e := startE2E(t)
	ctx := t.Context()
	fresh, expired := time.Now().Add(time.Hour), time.Now().Add(-time.Hour)

	// Through the command line: a complete row, one with only an access
	// token, and an expired one that the service refreshes below.
	e.putCLI(t, "s-dump-cli-full", "dump-cli-access-1a2b", "dump-cli-refresh-3c4d", "dump-cli-id-5e6f", fresh)
	e.putCLI(t, "s-dump-cli-min", "dump-cli-access-7a8b", "", "", fresh)
	e.putCLI(t, "s-dump-cli-exp", "dump-cli-stale-9c0d", "dump-cli-rt-2", "dump-cli-stale-id-1e2f", expired)
	// Through the service's store, an expired row to be refreshed.
	e.put(t, store.Row{SessionID: "s-dump-refresh", Provider: "gh", Tokens: store.Tokens{
		AccessToken: "dump-stale-access-3a4b", RefreshToken: "dump-rt-1", IDToken: "dump-stale-id-5c6d", ExpiresAt: expired}})

	// The refresh path: the token endpoint issues new tokens, which the
	// service stores.
	e.checkBearer(t, "s-dump-refresh", "Bearer new-access-dump-rt-1-1")
	e.checkBearer(t, "s-dump-cli-exp", "Bearer new-access-dump-cli-rt-2-1")
	e.checkBearer(t, "s-dump-cli-full", "Bearer dump-cli-access-1a2b")
	for _, want := range []struct{ session, access, refresh, id string }{
		{"s-dump-refresh", "new-access-dump-rt-1-1", "new-refresh-dump-rt-1-1", "new-id-dump-rt-1"},
		{"s-dump-cli-exp", "new-access-dump-cli-rt-2-1", "new-refresh-dump-cli-rt-2-1", "new-id-dump-cli-rt-2"},
	} {
		row, err := e.store.Get(ctx, want.session, "gh")
		if err != nil {
			t.Fatal(err)
		}
		if row.AccessToken != want.access || row.RefreshToken != want.refresh || row.IDToken != want.id {
			t.Fatalf("%s: refreshed tokens not stored: access %q refresh %q id %q", want.session, row.AccessToken, row.RefreshToken, row.IDToken)
		}
	}

	tokens := []string{
		// Written.
		"dump-cli-access-1a2b", "dump-cli-refresh-3c4d", "dump-cli-id-5e6f", "dump-cli-access-7a8b",
		"dump-cli-stale-9c0d", "dump-cli-rt-2", "dump-cli-stale-id-1e2f",
		"dump-stale-access-3a4b", "dump-rt-1", "dump-stale-id-5c6d",
		// Issued by the provider on refresh.
		"new-access-dump-rt-1-1", "new-refresh-dump-rt-1-1", "new-id-dump-rt-1",
		"new-access-dump-cli-rt-2-1", "new-refresh-dump-cli-rt-2-1", "new-id-dump-cli-rt-2",
		// What all issued ones start with.
		"new-access-", "new-refresh-", "new-id-",
	}
	sessions := []string{"s-dump-cli-full", "s-dump-cli-min", "s-dump-cli-exp", "s-dump-refresh"}

	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(dctx, pgDump, "--no-password", "--dbname="+e.dsn)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", pgDump, err, stderr.String())
	}
	dump := stdout.String()
	if !strings.Contains(dump, "upstream_tokens") {
		t.Fatalf("the dump has no upstream_tokens table:\n%s", dump)
	}
	for _, s := range sessions {
		if !strings.Contains(dump, s) {
			t.Errorf("the dump lacks the row of session %q: it would prove nothing", s)
		}
	}
	// 4 rows with 10 tokens in all, each a ciphertext under k1.
	if n := strings.Count(dump, "v2.k1."); n != 10 {
		t.Errorf("the dump holds %d ciphertexts under k1, want 10", n)
	}
	for _, tok := range tokens {
		if strings.Contains(dump, tok) {
			t.Errorf("the dump contains the token %q", tok)
		}
	}
	e.assertNoSecretsLogged(t, tokens...)
}

// TestEncryptionSwappedCiphertexts moves ciphertexts between two rows, and
// between two columns of a row, with SQL: none of them decrypts any more.
// The service answers 503 (the row is left for the operator, not marked for
// re-authentication) and `tokens get` exits 1 without showing any token.
func TestEncryptionSwappedCiphertexts(t *testing.T) {
	e := startE2E(t)
	ctx := t.Context()
	fresh := time.Now().Add(time.Hour)
	e.putCLI(t, "s-swap-a", "swap-a-access-11aa", "swap-a-refresh-22bb", "swap-a-id-33cc", fresh)
	e.putCLI(t, "s-swap-b", "swap-b-access-44dd", "swap-b-refresh-55ee", "swap-b-id-66ff", fresh)
	e.putCLI(t, "s-swap-cols", "swap-cols-access-77aa", "swap-cols-refresh-88bb", "", fresh)
	e.putCLI(t, "s-swap-untouched", "swap-untouched-access-99cc", "", "", fresh)
	tokens := []string{"swap-a-access-11aa", "swap-a-refresh-22bb", "swap-a-id-33cc",
		"swap-b-access-44dd", "swap-b-refresh-55ee", "swap-b-id-66ff", "swap-cols-access-77aa", "swap-cols-refresh-88bb"}
	own := map[string]string{} // session -> what it served before the swap
	for _, s := range []string{"s-swap-a", "s-swap-b", "s-swap-cols"} {
		row, err := e.store.Get(ctx, s, "gh")
		if err != nil {
			t.Fatalf("%s before the swap: %v", s, err)
		}
		own[s] = "Bearer " + row.AccessToken
		e.checkBearer(t, s, own[s])
	}
	before := map[string]store.Row{}
	for _, s := range []string{"s-swap-a", "s-swap-b", "s-swap-cols"} {
		r, err := e.raw.Get(ctx, s, "gh")
		if err != nil {
			t.Fatal(err)
		}
		before[s] = r
	}

	conn, err := pgx.Connect(ctx, e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// Both sides of an UPDATE read the rows as they were before it.
	tag, err := conn.Exec(ctx, `
UPDATE upstream_tokens AS t
   SET access_token = o.access_token, refresh_token = o.refresh_token, id_token = o.id_token
  FROM upstream_tokens AS o
 WHERE t.provider = 'gh' AND o.provider = 'gh'
   AND ((t.session_id = 's-swap-a' AND o.session_id = 's-swap-b')
     OR (t.session_id = 's-swap-b' AND o.session_id = 's-swap-a'))`)
	if err != nil || tag.RowsAffected() != 2 {
		t.Fatalf("swapping the rows' ciphertexts: %v (%d rows)", err, tag.RowsAffected())
	}
	tag, err = conn.Exec(ctx, `
UPDATE upstream_tokens SET access_token = refresh_token, refresh_token = access_token
 WHERE session_id = 's-swap-cols' AND provider = 'gh'`)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("swapping a row's columns: %v (%d rows)", err, tag.RowsAffected())
	}
	a, _ := e.raw.Get(ctx, "s-swap-a", "gh")
	b, _ := e.raw.Get(ctx, "s-swap-b", "gh")
	c, _ := e.raw.Get(ctx, "s-swap-cols", "gh")
	sameTokens := func(x, y store.Row) bool {
		return x.AccessToken == y.AccessToken && x.RefreshToken == y.RefreshToken && x.IDToken == y.IDToken
	}
	if !sameTokens(a, before["s-swap-b"]) || !sameTokens(b, before["s-swap-a"]) ||
		c.AccessToken != before["s-swap-cols"].RefreshToken || c.RefreshToken != before["s-swap-cols"].AccessToken {
		t.Fatal("the ciphertexts were not swapped")
	}

	for _, s := range []string{"s-swap-a", "s-swap-b", "s-swap-cols"} {
		t.Run(s, func(t *testing.T) {
			if _, err := e.store.Get(ctx, s, "gh"); err == nil {
				t.Fatalf("the swapped row decrypts")
			}
			// Until its listener reports the swap, the token cache may serve
			// the row it read before; never anything else.
			var resp *authv3.CheckResponse
			testutil.Eventually(t, postgres.DefaultStaleness+2*time.Second, s+" denied once the swap is reported", func() bool {
				resp = e.check(t, map[string]string{"authorization": "Bearer " + e.jwt(t, s, nil)}, "")
				if resp.GetDeniedResponse() != nil {
					return true
				}
				if h := respHeaders(resp); h["authorization"] != own[s] {
					t.Fatalf("allowed with headers %v, want 503", h)
				}
				return false
			})
			d := resp.GetDeniedResponse()
			if got := d.GetStatus().GetCode(); got != 503 || codes.Code(resp.GetStatus().GetCode()) != codes.Unavailable {
				t.Errorf("status %d (%v), want 503 (Unavailable)", got, codes.Code(resp.GetStatus().GetCode()))
			}
			for k, v := range respHeaders(resp) {
				for _, tok := range tokens {
					if strings.Contains(v, tok) {
						t.Errorf("header %s reveals %q", k, tok)
					}
				}
			}
			// A transient failure: the row is left as it is, not marked.
			raw, err := e.raw.Get(ctx, s, "gh")
			if err != nil || raw.NeedsReauth {
				t.Errorf("row after the Check: reauth %v, %v; want untouched", raw.NeedsReauth, err)
			}

			code, stdout, stderr := e.run(t, "tokens", "get", "--config", e.configPath, "--session", s)
			if code != ExitFailure {
				t.Errorf("tokens get: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, ExitFailure, stdout, stderr)
			}
			if stdout != "" {
				t.Errorf("tokens get: stdout = %q, want nothing", stdout)
			}
			if !strings.Contains(stderr, "cannot be decrypted") {
				t.Errorf("tokens get: stderr lacks %q:\n%s", "cannot be decrypted", stderr)
			}
			for _, tok := range tokens {
				if strings.Contains(stdout+stderr, tok) || strings.Contains(stdout+stderr, Redact(tok)) {
					t.Errorf("tokens get reveals %q", tok)
				}
			}
		})
	}
	// The row nobody touched still serves.
	e.checkBearer(t, "s-swap-untouched", "Bearer swap-untouched-access-99cc")
	e.assertNoSecretsLogged(t, tokens...)
}

// rotationCheck is one Check made while keys rotate.
func rotationCheck(client authv3.AuthorizationClient, jwt string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/api", Host: "api.test", Headers: map[string]string{"authorization": "Bearer " + jwt},
		}},
	}})
	if err != nil {
		return "", err
	}
	ok := resp.GetOkResponse()
	if ok == nil {
		return "", fmt.Errorf("denied with status %d", resp.GetDeniedResponse().GetStatus().GetCode())
	}
	for _, h := range ok.GetHeaders() {
		if h.GetHeader().GetKey() == "authorization" {
			return h.GetHeader().GetValue(), nil
		}
	}
	return "", fmt.Errorf("allowed without an authorization header")
}

var rotateDone = regexp.MustCompile(`keys rotate: done: (\d+) rows scanned, (\d+) re-encrypted, (\d+) retried`)

// TestEncryptionKeyRotation stores rows under key A, switches the service to
// keys A and B with B primary, and runs `keys rotate` while Checks keep
// being served and tokens keep being refreshed; then every row is under B,
// and a service with only B serves every session with the last tokens the
// provider issued for it. It runs directly, and through PgBouncer.
func TestEncryptionKeyRotation(t *testing.T) {
	pgtest.Routes(t, encryptionKeyRotation)
}

func encryptionKeyRotation(t *testing.T, pgbouncer bool) {
	ctx := t.Context()
	keyA := e2eKey{ID: "key-a", Secret: tokencrypt.GenerateKey()}
	keyB := e2eKey{ID: "key-b", Secret: tokencrypt.GenerateKey()}

	// Under A only.
	eA := startE2E(t, e2eOptions{keys: []e2eKey{keyA}, pgbouncer: pgbouncer})
	const nFresh, nChurn = 40, 160
	type session struct {
		id    string
		churn bool // expired at first; refreshed on every Check while B is primary
	}
	// Churn sessions first: the workers below then reach them in key
	// order, as the rotation does, so that refreshes and rewrites meet.
	var sessions []session
	for i := range nChurn {
		s := fmt.Sprintf("churn-%03d", i)
		sessions = append(sessions, session{id: s, churn: true})
		eA.put(t, store.Row{SessionID: s, Provider: "gh", Tokens: store.Tokens{
			AccessToken: "churn-access-" + s, RefreshToken: "churn-rt-" + s, ExpiresAt: time.Now().Add(-time.Minute)}})
	}
	for i := range nFresh {
		s := fmt.Sprintf("fresh-%03d", i)
		sessions = append(sessions, session{id: s})
		tk := store.Tokens{AccessToken: "fresh-access-" + s, RefreshToken: "fresh-rt-" + s, IDToken: "fresh-id-" + s,
			ExpiresAt: time.Now().Add(24 * time.Hour)}
		if i%8 == 0 {
			eA.putCLI(t, s, tk.AccessToken, tk.RefreshToken, tk.IDToken, tk.ExpiresAt)
		} else {
			eA.put(t, store.Row{SessionID: s, Provider: "gh", Tokens: tk})
		}
	}
	// Some refreshed while A is the only key: their rotated refresh tokens
	// are under A too.
	for i := range 5 {
		s := fmt.Sprintf("churn-%03d", i)
		eA.checkBearer(t, s, "Bearer new-access-churn-rt-"+s+"-1")
	}
	assertKey := func(want string) {
		t.Helper()
		rows, err := eA.raw.Scan(ctx, store.Key{}, 10*len(sessions))
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != len(sessions) {
			t.Fatalf("%d rows stored, want %d", len(rows), len(sessions))
		}
		prefix := "v2." + want + "."
		for _, r := range rows {
			for _, v := range []string{r.AccessToken, r.RefreshToken, r.IDToken} {
				if v != "" && !strings.HasPrefix(v, prefix) {
					t.Errorf("%s: a token is stored as %.20q..., want a ciphertext %q...", r.SessionID, v, prefix)
				}
			}
		}
	}
	assertKey(keyA.ID)

	// The service switches to A and B, B primary. Its skew (2h) is longer
	// than the lifetime the provider gives (1h): every Check of a churn
	// session refreshes it, while fresh sessions (24h) are served as stored.
	// Refresh ahead is off: with that skew it would refresh every churn
	// session again and again after the Checks stop.
	eAB := startE2E(t, e2eOptions{dsn: eA.dsn, keys: []e2eKey{keyA, keyB}, primary: keyB.ID, skew: "2h", noAhead: true, pgbouncer: pgbouncer})
	jwts := map[string]string{}
	for _, s := range sessions {
		jwts[s.id] = eAB.jwt(t, s.id, nil)
	}
	calls := func(eps ...*tokenEndpoint) int {
		n := 0
		for _, te := range eps {
			te.mu.Lock()
			for _, c := range te.calls {
				n += c
			}
			te.mu.Unlock()
		}
		return n
	}

	const workers = 24
	var (
		mu       sync.Mutex
		failures []string
		checks   int
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each worker owns its sessions: no two Checks of a session
			// run at once, so none waits on another's refresh.
			for pass := 0; ; pass++ {
				select {
				case <-stop:
					if pass > 0 {
						return
					}
				default:
				}
				for i := w; i < len(sessions); i += workers {
					s := sessions[i]
					got, err := rotationCheck(eAB.client, jwts[s.id])
					mu.Lock()
					checks++
					switch {
					case err != nil:
						failures = append(failures, fmt.Sprintf("%s: %v", s.id, err))
					case s.churn && !strings.HasPrefix(got, "Bearer new-access-"):
						failures = append(failures, fmt.Sprintf("%s: served %q, want a refreshed token", s.id, got))
					case !s.churn && got != "Bearer fresh-access-"+s.id:
						failures = append(failures, fmt.Sprintf("%s: served %q, want its stored token", s.id, got))
					}
					mu.Unlock()
				}
			}
		}()
	}
	// Rotate as soon as refreshes are under way.
	testutil.Eventually(t, 30*time.Second, "refreshes under way", func() bool { return calls(eAB.tokens) > 0 })
	refreshesBefore := calls(eAB.tokens)
	code, stdout, stderr := eAB.run(t, "keys", "rotate", "--config", eAB.configPath, "--batch", "16")
	rotateOutput := stdout + stderr
	refreshesDuring := calls(eAB.tokens) - refreshesBefore
	close(stop)
	wg.Wait()
	if code != ExitOK {
		t.Fatalf("keys rotate: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	m := rotateDone.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("keys rotate: stdout = %q, want its summary", stdout)
	}
	t.Logf("keys rotate: %s; %d refreshes ran during it, %d Checks in all", m[0], refreshesDuring, checks)
	if scanned, _ := strconv.Atoi(m[1]); scanned != len(sessions) {
		t.Errorf("keys rotate scanned %d rows, want %d", scanned, len(sessions))
	}
	if rewritten, _ := strconv.Atoi(m[2]); rewritten == 0 {
		t.Errorf("keys rotate re-encrypted no row: every fresh row was under A")
	}
	if refreshesDuring == 0 {
		t.Errorf("no refresh ran while keys rotated: the test proves nothing")
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d Checks during the rotation failed, e.g.:\n%s", len(failures), checks, strings.Join(failures[:min(10, len(failures))], "\n"))
	}
	if !strings.Contains(stderr, "scanned") {
		t.Errorf("keys rotate reported no progress on stderr: %q", stderr)
	}

	// Every row is under B now.
	assertKey(keyB.ID)
	code, stdout, stderr = eAB.run(t, "keys", "rotate", "--config", eAB.configPath)
	rotateOutput += stdout + stderr
	if m := rotateDone.FindStringSubmatch(stdout); code != ExitOK || m == nil || m[2] != "0" {
		t.Errorf("a second keys rotate: exit %d, %q; want nothing left to re-encrypt", code, stdout)
	}

	// No refreshed token was lost: each churn session stores the last
	// tokens the provider issued for it. Follow the session's chain of
	// rotated refresh tokens: each redeemed once, the last one never.
	redeemed := func(rt string) int { return eA.tokens.count(rt) + eAB.tokens.count(rt) }
	lastAccess := map[string]string{}
	issued := 0
	for _, s := range sessions {
		if !s.churn {
			continue
		}
		rt, access, n := "churn-rt-"+s.id, "", 0
		for redeemed(rt) > 0 {
			if c := redeemed(rt); c != 1 {
				t.Errorf("%s: refresh token %q redeemed %d times: a stale one was written back", s.id, rt, c)
			}
			access, rt, n = "new-access-"+rt+"-1", "new-refresh-"+rt+"-1", n+1
		}
		if n == 0 {
			t.Errorf("%s: never refreshed", s.id)
			continue
		}
		issued += n
		lastAccess[s.id] = access
		row, err := eAB.store.Get(ctx, s.id, "gh")
		if err != nil {
			t.Fatalf("%s: %v", s.id, err)
		}
		if row.RefreshToken != rt || row.AccessToken != access {
			t.Errorf("%s: stored refresh token %q (access %q), want the last issued %q (%q): a refreshed token was lost",
				s.id, row.RefreshToken, row.AccessToken, rt, access)
		}
	}
	if total := calls(eA.tokens, eAB.tokens); total != issued {
		t.Errorf("the provider issued %d token pairs, the sessions' chains account for %d", total, issued)
	}
	if t.Failed() {
		t.FailNow()
	}

	// A is removed: a service with only B serves every session, with the
	// stored tokens.
	eB := startE2E(t, e2eOptions{dsn: eA.dsn, keys: []e2eKey{keyB}, pgbouncer: pgbouncer})
	for _, s := range sessions {
		if s.churn {
			eB.checkBearer(t, s.id, "Bearer "+lastAccess[s.id])
		} else {
			eB.checkBearer(t, s.id, "Bearer fresh-access-"+s.id)
		}
	}
	if n := calls(eB.tokens); n != 0 {
		t.Errorf("the service with only B refreshed %d times, want none (every token was fresh)", n)
	}
	for _, e := range []*e2e{eA, eAB, eB} {
		e.assertNoSecretsLogged(t, "fresh-access-", "fresh-rt-", "fresh-id-", "churn-access-", "churn-rt-", "new-access-", "new-refresh-")
	}
	for _, tok := range []string{"fresh-access-", "fresh-rt-", "fresh-id-", "churn-access-", "churn-rt-", "new-access-", "new-refresh-"} {
		if strings.Contains(rotateOutput, tok) {
			t.Errorf("keys rotate output reveals a token %q...: %q", tok, rotateOutput)
		}
	}
}
