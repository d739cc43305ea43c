package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/extauthz/extauthz/adminapi"
	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/migrations"
	"github.com/extauthz/extauthz/oauthclient"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/encrypted"
	"github.com/extauthz/extauthz/store/postgres"
)

// dbFlags are the ways a command that only needs the database finds it:
// --database-url, else DATABASE_URL, else database.url in --config.
type dbFlags struct {
	url    *string
	config *string
}

func addDBFlags(fs *flag.FlagSet) dbFlags {
	return dbFlags{
		url:    fs.String("database-url", "", "PostgreSQL URL (default: $DATABASE_URL, else database.url from --config)"),
		config: fs.String("config", "", "configuration file to take database.url from"),
	}
}

// resolve returns the database URL and, when --config was given, the
// configuration it was read from.
func (d dbFlags) resolve(env Env) (string, *config.Config, error) {
	var cfg *config.Config
	if *d.config != "" {
		var err error
		if cfg, err = config.Load(*d.config, env.Getenv); err != nil {
			return "", nil, fmt.Errorf("%w: %s: %w", errUsage, *d.config, err)
		}
	}
	switch {
	case *d.url != "":
		return *d.url, cfg, nil
	case env.Getenv("DATABASE_URL") != "":
		return env.Getenv("DATABASE_URL"), cfg, nil
	case cfg != nil:
		return cfg.Database.URL, cfg, nil
	}
	return "", nil, usageErr("no database: pass --database-url, set DATABASE_URL, or pass --config")
}

func migrateCmd(ctx context.Context, args []string, env Env) error {
	fs := newFlags("migrate", env)
	db := addDBFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	dsn, _, err := db.resolve(env)
	if err != nil {
		return err
	}
	if err := refuseMigratingThroughPooler(ctx, dsn); err != nil {
		return err
	}
	if err := migrations.Up(ctx, dsn, env.Stdout); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, "migrations: database is up to date")
	return nil
}

const tokensUsage = `Usage:
  extauthz tokens put --session S --provider P --subject U --client-id C --access-token A
                      [--refresh-token R] [--id-token I] [--token-type T] [--upstream-subject X]
                      [--expires-at RFC3339 | --expires-in DURATION] [--session-expires-at RFC3339]
  extauthz tokens get --session S [--provider P]
  extauthz tokens delete --session S [--provider P] [--revoke --config FILE]

Token values are given literally, as @FILE (read from FILE) or as - (read from stdin),
so that secrets need not appear in the process list. Without an expiry the access token
never expires. put replaces the row and clears a re-authentication mark. get shows tokens
redacted and exits 1 for an unknown session; delete of a missing row succeeds.
delete --revoke first revokes each row's refresh token (else its access token) at its
provider's revocation_url (RFC 7009), prints per provider whether that succeeded, and
then deletes the rows whatever the outcome (exit 0 once deleted).
Every subcommand takes --database-url URL or --config FILE (default: $DATABASE_URL).
`

// errNotFound makes a command exit 1 with its message.
var errNotFound = errors.New("not found")

func tokensCmd(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, tokensUsage)
		return usageErr("a subcommand is required: put, get or delete")
	}
	switch args[0] {
	case "put":
		return tokensPut(ctx, args[1:], env)
	case "get":
		return tokensGet(ctx, args[1:], env)
	case "delete":
		return tokensDelete(ctx, args[1:], env)
	case "-h", "--help", "help":
		fmt.Fprint(env.Stdout, tokensUsage)
		return nil
	}
	return usageErr("unknown subcommand %q (want put, get or delete)", args[0])
}

// openStore connects to the database the flags name. With sealed the
// store encrypts and decrypts tokens with the keys of --config, which is
// then required. The caller must call close.
func openStore(ctx context.Context, db dbFlags, env Env, sealed bool) (st store.Store, close func(), err error) {
	pg, cfg, err := openDB(ctx, db, env, sealed)
	if err != nil {
		return nil, nil, err
	}
	if sealed {
		return encrypted.New(pg, cfg.Keyring()), pg.Close, nil
	}
	return pg, pg.Close, nil
}

