package authz

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/extauthz/extauthz/jwtauth"
	"github.com/extauthz/extauthz/jwtauth/jwttest"
	"github.com/extauthz/extauthz/upstreamtoken"
)

// memorySource is an in-memory CredentialSource: one credential per
// (session, provider), bound to a subject and client ID.
type memorySource map[string]memoryEntry

type memoryEntry struct {
	binding upstreamtoken.Binding
	creds   map[string]upstreamtoken.UpstreamCredential
}

func (s memorySource) Lookup(_ context.Context, sessionID string, b upstreamtoken.Binding, providers ...string) (upstreamtoken.Result, error) {
	e, ok := s[sessionID]
	if !ok {
		return upstreamtoken.Result{}, upstreamtoken.ErrSessionNotFound
	}
	if b != e.binding {
		return upstreamtoken.Result{}, upstreamtoken.ErrInvalidBinding
	}
	res := upstreamtoken.Result{Failures: map[string]error{}}
	for _, p := range providers {
		if c, ok := e.creds[p]; ok {
			res.SetCredential(p, c)
		} else {
			res.Failures[p] = upstreamtoken.ErrSessionNotFound
		}
	}
	return res, nil
}

// hostileFixture is a real jwtauth.Verifier whose JWKS (served over HTTP)
// is the jwttest.Signer's key plus an RSA key, and an attacker who has a key
// of its own and a server that counts every request made to it.
type hostileFixture struct {
	signer      *jwttest.Signer
	rsaKey      *rsa.PrivateKey
	attacker    *ecdsa.PrivateKey
	evil        *httptest.Server
	evilHits    *atomic.Int64
	verifier    *jwtauth.Verifier
	decider     *Decider
	trustedJWKS jose.JSONWebKeySet
}

const (
	hostileIssuer   = "https://as.example.com"
	hostileAudience = "https://api.example.com"
	hostileRSAKid   = "rsa-1"
)

