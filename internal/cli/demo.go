package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/upstreamtoken"
)

// demoIdP plays, for demonstrations and development only, both an
// authorization server (it signs session JWTs and serves their JWKS) and an
// upstream provider's token endpoint (it accepts any refresh token and issues
// a new, rotated pair).
type demoIdP struct {
	key       *ecdsa.PrivateKey
	issuer    string
	audience  string
	session   string
	subject   string
	clientID  string
	jwtTTL    time.Duration
	accessTTL time.Duration
	log       *slog.Logger
	// authorize, when set, adds the authorization endpoint and the
	// discovery document (extauthz dev's connect demonstration).
	authorize *demoAuthorizer
}

// mint signs a session JWT; scope, when not empty, becomes its scope claim.
func (d *demoIdP) mint(scope string) (string, error) { return d.mintFor(d.session, scope) }

// mintFor is mint for the token session ID session.
func (d *demoIdP) mintFor(session, scope string) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: d.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", devKeyID(d.key)))
	if err != nil {
		return "", err
	}
	now := time.Now()
	claims := map[string]any{
		"iss": d.issuer, "aud": d.audience, "sub": d.subject, "client_id": d.clientID,
		"iat": now.Unix(), "exp": now.Add(d.jwtTTL).Unix(),
		upstreamtoken.TokenSessionIDClaimKey: session,
	}
	if scope != "" {
		claims["scope"] = scope
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

// handler serves GET /jwks.json, GET /jwt[?scope=S], POST /token and
// GET /healthz; with authorize, also its endpoints (and the token
// endpoint redeems codes).
func (d *demoIdP) handler() http.Handler {
	mux := http.NewServeMux()
	if d.authorize != nil {
		d.authorize.register(mux)
	}
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(publicJWKS(d.key))
	})
	mux.HandleFunc("GET /jwt", func(w http.ResponseWriter, r *http.Request) {
		token, err := d.mint(r.URL.Query().Get("scope"))
		if err != nil {
			http.Error(w, "signing failed", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, token)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		grant := r.FormValue("grant_type")
		switch {
		case grant == "":
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_request"}`))
			return
		case grant == "authorization_code" && d.authorize != nil:
			d.authorize.exchange(w, r)
			return
		case grant != "refresh_token":
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"unsupported_grant_type"}`))
			return
		case r.FormValue("refresh_token") == "":
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_request"}`))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"access_token":  "upstream-demo-token-" + randomHex(6),
			"refresh_token": "upstream-demo-refresh-" + randomHex(6),
			"token_type":    "Bearer",
			"expires_in":    int(d.accessTTL / time.Second),
		})
		d.log.Info("demo token endpoint: refreshed an upstream token")
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {})
	return mux
}

// serveOn serves the demo handler on lis until Close.
func (d *demoIdP) serveOn(lis net.Listener) *http.Server {
	srv := &http.Server{Handler: d.handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	return srv
}

func publicJWKS(k *ecdsa.PrivateKey) jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.Public(), KeyID: devKeyID(k), Algorithm: string(jose.ES256), Use: "sig"}}}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// demoCmd runs the demo authorization server and token endpoint used by
// the Docker Compose stack. Not for production.
func demoCmd(ctx context.Context, args []string, env Env) error {
	fs := newFlags("demo", env)
	listen := fs.String("listen", ":8000", "address to serve on")
	d := &demoIdP{}
	fs.StringVar(&d.issuer, "issuer", "http://demo:8000", "issuer (iss) of the JWTs")
	fs.StringVar(&d.audience, "audience", devAudience, "audience (aud) of the JWTs")
	fs.StringVar(&d.session, "session", devSession, "token session ID (tsid) of the JWTs")
	fs.StringVar(&d.subject, "subject", devSubject, "subject (sub) of the JWTs")
	fs.StringVar(&d.clientID, "client-id", devClientID, "client ID (client_id) of the JWTs")
	fs.DurationVar(&d.jwtTTL, "jwt-ttl", time.Hour, "lifetime of the JWTs")
	fs.DurationVar(&d.accessTTL, "access-ttl", 5*time.Minute, "lifetime of the upstream access tokens it issues")
	if err := parse(fs, args); err != nil {
		return err
	}
	if d.jwtTTL <= 0 || d.accessTTL < time.Second {
		return usageErr("--jwt-ttl must be positive and --access-ttl at least 1s")
	}
	fmt.Fprintln(env.Stderr, "extauthz demo: DEMO ONLY, NOT FOR PRODUCTION (throwaway signing key, token endpoint that accepts any refresh token)")
	d.log = newLogger(config.Log{Level: "info", Format: "text"}, env)
	var err error
	if d.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	srv := d.serveOn(lis)
	d.log.Info("demo serving", "addr", lis.Addr().String(), "issuer", d.issuer)
	<-ctx.Done()
	if err := srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
