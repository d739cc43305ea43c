package cli

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/store"
)

// proxyBinary returns the reverse proxy binary named by envVar (scripts/test
// installs the proxy and sets it). Without it the test is skipped, or failed
// when CI is "true".
func proxyBinary(t *testing.T, envVar string) string {
	t.Helper()
	bin := os.Getenv(envVar)
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set (scripts/test sets it)", envVar)
		}
		t.Skipf("%s is not set: no proxy to test with (scripts/test installs and sets it)", envVar)
	}
	return bin
}

// runProxy starts cmd, a reverse proxy that listens on addr, stops it with
// stop when t ends (killing it after 10 s), and returns its URL once it
// accepts connections. exited describes, for the failure message, why the
// proxy exited early.
func runProxy(t *testing.T, cmd *exec.Cmd, addr string, stop os.Signal, exited func() string) string {
	t.Helper()
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(stop)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return "http://" + addr
		}
		select {
		case <-done:
			t.Fatalf("%s exited: %s\n%s", cmd.Path, out, exited())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not listen on %s: %s", cmd.Path, addr, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// proxyWorld is what a proxy test puts behind the proxy: extauthz's HTTP
// front on a fixed address (the generated proxy configuration names it),
// an echo backend, and two sessions: s1 with a fresh upstream token, and
// s-outage whose expired token cannot be refreshed (503).
type proxyWorld struct {
	s          *httpServer
	backend    *echoBackend
	backendURL string
	upstream   string
	jwt        string // for s1, with scope read
}

func newProxyWorld(t *testing.T, upstream string) *proxyWorld {
	t.Helper()
	w := &proxyWorld{s: startHTTPServe(t, freeTCPAddr(t)), backend: &echoBackend{}, upstream: upstream}
	bsrv := httptest.NewServer(w.backend)
	t.Cleanup(bsrv.Close)
	w.backendURL = bsrv.URL
	ctx := context.Background()
	for _, r := range []store.Row{
		{SessionID: "s1", Tokens: store.Tokens{AccessToken: upstream, ExpiresAt: time.Now().Add(time.Hour)}},
		{SessionID: "s-outage", Tokens: store.Tokens{AccessToken: "old", RefreshToken: "rt", ExpiresAt: time.Now().Add(-time.Hour)}},
	} {
		r.Provider, r.Subject, r.ClientID = "gh", "alice", "app"
		if err := w.s.store.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	w.jwt = w.s.jwt(t, "s1", "read")
	return w
}

// get sends a GET for path on host api.test through the proxy at base and
// returns the answer with its body read.
func (w *proxyWorld) get(t *testing.T, base, path string, headers http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "api.test"
	req.Header = headers
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// assertNoTokensLogged fails if extauthz logged the upstream token or the JWT.
func (w *proxyWorld) assertNoTokensLogged(t *testing.T) {
	t.Helper()
	for _, secret := range []string{w.upstream, w.jwt} {
		if strings.Contains(w.s.logs.String(), secret) {
			t.Error("a token is in the logs")
		}
	}
}
