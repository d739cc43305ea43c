package cli_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/adminapi"
	"github.com/extauthz/extauthz/internal/cli"
	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/encrypted"
	"github.com/extauthz/extauthz/store/postgres"
	"github.com/extauthz/extauthz/tokencrypt"
)

// tokUnreachableDSN names a database nobody listens for, with a password
// that must never be echoed.
const tokUnreachableDSN = "postgres://u:pw@127.0.0.1:1/x?connect_timeout=1"

// tokResult is what one in-process run of the command produced.
type tokResult struct {
	code           int
	stdout, stderr string
}

// tokRun runs the command line args in-process with stdin and an environment
// made only of envVars (the test process's own environment is not seen).
func tokRun(t *testing.T, envVars map[string]string, stdin string, args ...string) tokResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cli.Run(t.Context(), args, cli.Env{
		Stdin:  strings.NewReader(stdin),
		Stdout: &stdout,
		Stderr: &stderr,
		Getenv: func(k string) string { return envVars[k] },
	})
	return tokResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// tokExpectCode fails the test unless r exited with want.
func tokExpectCode(t *testing.T, r tokResult, want int, what string) {
	t.Helper()
	if r.code != want {
		t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", what, r.code, want, r.stdout, r.stderr)
	}
}

// tokNoSecrets fails the test if any of secrets appears in r's output.
func tokNoSecrets(t *testing.T, r tokResult, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if strings.Contains(r.stdout, s) {
			t.Errorf("stdout reveals %q:\n%s", s, r.stdout)
		}
		if strings.Contains(r.stderr, s) {
			t.Errorf("stderr reveals %q:\n%s", s, r.stderr)
		}
	}
}

