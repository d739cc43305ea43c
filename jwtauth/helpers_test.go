package jwtauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/extauthz/extauthz/internal/testutil"
)

const (
	testIssuer   = "https://as.example.com"
	testAudience = "https://api.example.com"
	testLeeway   = 30 * time.Second
)

// t0 is the fake "now" of every test.
var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// newClock returns a fake clock that reads t0.
func newClock() *testutil.Clock { return testutil.NewClock(t0) }

// testKey is a signing key pair with a key ID.
type testKey struct {
	alg  jose.SignatureAlgorithm
	kid  string
	priv crypto.Signer
}

var (
	rsaOnce sync.Once
	rsaPool []*rsa.PrivateKey
)

// rsaKey returns one of a few RSA-2048 keys generated once per test binary.
func rsaKey(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() {
		for range 3 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaPool = append(rsaPool, k)
		}
	})
	return rsaPool[i]
}

// newKey makes a key for alg. RSA algorithms share pooled keys: n picks one.
func newKey(t testing.TB, alg jose.SignatureAlgorithm, kid string, n ...int) *testKey {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
		i := 0
		if len(n) > 0 {
			i = n[0]
		}
		priv = rsaKey(t, i)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.ES384:
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case jose.ES512:
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("unsupported alg %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{alg: alg, kid: kid, priv: priv}
}

// public returns the public JWK ("use":"sig", no "alg").
func (k *testKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Use: "sig"}
}

func jwksOf(t testing.TB, keys ...jose.JSONWebKey) []byte {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func staticSet(t testing.TB, keys ...jose.JSONWebKey) *staticKeySet {
	t.Helper()
	vk, err := parseJWKS(jwksOf(t, keys...), true)
	if err != nil {
		t.Fatal(err)
	}
	return &staticKeySet{snap: keySnapshot{keys: vk}}
}

// signOpts tunes the protected header.
type signOpts struct {
	noKid    bool
	headers  map[jose.HeaderKey]any
	embedJWK bool
}

// signPayload signs payload bytes as they are.
func (k *testKey) signPayload(t testing.TB, payload []byte, o signOpts) string {
	t.Helper()
	opts := &jose.SignerOptions{EmbedJWK: o.embedJWK}
	opts.WithType("JWT")
	if !o.noKid && !o.embedJWK {
		opts.WithHeader("kid", k.kid)
	}
	for h, v := range o.headers {
		opts.WithHeader(h, v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv}, opts)
	if err != nil {
		t.Fatal(err)
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

func (k *testKey) sign(t testing.TB, claims map[string]any, o ...signOpts) string {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	var opt signOpts
	if len(o) > 0 {
		opt = o[0]
	}
	return k.signPayload(t, b, opt)
}

// baseClaims is a valid claim set at t0.
func baseClaims() map[string]any {
	return map[string]any{
		"iss":       testIssuer,
		"aud":       testAudience,
		"sub":       "user-1",
		"client_id": "client-1",
		"tsid":      "session-1",
		"scope":     "read write",
		"iat":       t0.Add(-time.Minute).Unix(),
		"nbf":       t0.Add(-time.Minute).Unix(),
		"exp":       t0.Add(5 * time.Minute).Unix(),
	}
}

func with(m map[string]any, kv ...any) map[string]any {
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == deleteClaim {
			delete(m, k)
			continue
		}
		m[k] = kv[i+1]
	}
	return m
}

type deleteMarker struct{}

var deleteClaim = deleteMarker{}

func testConfig(clock *testutil.Clock) Config {
	return Config{
		Issuer:    testIssuer,
		Audiences: []string{testAudience, "https://other.example.com"},
		Leeway:    testLeeway,
		Now:       clock.Now,
	}
}

func newStaticVerifier(t testing.TB, clock *testutil.Clock, keys ...jose.JSONWebKey) *Verifier {
	t.Helper()
	v, err := NewWithKeySet(testConfig(clock), staticSet(t, keys...))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// b64 encodes a JSON value as a base64url segment.
func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// jwksServer serves a replaceable JWKS and counts requests.
type jwksServer struct {
	*httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	status   int
	body     []byte
	gate     chan struct{} // when non-nil, requests wait for it to close
}

func newJWKSServer(t testing.TB, body []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{status: http.StatusOK, body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		status, body, gate := s.status, s.body, s.gate
		s.mu.Unlock()
		if gate != nil {
			<-gate
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(status int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, body
}

func (s *jwksServer) setGate(g chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate = g
}

func newRemoteVerifier(t testing.TB, clock *testutil.Clock, url string) *Verifier {
	t.Helper()
	cfg := testConfig(clock)
	cfg.JWKSURL = url
	v, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