// openDB connects to the database the flags name, and with withConfig also
// returns the configuration of --config (its keys, its providers), which is
// then required; without, the configuration is nil. The caller must close
// the store.
func openDB(ctx context.Context, db dbFlags, env Env, withConfig bool) (*postgres.Store, *config.Config, error) {
	dsn, cfg, err := db.resolve(env)
	if err != nil {
		return nil, nil, err
	}
	if !withConfig {
		cfg = nil
	} else if err := requireConfig(cfg); err != nil {
		return nil, nil, err
	}
	pg, err := connectDB(ctx, dsn)
	return pg, cfg, err
}

// requireConfig refuses a missing --config to a command that needs its
// keys.
func requireConfig(cfg *config.Config) error {
	if cfg == nil {
		return usageErr("tokens are stored encrypted: pass --config FILE, whose encryption section holds the keys")
	}
	return nil
}

// connectDB connects to the database at dsn; a URL that does not parse is
// a usage error.
func connectDB(ctx context.Context, dsn string) (*postgres.Store, error) {
	pg, err := postgres.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	return pg, nil
}

func tokensPut(ctx context.Context, args []string, env Env) error {
	fs := newFlags("tokens put", env)
	db := addDBFlags(fs)
	var w adminapi.SessionWrite
	session := fs.String("session", "", "token session ID (the JWT's tsid)")
	provider := fs.String("provider", "", "provider name, as in the config's providers")
	fs.StringVar(&w.Subject, "subject", "", "the authorization server's subject (the JWT's sub)")
	fs.StringVar(&w.ClientID, "client-id", "", "the authorization server's client ID (the JWT's client_id or azp)")
	access := fs.String("access-token", "", "upstream access token: literal, @FILE or -")
	refreshTok := fs.String("refresh-token", "", "upstream refresh token: literal, @FILE or -")
	idTok := fs.String("id-token", "", "upstream ID token: literal, @FILE or -")
	fs.StringVar(&w.TokenType, "token-type", "Bearer", "token type")
	fs.StringVar(&w.UpstreamSubject, "upstream-subject", "", "the provider's subject for the user (its ID token's sub)")
	fs.StringVar(&w.ExpiresAt, "expires-at", "", "access token expiry, RFC 3339")
	expiresIn := fs.Duration("expires-in", 0, "access token lifetime from now, e.g. 1h")
	fs.StringVar(&w.SessionExpiresAt, "session-expires-at", "", "when the whole session may be garbage collected, RFC 3339")
	if err := parse(fs, args); err != nil {
		return err
	}

	var problems []string
	stdinUsed := false
	read := func(name, v string) string {
		s, err := readSecret(v, env.Stdin, &stdinUsed)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("--%s: %v", name, err))
		case name == "access-token" && v != "" && s == "":
			problems = append(problems, "--access-token: the token read is empty")
		}
		return s
	}
	w.AccessToken = read("access-token", *access)
	w.RefreshToken = read("refresh-token", *refreshTok)
	w.IDToken = read("id-token", *idTok)
	if *expiresIn != 0 {
		// The API's expires_in is whole seconds; a part of a second is
		// rounded up.
		secs := int64((*expiresIn + time.Second - 1) / time.Second)
		if *expiresIn < 0 {
			secs = -1
		}
		w.ExpiresIn = &secs
	}
	// The configuration names the providers and holds the keys; it is
	// read once, before the database is reached.
	dsn, cfg, err := db.resolve(env)
	if err != nil {
		return err
	}
	if err := requireConfig(cfg); err != nil {
		return err
	}
	// The same validation as the session API's PUT, field names as flags;
	// a token that could not be read is reported once, as such.
	r, err := w.Row(*session, *provider, func(p string) bool { _, ok := cfg.Providers[p]; return ok }, time.Now())
	for _, p := range flagProblems(err) {
		if !slices.ContainsFunc(problems, func(q string) bool { return strings.HasPrefix(q, strings.Fields(p)[0]+":") }) {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		return usageErr("%s", strings.Join(problems, "; "))
	}
	pg, err := connectDB(ctx, dsn)
	if err != nil {
		return err
	}
	defer pg.Close()
	if err := encrypted.New(pg, cfg.Keyring()).Put(ctx, r); err != nil {
		if errors.Is(err, store.ErrInvalid) {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		return err
	}
	fmt.Fprintf(env.Stdout, "stored tokens for session %q, provider %q\n", r.SessionID, r.Provider)
	return nil
}

// flagProblems renders the session API's input error with each field named
// as the tokens put flag that sets it (client_id is --client-id).
func flagProblems(err error) []string {
	if err == nil {
		return nil
	}
	var in *adminapi.InputError
	if !errors.As(err, &in) {
		return []string{err.Error()}
	}
	parts := make([]string, len(in.Fields))
	for i, f := range in.Fields {
		parts[i] = flagName(f.Field) + " " + strings.ReplaceAll(f.Message, "expires_at", flagName("expires_at"))
	}
	return parts
}

// flagName is the tokens put flag of a session API field.
func flagName(field string) string { return "--" + strings.ReplaceAll(field, "_", "-") }

// maxStdinSecret bounds what readSecret reads from stdin.
const maxStdinSecret = 1 << 20

// readSecret resolves a token flag: "-" reads stdin (once), "@FILE" reads
// FILE, anything else is the value itself. Surrounding whitespace and a
// trailing newline are dropped from what is read.
func readSecret(v string, stdin io.Reader, stdinUsed *bool) (string, error) {
	switch {
	case v == "-":
		if *stdinUsed {
			return "", errors.New("only one token can be read from stdin")
		}
		*stdinUsed = true
		b, err := io.ReadAll(io.LimitReader(stdin, maxStdinSecret+1))
		if err != nil {
			return "", fmt.Errorf("reading stdin: %w", err)
		}
		if len(b) > maxStdinSecret {
			// Storing a truncated token would fail only later, upstream.
			return "", fmt.Errorf("stdin holds more than %d bytes", maxStdinSecret)
		}
		return strings.TrimSpace(string(b)), nil
	case strings.HasPrefix(v, "@"):
		b, err := os.ReadFile(v[1:])
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				return "", fmt.Errorf("cannot read %s: %w", pe.Path, pe.Err)
			}
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	}
	return v, nil
}