// tokOpenStore opens the store at dsn for checking rows, closed with t.
func tokOpenStore(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	st, err := postgres.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// tokWriteFile writes content to a new file in a temporary directory and
// returns its path.
func tokWriteFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tokKeyID is the ID of the encryption key in the configurations of
// tokConfig: ciphertexts it seals start with tokSealedPrefix.
const (
	tokKeyID        = "tok-k1"
	tokSealedPrefix = "v2." + tokKeyID + "."
)

// tokConf is a configuration file for the commands that need the
// encryption keys, and those keys.
type tokConf struct {
	path string
	keys *tokencrypt.Keyring
}

// tokConfig writes a complete configuration whose database.url is dbURL
// (literal, or a ${VAR} reference) and whose only encryption key, a new
// one, is tokKeyID.
func tokConfig(t *testing.T, dbURL string) tokConf {
	t.Helper()
	return tokConfigWith(t, dbURL, `
  github:
    token_url: https://github.example/token
    client_id: gh
    auth_style: params
  google:
    token_url: https://google.example/token
    client_id: g
    auth_style: params
    header: x-google-token
  gitlab:
    token_url: https://gitlab.example/token
    client_id: gl
    auth_style: params
    header: x-gitlab-token`)
}

// tokConfigWith is tokConfig with providers, the YAML of the providers
// section (indented by two spaces), among which is github.
func tokConfigWith(t *testing.T, dbURL, providers string) tokConf {
	t.Helper()
	key := tokencrypt.GenerateKey()
	path := tokWriteFile(t, "config.yaml", `
database:
  url: "`+dbURL+`"
jwt:
  issuer: https://issuer.example
  audiences: [api]
  jwks_url: https://issuer.example/jwks
providers:`+providers+`
default_providers: [github]
encryption:
  keys:
    - id: `+tokKeyID+`
      key: `+key+`
`)
	return tokConf{path: path, keys: tokKeyring(t, key)}
}

// tokKeyring is a keyring of the one key tokKeyID.
func tokKeyring(t *testing.T, key string) *tokencrypt.Keyring {
	t.Helper()
	secret, err := tokencrypt.ParseKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := tokencrypt.New([]tokencrypt.Key{{ID: tokKeyID, Secret: secret}}, tokKeyID)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// tokSealedStore opens the store at dsn through the decryption of keys,
// to read back what the commands stored; it is closed with t.
func tokSealedStore(t *testing.T, dsn string, keys *tokencrypt.Keyring) *encrypted.Store {
	t.Helper()
	return encrypted.New(tokOpenStore(t, dsn), keys)
}

// tokAssertSealed fails the test unless every token column of the raw
// (on-disk) row holds a ciphertext under tokKeyID, and none contains any
// of plaintexts.
func tokAssertSealed(t *testing.T, raw store.Row, plaintexts ...string) {
	t.Helper()
	for _, c := range []struct{ name, v string }{
		{"access_token", raw.AccessToken}, {"refresh_token", raw.RefreshToken}, {"id_token", raw.IDToken},
	} {
		if c.v == "" {
			continue
		}
		if !strings.HasPrefix(c.v, tokSealedPrefix) {
			t.Errorf("%s/%s: %s stored as %q, want a ciphertext %q...", raw.SessionID, raw.Provider, c.name, c.v, tokSealedPrefix)
		}
		for _, p := range plaintexts {
			if p != "" && strings.Contains(c.v, p) {
				t.Errorf("%s/%s: %s stored holds the token %q", raw.SessionID, raw.Provider, c.name, p)
			}
		}
	}
}

// tokRequired are the flags tokens put needs, with --database-url and
// --config (for the encryption keys).
func tokRequired(dsn, configPath, session, provider string) []string {
	return []string{"tokens", "put", "--database-url", dsn, "--config", configPath,
		"--session", session, "--provider", provider,
		"--subject", "alice", "--client-id", "app-1"}
}

func tokMustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestTokensPutStoresEveryField(t *testing.T) {
	dsn := pgtest.New(t)
	cfg := tokConfig(t, tokUnreachableDSN) // --database-url wins
	raw := tokOpenStore(t, dsn)
	st := encrypted.New(raw, cfg.keys)

	const (
		access  = "at-literal-5b1f0c9e"
		refresh = "rt-literal-8d2e7a41"
		idTok   = "idt-literal-3c6b9f02"
	)
	accessFile := tokWriteFile(t, "access", "at-from-file-77aa01\n")
	refreshFile := tokWriteFile(t, "refresh", "  rt-from-file-19cc42 \r\n")
	idFile := tokWriteFile(t, "id", "idt-from-file-4e0d93")

	expiresAt := "2031-02-03T04:05:06+02:00"
	sessionExpiresAt := "2032-07-08T09:10:11Z"

	tests := []struct {
		name  string
		stdin string
		extra []string
		want  store.Row // SessionID and Provider are filled in
		// expiresIn, when set, is the expected lifetime of the access token
		// from the moment of the run (want.ExpiresAt is then ignored).
		expiresIn time.Duration
	}{
		{
			name: "all flags, literal tokens, expires-at",
			extra: []string{"--access-token", access, "--refresh-token", refresh, "--id-token", idTok,
				"--token-type", "DPoP", "--upstream-subject", "upstream-alice",
				"--expires-at", expiresAt, "--session-expires-at", sessionExpiresAt},
			want: store.Row{
				Tokens: store.Tokens{AccessToken: access, RefreshToken: refresh, IDToken: idTok,
					TokenType: "DPoP", ExpiresAt: tokMustTime(t, expiresAt)},
				Subject: "alice", ClientID: "app-1", UpstreamSubject: "upstream-alice",
				SessionExpiresAt: tokMustTime(t, sessionExpiresAt),
			},
		},
		{
			name:  "required flags only: Bearer, never expires",
			extra: []string{"--access-token", access},
			want: store.Row{
				Tokens:  store.Tokens{AccessToken: access, TokenType: "Bearer"},
				Subject: "alice", ClientID: "app-1",
			},
		},
		{
			name:      "expires-in",
			extra:     []string{"--access-token", access, "--expires-in", "90m"},
			expiresIn: 90 * time.Minute,
			want: store.Row{
				Tokens:  store.Tokens{AccessToken: access, TokenType: "Bearer"},
				Subject: "alice", ClientID: "app-1",
			},
		},
		{
			name: "tokens from @FILE, whitespace trimmed",
			extra: []string{"--access-token", "@" + accessFile, "--refresh-token", "@" + refreshFile,
				"--id-token", "@" + idFile},
			want: store.Row{
				Tokens: store.Tokens{AccessToken: "at-from-file-77aa01", RefreshToken: "rt-from-file-19cc42",
					IDToken: "idt-from-file-4e0d93", TokenType: "Bearer"},
				Subject: "alice", ClientID: "app-1",
			},
		},
		{
			name:  "access token from stdin",
			stdin: "at-from-stdin-61f0be\n",
			extra: []string{"--access-token", "-", "--refresh-token", refresh},
			want: store.Row{
				Tokens:  store.Tokens{AccessToken: "at-from-stdin-61f0be", RefreshToken: refresh, TokenType: "Bearer"},
				Subject: "alice", ClientID: "app-1",
			},
		},
		{
			name:  "refresh token from stdin, others mixed",
			stdin: "rt-from-stdin-a0b1c2\r\n",
			extra: []string{"--access-token", "@" + accessFile, "--refresh-token", "-", "--id-token", idTok},
			want: store.Row{
				Tokens: store.Tokens{AccessToken: "at-from-file-77aa01", RefreshToken: "rt-from-stdin-a0b1c2",
					IDToken: idTok, TokenType: "Bearer"},
				Subject: "alice", ClientID: "app-1",
			},
		},
		{
			name:  "ID token from stdin",
			stdin: "idt-from-stdin-d3e4f5",
			extra: []string{"--access-token", access, "--id-token", "-"},
			want: store.Row{
				Tokens:  store.Tokens{AccessToken: access, IDToken: "idt-from-stdin-d3e4f5", TokenType: "Bearer"},
				Subject: "alice", ClientID: "app-1",
			},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			session := "sess-put-" + string(rune('a'+i))
			args := append(tokRequired(dsn, cfg.path, session, "github"), tt.extra...)
			before := time.Now()
			r := tokRun(t, nil, tt.stdin, args...)
			after := time.Now()
			tokExpectCode(t, r, cli.ExitOK, "tokens put")
			if want := `stored tokens for session "` + session + `", provider "github"`; !strings.Contains(r.stdout, want) {
				t.Errorf("stdout = %q, want it to contain %q", r.stdout, want)
			}
			tokNoSecrets(t, r, tt.want.AccessToken, tt.want.RefreshToken, tt.want.IDToken)

			got, err := st.Get(t.Context(), session, "github")
			if err != nil {
				t.Fatalf("Get = %v", err)
			}
			w := tt.want
			for _, c := range []struct {
				field     string
				got, want string
			}{
				{"SessionID", got.SessionID, session},
				{"Provider", got.Provider, "github"},
				{"AccessToken", got.AccessToken, w.AccessToken},
				{"RefreshToken", got.RefreshToken, w.RefreshToken},
				{"IDToken", got.IDToken, w.IDToken},
				{"TokenType", got.TokenType, w.TokenType},
				{"Subject", got.Subject, w.Subject},
				{"ClientID", got.ClientID, w.ClientID},
				{"UpstreamSubject", got.UpstreamSubject, w.UpstreamSubject},
			} {
				if c.got != c.want {
					t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
				}
			}
			if tt.expiresIn != 0 {
				// Stored times are truncated to the microsecond.
				lo := before.Add(tt.expiresIn).Truncate(time.Microsecond)
				hi := after.Add(tt.expiresIn)
				if got.ExpiresAt.Before(lo) || got.ExpiresAt.After(hi) {
					t.Errorf("ExpiresAt = %v, want between %v and %v", got.ExpiresAt, lo, hi)
				}
			} else if !got.ExpiresAt.Equal(w.ExpiresAt) || got.ExpiresAt.IsZero() != w.ExpiresAt.IsZero() {
				t.Errorf("ExpiresAt = %v, want %v", got.ExpiresAt, w.ExpiresAt)
			}
			if !got.SessionExpiresAt.Equal(w.SessionExpiresAt) || got.SessionExpiresAt.IsZero() != w.SessionExpiresAt.IsZero() {
				t.Errorf("SessionExpiresAt = %v, want %v", got.SessionExpiresAt, w.SessionExpiresAt)
			}
			if got.NeedsReauth {
				t.Errorf("NeedsReauth = true, want false")
			}
			if got.CreatedAt.IsZero() || got.UpdatedAt.IsZero() {
				t.Errorf("CreatedAt = %v, UpdatedAt = %v, want both set", got.CreatedAt, got.UpdatedAt)
			}

			// On disk, every token is a ciphertext under the configured
			// key, and none holds any token's text.
			rawRow, err := raw.Get(t.Context(), session, "github")
			if err != nil {
				t.Fatalf("raw Get = %v", err)
			}
			if rawRow.AccessToken == "" || (w.RefreshToken != "") != (rawRow.RefreshToken != "") || (w.IDToken != "") != (rawRow.IDToken != "") {
				t.Errorf("raw row has tokens %t/%t/%t, want %t/%t/%t", rawRow.AccessToken != "", rawRow.RefreshToken != "", rawRow.IDToken != "",
					true, w.RefreshToken != "", w.IDToken != "")
			}
			tokAssertSealed(t, rawRow, w.AccessToken, w.RefreshToken, w.IDToken)
		})
	}
}

// TestTokensPutUsageErrors checks that bad command lines exit 2 before the
// database is touched: it is unreachable, so reaching it would exit 1.
func TestTokensPutUsageErrors(t *testing.T) {
	const (
		access  = "at-usage-0f9e8d7c"
		refresh = "rt-usage-6b5a4938"
		idTok   = "idt-usage-2716a5b4"
	)
	missing := filepath.Join(t.TempDir(), "no-such-token-file")
	dir := t.TempDir()
	// With the keys at hand: the command lines fail for what they are.
	cfg := tokConfig(t, tokUnreachableDSN)
	base := func(extra ...string) []string {
		return append(tokRequired(tokUnreachableDSN, cfg.path, "s1", "github"), extra...)
	}
	tests := []struct {
		name  string
		stdin string
		args  []string
		// wantStderr are substrings stderr must contain.
		wantStderr []string
	}{
		{
			name:       "two tokens from stdin",
			stdin:      access + "\n",
			args:       base("--access-token", "-", "--refresh-token", "-", "--id-token", idTok),
			wantStderr: []string{"stdin"},
		},
		{
			name: "every required flag missing, listed at once",
			args: []string{"tokens", "put", "--database-url", tokUnreachableDSN, "--config", cfg.path,
				"--refresh-token", refresh, "--id-token", idTok},
			wantStderr: []string{"--session is required", "--provider is required", "--subject is required",
				"--client-id is required", "--access-token is required"},
		},
		{
			name: "some required flags missing",
			args: []string{"tokens", "put", "--database-url", tokUnreachableDSN, "--config", cfg.path,
				"--session", "s1", "--access-token", access},
			wantStderr: []string{"--provider is required", "--subject is required", "--client-id is required"},
		},
		{
			name:       "both expires-at and expires-in",
			args:       base("--access-token", access, "--expires-at", "2031-01-01T00:00:00Z", "--expires-in", "1h"),
			wantStderr: []string{"--expires-at", "--expires-in"},
		},
		{
			name:       "expires-at not RFC 3339",
			args:       base("--access-token", access, "--expires-at", "2031-01-01 00:00:00"),
			wantStderr: []string{"--expires-at", "RFC 3339"},
		},
		{
			name:       "expires-at without zone",
			args:       base("--access-token", access, "--expires-at", "2031-01-01T00:00:00"),
			wantStderr: []string{"--expires-at"},
		},
		{
			name:       "session-expires-at not RFC 3339",
			args:       base("--access-token", access, "--session-expires-at", "next week"),
			wantStderr: []string{"--session-expires-at"},
		},
		{
			name:       "negative expires-in",
			args:       base("--access-token", access, "--expires-in", "-5m"),
			wantStderr: []string{"--expires-in"},
		},
		{
			name:       "expires-in not a duration",
			args:       base("--access-token", access, "--expires-in", "soon"),
			wantStderr: []string{"expires-in"},
		},
		{
			name:       "unreadable access token file",
			args:       base("--access-token", "@"+missing, "--refresh-token", refresh, "--id-token", idTok),
			wantStderr: []string{"--access-token", missing},
		},
		{
			name:       "unreadable refresh token file",
			args:       base("--access-token", access, "--refresh-token", "@"+missing, "--id-token", idTok),
			wantStderr: []string{"--refresh-token", missing},
		},
		{
			name:       "token file is a directory",
			args:       base("--access-token", access, "--id-token", "@"+dir),
			wantStderr: []string{"--id-token", dir},
		},
		{
			name:       "empty access token file",
			args:       base("--access-token", "@"+tokWriteFile(t, "empty", "\n"), "--refresh-token", refresh),
			wantStderr: []string{"--access-token: the token read is empty"},
		},
		{
			name:       "empty access token on stdin",
			stdin:      "  \n",
			args:       base("--access-token", "-", "--refresh-token", refresh),
			wantStderr: []string{"--access-token: the token read is empty"},
		},
		{
			name:  "empty access token listed with missing flags",
			stdin: "\n",
			args: []string{"tokens", "put", "--database-url", tokUnreachableDSN, "--config", cfg.path,
				"--session", "s1", "--access-token", "-", "--refresh-token", refresh},
			wantStderr: []string{"--access-token: the token read is empty", "--provider is required",
				"--subject is required", "--client-id is required"},
		},
		{
			name:       "more than 1 MiB on stdin",
			stdin:      strings.Repeat("x", 1<<20+1),
			args:       base("--access-token", access, "--refresh-token", "-"),
			wantStderr: []string{"--refresh-token", "stdin holds more than"},
		},
		{
			name:       "unexpected argument",
			args:       base("--access-token", access, "extra"),
			wantStderr: []string{"unexpected argument"},
		},
		{
			// An unquoted empty $SUBJECT shifts the flags: the token
			// becomes a positional argument, and must not be echoed.
			name: "token shifted into a positional argument",
			args: []string{"tokens", "put", "--database-url", tokUnreachableDSN, "--config", cfg.path,
				"--session", "s1", "--provider", "github", "--client-id", "app-1",
				"--subject", "--access-token", access},
			wantStderr: []string{`unexpected argument (number 13 after "tokens put")`},
		},
		{
			name:       "unknown flag",
			args:       base("--access-token", access, "--bogus", "x"),
			wantStderr: []string{"bogus"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tokRun(t, nil, tt.stdin, tt.args...)
			tokExpectCode(t, r, cli.ExitUsage, "tokens put")
			for _, s := range tt.wantStderr {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
				}
			}
			tokNoSecrets(t, r, access, refresh, idTok, "pw@")
		})
	}
}

