package cli

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/internal/localpg"
	"github.com/extauthz/extauthz/internal/setting"
	"github.com/extauthz/extauthz/migrations"
	"github.com/extauthz/extauthz/tokencrypt"
)

// Names the development setup uses, printed in its example.
const (
	devIssuer   = "https://issuer.extauthz.invalid"
	devAudience = "demo-api"
	devSession  = "demo-session"
	devSubject  = "alice"
	devClientID = "demo-client"
	devProvider = "demo"
	// devConnectSession is the session of the printed connect example: it
	// has no tokens until the browser links them.
	devConnectSession = "demo-connect-session"
)

// devCmd runs the whole service on a private PostgreSQL with a development
// signing key and a development token endpoint, and prints how to use it.
func devCmd(ctx context.Context, args []string, env Env) error {
	fs := newFlags("dev", env)
	dir := fs.String("dir", ".extauthz-dev", "folder for the private database, key and config")
	listen := fs.String("grpc", "127.0.0.1:9001", "address of the gRPC listener")
	metricsAddr := fs.String("metrics", "off", "address of the /metrics, /healthz and /readyz listener (e.g. 127.0.0.1:9090), or off")
	connectAddr := fs.String("connect", "127.0.0.1:9004", "loopback address of the connect flow (the deny's link, opened in a browser), or off")
	if err := parse(fs, args); err != nil {
		return err
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return err
	}
	fmt.Fprintln(env.Stderr, "extauthz dev: DEVELOPMENT MODE, NOT FOR PRODUCTION (private database, throwaway signing and encryption keys, fake token endpoint)")

	cluster, err := localpg.Start(ctx, filepath.Join(abs, "postgres"), env.Stderr)
	if err != nil {
		return err
	}
	defer func() {
		if cluster.Reused() {
			return // another process started it and owns it
		}
		if err := cluster.Stop(); err != nil {
			fmt.Fprintf(env.Stderr, "extauthz dev: stopping PostgreSQL: %v\n", err)
		}
	}()
	if err := migrations.Up(ctx, cluster.DSN(), env.Stderr); err != nil {
		return err
	}

	key, err := devKey(abs)
	if err != nil {
		return err
	}
	jwksPath := filepath.Join(abs, "jwks.json")
	if err := writePublicJWKS(jwksPath, key); err != nil {
		return err
	}

	keyPath := filepath.Join(abs, "dev-encryption.key")
	if _, err := os.Stat(keyPath); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(keyPath, []byte(tokencrypt.GenerateKey()+"\n"), 0o600); err != nil {
			return err
		}
	}

	idp := &demoIdP{key: key, issuer: devIssuer, audience: devAudience, session: devSession, subject: devSubject,
		clientID: devClientID, jwtTTL: 12 * time.Hour, accessTTL: 5 * time.Minute, log: slog.New(slog.DiscardHandler)}
	providerLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	idpURL := "http://" + providerLis.Addr().String()
	tokenURL := idpURL + "/token"
	// Connect: the development provider is also the server the browser
	// signs in at (connect.login) and the demo provider's authorization
	// endpoint, with a one-button consent page.
	listenConnect, connectSection, authorizationURL, publicURL := "", "", "", ""
	if *connectAddr != "off" {
		host, _, err := net.SplitHostPort(*connectAddr)
		if err != nil || !setting.IsLoopback(host) {
			return usageErr("--connect must be a loopback host:port (e.g. 127.0.0.1:9004) or off")
		}
		publicURL = "http://" + *connectAddr + "/.extauthz"
		idp.authorize = &demoAuthorizer{d: idp, issuer: idpURL, redirectPrefix: publicURL + "/"}
		listenConnect = fmt.Sprintf("  connect: %q\n", *connectAddr)
		connectSection = fmt.Sprintf(`connect:
  public_url: %q
  login:
    issuer: %q
    client_id: dev-login
    client_secret: dev-login-secret
`, publicURL, idpURL)
		authorizationURL = fmt.Sprintf("    authorization_url: %q\n", idpURL+"/authorize")
	}
	defer idp.serveOn(providerLis).Close()

	cfgText := fmt.Sprintf(`# Written by "extauthz dev": a development configuration, not for production.
listen:
  grpc: %q
  metrics: %q
  reflection: true
%s%sdatabase:
  url: %q
jwt:
  issuer: %q
  audiences: [%q]
  jwks_file: %q
providers:
  %s:
    token_url: %q
%s    client_id: dev-client
    client_secret: dev-secret
    auth_style: params
default_providers: [%s]
log:
  format: text
  level: debug
encryption:
  keys:
    - id: dev
      key_file: %q
shutdown:
  drain_delay: 0s
`, *listen, *metricsAddr, listenConnect, connectSection, cluster.DSN(), devIssuer, devAudience, jwksPath, devProvider, tokenURL,
		authorizationURL, devProvider, keyPath)
	cfgPath := filepath.Join(abs, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		return err
	}
	cfg, err := config.Parse([]byte(cfgText), func(string) string { return "" })
	if err != nil {
		return err
	}
	token, err := idp.mint("")
	if err != nil {
		return err
	}
	connectToken := ""
	if publicURL != "" {
		if connectToken, err = idp.mintFor(devConnectSession, ""); err != nil {
			return err
		}
	}
	return serve(ctx, cfg, env, func(addr net.Addr) {
		printDevExample(env, cfgPath, *listen, token)
		if connectToken != "" {
			printDevConnectExample(env, *listen, publicURL, connectToken)
		}
		fmt.Fprintln(env.Stdout, "\nStop with Ctrl-C; the database stays in the dev folder for next time.")
	})
}

