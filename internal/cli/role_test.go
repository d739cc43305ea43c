package cli

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/jwtauth/jwttest"
	"github.com/extauthz/extauthz/tokencrypt"
)

// TestLeastPrivilegeRole runs the service under the runtime role the README
// documents: DML on upstream_tokens, no DDL.
func TestLeastPrivilegeRole(t *testing.T) {
	ctx := context.Background()
	adminDSN := pgtest.New(t)
	role := fmt.Sprintf("extauthz_app_%d", time.Now().UnixNano()%1e9)
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, sql := range []string{
		"CREATE ROLE " + role + " LOGIN",
		"GRANT USAGE ON SCHEMA public TO " + role,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON upstream_tokens TO " + role,
		"GRANT SELECT ON extauthz_notify_key TO " + role,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON extauthz_connect_tickets TO " + role,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), adminDSN)
		if err == nil {
			_, _ = c.Exec(context.Background(), "REVOKE ALL ON upstream_tokens FROM "+role)
			_, _ = c.Exec(context.Background(), "REVOKE ALL ON extauthz_notify_key FROM "+role)
			_, _ = c.Exec(context.Background(), "REVOKE ALL ON extauthz_connect_tickets FROM "+role)
			_, _ = c.Exec(context.Background(), "REVOKE ALL ON SCHEMA public FROM "+role)
			_, _ = c.Exec(context.Background(), "DROP ROLE IF EXISTS "+role)
			c.Close(context.Background())
		}
	})
	u, _ := url.Parse(adminDSN)
	u.User = url.User(role)
	appDSN := u.String()

	// The role cannot change the schema.
	app, err := pgx.Connect(ctx, appDSN)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.Exec(ctx, "CREATE TABLE intruder (x int)"); err == nil {
		t.Fatal("the runtime role could create a table")
	}
	app.Close(ctx)

	signer := jwttest.NewSigner(t)
	jwks := signer.Server(t)
	te := &tokenEndpoint{calls: map[string]int{}}
	provider := httptest.NewServer(te)
	t.Cleanup(provider.Close)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	cfgText := fmt.Sprintf(`
listen: {grpc: "127.0.0.1:0", metrics: "off"}
shutdown: {drain_delay: 0s}
database: {url: %q}
jwt: {issuer: %q, audiences: [%q], jwks_url: %q}
providers:
  gh: {token_url: %q, client_id: c, auth_style: params}
default_providers: [gh]
encryption: {keys: [{id: k, key: %q}]}
`, appDSN, e2eIssuer, e2eAudience, jwks.URL+"/jwks", provider.URL+"/token", tokencrypt.GenerateKey())
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	noEnv := func(string) string { return "" }
	run := func(args ...string) {
		t.Helper()
		var out, errOut syncBuffer
		if code := Run(ctx, args, Env{Stdout: &out, Stderr: &errOut, Getenv: noEnv}); code != 0 {
			t.Fatalf("%s exited %d: %s", args[:2], code, errOut.String())
		}
	}
	run("tokens", "put", "--config", cfgPath, "--session", "s1", "--provider", "gh", "--subject", "alice",
		"--client-id", "app", "--access-token", "old", "--refresh-token", "rt-role", "--expires-in", "1s")

	cfg, err := config.Load(cfgPath, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	addr, logs := serveInProcess(t, cfg, noEnv)
	e := &e2e{signer: signer}
	e.client, e.conn = dialCheck(t, addr.String())
	// The token expires within the skew: the Check refreshes it (lease claim,
	// compare-and-swap write) under the runtime role.
	resp := e.check(t, map[string]string{"authorization": "Bearer " + e.jwt(t, "s1", nil)}, "")
	if got := respHeaders(resp)["authorization"]; got != "Bearer new-access-rt-role-1" {
		t.Fatalf("Check under the runtime role: %v (logs: %s)", resp, logs.String())
	}
	run("tokens", "get", "--config", cfgPath, "--session", "s1")
	run("tokens", "delete", "--config", cfgPath, "--session", "s1")
	if strings.Contains(logs.String(), "permission denied") {
		t.Errorf("permission errors in logs: %s", logs.String())
	}
}

// dialCheck connects a Check client to addr over plaintext.
func dialCheck(t *testing.T, addr string) (authv3.AuthorizationClient, *grpc.ClientConn) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn), conn
}