func TestTokensPutReplacesAndClearsReauth(t *testing.T) {
	dsn := pgtest.New(t)
	cfg := tokConfig(t, dsn)
	st := tokSealedStore(t, dsn, cfg.keys)
	ctx := t.Context()

	r := tokRun(t, nil, "", append(tokRequired(dsn, cfg.path, "sess-re", "github"),
		"--access-token", "at-old", "--refresh-token", "rt-old", "--id-token", "idt-old",
		"--token-type", "MAC", "--upstream-subject", "up-old",
		"--expires-at", "2030-01-01T00:00:00Z", "--session-expires-at", "2030-06-01T00:00:00Z")...)
	tokExpectCode(t, r, cli.ExitOK, "first put")
	c, err := st.ClaimRefresh(ctx, "sess-re", "github", "refresher", time.Minute)
	if err != nil || !c.Held {
		t.Fatal(c, err)
	}
	if err := st.ReleaseRefresh(ctx, "sess-re", "github", c.Lease, true); err != nil {
		t.Fatal(err)
	}
	old, err := st.Get(ctx, "sess-re", "github")
	if err != nil {
		t.Fatal(err)
	}
	if !old.NeedsReauth {
		t.Fatal("ReleaseRefresh with reauth did not set NeedsReauth")
	}

	// The database from the configuration this time.
	r = tokRun(t, nil, "", "tokens", "put", "--config", cfg.path,
		"--session", "sess-re", "--provider", "github",
		"--subject", "bob", "--client-id", "app-2", "--access-token", "at-new")
	tokExpectCode(t, r, cli.ExitOK, "second put")

	got, err := st.Get(ctx, "sess-re", "github")
	if err != nil {
		t.Fatal(err)
	}
	want := store.Row{
		SessionID: "sess-re", Provider: "github",
		Tokens:  store.Tokens{AccessToken: "at-new", TokenType: "Bearer"},
		Subject: "bob", ClientID: "app-2",
		CreatedAt: old.CreatedAt, UpdatedAt: got.UpdatedAt, Version: got.Version,
	}
	if got != want {
		t.Errorf("row after replacing put =\n%+v\nwant\n%+v", got, want)
	}
	if got.UpdatedAt.Before(old.UpdatedAt) {
		t.Errorf("UpdatedAt went back from %v to %v", old.UpdatedAt, got.UpdatedAt)
	}
	if got.Version <= old.Version {
		t.Errorf("Version %d after replacing put, was %d: every write must change it", got.Version, old.Version)
	}
	rows, err := st.GetSession(ctx, "sess-re")
	if err != nil || len(rows) != 1 {
		t.Errorf("GetSession = %d rows, %v; want the one replaced row", len(rows), err)
	}
}