func tokensGet(ctx context.Context, args []string, env Env) error {
	fs := newFlags("tokens get", env)
	db := addDBFlags(fs)
	session := fs.String("session", "", "token session ID")
	provider := fs.String("provider", "", "only this provider")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *session == "" {
		return usageErr("--session is required")
	}
	st, closeStore, err := openStore(ctx, db, env, true)
	if err != nil {
		return err
	}
	defer closeStore()
	rows, err := st.GetSession(ctx, *session)
	if err != nil {
		return err
	}
	if *provider != "" {
		var only []store.Row
		for _, r := range rows {
			if r.Provider == *provider {
				only = append(only, r)
			}
		}
		rows = only
	}
	if len(rows) == 0 {
		if *provider != "" {
			return fmt.Errorf("%w: no tokens stored for that session and provider", errNotFound)
		}
		return fmt.Errorf("%w: no tokens stored for that session", errNotFound)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	for i, r := range rows {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		for _, kv := range [][2]string{
			{"session", r.SessionID},
			{"provider", r.Provider},
			{"subject", r.Subject},
			{"client_id", r.ClientID},
			{"upstream_subject", r.UpstreamSubject},
			{"token_type", r.TokenType},
			{"access_token", Redact(r.AccessToken)},
			{"refresh_token", Redact(r.RefreshToken)},
			{"id_token", Redact(r.IDToken)},
			{"expires_at", timeOrNever(r.ExpiresAt)},
			{"session_expires_at", timeOrNever(r.SessionExpiresAt)},
			{"needs_reauth", fmt.Sprint(r.NeedsReauth)},
			{"created_at", r.CreatedAt.Format(time.RFC3339)},
			{"updated_at", r.UpdatedAt.Format(time.RFC3339)},
		} {
			fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
		}
	}
	return tw.Flush()
}

// Redact describes a secret without revealing it: its length and a short
// fingerprint, enough to tell whether two stored values are the same.
func Redact(secret string) string {
	if secret == "" {
		return "(none)"
	}
	sum := sha256.Sum256([]byte(secret))
	return fmt.Sprintf("[redacted, %d bytes, sha256:%s]", len(secret), hex.EncodeToString(sum[:4]))
}

func timeOrNever(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Format(time.RFC3339)
}

func tokensDelete(ctx context.Context, args []string, env Env) error {
	fs := newFlags("tokens delete", env)
	db := addDBFlags(fs)
	session := fs.String("session", "", "token session ID")
	provider := fs.String("provider", "", "only this provider (default: the whole session)")
	revoke := fs.Bool("revoke", false, "first revoke the tokens at each provider with a revocation_url (needs --config)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *session == "" {
		return usageErr("--session is required")
	}
	if *revoke && *db.config == "" {
		return usageErr("--revoke needs --config FILE: its providers say where to revoke, its keys open the tokens")
	}
	pg, cfg, err := openDB(ctx, db, env, *revoke)
	if err != nil {
		return err
	}
	defer pg.Close()
	var failed []string
	if *revoke {
		if failed, err = revokeSession(ctx, pg, encrypted.New(pg, cfg.Keyring()), cfg, *session, *provider, env); err != nil {
			return err
		}
	}
	if err := pg.Delete(ctx, *session, *provider); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, "deleted")
	if len(failed) > 0 {
		fmt.Fprintf(env.Stdout, "revocation failed at: %s (the tokens are deleted here, but may still be valid there)\n", strings.Join(failed, ", "))
	}
	return nil
}

