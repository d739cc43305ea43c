package cli

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/extauthz/extauthz/internal/localnginx"
)

// nginxEnvVar names the nginx binary for the end-to-end tests (scripts/test
// sets it).
const nginxEnvVar = "EXTAUTHZ_TEST_NGINX"

// echoBackend records the header lines of every request it receives.
type echoBackend struct {
	mu   sync.Mutex
	seen []http.Header
}

func (b *echoBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.seen = append(b.seen, r.Header.Clone())
	b.mu.Unlock()
	fmt.Fprint(w, "backend")
}

func (b *echoBackend) take() []http.Header {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.seen
	b.seen = nil
	return out
}

// nginxProxyConfig returns what "extauthz proxy-config nginx" prints for
// s's configuration, with backend as the protected location's upstream.
func nginxProxyConfig(t *testing.T, s *httpServer, backend string) string {
	t.Helper()
	var out, errs bytes.Buffer
	code := Run(context.Background(), []string{"proxy-config", "nginx", "--config", s.configPath, "--backend", "http://" + backend},
		Env{Stdout: &out, Stderr: &errs, Getenv: s.getenv})
	if code != ExitOK {
		t.Fatalf("proxy-config nginx: exit %d: %s", code, errs.String())
	}
	return out.String()
}

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

// TestNginxAuthRequest runs real nginx with auth_request in front of an
// echo backend and extauthz's HTTP front over real PostgreSQL.
func TestNginxAuthRequest(t *testing.T) {
	bin := proxyBinary(t, nginxEnvVar)
	w := newProxyWorld(t, "gho_nginx_upstream")
	nginx := startNginx(t, bin, nginxProxyConfig(t, w.s, strings.TrimPrefix(w.backendURL, "http://")))
	backend, jwt, upstream, s := w.backend, w.jwt, w.upstream, w.s
	get := func(t *testing.T, path string, headers http.Header) *http.Response {
		t.Helper()
		resp, _ := w.get(t, nginx, path, headers)
		return resp
	}

	t.Run("allow: the backend sees only the upstream token", func(t *testing.T) {
		resp := get(t, "/repos?page=2", http.Header{
			"Authorization":        {"Bearer " + jwt},
			"X-Google-Token":       {"Bearer forged"},
			"X-Extauthz-Providers": {"google"},
		})
		seen := backend.take()
		if resp.StatusCode != 200 || len(seen) != 1 {
			t.Fatalf("status %d, backend requests %d", resp.StatusCode, len(seen))
		}
		if got := seen[0].Values("Authorization"); len(got) != 1 || got[0] != "Bearer "+upstream {
			t.Errorf("backend Authorization lines: %d, upstream token: %v", len(got), len(got) == 1 && got[0] == "Bearer "+upstream)
		}
		if got := seen[0].Values("X-Google-Token"); len(got) != 0 {
			t.Errorf("a client's X-Google-Token reached the backend (%d lines)", len(got))
		}
		if got := seen[0].Values("X-Extauthz-Providers"); len(got) != 0 {
			t.Errorf("a client's X-Extauthz-Providers reached the backend (%d lines)", len(got))
		}
	})
	t.Run("deny 401 with the challenge", func(t *testing.T) {
		resp := get(t, "/repos", http.Header{})
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer realm="api"` {
			t.Errorf("status %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		if n := len(backend.take()); n != 0 {
			t.Errorf("backend reached %d times", n)
		}
	})
	t.Run("deny 403 for a route's scope", func(t *testing.T) {
		// nginx passes WWW-Authenticate on 401 only: the client gets a
		// bare 403 (docs/http.md says so).
		resp := get(t, "/admin/users", http.Header{"Authorization": {"Bearer " + jwt}})
		if resp.StatusCode != 403 || resp.Header.Get("WWW-Authenticate") != "" {
			t.Errorf("status %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		if n := len(backend.take()); n != 0 {
			t.Errorf("backend reached %d times", n)
		}
	})
	t.Run("a client's provider header does not skip the route's scopes", func(t *testing.T) {
		resp := get(t, "/admin/users", http.Header{"Authorization": {"Bearer " + jwt}, "X-Extauthz-Providers": {"gh"}})
		if resp.StatusCode != 403 || len(backend.take()) != 0 {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("two Authorization headers are refused", func(t *testing.T) {
		// nginx refuses such a request itself (400) before auth_request;
		// the front would deny it 401 (see package httpfront's tests).
		resp := get(t, "/repos", http.Header{"Authorization": {"Bearer forged", "Bearer " + jwt}})
		if resp.StatusCode != 400 && resp.StatusCode != 401 || len(backend.take()) != 0 {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("503 becomes nginx's 500", func(t *testing.T) {
		resp := get(t, "/repos", http.Header{"Authorization": {"Bearer " + s.jwt(t, "s-outage", "read")}})
		if resp.StatusCode != 500 || resp.Header.Get("Retry-After") != "" || len(backend.take()) != 0 {
			t.Errorf("status %d, Retry-After %q; nginx turns statuses other than 401 and 403 into 500", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	})
	w.assertNoTokensLogged(t)
}