func TestTokensDatabaseResolution(t *testing.T) {
	dsn := pgtest.New(t)

	// A complete configuration whose database.url comes from TOK_DB and
	// whose encryption key from TOK_KEY. tokens put needs it for the key
	// even where the database comes from elsewhere: there TOK_DB names an
	// unreachable database, so that using it would fail.
	key := tokencrypt.GenerateKey()
	st := tokSealedStore(t, dsn, tokKeyring(t, key))
	cfgFile := tokWriteFile(t, "config.yaml", `
database:
  url: ${TOK_DB}
jwt:
  issuer: https://issuer.example
  audiences: [api]
  jwks_url: https://issuer.example/jwks
providers:
  github:
    token_url: https://github.example/token
    client_id: gh
    auth_style: params
default_providers: [github]
encryption:
  keys:
    - id: `+tokKeyID+`
      key: ${TOK_KEY}
`)
	// withKey adds TOK_KEY to env.
	withKey := func(env map[string]string) map[string]string {
		out := map[string]string{"TOK_KEY": key}
		for k, v := range env {
			out[k] = v
		}
		return out
	}

	put := func(session string, db ...string) []string {
		args := append([]string{"tokens", "put"}, db...)
		return append(args, "--session", session, "--provider", "github",
			"--subject", "alice", "--client-id", "app-1", "--access-token", "at-"+session)
	}
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		session string
	}{
		{
			name:    "--database-url wins over DATABASE_URL",
			env:     map[string]string{"DATABASE_URL": tokUnreachableDSN, "TOK_DB": tokUnreachableDSN},
			args:    put("sess-flag", "--database-url", dsn, "--config", cfgFile),
			session: "sess-flag",
		},
		{
			name:    "DATABASE_URL without the flag",
			env:     map[string]string{"DATABASE_URL": dsn, "TOK_DB": tokUnreachableDSN},
			args:    put("sess-env", "--config", cfgFile),
			session: "sess-env",
		},
		{
			name:    "database.url from --config",
			env:     map[string]string{"TOK_DB": dsn},
			args:    put("sess-config", "--config", cfgFile),
			session: "sess-config",
		},
		{
			name:    "DATABASE_URL wins over --config",
			env:     map[string]string{"DATABASE_URL": dsn, "TOK_DB": tokUnreachableDSN},
			args:    put("sess-env-config", "--config", cfgFile),
			session: "sess-env-config",
		},
		{
			name:    "--database-url wins over --config",
			env:     map[string]string{"TOK_DB": tokUnreachableDSN},
			args:    put("sess-flag-config", "--config", cfgFile, "--database-url", dsn),
			session: "sess-flag-config",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tokRun(t, withKey(tt.env), "", tt.args...)
			tokExpectCode(t, r, cli.ExitOK, "tokens put")
			got, err := st.Get(t.Context(), tt.session, "github")
			if err != nil {
				t.Fatalf("Get = %v", err)
			}
			if got.AccessToken != "at-"+tt.session {
				t.Errorf("AccessToken = %q, want %q", got.AccessToken, "at-"+tt.session)
			}
		})
	}

	t.Run("no database anywhere", func(t *testing.T) {
		for _, args := range [][]string{
			put("sess-none"),
			{"tokens", "get", "--session", "sess-none"},
			{"tokens", "delete", "--session", "sess-none"},
			{"migrate"},
		} {
			what := strings.Join(args[:min(2, len(args))], " ")
			r := tokRun(t, withKey(nil), "", args...)
			tokExpectCode(t, r, cli.ExitUsage, what)
			for _, s := range []string{"no database", "--database-url", "DATABASE_URL"} {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("%s: stderr lacks %q:\n%s", what, s, r.stderr)
				}
			}
			tokNoSecrets(t, r, "at-sess-none")
		}
	})

	t.Run("--config without database.url", func(t *testing.T) {
		r := tokRun(t, withKey(map[string]string{"TOK_DB": ""}), "", put("sess-nocfg", "--config", cfgFile)...)
		tokExpectCode(t, r, cli.ExitUsage, "tokens put")
		if !strings.Contains(r.stderr, "TOK_DB") {
			t.Errorf("stderr lacks the unset variable:\n%s", r.stderr)
		}
	})

	t.Run("unparsable URL", func(t *testing.T) {
		r := tokRun(t, withKey(map[string]string{"TOK_DB": tokUnreachableDSN}), "",
			put("sess-bad", "--database-url", "postgres://u:s3cr3tpass@host:notaport/db", "--config", cfgFile)...)
		tokExpectCode(t, r, cli.ExitUsage, "tokens put")
		tokNoSecrets(t, r, "s3cr3tpass", "at-sess-bad")
	})
}

