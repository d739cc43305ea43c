package cli

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// caddyEnvVar names the caddy binary for the end-to-end tests (scripts/test
// sets it).
const caddyEnvVar = "EXTAUTHZ_TEST_CADDY"

// startCaddy runs caddy on 127.0.0.1, without its admin endpoint, with
// snippet (the output of proxy-config caddy) as its only site's content.
// It returns caddy's URL.
func startCaddy(t *testing.T, bin, snippet string) string {
	t.Helper()
	dir := t.TempDir()
	addr := freeTCPAddr(t)
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`{
	admin off
}

http://:%s {
	bind 127.0.0.1
%s
}
`, port, snippet)
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", path, "--adapter", "caddyfile")
	// Caddy's storage and autosave stay in the test's directory.
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	return runProxy(t, cmd, addr, syscall.SIGTERM, func() string { return conf })
}

// caddyRunner runs real Caddy with forward_auth, configured by proxy-config
// caddy.
var caddyRunner = proxyRunner{
	name:   "caddy",
	envVar: caddyEnvVar,
	start: func(t *testing.T, bin string, w *proxyWorld) string {
		return startCaddy(t, bin, proxyConfig(t, w.s, "caddy", w.backendURL))
	},
}

// TestCaddyForwardAuth runs every proxy case through real Caddy with
// forward_auth in front of an echo backend and extauthz's HTTP front over
// real PostgreSQL.
func TestCaddyForwardAuth(t *testing.T) { runProxyCases(t, caddyRunner) }
