package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// nginxEnvVar names the nginx binary for the end-to-end tests (scripts/test
// sets it).
const nginxEnvVar = "EXTAUTHZ_TEST_NGINX"

// startNginx runs nginx on 127.0.0.1 with locations (the output of
// proxy-config nginx) as its server block's locations, as an unprivileged
// process. It returns nginx's URL.
func startNginx(t *testing.T, bin, locations string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "extauthz-nginx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	addr := freeTCPAddr(t)
	conf := fmt.Sprintf(`
daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen %[2]s;
%[3]s
    }
}
`, dir, addr, locations)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", path)
	if os.Getuid() == 0 {
		// Unprivileged: as nobody, in a directory it may write.
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	return runProxy(t, cmd, addr, syscall.SIGQUIT, func() string {
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
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