func TestTokensGet(t *testing.T) {
	dsn := pgtest.New(t)
	const (
		access  = "at-get-raw-91c2d3e4f5"
		refresh = "rt-get-raw-a6b7c8d9e0"
		idTok   = "idt-get-raw-1a2b3c4d5e"
		access2 = "at-get-other-0f1e2d3c"
	)
	cfg := tokConfig(t, tokUnreachableDSN) // the keys; the database comes from elsewhere
	r := tokRun(t, nil, "", append(tokRequired(dsn, cfg.path, "sess-get", "github"),
		"--access-token", access, "--refresh-token", refresh, "--id-token", idTok,
		"--upstream-subject", "up-alice", "--expires-at", "2031-02-03T04:05:06Z",
		"--session-expires-at", "2032-01-01T00:00:00Z")...)
	tokExpectCode(t, r, cli.ExitOK, "put github")
	r = tokRun(t, nil, "", append(tokRequired(dsn, cfg.path, "sess-get", "google"), "--access-token", access2)...)
	tokExpectCode(t, r, cli.ExitOK, "put google")
	secrets := []string{access, refresh, idTok, access2}

	t.Run("whole session", func(t *testing.T) {
		r := tokRun(t, nil, "", "tokens", "get", "--database-url", dsn, "--config", cfg.path, "--session", "sess-get")
		tokExpectCode(t, r, cli.ExitOK, "tokens get")
		for _, s := range []string{
			cli.Redact(access), cli.Redact(refresh), cli.Redact(idTok), cli.Redact(access2),
			"sess-get", "github", "google", "alice", "app-1", "up-alice",
			"2031-02-03T04:05:06Z", "2032-01-01T00:00:00Z", "never", "(none)",
		} {
			if !strings.Contains(r.stdout, s) {
				t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
			}
		}
		// github sorts before google.
		if strings.Index(r.stdout, cli.Redact(access)) > strings.Index(r.stdout, cli.Redact(access2)) {
			t.Errorf("rows not ordered by provider:\n%s", r.stdout)
		}
		tokNoSecrets(t, r, secrets...)
	})

	t.Run("DATABASE_URL", func(t *testing.T) {
		r := tokRun(t, map[string]string{"DATABASE_URL": dsn}, "", "tokens", "get", "--config", cfg.path, "--session", "sess-get")
		tokExpectCode(t, r, cli.ExitOK, "tokens get")
		if !strings.Contains(r.stdout, cli.Redact(access)) {
			t.Errorf("stdout lacks the redacted token:\n%s", r.stdout)
		}
		tokNoSecrets(t, r, secrets...)
	})

	t.Run("another key", func(t *testing.T) {
		// The rows are sealed under a key this configuration lacks (its
		// own has the same ID): nothing decrypts, nothing is shown.
		other := tokConfig(t, dsn)
		r := tokRun(t, nil, "", "tokens", "get", "--config", other.path, "--session", "sess-get")
		tokExpectCode(t, r, cli.ExitFailure, "tokens get with another key")
		if r.stdout != "" {
			t.Errorf("stdout = %q, want nothing", r.stdout)
		}
		if !strings.Contains(r.stderr, "cannot be decrypted") {
			t.Errorf("stderr lacks %q:\n%s", "cannot be decrypted", r.stderr)
		}
		tokNoSecrets(t, r, secrets...)
	})

	t.Run("provider filter", func(t *testing.T) {
		r := tokRun(t, nil, "", "tokens", "get", "--database-url", dsn, "--config", cfg.path, "--session", "sess-get", "--provider", "google")
		tokExpectCode(t, r, cli.ExitOK, "tokens get --provider google")
		if !strings.Contains(r.stdout, cli.Redact(access2)) {
			t.Errorf("stdout lacks google's redacted token:\n%s", r.stdout)
		}
		for _, s := range []string{"github", cli.Redact(access), cli.Redact(refresh)} {
			if strings.Contains(r.stdout, s) {
				t.Errorf("filtered output shows %q:\n%s", s, r.stdout)
			}
		}
		tokNoSecrets(t, r, secrets...)
	})

	for _, tt := range []struct {
		name string
		args []string
		code int
	}{
		{"unknown session", []string{"--session", "sess-unknown"}, cli.ExitFailure},
		{"unknown provider", []string{"--session", "sess-get", "--provider", "gitlab"}, cli.ExitFailure},
		{"unknown session and provider", []string{"--session", "sess-unknown", "--provider", "github"}, cli.ExitFailure},
		{"no session", nil, cli.ExitUsage},
		{"unexpected argument", []string{"--session", "sess-get", "extra"}, cli.ExitUsage},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := tokRun(t, nil, "", append([]string{"tokens", "get", "--database-url", dsn, "--config", cfg.path}, tt.args...)...)
			tokExpectCode(t, r, tt.code, "tokens get")
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
			if r.stderr == "" {
				t.Errorf("stderr is empty, want a message")
			}
			if tt.code == cli.ExitFailure && !strings.Contains(r.stderr, "no tokens stored") {
				t.Errorf("stderr lacks %q:\n%s", "no tokens stored", r.stderr)
			}
			tokNoSecrets(t, r, secrets...)
		})
	}
}

