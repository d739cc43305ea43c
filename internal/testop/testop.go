// Package testop runs a real OpenID Provider for tests, on 127.0.0.1.
//
// The protocol is github.com/zitadel/oidc/v3/pkg/op (an OpenID Certified
// provider library); this package supplies its storage (in memory), its
// users and clients, and the pages a person sees: an HTML login form
// (username and password) and a consent page with Allow and Deny buttons.
// A test, or a real browser driven by one, signs in through those pages.
//
// What it serves, under the issuer URL (plain HTTP on 127.0.0.1, or HTTPS
// with a test CA when Options.TLS is set):
//
//   - discovery (/.well-known/openid-configuration) and JWKS (/keys);
//   - the authorization endpoint (/authorize): authorization code flow,
//     PKCE (S256 and plain), state and nonce; it sends the browser to
//     /login, then /consent, then back to the client's redirect URI with a
//     code, or with error=access_denied when the user presses Deny;
//   - the token endpoint (/oauth/token): authorization_code,
//     refresh_token (rotating: a refresh token works once) and
//     client_credentials (for clients with a secret);
//   - revocation (/revoke, RFC 7009) and userinfo (/userinfo).
//
// ID tokens carry the request's nonce; access tokens are JWTs signed with
// the same key (RS256) with the claims iss, sub, aud, exp, iat, jti,
// client_id and scope (the granted scopes less profile, email, phone and
// address, which the library keeps for the ID token), plus
// Options.AccessTokenClaims. The library logs refused requests through the
// default slog logger (error codes and state, never tokens).
//
// Clients authenticate at the token and revocation endpoints with exactly
// the method they are registered with (Client.AuthMethod):
// client_secret_basic, client_secret_post, private_key_jwt (RFC 7523; the
// assertion's aud must be the issuer, it must carry a jti, and a jti works
// once) or none (public clients, PKCE required). A request that uses another
// method is refused with invalid_client, as a strict provider would; the
// library alone would accept a secret either way. TokenRequests reports the
// method and grant type of every token request, so a test can check what a
// client sent.
//
// The pages' fields and buttons have fixed ids (UsernameField,
// PasswordField, SignInButton, AllowButton, DenyButton) for browser tests.
package testop

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"

	"github.com/extauthz/extauthz/internal/tlsreload/tlstest"
)

// CSS selectors of the login and consent pages' controls.
const (
	UsernameField = "#username"
	PasswordField = "#password"
	SignInButton  = "#signin"
	AllowButton   = "#allow"
	DenyButton    = "#deny"
)

// AuthMethod is how a client authenticates at the token and revocation
// endpoints (the token_endpoint_auth_method of OpenID Connect Dynamic
// Client Registration).
type AuthMethod string

// The client authentication methods the provider supports.
const (
	ClientSecretBasic AuthMethod = "client_secret_basic"
	ClientSecretPost  AuthMethod = "client_secret_post"
	PrivateKeyJWT     AuthMethod = "private_key_jwt"
	None              AuthMethod = "none"
)

// User is an account that can sign in on the login form.
type User struct {
	// Subject is the ID token's sub; empty means Username.
	Subject  string
	Username string
	Password string
	// Email and Name, when set, are released for the scopes email and
	// profile (in the ID token and at userinfo).
	Email string
	Name  string
}

// Client is a registered client (relying party).
type Client struct {
	ID string
	// Secret is the client secret for client_secret_basic and
	// client_secret_post.
	Secret string
	// AuthMethod is the one method the client may use at the token and
	// revocation endpoints. Empty means client_secret_basic when Secret is
	// set, private_key_jwt when PublicKey is set, else none.
	AuthMethod AuthMethod
	// PublicKey verifies the client's private_key_jwt assertions (RSA for
	// RS256 and PS256, ECDSA P-256 for ES256); KeyID, when set, must be the
	// assertion's kid.
	PublicKey crypto.PublicKey
	KeyID     string
	// RedirectURIs are matched exactly (http is allowed: the provider is
	// for tests on 127.0.0.1).
	RedirectURIs []string
	// Audience is added to the client ID in the aud of the tokens issued to
	// this client (for an access token meant for an API).
	Audience []string
}

