// Package jwttest mints signed access tokens for tests of code that verifies
// them with package jwtauth. It is test support: it generates keys on the fly
// and reports failures through testing.TB.
package jwttest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// Signer holds a fresh ES256 key pair and signs tokens with it. Its key ID is
// the key's RFC 7638 thumbprint. A Signer is safe for concurrent use.
type Signer struct {
	kid    string
	jwks   []byte
	signer jose.Signer
}

// NewSigner generates a P-256 key and returns a Signer for it.
func NewSigner(t testing.TB) *Signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("jwttest: generate key: %v", err)
	}
	pub := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
	thumb, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatalf("jwttest: thumbprint: %v", err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}})
	if err != nil {
		t.Fatalf("jwttest: marshal JWKS: %v", err)
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: pub.KeyID}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		t.Fatalf("jwttest: new signer: %v", err)
	}
	return &Signer{kid: pub.KeyID, jwks: jwks, signer: signer}
}

// KeyID returns the "kid" that Sign puts in every token header.
func (s *Signer) KeyID() string { return s.kid }

// JWKS returns the public JSON Web Key Set (one ES256 key, "use":"sig").
// The caller may modify the returned slice.
func (s *Signer) JWKS() []byte { return append([]byte(nil), s.jwks...) }

// Sign returns a compact JWS (ES256, with "kid" and "typ":"JWT" headers)
// whose payload is claims encoded as JSON, exactly as given: Sign adds no
// claim. Times must be given as NumericDate numbers, e.g.
// time.Now().Add(time.Hour).Unix().
func (s *Signer) Sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatalf("jwttest: marshal claims: %v", err)
	}
	return s.SignPayload(t, payload)
}

// SignPayload is Sign with the payload given as bytes, signed exactly as
// they are. It lets a test present claims that encoding/json would never
// produce from a map, such as a duplicated claim name.
func (s *Signer) SignPayload(t testing.TB, payload []byte) string {
	t.Helper()
	obj, err := s.signer.Sign(payload)
	if err != nil {
		t.Fatalf("jwttest: sign: %v", err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatalf("jwttest: serialize: %v", err)
	}
	return tok
}

// Server starts an HTTP server that serves the JWKS at "/jwks" (any other
// path is 404) and closes it when the test ends. Use Server(t).URL+"/jwks" as
// jwtauth.Config.JWKSURL.
func (s *Signer) Server(t testing.TB) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(s.jwks)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// WriteJWKSFile writes the JWKS to a file in a test temporary directory and
// returns its path, for jwtauth.Config.JWKSFile.
func (s *Signer) WriteJWKSFile(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, s.jwks, 0o600); err != nil {
		t.Fatalf("jwttest: write JWKS file: %v", err)
	}
	return path
}