func TestTokensDelete(t *testing.T) {
	dsn := pgtest.New(t)
	st := tokOpenStore(t, dsn) // delete needs no keys, nor does listing providers
	ctx := t.Context()
	cfg := tokConfig(t, dsn)
	for _, p := range []string{"github", "google", "gitlab"} {
		r := tokRun(t, nil, "", append(tokRequired(dsn, cfg.path, "sess-del", p), "--access-token", "at-"+p)...)
		tokExpectCode(t, r, cli.ExitOK, "put "+p)
	}
	r := tokRun(t, nil, "", append(tokRequired(dsn, cfg.path, "sess-keep", "github"), "--access-token", "at-keep")...)
	tokExpectCode(t, r, cli.ExitOK, "put sess-keep")

	del := func(extra ...string) tokResult {
		t.Helper()
		return tokRun(t, nil, "", append([]string{"tokens", "delete", "--database-url", dsn}, extra...)...)
	}
	providers := func(session string) []string {
		t.Helper()
		rows, err := st.GetSession(ctx, session)
		if err != nil {
			t.Fatal(err)
		}
		var ps []string
		for _, r := range rows {
			ps = append(ps, r.Provider)
		}
		return ps
	}

	// One provider.
	tokExpectCode(t, del("--session", "sess-del", "--provider", "google"), cli.ExitOK, "delete one provider")
	if _, err := st.Get(ctx, "sess-del", "google"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get deleted row = %v, want ErrNotFound", err)
	}
	if got := strings.Join(providers("sess-del"), ","); got != "github,gitlab" {
		t.Errorf("providers left = %q, want github,gitlab", got)
	}

	// The same row again, and rows never stored.
	for _, args := range [][]string{
		{"--session", "sess-del", "--provider", "google"},
		{"--session", "sess-nobody", "--provider", "google"},
		{"--session", "sess-nobody"},
	} {
		tokExpectCode(t, del(args...), cli.ExitOK, "delete missing "+strings.Join(args, " "))
	}

	// The whole session.
	r = del("--session", "sess-del")
	tokExpectCode(t, r, cli.ExitOK, "delete session")
	if got := providers("sess-del"); len(got) != 0 {
		t.Errorf("providers left after deleting the session = %v, want none", got)
	}
	if got := providers("sess-keep"); len(got) != 1 {
		t.Errorf("other session's providers = %v, want [github]", got)
	}
	tokExpectCode(t, del("--session", "sess-del"), cli.ExitOK, "delete deleted session")

	// Via DATABASE_URL.
	r = tokRun(t, map[string]string{"DATABASE_URL": dsn}, "", "tokens", "delete", "--session", "sess-keep")
	tokExpectCode(t, r, cli.ExitOK, "delete with DATABASE_URL")
	if got := providers("sess-keep"); len(got) != 0 {
		t.Errorf("providers left = %v, want none", got)
	}

	tokExpectCode(t, del(), cli.ExitUsage, "delete without --session")
	tokExpectCode(t, del("--provider", "github"), cli.ExitUsage, "delete with only --provider")
}

