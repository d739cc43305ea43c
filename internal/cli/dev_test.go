package cli

import (
	"context"
	"net"
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

	out, logs := &syncBuffer{}, &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"dev", "--dir", filepath.Join(dir, "dev"), "--grpc", addr},
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
	body := regexp.MustCompile(`grpcurl -plaintext -d '([^']*)'`).FindStringSubmatch(printed)
	if body == nil || !strings.Contains(printed, addr+" envoy.service.auth.v3.Authorization/Check") {
		t.Fatalf("no grpcurl command for %s in:\n%s", addr, printed)
	}
	var req authv3.CheckRequest
	if err := protojson.Unmarshal([]byte(body[1]), &req); err != nil {
		t.Fatalf("printed request is not a CheckRequest: %v", err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(cctx, &req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetOkResponse() == nil || respHeaders(resp)["authorization"] != "Bearer upstream-demo-token" {
		t.Fatalf("Check = %v, want OK with authorization: Bearer upstream-demo-token", resp)
	}
}
