package cli

import (
	"context"
	"fmt"

	"github.com/extauthz/extauthz/store/encrypted"
	"github.com/extauthz/extauthz/tokencrypt"
)

const keysUsage = `Usage:
  extauthz keys generate
      print a new random AES-256 key (base64) for encryption.keys
  extauthz keys rotate --config FILE [--database-url URL] [--batch N]
      re-encrypt every stored token not already under encryption.primary (and
      any written before encryption), in batches, while the service keeps
      serving; afterwards the old keys can be removed from the configuration
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
	st, closeStore, err := openStore(ctx, db, env, true)
	if err != nil {
		return err
	}
	defer closeStore()
	stats, err := st.(*encrypted.Store).Rotate(ctx, *batch, func(s encrypted.RotateStats) {
		fmt.Fprintf(env.Stderr, "keys rotate: %d rows scanned, %d re-encrypted\n", s.Scanned, s.Rewritten)
	})
	if err != nil {
		return fmt.Errorf("after %d rows (%d re-encrypted): %w", stats.Scanned, stats.Rewritten, err)
	}
	fmt.Fprintf(env.Stdout, "keys rotate: done: %d rows scanned, %d re-encrypted, %d retried after concurrent writes\n",
		stats.Scanned, stats.Rewritten, stats.Conflicts)
	return nil
}