// revokeSession revokes, at their providers, the tokens of the session's
// rows (only provider's row, unless provider is empty), listed from raw and
// read through sealed, and prints one line per row. It returns the
// providers where revocation failed. A row that cannot be decrypted is
// reported as such and not revoked; the error is only for a configuration
// without usable providers or a store that cannot answer, since then the
// rows cannot be deleted either.
func revokeSession(ctx context.Context, raw, sealed store.Reader, cfg *config.Config, session, provider string, env Env) ([]string, error) {
	client, err := newOAuthClient(cfg)
	if err != nil {
		return nil, err
	}
	// Listing first and opening each row alone lets one undecryptable row
	// (a removed key) leave the others revocable.
	listed, err := raw.GetSession(ctx, session)
	if err != nil {
		return nil, err
	}
	var (
		rows   []store.Row
		failed []string
	)
	for _, r := range listed {
		if provider != "" && r.Provider != provider {
			continue
		}
		row, err := sealed.Get(ctx, session, r.Provider)
		switch {
		case errors.Is(err, store.ErrNotFound):
			continue // deleted meanwhile
		case errors.Is(err, store.ErrUnreadable):
			failed = append(failed, r.Provider)
			fmt.Fprintf(env.Stdout, "revocation: %s: failed: unreadable: %v\n", r.Provider, err)
			continue
		case err != nil:
			return nil, err
		}
		rows = append(rows, row)
	}
	rctx, cancel := context.WithTimeout(ctx, cfg.Refresh.Timeout.D())
	defer cancel()
	for _, r := range oauthclient.RevokeSession(rctx, client, rows) {
		switch {
		case r.Revoked:
			fmt.Fprintf(env.Stdout, "revocation: %s: revoked (%s)\n", r.Provider, r.TokenType)
		case r.Kind == oauthclient.KindNotConfigured:
			fmt.Fprintf(env.Stdout, "revocation: %s: not revoked (no revocation_url)\n", r.Provider)
		default:
			failed = append(failed, r.Provider)
			fmt.Fprintf(env.Stdout, "revocation: %s: failed: %s: %v\n", r.Provider, r.Kind, r.Err)
		}
	}
	return failed, nil
}