func TestTokensMigrateTwice(t *testing.T) {
	dsn := pgtest.NewEmpty(t)
	for i := range 2 {
		r := tokRun(t, nil, "", "migrate", "--database-url", dsn)
		tokExpectCode(t, r, cli.ExitOK, "migrate")
		if !strings.Contains(r.stdout, "up to date") {
			t.Errorf("migrate #%d stdout = %q, want it to say the database is up to date", i+1, r.stdout)
		}
	}
	r := tokRun(t, map[string]string{"DATABASE_URL": dsn}, "", "migrate")
	tokExpectCode(t, r, cli.ExitOK, "migrate with DATABASE_URL")
	// The schema is there.
	r = tokRun(t, nil, "", append(tokRequired(dsn, tokConfig(t, dsn).path, "s", "github"), "--access-token", "at-after-migrate")...)
	tokExpectCode(t, r, cli.ExitOK, "tokens put after migrate")
}

// TestMigrateRefusesPgBouncer: migrate through PgBouncer in transaction
// mode exits 2 and names what to do, and leaves the database untouched.
func TestMigrateRefusesPgBouncer(t *testing.T) {
	dsn := pgtest.NewEmpty(t)
	r := tokRun(t, nil, "", "migrate", "--database-url", pgtest.PgBouncer(t, dsn))
	tokExpectCode(t, r, cli.ExitUsage, "migrate through PgBouncer")
	if !strings.Contains(r.stderr, "give migrate a URL that reaches PostgreSQL directly") {
		t.Errorf("stderr = %q, want it to say to migrate directly", r.stderr)
	}
	pg, err := postgres.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if _, err := pg.Get(t.Context(), "s", "p"); !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "42P01") {
		t.Errorf("after the refused migrate, Get = %v; want the table missing (SQLSTATE 42P01)", err)
	}
}

func TestTokensCommandLine(t *testing.T) {
	noDB := tokWriteFile(t, "nodb.yaml", `
jwt:
  issuer: https://issuer.example
  audiences: [api]
  jwks_url: https://issuer.example/jwks
providers:
  github:
    token_url: https://github.example/token
    client_id: gh
    auth_style: params
default_providers: [github]
`)
	tests := []struct {
		name       string
		args       []string
		code       int
		wantStdout string
		wantStderr string
	}{
		{"version", []string{"version"}, cli.ExitOK, "extauthz ", ""},
		{"--version", []string{"--version"}, cli.ExitOK, "extauthz ", ""},
		{"help", []string{"help"}, cli.ExitOK, "Usage:", ""},
		{"no command", nil, cli.ExitUsage, "", "Usage:"},
		{"unknown command", []string{"frobnicate"}, cli.ExitUsage, "", `unknown command "frobnicate"`},
		{"serve without --config", []string{"serve"}, cli.ExitUsage, "", "--config"},
		{"serve with a missing file", []string{"serve", "--config", filepath.Join(t.TempDir(), "none.yaml")}, cli.ExitUsage, "", "none.yaml"},
		{"serve without database.url", []string{"serve", "--config", noDB}, cli.ExitUsage, "", "database.url"},
		{"tokens without subcommand", []string{"tokens"}, cli.ExitUsage, "", "put, get or delete"},
		{"tokens unknown subcommand", []string{"tokens", "list"}, cli.ExitUsage, "", `"list"`},
		{"tokens help", []string{"tokens", "-h"}, cli.ExitOK, "tokens put", ""},
		{"tokens put -h", []string{"tokens", "put", "-h"}, cli.ExitOK, "", "-access-token"},
		{"serve without encryption keys", []string{"serve", "--config", noDB}, cli.ExitUsage, "", "encryption.keys is required"},
		{"keys without subcommand", []string{"keys"}, cli.ExitUsage, "", "generate or rotate"},
		{"keys unknown subcommand", []string{"keys", "list"}, cli.ExitUsage, "", `"list"`},
		{"keys help", []string{"keys", "-h"}, cli.ExitOK, "keys rotate", ""},
		{"keys generate with an argument", []string{"keys", "generate", "extra"}, cli.ExitUsage, "", "unexpected argument"},
		{"keys rotate without --config", []string{"keys", "rotate", "--database-url", tokUnreachableDSN}, cli.ExitUsage, "", "--config"},
		{"keys rotate without anything", []string{"keys", "rotate"}, cli.ExitUsage, "", "--config"},
		{"keys rotate with a bad batch", []string{"keys", "rotate", "--database-url", tokUnreachableDSN, "--batch", "0"}, cli.ExitUsage, "", "--batch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tokRun(t, nil, "", tt.args...)
			tokExpectCode(t, r, tt.code, strings.Join(tt.args, " "))
			if !strings.Contains(r.stdout, tt.wantStdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.wantStdout, r.stdout)
			}
			if !strings.Contains(r.stderr, tt.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantStderr, r.stderr)
			}
		})
	}
}

