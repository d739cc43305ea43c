package cli

import (
	"os"
	"syscall"
	"testing"

	"github.com/extauthz/extauthz/internal/localnginx"
)

// nginxEnvVar names the nginx binary for the end-to-end tests (scripts/test
// sets it).
const nginxEnvVar = "EXTAUTHZ_TEST_NGINX"

// nginxDir returns a new directory for an nginx run, removed when t ends.
// It is not under t.TempDir, which nginx running as nobody (localnginx)
// could not reach.
func nginxDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "extauthz-nginx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startNginx runs nginx on 127.0.0.1 with locations (the output of
// proxy-config nginx) as its server block's locations, as an unprivileged
// process. It returns nginx's URL.
func startNginx(t *testing.T, bin, locations string) string {
	t.Helper()
	dir := nginxDir(t)
	addr := freeTCPAddr(t)
	cmd, err := localnginx.Command(bin, localnginx.Options{Dir: dir, Listen: addr, Server: locations})
	if err != nil {
		t.Fatal(err)
	}
	return runProxy(t, cmd, addr, syscall.SIGQUIT, func() string {
		log, _ := os.ReadFile(localnginx.ErrorLog(dir))
		return string(log)
	})
}

// nginxRunner runs real nginx with auth_request, configured by
// proxy-config nginx.
var nginxRunner = proxyRunner{
	name:   "nginx",
	envVar: nginxEnvVar,
	start: func(t *testing.T, bin string, w *proxyWorld) string {
		return startNginx(t, bin, proxyConfig(t, w.s, "nginx", w.backendURL))
	},
	ownDenyBody: true,
}

// TestNginxAuthRequest runs every proxy case through real nginx with
// auth_request in front of an echo backend and extauthz's HTTP front over
// real PostgreSQL.
func TestNginxAuthRequest(t *testing.T) { runProxyCases(t, nginxRunner) }
