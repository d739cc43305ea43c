package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/extauthz/extauthz/upstreamtoken"
)

// Claims of the benchmark's access tokens. Every session has its own token:
// tsid "bench-<i>", sub "user-<i>", the same client and audience.
const (
	benchIssuer   = "https://as.bench.invalid"
	benchAudience = "https://api.bench.invalid"
	benchClientID = "bench-client"
	benchProvider = "bench"
)

func sessionID(i int) string { return fmt.Sprintf("bench-%05d", i) }
func subject(i int) string   { return fmt.Sprintf("user-%05d", i) }

// signer signs ES256 access tokens with a key generated for this run and
// publishes its public key as a JWKS.
type signer struct {
	jwks []byte
	s    jose.Signer
}

func newSigner() (*signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	pub := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
	thumb, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}})
	if err != nil {
		return nil, err
	}
	s, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: pub.KeyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, err
	}
	return &signer{jwks: jwks, s: s}, nil
}

// token returns session i's access token, valid for validFor.
func (s *signer) token(i int, now time.Time, validFor time.Duration) (string, error) {
	payload, err := json.Marshal(map[string]any{
		"iss":                                benchIssuer,
		"aud":                                benchAudience,
		"sub":                                subject(i),
		"client_id":                          benchClientID,
		upstreamtoken.TokenSessionIDClaimKey: sessionID(i),
		"scope":                              "read write",
		"iat":                                now.Unix(),
		"nbf":                                now.Unix(),
		"exp":                                now.Add(validFor).Unix(),
		"jti":                                fmt.Sprintf("jti-%d-%d", i, now.UnixNano()),
	})
	if err != nil {
		return "", err
	}
	obj, err := s.s.Sign(payload)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}
