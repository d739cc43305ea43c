package cli

import (
	"context"
	"fmt"

	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/encrypted"
	"github.com/extauthz/extauthz/tokencrypt"
	"github.com/extauthz/extauthz/upstreamtoken"
)

const keysUsage = `Usage:
  extauthz keys generate
      print a new random AES-256 key (base64) for encryption.keys
  extauthz keys rotate --config FILE [--database-url URL] [--batch N]
      re-encrypt every stored token not already under encryption.primary, or
      sealed in the earlier format (v1, which does not bind the row's subject,
      client ID and upstream subject), in batches, while the service keeps
      serving; afterwards the old keys can be removed from the configuration.
      A row holding a token that is not encrypted is never encrypted: it is
      listed (session hash and provider), left as it is, and the command
      exits 1 once every other row is done
`

func keysCmd(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, keysUsage)
		return usageErr("a subcommand is required: generate or rotate")
	}
	switch args[0] {
	case "generate":
		if err := parse(newFlags("keys generate", env), args[1:]); err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, tokencrypt.GenerateKey())
		return nil
	case "rotate":
		return keysRotate(ctx, args[1:], env)
	case "-h", "--help", "help":
		fmt.Fprint(env.Stdout, keysUsage)
		return nil
	}
	return usageErr("unknown subcommand %q (want generate or rotate)", args[0])
}

func keysRotate(ctx context.Context, args []string, env Env) error {
	fs := newFlags("keys rotate", env)
	db := addDBFlags(fs)
	batch := fs.Int("batch", 500, "rows per batch")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *batch <= 0 {
		return usageErr("--batch must be positive")
	}
	// Rotation works on the rows as stored, below the encryption.
	pg, cfg, err := openDB(ctx, db, env, true)
	if err != nil {
		return err
	}
	defer pg.Close()
	keys := cfg.Keyring()
	reported := 0
	stats, err := encrypted.Rotate(ctx, pg, keys, *batch, func(s encrypted.RotateStats) {
		reportPlaintext(env, s.Plaintext[reported:])
		reported = len(s.Plaintext)
		fmt.Fprintf(env.Stderr, "keys rotate: %d rows scanned, %d re-encrypted\n", s.Scanned, s.Rewritten)
	})
	reportPlaintext(env, stats.Plaintext[min(reported, len(stats.Plaintext)):])
	if err != nil {
		return fmt.Errorf("after %d rows (%d re-encrypted): %w", stats.Scanned, stats.Rewritten, err)
	}
	fmt.Fprintf(env.Stdout, "keys rotate: done: %d rows scanned, %d re-encrypted, %d retried after concurrent writes, %d upgraded from format v1, %d left in plaintext\n",
		stats.Scanned, stats.Rewritten, stats.Conflicts, stats.Upgraded, len(stats.Plaintext))
	if n := len(stats.Plaintext); n > 0 {
		return fmt.Errorf("%d rows hold tokens that are not encrypted (listed above): they were left as they are, "+
			"and the service cannot read them; write each again with 'extauthz tokens put', or delete it", n)
	}
	return nil
}

// reportPlaintext names rows that Rotate left in plaintext, by the session
// hash the service's logs use, never by the session ID.
func reportPlaintext(env Env, keys []store.Key) {
	for _, k := range keys {
		fmt.Fprintf(env.Stderr, "keys rotate: session %s provider %q: a token is not encrypted; left as it is\n",
			upstreamtoken.SessionHash(k.SessionID), k.Provider)
	}
}
