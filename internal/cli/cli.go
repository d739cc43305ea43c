// Package cli implements the extauthz subcommands. Run is the whole program
// apart from process setup, so tests drive it like a user would.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1 // a runtime failure
	ExitUsage   = 2 // bad usage or configuration
)

// Env is the process environment a command runs in.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
}

// Version is stamped at build time with -ldflags "-X .../internal/cli.Version=v1.2.3".
var Version = ""

// errUsage marks errors that are the user's to fix (exit 2).
var errUsage = errors.New("usage")

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

const usage = `extauthz: an Envoy/Istio ext_authz service that swaps the caller's JWT for upstream tokens.

Usage:
  extauthz serve --config FILE        run the ext_authz gRPC server
  extauthz dev [--dir DIR]            try it locally: private PostgreSQL, dev key, server (NOT for production)
  extauthz demo [--listen :8000]      demo authorization server and token endpoint for docker compose (NOT for production)
  extauthz migrate [--config FILE | --database-url URL]
  extauthz tokens put|get|delete ...  manage a session's upstream tokens (see 'extauthz tokens -h')
  extauthz keys generate              print a new random encryption key
  extauthz keys rotate --config FILE  re-encrypt every row under encryption.primary, online
  extauthz gc [--config FILE | --database-url URL] [--batch N]  delete expired sessions now
  extauthz proxy-config nginx --config FILE [--backend URL]     print the proxy's configuration
  extauthz version
`

// Run runs the subcommand named by args[0] and returns the exit code.
func Run(ctx context.Context, args []string, env Env) int {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return ExitUsage
	}
	var err error
	switch args[0] {
	case "serve":
		err = serveCmd(ctx, args[1:], env)
	case "dev":
		err = devCmd(ctx, args[1:], env)
	case "migrate":
		err = migrateCmd(ctx, args[1:], env)
	case "tokens":
		err = tokensCmd(ctx, args[1:], env)
	case "keys":
		err = keysCmd(ctx, args[1:], env)
	case "demo":
		err = demoCmd(ctx, args[1:], env)
	case "gc":
		err = gcCmd(ctx, args[1:], env)
	case "proxy-config":
		err = proxyConfigCmd(ctx, args[1:], env)
	case "version", "--version", "-version":
		fmt.Fprintln(env.Stdout, "extauthz", versionString())
	case "help", "-h", "--help":
		fmt.Fprint(env.Stdout, usage)
	default:
		fmt.Fprintf(env.Stderr, "extauthz: unknown command %q\n\n%s", args[0], usage)
		return ExitUsage
	}
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(env.Stderr, "extauthz %s: %s\n", args[0], strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
		return ExitUsage
	default:
		fmt.Fprintf(env.Stderr, "extauthz %s: %v\n", args[0], err)
		return ExitFailure
	}
}

func versionString() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// newFlags returns a flag set that reports errors as usage errors instead of
// exiting.
func newFlags(name string, env Env) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	return fs
}

// parse parses args and turns flag errors into usage errors. Positional
// arguments are refused.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		// The argument itself is not echoed: after a shell mistake (an
		// unquoted empty variable shifting the flags) it may be a token.
		return usageErr("unexpected argument (number %d after %q): only flags are accepted",
			len(args)-fs.NArg()+1, fs.Name())
	}
	return nil
}