func TestTokensUnreachableDatabase(t *testing.T) {
	const access = "at-unreachable-4d3c2b1a"
	cfg := tokConfig(t, tokUnreachableDSN)
	tests := []struct {
		name string
		args []string
	}{
		{"put", append(tokRequired(tokUnreachableDSN, cfg.path, "s", "github"), "--access-token", access)},
		{"put via --config", []string{"tokens", "put", "--config", cfg.path, "--session", "s", "--provider", "github",
			"--subject", "alice", "--client-id", "app-1", "--access-token", access}},
		{"get", []string{"tokens", "get", "--database-url", tokUnreachableDSN, "--config", cfg.path, "--session", "s"}},
		{"delete", []string{"tokens", "delete", "--database-url", tokUnreachableDSN, "--session", "s"}},
		{"migrate", []string{"migrate", "--database-url", tokUnreachableDSN}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tokRun(t, nil, "", tt.args...)
			tokExpectCode(t, r, cli.ExitFailure, tt.name)
			if r.stderr == "" {
				t.Error("stderr is empty, want a message")
			}
			tokNoSecrets(t, r, "pw", access)
		})
	}
	t.Run("a token of the largest size is accepted", func(t *testing.T) {
		// Not refused as usage: the command gets as far as the database.
		big := strings.Repeat("r", adminapi.MaxTokenBytes)
		r := tokRun(t, nil, big, append(tokRequired(tokUnreachableDSN, cfg.path, "s", "github"),
			"--access-token", access, "--refresh-token", "-")...)
		tokExpectCode(t, r, cli.ExitFailure, "tokens put")
		tokNoSecrets(t, r, "pw", access, big[:64])
	})
	t.Run("1 MiB on stdin is longer than a token may be", func(t *testing.T) {
		big := strings.Repeat("r", 1<<20)
		r := tokRun(t, nil, big, append(tokRequired(tokUnreachableDSN, cfg.path, "s", "github"),
			"--access-token", access, "--refresh-token", "-")...)
		tokExpectCode(t, r, cli.ExitUsage, "tokens put")
		if !strings.Contains(r.stderr, "--refresh-token is longer than") {
			t.Errorf("stderr: %s", r.stderr)
		}
		tokNoSecrets(t, r, "pw", access, big[:64])
	})
	t.Run("put via DATABASE_URL", func(t *testing.T) {
		r := tokRun(t, map[string]string{"DATABASE_URL": tokUnreachableDSN}, "", "tokens", "put", "--config", cfg.path,
			"--session", "s", "--provider", "github", "--subject", "alice", "--client-id", "app-1",
			"--access-token", access)
		tokExpectCode(t, r, cli.ExitFailure, "tokens put")
		tokNoSecrets(t, r, "pw", access)
	})
}

// TestTokensNeedConfig checks that the commands that seal or open tokens
// refuse to run without the keys of --config, however the database is
// given, before touching it (it is unreachable: reaching it would exit 1);
// delete needs no keys.
func TestTokensNeedConfig(t *testing.T) {
	const access = "at-noconfig-5e6f7a8b"
	put := []string{"tokens", "put", "--session", "s", "--provider", "github",
		"--subject", "alice", "--client-id", "app-1", "--access-token", access}
	get := []string{"tokens", "get", "--session", "s"}
	rotate := []string{"keys", "rotate"}
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"put with --database-url", nil, append(put, "--database-url", tokUnreachableDSN)},
		{"put with DATABASE_URL", map[string]string{"DATABASE_URL": tokUnreachableDSN}, put},
		{"get with --database-url", nil, append(get, "--database-url", tokUnreachableDSN)},
		{"get with DATABASE_URL", map[string]string{"DATABASE_URL": tokUnreachableDSN}, get},
		{"keys rotate with --database-url", nil, append(rotate, "--database-url", tokUnreachableDSN)},
		{"keys rotate with DATABASE_URL", map[string]string{"DATABASE_URL": tokUnreachableDSN}, rotate},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := tokRun(t, tt.env, "", tt.args...)
			tokExpectCode(t, r, cli.ExitUsage, tt.name)
			for _, s := range []string{"--config", "encrypt"} {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
				}
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
			tokNoSecrets(t, r, access, "pw")
		})
	}
	t.Run("delete needs no keys", func(t *testing.T) {
		dsn := pgtest.New(t)
		cfg := tokConfig(t, dsn)
		r := tokRun(t, nil, "", append(tokRequired(dsn, cfg.path, "sess-nokeys", "github"), "--access-token", access)...)
		tokExpectCode(t, r, cli.ExitOK, "tokens put")
		r = tokRun(t, map[string]string{"DATABASE_URL": dsn}, "", "tokens", "delete", "--session", "sess-nokeys")
		tokExpectCode(t, r, cli.ExitOK, "tokens delete without --config")
		if _, err := tokOpenStore(t, dsn).Get(t.Context(), "sess-nokeys", "github"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get deleted row = %v, want ErrNotFound", err)
		}
	})
}

func TestKeysGenerate(t *testing.T) {
	seen := map[string]bool{}
	for range 3 {
		r := tokRun(t, nil, "", "keys", "generate")
		tokExpectCode(t, r, cli.ExitOK, "keys generate")
		if r.stderr != "" {
			t.Errorf("stderr = %q, want nothing", r.stderr)
		}
		key := strings.TrimSuffix(r.stdout, "\n")
		if strings.ContainsAny(key, " \t\n") || key+"\n" != r.stdout {
			t.Fatalf("stdout = %q, want one key on one line", r.stdout)
		}
		b, err := base64.StdEncoding.DecodeString(key)
		if err != nil || len(b) != 32 {
			t.Fatalf("key %q: %d bytes of standard base64 (%v), want 32", key, len(b), err)
		}
		if seen[key] {
			t.Fatalf("keys generate printed %q twice", key)
		}
		seen[key] = true
		// What it prints is accepted as a key by the configuration.
		if _, err := tokencrypt.ParseKey(key); err != nil {
			t.Errorf("ParseKey(generated) = %v", err)
		}
	}
}
