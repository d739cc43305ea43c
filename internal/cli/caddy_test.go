package cli

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// caddyEnvVar names the caddy binary for the end-to-end tests (scripts/test
// sets it).
const caddyEnvVar = "EXTAUTHZ_TEST_CADDY"

// caddyProxyConfig returns what "extauthz proxy-config caddy" prints for
// s's configuration, with backend as the reverse_proxy upstream.
func caddyProxyConfig(t *testing.T, s *httpServer, backend string) string {
	t.Helper()
	var out, errs bytes.Buffer
	code := Run(context.Background(), []string{"proxy-config", "caddy", "--config", s.configPath, "--backend", backend},
		Env{Stdout: &out, Stderr: &errs, Getenv: s.getenv})
	if code != ExitOK {
		t.Fatalf("proxy-config caddy: exit %d: %s", code, errs.String())
	}
	return out.String()
}

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

// TestCaddyForwardAuth runs real Caddy with forward_auth in front of an
// echo backend and extauthz's HTTP front over real PostgreSQL.
func TestCaddyForwardAuth(t *testing.T) {
	bin := proxyBinary(t, caddyEnvVar)
	w := newProxyWorld(t, "gho_caddy_upstream")
	caddy := startCaddy(t, bin, caddyProxyConfig(t, w.s, w.backendURL))
	backend, jwt, upstream, s := w.backend, w.jwt, w.upstream, w.s
	get := func(t *testing.T, path string, headers http.Header) (*http.Response, string) {
		t.Helper()
		return w.get(t, caddy, path, headers)
	}

	t.Run("allow: the backend sees only the upstream token", func(t *testing.T) {
		resp, _ := get(t, "/repos?page=2", http.Header{
			"Authorization":              {"Bearer " + jwt},
			"X-Google-Token":             {"Bearer forged"},
			"X-Extauthz-Providers":       {"google"},
			"X-Extauthz-Required-Scopes": {"none"},
		})
		seen := backend.take()
		if resp.StatusCode != 200 || len(seen) != 1 {
			t.Fatalf("status %d, backend requests %d", resp.StatusCode, len(seen))
		}
		if got := seen[0].Values("Authorization"); len(got) != 1 || got[0] != "Bearer "+upstream {
			t.Errorf("backend Authorization lines: %d, upstream token: %v", len(got), len(got) == 1 && got[0] == "Bearer "+upstream)
		}
		// The route's answer does not set X-Google-Token: the client's copy
		// is gone (Caddy 2.6 sends the name of the placeholder it could not
		// fill instead; never the client's value).
		if got := strings.Join(seen[0].Values("X-Google-Token"), ","); strings.Contains(got, "forged") {
			t.Errorf("a client's X-Google-Token reached the backend")
		}
		for _, h := range []string{"X-Extauthz-Providers", "X-Extauthz-Required-Scopes"} {
			if got := seen[0].Values(h); len(got) != 0 {
				t.Errorf("a client's %s reached the backend (%d lines)", h, len(got))
			}
		}
	})
	t.Run("deny 401 with the challenge and the JSON body", func(t *testing.T) {
		resp, body := get(t, "/repos", http.Header{})
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer realm="api"` ||
			resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(body, `"error"`) {
			t.Errorf("status %d, WWW-Authenticate %q, Content-Type %q, body %q", resp.StatusCode,
				resp.Header.Get("WWW-Authenticate"), resp.Header.Get("Content-Type"), body)
		}
		if n := len(backend.take()); n != 0 {
			t.Errorf("backend reached %d times", n)
		}
	})
	t.Run("deny 403 for a route's scope, with the challenge", func(t *testing.T) {
		// Caddy passes the answer of a deny through as it is.
		resp, _ := get(t, "/admin/users", http.Header{"Authorization": {"Bearer " + jwt}})
		if resp.StatusCode != 403 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
			t.Errorf("status %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		if n := len(backend.take()); n != 0 {
			t.Errorf("backend reached %d times", n)
		}
	})
	t.Run("a client's provider header does not skip the route's scopes", func(t *testing.T) {
		resp, _ := get(t, "/admin/users", http.Header{"Authorization": {"Bearer " + jwt}, "X-Extauthz-Providers": {"gh"}})
		if resp.StatusCode != 403 || len(backend.take()) != 0 {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("two Authorization headers are denied", func(t *testing.T) {
		resp, _ := get(t, "/repos", http.Header{"Authorization": {"Bearer forged", "Bearer " + jwt}})
		if resp.StatusCode != 401 || len(backend.take()) != 0 {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("503 reaches the client with Retry-After", func(t *testing.T) {
		resp, _ := get(t, "/repos", http.Header{"Authorization": {"Bearer " + s.jwt(t, "s-outage", "read")}})
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || len(backend.take()) != 0 {
			t.Errorf("status %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	})
	w.assertNoTokensLogged(t)
}