// Options configure Start.
type Options struct {
	Users   []User
	Clients []Client
	// Lifetimes; zero means 5 minutes for access and ID tokens and one hour
	// for refresh tokens.
	AccessTokenLifetime  time.Duration
	IDTokenLifetime      time.Duration
	RefreshTokenLifetime time.Duration
	// AccessTokenClaims, when set, returns extra claims for an access token
	// issued to clientID for subject (the client ID itself for
	// client_credentials) with the granted scopes. It must not return the
	// registered claims the provider sets.
	AccessTokenClaims func(subject, clientID string, scopes []string) map[string]any
	// TLS serves HTTPS with a certificate from a throwaway CA (see CA and
	// HTTPClient) instead of plain HTTP.
	TLS bool
}

// TokenRequest describes one request at the token endpoint, as the
// provider received it (before it checked anything).
type TokenRequest struct {
	GrantType  string
	ClientID   string
	AuthMethod AuthMethod
}

// OP is a running provider.
type OP struct {
	// Issuer is the issuer URL (no trailing slash), the base of every
	// endpoint.
	Issuer string
	// CA is the certificate authority of the provider's TLS certificate
	// when Options.TLS is set, else nil.
	CA *tlstest.CA

	provider *op.Provider
	store    *storage
	server   *httptest.Server

	mu       sync.Mutex
	requests []TokenRequest
}

// Start runs a provider on 127.0.0.1 until t ends. Invalid options fail
// the test.
func Start(t testing.TB, opts Options) *OP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("testop: signing key: %v", err)
	}
	store, err := newStorage(opts, key)
	if err != nil {
		t.Fatalf("testop: %v", err)
	}
	o := &OP{store: store}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testop: listen: %v", err)
	}
	o.server = httptest.NewUnstartedServer(nil)
	o.server.Listener.Close()
	o.server.Listener = ln
	scheme := "http"
	if opts.TLS {
		scheme = "https"
		o.CA = tlstest.NewCA(t, "testop CA")
		leaf := o.CA.Server(t, "testop")
		cert, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
		if err != nil {
			t.Fatalf("testop: TLS certificate: %v", err)
		}
		o.server.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	o.Issuer = scheme + "://" + ln.Addr().String()

	var cryptoKey [32]byte
	if _, err := rand.Read(cryptoKey[:]); err != nil {
		t.Fatalf("testop: %v", err)
	}
	config := &op.Config{
		CryptoKey:               cryptoKey,
		CodeMethodS256:          true,
		AuthMethodPost:          true,
		AuthMethodPrivateKeyJWT: true,
		GrantTypeRefreshToken:   true,
		SupportedUILocales:      []language.Tag{language.English},
	}
	options := []op.Option{op.WithHttpInterceptors(o.checkClientAuth)}
	if !opts.TLS {
		options = append(options, op.WithAllowInsecure())
	}
	o.provider, err = op.NewProvider(config, store, op.StaticIssuer(o.Issuer), options...)
	if err != nil {
		t.Fatalf("testop: provider: %v", err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET "+loginPath, o.loginPage)
	mux.HandleFunc("POST "+loginPath, o.login)
	mux.HandleFunc("GET "+consentPath, o.consentPage)
	mux.HandleFunc("POST "+consentPath, o.consent)
	mux.Handle("/", o.provider)
	o.server.Config.Handler = mux
	if opts.TLS {
		o.server.StartTLS()
	} else {
		o.server.Start()
	}
	t.Cleanup(o.server.Close)
	return o
}

// HTTPClient returns a client for the provider's endpoints: one that trusts
// the provider's CA when Options.TLS is set.
func (o *OP) HTTPClient() *http.Client {
	if o.CA == nil {
		return &http.Client{Timeout: time.Minute}
	}
	pool := x509.NewCertPool()
	pool.AddCert(o.CA.Cert)
	return &http.Client{
		Timeout:   time.Minute,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}
}

// Endpoint URLs, for configurations that do not use discovery.
func (o *OP) AuthorizationURL() string { return o.Issuer + "/authorize" }
func (o *OP) TokenURL() string         { return o.Issuer + "/oauth/token" }
func (o *OP) RevocationURL() string    { return o.Issuer + "/revoke" }
func (o *OP) UserinfoURL() string      { return o.Issuer + "/userinfo" }
func (o *OP) JWKSURL() string          { return o.Issuer + "/keys" }

// TokenRequests returns the requests the token endpoint has received so
// far, oldest first.
func (o *OP) TokenRequests() []TokenRequest {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]TokenRequest(nil), o.requests...)
}

// RefreshTokenCount returns how many refresh tokens are currently valid
// for subject (after rotation and revocation).
func (o *OP) RefreshTokenCount(subject string) int {
	return o.store.refreshTokenCount(subject)
}