func printDevExample(env Env, cfgPath, addr, token string) {
	bin := "extauthz"
	if exe, err := os.Executable(); err == nil && !strings.Contains(exe, "go-build") {
		bin = exe
	} else if err == nil {
		bin = "go run ./cmd/extauthz"
	}
	fmt.Fprintf(env.Stdout, `
extauthz dev is serving ext_authz on %[3]s (config: %[2]s). Try it from another terminal:

1. Store upstream tokens for the demo session (the access token expires in 1 minute,
   so a later Check shows a refresh at the development token endpoint):

   %[1]s tokens put --config %[2]s \
     --session %[5]s --provider %[6]s --subject %[7]s --client-id %[8]s \
     --access-token upstream-demo-token --refresh-token upstream-demo-refresh --expires-in 1m

2. Send a Check with this JWT (valid 12 h) and see the swapped authorization header
   (grpcurl: go install github.com/fullstorydev/grpcurl/cmd/grpcurl@latest):

   grpcurl -plaintext -d '{"attributes":{"request":{"http":{"headers":{"authorization":"Bearer %[4]s"}}}}}' \
     %[3]s envoy.service.auth.v3.Authorization/Check

3. Inspect the stored row (tokens are redacted):

   %[1]s tokens get --config %[2]s --session %[5]s
`, bin, cfgPath, addr, token, devSession, devProvider, devSubject, devClientID)
}

// printDevConnectExample prints how to link an account in the browser
// from a deny's connect link.
func printDevConnectExample(env Env, addr, publicURL, token string) {
	fmt.Fprintf(env.Stdout, `
4. Link an account in the browser instead of storing tokens by hand. A Check for the session
   %[3]s, which has no tokens yet, is denied with a connect link
   ("connect_uri" in the body, and a Link header):

   grpcurl -plaintext -d '{"attributes":{"request":{"http":{"headers":{"authorization":"Bearer %[2]s"}}}}}'      %[1]s envoy.service.auth.v3.Authorization/Check

   Open the link (%[4]s/connect?ticket=...) in a browser: press Allow at the development
   sign-in, then Allow again for the demo provider, and the page says the account is linked.
   Send the same Check again: it is allowed, with the linked token in the authorization header.
   A link works once and for 10 minutes.
`, addr, token, devConnectSession, publicURL)
}

// devKey loads the development signing key from dir, creating it on first
// use so that printed JWTs stay valid across restarts.
func devKey(dir string) (*ecdsa.PrivateKey, error) {
	path := filepath.Join(dir, "dev-signing-key.pem")
	if b, err := os.ReadFile(path); err == nil {
		block, _ := pem.Decode(b)
		if block == nil {
			return nil, fmt.Errorf("%s: not a PEM file", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		ec, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s: not an ECDSA key", path)
		}
		return ec, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return k, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func devKeyID(k *ecdsa.PrivateKey) string {
	jwk := jose.JSONWebKey{Key: k.Public()}
	tp, _ := jwk.Thumbprint(crypto.SHA256)
	return hex.EncodeToString(tp[:8])
}

func writePublicJWKS(path string, k *ecdsa.PrivateKey) error {
	b, err := json.MarshalIndent(publicJWKS(k), "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
