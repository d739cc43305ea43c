package oauthclient

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/extauthz/extauthz/internal/setting"
	"github.com/extauthz/extauthz/internal/tlsreload"
)

// AuthMethod is how the client authenticates to a provider's token and
// revocation endpoints, named as in the OAuth registry of token endpoint
// authentication methods (RFC 7591 section 2; OpenID Connect Core section
// 9). The zero value is not a valid method: every provider must name one,
// because auto-detection (trying one method and then another) would send a
// refresh token or an authorization code twice.
type AuthMethod int

const (
	// ClientSecretBasic sends client_id and client_secret in an HTTP Basic
	// Authorization header (RFC 6749 section 2.3.1, the recommended way).
	ClientSecretBasic AuthMethod = iota + 1
	// ClientSecretPost sends client_id and client_secret as form fields of
	// the request body.
	ClientSecretPost
	// PrivateKeyJWT sends client_id and a JWT signed with our private key
	// as client_assertion (RFC 7523 section 2.2; OpenID Connect Core
	// section 9).
	PrivateKeyJWT
	// TLSClientAuth presents our client certificate in the TLS handshake
	// and sends client_id in the form (RFC 8705 section 2.1).
	TLSClientAuth
)

// methodNames are the registry's spellings, by method.
var methodNames = map[AuthMethod]string{
	ClientSecretBasic: "client_secret_basic",
	ClientSecretPost:  "client_secret_post",
	PrivateKeyJWT:     "private_key_jwt",
	TLSClientAuth:     "tls_client_auth",
}

// ParseAuthMethod parses a method's registry name: client_secret_basic,
// client_secret_post, private_key_jwt or tls_client_auth.
func ParseAuthMethod(s string) (AuthMethod, error) {
	for m, name := range methodNames {
		if s == name {
			return m, nil
		}
	}
	return 0, fmt.Errorf("oauthclient: invalid token endpoint authentication method %q: want client_secret_basic, client_secret_post, private_key_jwt or tls_client_auth", s)
}

// String returns the method's registry name.
func (m AuthMethod) String() string {
	if name, ok := methodNames[m]; ok {
		return name
	}
	return "AuthMethod(" + strconv.Itoa(int(m)) + ")"
}