func newHostileFixture(t *testing.T) *hostileFixture {
	t.Helper()
	fx := &hostileFixture{signer: jwttest.NewSigner(t), evilHits: new(atomic.Int64)}
	var err error
	if fx.rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if fx.attacker, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(fx.signer.JWKS(), &fx.trustedJWKS); err != nil {
		t.Fatal(err)
	}
	fx.trustedJWKS.Keys = append(fx.trustedJWKS.Keys,
		jose.JSONWebKey{Key: &fx.rsaKey.PublicKey, KeyID: hostileRSAKid, Algorithm: string(jose.RS256), Use: "sig"})
	trusted, err := json.Marshal(fx.trustedJWKS)
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(trusted)
	}))
	t.Cleanup(jwks.Close)

	// The attacker's server offers the attacker's key under any path.
	evilJWKS, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &fx.attacker.PublicKey, KeyID: "attacker", Algorithm: string(jose.ES256), Use: "sig"},
		{Key: &fx.attacker.PublicKey, KeyID: fx.signer.KeyID(), Algorithm: string(jose.ES256), Use: "sig"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	fx.evil = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fx.evilHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(evilJWKS)
	}))
	t.Cleanup(fx.evil.Close)

	fx.verifier, err = jwtauth.New(t.Context(), jwtauth.Config{
		Issuer:    hostileIssuer,
		Audiences: []string{hostileAudience},
		JWKSURL:   jwks.URL + "/jwks",
		Leeway:    30 * time.Second,
		Now:       func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	source := memorySource{"session-1": {
		binding: upstreamtoken.Binding{Subject: "user-1", ClientID: "client-1"},
		creds:   map[string]upstreamtoken.UpstreamCredential{"gh": {AccessToken: "gh-access"}},
	}}
	fx.decider = New(Config{
		Providers:        map[string]Provider{"gh": {}},
		DefaultProviders: []string{"gh"},
		Realm:            "api",
	}, fx.verifier, source, nil)
	return fx
}

// hostileClaims is a claim set that the verifier accepts at now, with the
// given name/value pairs set over it (a nil value is JSON null).
func hostileClaims(kv ...any) map[string]any {
	m := map[string]any{
		"iss":       hostileIssuer,
		"aud":       hostileAudience,
		"sub":       "user-1",
		"client_id": "client-1",
		"tsid":      "session-1",
		"iat":       now.Add(-time.Minute).Unix(),
		"exp":       now.Add(time.Hour).Unix(),
	}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

// without returns the valid claim set minus the named claims.
func without(m map[string]any, names ...string) map[string]any {
	for _, n := range names {
		delete(m, n)
	}
	return m
}

// rawPayload is the valid claim set as JSON text with extra members spliced
// in after the opening brace, so that names may repeat.
func rawPayload(t *testing.T, extra string) []byte {
	t.Helper()
	b, err := json.Marshal(hostileClaims())
	if err != nil {
		t.Fatal(err)
	}
	return []byte("{" + extra + "," + string(b[1:]))
}

// joseSign signs payload with key under alg, adding the given protected
// headers (and the key itself as "jwk" when embed is set).
func joseSign(t *testing.T, alg jose.SignatureAlgorithm, key any, headers map[jose.HeaderKey]any, embed bool, payload []byte) string {
	t.Helper()
	opts := (&jose.SignerOptions{EmbedJWK: embed}).WithType("JWT")
	for k, v := range headers {
		opts.WithHeader(k, v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatalf("new %s signer: %v", alg, err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func seg(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// selfSignedCert returns the DER of a certificate for the attacker's key.
func selfSignedCert(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "as.example.com"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestHostileJWTsDenied is the list of hostile access tokens the service
// must refuse. Each one is refused by the real verifier with an error wrapping
// jwtauth.ErrInvalidToken and, through the decision, answered 401 with
// error="invalid_token". The attacker's server named by jku/x5u headers is
// never contacted.
func TestHostileJWTsDenied(t *testing.T) {
	fx := newHostileFixture(t)
	ctx := context.Background()
	kid := fx.signer.KeyID()

	valid := fx.signer.Sign(t, hostileClaims())
	// The baseline: a well-formed token from the trusted key is accepted and
	// the request allowed, so each refusal below is the hostile part's doing.
	if _, err := fx.verifier.Verify(ctx, valid); err != nil {
		t.Fatalf("baseline token refused: %v", err)
	}
	if resp := fx.decider.Check(ctx, Request{Headers: map[string]string{"authorization": "Bearer " + valid}}); !resp.Allowed {
		t.Fatalf("baseline token denied: %+v", resp)
	}
	parts := strings.Split(valid, ".")
	hdr, payload, sig := parts[0], parts[1], parts[2]
	validJSON, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		t.Fatal(err)
	}

	// The trusted public keys as an attacker could find them, for use as
	// HMAC secrets.
	ecPub := fx.trustedJWKS.Keys[0].Key
	ecDER, err := x509.MarshalPKIXPublicKey(ecPub)
	if err != nil {
		t.Fatal(err)
	}
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER})
	rsaDER, err := x509.MarshalPKIXPublicKey(&fx.rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaDER})
	rsaPKCS1PEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&fx.rsaKey.PublicKey)})
	hmac := func(alg jose.SignatureAlgorithm, secret []byte, kid string) string {
		return joseSign(t, alg, secret, map[jose.HeaderKey]any{"kid": kid}, false, validJSON)
	}
	attacker := func(headers map[jose.HeaderKey]any, embed bool) string {
		return joseSign(t, jose.ES256, fx.attacker, headers, embed, validJSON)
	}

	// A real JWE (ECDH-ES, A256GCM) encrypted to the trusted EC key.
	enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: jose.ECDH_ES, Key: ecPub, KeyID: kid},
		(&jose.EncrypterOptions{}).WithContentType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	jweObj, err := enc.Encrypt([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	jwe, err := jweObj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}

	// The signature segment re-spelled with non-zero trailing bits: it
	// decodes to the same bytes (ES256: 86 characters, 4 unused bits).
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, sig[len(sig)-1])
	nonCanonical := hdr + "." + payload + "." + sig[:len(sig)-1] + string(alphabet[last|1])
	// A payload segment of a length (1 mod 4) that no byte string encodes to.
	badLength := payload + "A"
	for len(badLength)%4 != 1 {
		badLength += "A"
	}

	tests := []struct {
		name string
		tok  string
	}{
		// alg none.
		{"alg none, empty signature", seg(`{"alg":"none","typ":"JWT"}`) + "." + payload + "."},
		{"alg none, with a signature", seg(`{"alg":"none","typ":"JWT"}`) + "." + payload + "." + sig},
		{"alg None with the trusted kid", seg(`{"alg":"None","kid":"`+kid+`"}`) + "." + payload + "." + sig},
		{"alg missing", seg(`{"kid":"`+kid+`"}`) + "." + payload + "." + sig},

		// HMAC, including the public keys used as the secret.
		{"HS256 keyed with the EC public key (DER)", hmac(jose.HS256, ecDER, kid)},
		{"HS256 keyed with the EC public key (PEM)", hmac(jose.HS256, ecPEM, kid)},
		{"HS256 keyed with the JWKS document", hmac(jose.HS256, fx.signer.JWKS(), kid)},
		{"HS256 keyed with the RSA public key (PEM)", hmac(jose.HS256, rsaPEM, hostileRSAKid)},
		{"HS256 keyed with the RSA public key (PKCS1 PEM)", hmac(jose.HS256, rsaPKCS1PEM, hostileRSAKid)},
		{"HS256 keyed with the RSA public key (DER)", hmac(jose.HS256, rsaDER, hostileRSAKid)},
		{"HS256 without kid", hmac(jose.HS256, ecPEM, "")},
		{"HS384", hmac(jose.HS384, ecPEM, kid)},
		{"HS512", hmac(jose.HS512, rsaPEM, hostileRSAKid)},

		// Keys the verifier does not hold.
		{"unknown kid", attacker(map[jose.HeaderKey]any{"kid": "attacker"}, false)},
		{"trusted kid, attacker's signature", attacker(map[jose.HeaderKey]any{"kid": kid}, false)},
		{"no kid, attacker's signature", attacker(nil, false)},
		{"RSA kid on an ES256 token", joseSign(t, jose.ES256, fx.attacker, map[jose.HeaderKey]any{"kid": hostileRSAKid}, false, validJSON)},

		// Key locations in the header: ignored, never fetched.
		{"jku to the attacker, attacker kid", attacker(map[jose.HeaderKey]any{"kid": "attacker", "jku": fx.evil.URL + "/jwks"}, false)},
		{"jku to the attacker, trusted kid", attacker(map[jose.HeaderKey]any{"kid": kid, "jku": fx.evil.URL + "/jwks"}, false)},
		{"jku to the attacker, no kid", attacker(map[jose.HeaderKey]any{"jku": fx.evil.URL + "/jwks"}, false)},
		{"x5u to the attacker, attacker kid", attacker(map[jose.HeaderKey]any{"kid": "attacker", "x5u": fx.evil.URL + "/cert.pem"}, false)},
		{"x5u to the attacker, no kid", attacker(map[jose.HeaderKey]any{"x5u": fx.evil.URL + "/cert.pem"}, false)},
		{"x5c with the attacker's certificate", attacker(map[jose.HeaderKey]any{"x5c": []string{base64.StdEncoding.EncodeToString(selfSignedCert(t, fx.attacker))}}, false)},
		{"embedded jwk of the attacker, no kid", attacker(nil, true)},
		{"embedded jwk of the attacker, trusted kid", attacker(map[jose.HeaderKey]any{"kid": kid}, true)},
		{"embedded jwk and jku together", attacker(map[jose.HeaderKey]any{"jku": fx.evil.URL + "/jwks"}, true)},

		// Encrypted tokens.
		{"JWE (ECDH-ES, A256GCM) to the trusted key", jwe},
		{"JWE-shaped, five segments", seg(`{"alg":"dir","enc":"A256GCM"}`) + "..AAAA." + payload + ".AAAA"},

		// Size.
		{"over the size bound", fx.signer.Sign(t, hostileClaims("pad", strings.Repeat("x", jwtauth.DefaultMaxTokenBytes)))},

		// Malformed base64 (each otherwise the valid token).
		{"padding on the payload", hdr + "." + payload + "==." + sig},
		{"padding on the signature", valid + "=="},
		{"standard alphabet characters", hdr + "." + payload + "." + strings.NewReplacer("-", "+", "_", "/").Replace(sig) + "+/"},
		{"invalid character", hdr + "." + payload[:8] + "*" + payload[8:] + "." + sig},
		{"percent-encoding", hdr + "." + payload + "%3D." + sig},
		{"space inside a segment", hdr + "." + payload[:8] + " " + payload[8:] + "." + sig},
		{"line break inside a segment", hdr + "\n." + payload + "." + sig},
		{"non-canonical trailing bits", nonCanonical},
		{"impossible segment length", hdr + "." + badLength + "." + sig},
		{"empty header segment", "." + payload + "." + sig},
		{"two segments", hdr + "." + payload},
		{"four segments", valid + "." + sig},
		{"non-ASCII byte", hdr + "." + payload + "\u00e9." + sig},

		// Duplicate claims (signed by the trusted key).
		{"duplicate sub", fx.signer.SignPayload(t, rawPayload(t, `"sub":"admin"`))},
		{"duplicate tsid", fx.signer.SignPayload(t, rawPayload(t, `"tsid":"someone-elses-session"`))},
		{"duplicate tsid, escaped name", fx.signer.SignPayload(t, rawPayload(t, `"t\u0073id":"someone-elses-session"`))},
		{"duplicate client_id", fx.signer.SignPayload(t, rawPayload(t, `"client_id":"other"`))},
		{"duplicate iss", fx.signer.SignPayload(t, rawPayload(t, `"iss":"https://evil.example.com"`))},
		{"duplicate exp", fx.signer.SignPayload(t, rawPayload(t, fmt.Sprintf(`"exp":%d`, now.Add(-time.Hour).Unix())))},

		// Non-string claims where strings are required (signed by the trusted key).
		{"sub number", fx.signer.Sign(t, hostileClaims("sub", 1))},
		{"sub array", fx.signer.Sign(t, hostileClaims("sub", []string{"user-1"}))},
		{"sub object", fx.signer.Sign(t, hostileClaims("sub", map[string]any{"id": "user-1"}))},
		{"sub null", fx.signer.Sign(t, hostileClaims("sub", nil))},
		{"sub bool", fx.signer.Sign(t, hostileClaims("sub", true))},
		{"client_id number", fx.signer.Sign(t, hostileClaims("client_id", 7))},
		{"client_id array", fx.signer.Sign(t, hostileClaims("client_id", []string{"client-1"}))},
		{"client_id number with a string azp", fx.signer.Sign(t, hostileClaims("client_id", 7, "azp", "client-1"))},
		{"azp number, no client_id", fx.signer.Sign(t, without(hostileClaims("azp", 7), "client_id"))},
		{"azp object, no client_id", fx.signer.Sign(t, without(hostileClaims("azp", map[string]any{}), "client_id"))},
		{"iss number", fx.signer.Sign(t, hostileClaims("iss", 1))},
		{"iss array", fx.signer.Sign(t, hostileClaims("iss", []string{hostileIssuer}))},
		{"iss null", fx.signer.Sign(t, hostileClaims("iss", nil))},

		// tsid that is not a string.
		{"tsid number", fx.signer.Sign(t, hostileClaims("tsid", 12345))},
		{"tsid array", fx.signer.Sign(t, hostileClaims("tsid", []string{"session-1"}))},
		{"tsid object", fx.signer.Sign(t, hostileClaims("tsid", map[string]any{"id": "session-1"}))},
		{"tsid null", fx.signer.Sign(t, hostileClaims("tsid", nil))},
		{"tsid bool", fx.signer.Sign(t, hostileClaims("tsid", true))},
		{"tsid empty", fx.signer.Sign(t, hostileClaims("tsid", ""))},
		{"tsid missing", fx.signer.Sign(t, without(hostileClaims(), "tsid"))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := fx.verifier.Verify(ctx, tc.tok)
			if !errors.Is(err, jwtauth.ErrInvalidToken) {
				t.Fatalf("Verify error = %v, want one wrapping jwtauth.ErrInvalidToken", err)
			}
			if !reflect.DeepEqual(c, jwtauth.Claims{}) {
				t.Errorf("claims returned with the error: %+v", c)
			}

			resp := fx.decider.Check(ctx, Request{Headers: map[string]string{"authorization": "Bearer " + tc.tok}})
			www := headerMap(resp.Headers)["www-authenticate"]
			if resp.Allowed || resp.Status != 401 || resp.Reason != "invalid_token" || !strings.Contains(www, `error="invalid_token"`) {
				t.Fatalf("Check = allowed %v, status %d, reason %q, WWW-Authenticate %q; want 401 invalid_token",
					resp.Allowed, resp.Status, resp.Reason, www)
			}
		})
	}
	if n := fx.evilHits.Load(); n != 0 {
		t.Fatalf("the attacker's jku/x5u server was contacted %d times", n)
	}
}
