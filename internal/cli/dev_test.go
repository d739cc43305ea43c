package cli

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/extauthz/extauthz/internal/localpg"
)

// TestDevQuickStart does what the README's quick start tells a new user to
// do: run "extauthz dev", run the printed "tokens put", send the printed
// grpcurl request, and expect the swapped header.
func TestDevQuickStart(t *testing.T) {
	dir := t.TempDir()
	// When the test runs as root PostgreSQL runs as another user, which
	// must be able to reach the data folder.
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if strings.HasPrefix(d, os.TempDir()+"/") {
			_ = os.Chmod(d, 0o755)
		}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	connectAddr := freeTCPAddr(t)

	out, logs := &syncBuffer{}, &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"dev", "--dir", filepath.Join(dir, "dev"), "--grpc", addr, "--connect", connectAddr},
			Env{Stdout: out, Stderr: logs, Getenv: func(string) string { return "" }})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 && !t.Skipped() {
				t.Errorf("extauthz dev exited %d after Ctrl-C; stderr:\n%s", code, logs.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("extauthz dev did not stop")
		}
	})

	deadline := time.After(2 * time.Minute)
	for !strings.Contains(out.String(), "Stop with Ctrl-C") {
		select {
		case <-deadline:
			t.Fatalf("extauthz dev printed no example; stderr:\n%s", logs.String())
		case <-time.After(50 * time.Millisecond):
		}
		if strings.Contains(logs.String(), localpg.ErrNotInstalled.Error()) {
			if os.Getenv("CI") == "true" {
				t.Fatalf("PostgreSQL binaries missing: %s", logs.String())
			}
			t.Skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
		}
	}
	printed := out.String()

	// Step 1: the printed "tokens put".
	put := regexp.MustCompile(`(?s)tokens put (.*?--expires-in \S+)`).FindStringSubmatch(printed)
	if put == nil {
		t.Fatalf("no tokens put command in:\n%s", printed)
	}
	args := append([]string{"tokens", "put"}, strings.Fields(strings.NewReplacer("\\\n", " ", "'", "").Replace(put[1]))...)
	if code := Run(context.Background(), args, Env{Stdout: &syncBuffer{}, Stderr: logs, Getenv: func(string) string { return "" }}); code != 0 {
		t.Fatalf("tokens put exited %d: %s", code, logs.String())
	}

	// Step 2: the printed grpcurl request, sent with a gRPC client.
	bodies := regexp.MustCompile(`grpcurl -plaintext -d '([^']*)'`).FindAllStringSubmatch(printed, -1)
	if len(bodies) != 2 || strings.Count(printed, addr+" envoy.service.auth.v3.Authorization/Check") != 2 {
		t.Fatalf("not two grpcurl commands for %s in:\n%s", addr, printed)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	check := func(body string) *authv3.CheckResponse {
		t.Helper()
		var req authv3.CheckRequest
		if err := protojson.Unmarshal([]byte(body), &req); err != nil {
			t.Fatalf("printed request is not a CheckRequest: %v", err)
		}
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		resp, err := authv3.NewAuthorizationClient(conn).Check(cctx, &req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := check(bodies[0][1]); resp.GetOkResponse() == nil || respHeaders(resp)["authorization"] != "Bearer upstream-demo-token" {
		t.Fatalf("Check = %v, want OK with authorization: Bearer upstream-demo-token", resp)
	}

	// Step 4: the printed connect example, the browser played by an HTTP
	// client with cookies that presses Allow twice.
	d := check(bodies[1][1]).GetDeniedResponse()
	var deny struct {
		ConnectURI string `json:"connect_uri"`
	}
	if err := json.Unmarshal([]byte(d.GetBody()), &deny); err != nil || d.GetStatus().GetCode() != 401 ||
		!strings.HasPrefix(deny.ConnectURI, "http://"+connectAddr+"/.extauthz/connect?ticket=") {
		t.Fatalf("connect example: deny %d without a connect link under %s (body parsed: %v)", d.GetStatus().GetCode(), connectAddr, err)
	}
	page := devBrowser(t).get(deny.ConnectURI)
	page = devBrowser(t).allow(page) // a fresh client has no flow cookie: refused
	if page.status != http.StatusBadRequest {
		t.Errorf("consent without the flow cookie: status %d, want 400", page.status)
	}
	b := devBrowser(t)
	page = b.allow(b.allow(b.get(deny.ConnectURI)))
	if page.status != http.StatusOK || !strings.Contains(page.text, "Your demo account is now linked.") {
		t.Fatalf("after consenting twice: status %d, page:\n%s", page.status, page.text)
	}
	if resp := check(bodies[1][1]); resp.GetOkResponse() == nil || !strings.HasPrefix(respHeaders(resp)["authorization"], "Bearer upstream-demo-token-") {
		t.Fatalf("the Check after linking is not allowed with the linked token: %d", resp.GetDeniedResponse().GetStatus().GetCode())
	}
}

// devBrowserT is a browser for the dev setup's pages: an HTTP client with
// cookies that follows redirects.
type devBrowserT struct {
	t *testing.T
	c *http.Client
}

// devPage is a page the browser landed on.
type devPage struct {
	url    *url.URL
	status int
	text   string
}

func devBrowser(t *testing.T) *devBrowserT {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &devBrowserT{t: t, c: &http.Client{Jar: jar, Timeout: time.Minute}}
}

func (b *devBrowserT) page(resp *http.Response, err error) devPage {
	b.t.Helper()
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	return devPage{url: resp.Request.URL, status: resp.StatusCode, text: string(text)}
}

// get opens link.
func (b *devBrowserT) get(link string) devPage {
	b.t.Helper()
	return b.page(b.c.Get(link))
}

// allow presses Allow on the development consent page p.
func (b *devBrowserT) allow(p devPage) devPage {
	b.t.Helper()
	if p.status != http.StatusOK || !strings.Contains(p.text, `value="allow"`) {
		b.t.Fatalf("not the consent page: %s status %d:\n%s", p.url.Path, p.status, p.text)
	}
	return b.page(b.c.PostForm(p.url.String(), url.Values{"decision": {"allow"}}))
}