// MarshalText implements encoding.TextMarshaler.
func (m AuthMethod) MarshalText() ([]byte, error) {
	if _, ok := methodNames[m]; !ok {
		return nil, fmt.Errorf("oauthclient: invalid token endpoint authentication method %d", int(m))
	}
	return []byte(m.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseAuthMethod.
func (m *AuthMethod) UnmarshalText(text []byte) error {
	v, err := ParseAuthMethod(string(text))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// oauth2Style is how x/oauth2 sends the client's credentials for m: in the
// header for client_secret_basic, else in the form (client_id alone when
// there is no secret). It is never AuthStyleAutoDetect.
func (m AuthMethod) oauth2Style() oauth2.AuthStyle {
	if m == ClientSecretBasic {
		return oauth2.AuthStyleInHeader
	}
	return oauth2.AuthStyleInParams
}

// Audience is the aud of a private_key_jwt client assertion.
type Audience string

const (
	// AudienceTokenEndpoint (the default) sends the token endpoint's URL,
	// as RFC 7523 section 3 allows and OpenID Connect Core section 9
	// recommends: what every provider accepts (Okta, Microsoft Entra,
	// Keycloak, Ory Hydra). The same aud is sent to the revocation
	// endpoint: it names the authorization server, not the endpoint.
	AudienceTokenEndpoint Audience = "token_endpoint"
	// AudienceIssuer sends the provider's issuer identifier, as the
	// update of RFC 7523 (draft-ietf-oauth-rfc7523bis) requires to defeat
	// audience injection; some providers (Auth0, ZITADEL) expect it. It
	// needs Provider.Issuer.
	AudienceIssuer Audience = "issuer"
)

const (
	// assertionType is the client_assertion_type of RFC 7523 section 2.2.
	assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// assertionLifetime is how long a client assertion is valid.
	assertionLifetime = 5 * time.Minute
	// minRSABits is the least RSA key size accepted for assertions.
	minRSABits = 2048
	// maxKeyID bounds the length of a kid.
	maxKeyID = 256
)

// credentials is what a provider's authentication method needs beyond the
// client ID and secret, loaded from its files.
type credentials struct {
	// signer signs client assertions (private_key_jwt).
	signer jose.Signer
	// clientCert presents the client certificate (tls_client_auth).
	clientCert func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	// caFile holds the provider's extra trusted roots, "" for none.
	caFile string
}

// loadCredentials checks p's authentication settings and loads their files.
// Each problem is a *setting.Error; none quotes a file's contents or a
// secret.
func loadCredentials(p Provider) (*credentials, error) {
	var (
		errs []error
		c    credentials
	)
	unused := func(key, value string, method string) {
		if value != "" {
			errs = append(errs, setting.Errorf(key, " is used only with token_endpoint_auth %s", method))
		}
	}
	switch p.AuthMethod {
	case ClientSecretBasic, ClientSecretPost:
	case PrivateKeyJWT:
		if p.ClientSecret != "" {
			errs = append(errs, setting.Errorf("client_secret", " must not be set with private_key_jwt: the client authenticates with its key"))
		}
		if err := checkKeyID(p.KeyID); err != nil {
			errs = append(errs, err)
		}
		switch p.AssertionAudience {
		case "", AudienceTokenEndpoint:
		case AudienceIssuer:
			if p.Issuer == "" {
				errs = append(errs, setting.Errorf("assertion_audience", ": issuer needs the provider's issuer to be set"))
			}
		default:
			errs = append(errs, setting.Errorf("assertion_audience", ` must be "token_endpoint" or "issuer"`))
		}
		if p.PrivateKeyFile == "" {
			errs = append(errs, setting.Errorf("private_key_file", " is required with private_key_jwt"))
		} else if signer, err := loadSigner(p.PrivateKeyFile, p.KeyID); err != nil {
			errs = append(errs, setting.Errorf("private_key_file", ": %v", err))
		} else {
			c.signer = signer
		}
	case TLSClientAuth:
		if p.ClientSecret != "" {
			errs = append(errs, setting.Errorf("client_secret", " must not be set with tls_client_auth: the client authenticates with its certificate"))
		}
		if p.ClientCertFile == "" || p.ClientKeyFile == "" {
			errs = append(errs, setting.Errorf("client_cert_file", " and client_key_file are required with tls_client_auth"))
		} else if r, err := tlsreload.New(tlsreload.Files{Cert: p.ClientCertFile, Key: p.ClientKeyFile}, tlsreload.Options{}); err != nil {
			errs = append(errs, setting.Errorf("client_cert_file", ": %v", err))
		} else {
			c.clientCert = r.GetClientCertificate
		}
	default:
		errs = append(errs, setting.Errorf("token_endpoint_auth", " must be client_secret_basic, client_secret_post, private_key_jwt or tls_client_auth "+
			"(or auth_style header or params); it is never auto-detected"))
	}
	if p.AuthMethod != PrivateKeyJWT {
		unused("private_key_file", p.PrivateKeyFile, "private_key_jwt")
		unused("key_id", p.KeyID, "private_key_jwt")
		unused("assertion_audience", string(p.AssertionAudience), "private_key_jwt")
	}
	if p.AuthMethod != TLSClientAuth {
		unused("client_cert_file", p.ClientCertFile, "tls_client_auth")
		unused("client_key_file", p.ClientKeyFile, "tls_client_auth")
	}
	if p.CAFile != "" {
		if _, err := tlsreload.LoadRoots(p.CAFile, nil); err != nil {
			errs = append(errs, setting.Errorf("ca_file", ": %v", err))
		}
		c.caFile = p.CAFile
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &c, nil
}

// checkKeyID reports why kid cannot be the kid of our assertions, if it
// cannot: it is required, printable ASCII without spaces, at most 256
// bytes.
func checkKeyID(kid string) error {
	if kid == "" {
		return setting.Errorf("key_id", " is required with private_key_jwt: the kid under which the provider knows our public key")
	}
	if len(kid) > maxKeyID {
		return setting.Errorf("key_id", " is longer than %d bytes", maxKeyID)
	}
	for i := 0; i < len(kid); i++ {
		if kid[i] <= ' ' || kid[i] > '~' {
			return setting.Errorf("key_id", " must be printable ASCII without spaces")
		}
	}
	return nil
}

// loadSigner reads the private key at path and returns a signer of compact
// JWS with its algorithm (AssertionAlgorithm) and kid in the header.
func loadSigner(path, kid string) (jose.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("cannot read %q: %w", path, err)
	}
	key, err := tlsreload.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", path, err)
	}
	alg, err := AssertionAlgorithm(key)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", path, err)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), kid)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		return nil, fmt.Errorf("%q: cannot sign with this key", path)
	}
	return signer, nil
}

// AssertionAlgorithm returns the JWS algorithm of client assertions signed
// with key: RS256 for RSA (at least 2048 bits), ES256, ES384 or ES512 for
// ECDSA on P-256, P-384 or P-521, EdDSA for Ed25519. Other keys are
// refused.
func AssertionAlgorithm(key crypto.Signer) (jose.SignatureAlgorithm, error) {
	switch k := key.Public().(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return "", fmt.Errorf("RSA key of %d bits: at least %d are required", k.N.BitLen(), minRSABits)
		}
		return jose.RS256, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		case elliptic.P521():
			return jose.ES512, nil
		}
		return "", errors.New("unsupported ECDSA curve (P-256, P-384 or P-521 expected)")
	case ed25519.PublicKey:
		return jose.EdDSA, nil
	}
	return "", errors.New("unsupported key type (RSA, ECDSA or Ed25519 expected)")
}

// errSign means a client assertion could not be signed.
var errSign = errors.New("oauthclient: cannot sign the client assertion")

// authForm returns the form fields that authenticate a request to the
// endpoints of p whose token endpoint is tokenURL and whose issuer is
// issuer, beyond what x/oauth2 sends itself (client_id and, for
// client_secret_post, client_secret): for private_key_jwt a fresh assertion
// (iss and sub the client ID, aud per Provider.AssertionAudience, iat now,
// exp 5 minutes later, a random jti), nil for the other methods.
func (p *provider) authForm(tokenURL, issuer string, now time.Time) (url.Values, error) {
	if p.method != PrivateKeyJWT {
		return nil, nil
	}
	aud := tokenURL
	if p.audience == AudienceIssuer {
		aud = issuer
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return nil, errSign
	}
	claims := jwt.Claims{
		Issuer:   p.config.ClientID,
		Subject:  p.config.ClientID,
		Audience: jwt.Audience{aud},
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(assertionLifetime)),
		ID:       base64.RawURLEncoding.EncodeToString(jti[:]),
	}
	assertion, err := jwt.Signed(p.creds.signer).Claims(claims).Serialize()
	if err != nil {
		return nil, errSign
	}
	return url.Values{"client_assertion_type": {assertionType}, "client_assertion": {assertion}}, nil
}

// httpTransport returns the transport of p's requests: base itself, or,
// when p trusts extra roots or presents a client certificate, a clone of
// base (which must then be an *http.Transport) with them in its TLS
// configuration.
func (c *credentials) httpTransport(base http.RoundTripper) (http.RoundTripper, error) {
	if c.caFile == "" && c.clientCert == nil {
		return base, nil
	}
	t, ok := base.(*http.Transport)
	if !ok {
		return nil, errors.New("ca_file and tls_client_auth need the HTTP client's transport to be an *http.Transport")
	}
	t = t.Clone()
	tc := t.TLSClientConfig
	if tc == nil {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if c.caFile != "" {
		// Roots the transport trusts already (a test's) are kept, with
		// the provider's added; else the system's.
		roots, err := tlsreload.LoadRoots(c.caFile, tc.RootCAs)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = roots
	}
	if c.clientCert != nil {
		tc.GetClientCertificate = c.clientCert
	}
	t.TLSClientConfig = tc
	return t, nil
}
