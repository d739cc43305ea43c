package idtoken

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/upstreamtoken"
)

const clientID = "our-client"

// Keys are generated once per test binary: RSA generation is slow.
var (
	keysOnce            sync.Once
	rsaKey, otherRSAKey *rsa.PrivateKey
	ecKey               *ecdsa.PrivateKey
	edKey               ed25519.PrivateKey
)

func keys(t *testing.T) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if otherRSAKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if _, edKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
	})
}

// issuer is a fake OIDC issuer serving discovery and a JWKS.
type issuer struct {
	srv            *httptest.Server
	discoveryHits  atomic.Int32
	jwksHits       atomic.Int32
	discoveryDown  atomic.Bool
	discoveryBlock chan struct{} // when non-nil, discovery waits for it to close
	advertisedIss  string        // when set, the discovery document's issuer
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	keys(t)
	is := &issuer{}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		is.discoveryHits.Add(1)
		if is.discoveryBlock != nil {
			<-is.discoveryBlock
		}
		if is.discoveryDown.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		iss := is.srv.URL
		if is.advertisedIss != "" {
			iss = is.advertisedIss
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                iss,
			"jwks_uri":                              is.srv.URL + "/jwks",
			"authorization_endpoint":                is.srv.URL + "/auth",
			"token_endpoint":                        is.srv.URL + "/token",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256", "EdDSA", "HS256", "none"},
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		is.jwksHits.Add(1)
		set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &rsaKey.PublicKey, KeyID: "rsa1", Algorithm: "RS256", Use: "sig"},
			{Key: &ecKey.PublicKey, KeyID: "ec1", Algorithm: "ES256", Use: "sig"},
			{Key: edKey.Public(), KeyID: "ed1", Algorithm: "EdDSA", Use: "sig"},
		}}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

func sign(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	var sk jose.SigningKey
	if kid != "" {
		sk = jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}
	} else {
		sk = jose.SigningKey{Algorithm: alg, Key: key}
	}
	signer, err := jose.NewSigner(sk, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func unsigned(t *testing.T, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(payload) + "."
}

var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// newClock returns a fake clock that reads epoch.
func newClock() *testutil.Clock { return testutil.NewClock(epoch) }

// checkNoLeak fails if err's text contains the raw token or any of its
// longer segments.
func checkNoLeak(t *testing.T, err error, raw string) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	if raw != "" && strings.Contains(msg, raw) {
		t.Errorf("error contains the raw token: %q", msg)
	}
	for _, seg := range strings.Split(raw, ".") {
		if len(seg) >= 16 && strings.Contains(msg, seg) {
			t.Errorf("error contains a token segment %q: %q", seg, msg)
		}
	}
}

func TestVerify(t *testing.T) {
	is := newIssuer(t)
	clock := newClock()
	v, err := New(map[string]Provider{"okta": {Issuer: is.srv.URL, ClientID: clientID}},
		WithHTTPClient(is.srv.Client()), WithNow(clock.Now))
	if err != nil {
		t.Fatal(err)
	}

	claims := func(edit func(map[string]any)) map[string]any {
		c := map[string]any{
			"iss": is.srv.URL,
			"sub": "user-42",
			"aud": clientID,
			"exp": epoch.Add(time.Hour).Unix(),
			"iat": epoch.Unix(),
		}
		if edit != nil {
			edit(c)
		}
		return c
	}
	hmacKey := []byte("0123456789abcdef0123456789abcdef")

	tests := []struct {
		name    string
		raw     string
		wantSub string
		wantErr error
	}{
		{name: "valid RS256", raw: sign(t, jose.RS256, rsaKey, "rsa1", claims(nil)), wantSub: "user-42"},
		{name: "valid ES256", raw: sign(t, jose.ES256, ecKey, "ec1", claims(nil)), wantSub: "user-42"},
		{name: "valid EdDSA", raw: sign(t, jose.EdDSA, edKey, "ed1", claims(nil)), wantSub: "user-42"},
		{name: "valid PS256 with the RSA key", raw: sign(t, jose.PS256, rsaKey, "rsa1", claims(nil)), wantSub: "user-42"},
		{name: "valid without kid", raw: sign(t, jose.RS256, rsaKey, "", claims(nil)), wantSub: "user-42"},
		{name: "aud array containing client", raw: sign(t, jose.RS256, rsaKey, "rsa1", claims(func(c map[string]any) {
			c["aud"] = []string{"someone-else", clientID}
		})), wantSub: "user-42"},
		{name: "expired within leeway", raw: sign(t, jose.RS256, rsaKey, "rsa1", claims(func(c map[string]any) {
			c["exp"] = epoch.Add(-30 * time.Second).Unix()
		})), wantSub: "user-42"},
		{name: "expired beyond leeway", raw: sign(t, jose.RS256, rsaKey, "rsa1", claims(func(c map[string]any) {
			c["exp"] = epoch.Add(-2 * time.Minute).Unix()
		})), wantErr: ErrInvalid},
		{name: "no exp", raw: sign(t, jose.RS256, rsaKey, "rsa1", claims(func(c map[string]any) {
			delete(c, "exp")
		})), wantErr: ErrInvalid},
		{name: "nbf far in the future", raw: sign(t, jose.RS256, rsaKey, "rsa1", claims(func(c map[string]any) {
			c["nbf"] = epoch.Add(30 * time.Minute).Unix()
		})), wantErr: ErrInvalid},
		{name: "wrong issuer", raw: sign(t, jose.RS256, rsaKey, "rsa1", claims(func(c map[string]any) {
			c["iss"] = "https://evil.example"
		})), wantErr: ErrInvalid},
		{name: "wrong audience", raw: sign(t, jose.RS256, rsaKey, "rsa1", claims(func(c map[string]any) {
			c["aud"] = "someone-else"
		})), wantErr: ErrInvalid},
		{name: "no sub", raw: sign(t, jose.RS256, rsaKey, "rsa1", claims(func(c map[string]any) {
			delete(c, "sub")
		})), wantErr: ErrInvalid},
		{name: "empty sub", raw: sign(t, jose.RS256, rsaKey, "rsa1", claims(func(c map[string]any) {
			c["sub"] = ""
		})), wantErr: ErrInvalid},
		{name: "other key, same kid", raw: sign(t, jose.RS256, otherRSAKey, "rsa1", claims(nil)), wantErr: ErrInvalid},
		{name: "other key, unknown kid", raw: sign(t, jose.RS256, otherRSAKey, "nope", claims(nil)), wantErr: ErrInvalid},
		{name: "other key, no kid", raw: sign(t, jose.RS256, otherRSAKey, "", claims(nil)), wantErr: ErrInvalid},
		{name: "HS256", raw: sign(t, jose.HS256, hmacKey, "rsa1", claims(nil)), wantErr: ErrInvalid},
		{name: "alg none", raw: unsigned(t, claims(nil)), wantErr: ErrInvalid},
		{name: "tampered payload", raw: func() string {
			good := sign(t, jose.RS256, rsaKey, "rsa1", claims(nil))
			other := sign(t, jose.RS256, rsaKey, "rsa1", claims(func(c map[string]any) { c["sub"] = "admin" }))
			g, o := strings.Split(good, "."), strings.Split(other, ".")
			return g[0] + "." + o[1] + "." + g[2]
		}(), wantErr: ErrInvalid},
		{name: "not a JWT", raw: "not-a-jwt", wantErr: ErrInvalid},
		{name: "empty", raw: "", wantErr: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub, err := v.Verify(context.Background(), "okta", tt.raw)
			checkNoLeak(t, err, tt.raw)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if sub != tt.wantSub {
					t.Fatalf("sub = %q, want %q", sub, tt.wantSub)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if errors.Is(err, upstreamtoken.ErrUpstreamUnavailable) {
				t.Fatalf("err = %v, must not be ErrUpstreamUnavailable", err)
			}
			if sub != "" {
				t.Fatalf("sub = %q on error", sub)
			}
			t.Logf("%v", err)
		})
	}
	if n := is.discoveryHits.Load(); n != 1 {
		t.Errorf("discovery hits = %d, want 1 (cached)", n)
	}
}

func TestDiscoveryRetry(t *testing.T) {
	is := newIssuer(t)
	is.discoveryDown.Store(true)
	clock := newClock()
	v, err := New(map[string]Provider{"okta": {Issuer: is.srv.URL, ClientID: clientID}},
		WithHTTPClient(is.srv.Client()), WithNow(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	raw := sign(t, jose.RS256, rsaKey, "rsa1", map[string]any{
		"iss": is.srv.URL, "sub": "u", "aud": clientID, "exp": epoch.Add(time.Hour).Unix(),
	})

	_, err = v.Verify(context.Background(), "okta", raw)
	if !errors.Is(err, upstreamtoken.ErrUpstreamUnavailable) || errors.Is(err, ErrInvalid) {
		t.Fatalf("discovery down: err = %v, want ErrUpstreamUnavailable only", err)
	}
	checkNoLeak(t, err, raw)
	t.Logf("%v", err)

	// Back up, but within the retry spacing: the failure is remembered and
	// the issuer is not asked again.
	is.discoveryDown.Store(false)
	clock.Advance(4 * time.Second)
	_, err = v.Verify(context.Background(), "okta", raw)
	if !errors.Is(err, upstreamtoken.ErrUpstreamUnavailable) {
		t.Fatalf("within retry interval: err = %v, want ErrUpstreamUnavailable", err)
	}
	if n := is.discoveryHits.Load(); n != 1 {
		t.Fatalf("discovery hits = %d, want 1 within the retry interval", n)
	}

	clock.Advance(time.Second)
	sub, err := v.Verify(context.Background(), "okta", raw)
	if err != nil || sub != "u" {
		t.Fatalf("after retry interval: sub, err = %q, %v", sub, err)
	}
	for range 3 {
		if _, err := v.Verify(context.Background(), "okta", raw); err != nil {
			t.Fatal(err)
		}
	}
	if n := is.discoveryHits.Load(); n != 2 {
		t.Fatalf("discovery hits = %d, want 2", n)
	}
}

func TestDiscoveryRetryInterval(t *testing.T) {
	// A spacing longer than the default one holds off the retry for all of
	// its length, and not a moment more.
	const spacing = time.Minute
	is := newIssuer(t)
	is.discoveryDown.Store(true)
	clock := newClock()
	v, err := New(map[string]Provider{"okta": {Issuer: is.srv.URL, ClientID: clientID}},
		WithHTTPClient(is.srv.Client()), WithNow(clock.Now), withRetryInterval(spacing))
	if err != nil {
		t.Fatal(err)
	}
	raw := sign(t, jose.RS256, rsaKey, "rsa1", map[string]any{
		"iss": is.srv.URL, "sub": "u", "aud": clientID, "exp": epoch.Add(time.Hour).Unix(),
	})
	if _, err := v.Verify(context.Background(), "okta", raw); !errors.Is(err, upstreamtoken.ErrUpstreamUnavailable) {
		t.Fatalf("err = %v, want ErrUpstreamUnavailable", err)
	}
	is.discoveryDown.Store(false)
	clock.Advance(spacing - time.Nanosecond)
	if _, err := v.Verify(context.Background(), "okta", raw); !errors.Is(err, upstreamtoken.ErrUpstreamUnavailable) {
		t.Fatalf("just within the spacing: err = %v, want ErrUpstreamUnavailable", err)
	}
	clock.Advance(time.Nanosecond)
	if sub, err := v.Verify(context.Background(), "okta", raw); err != nil || sub != "u" {
		t.Fatalf("once the spacing has passed: sub, err = %q, %v", sub, err)
	}
	if n := is.discoveryHits.Load(); n != 2 {
		t.Errorf("discovery hits = %d, want 2", n)
	}
}

func TestDiscoveryProblems(t *testing.T) {
	t.Run("issuer mismatch", func(t *testing.T) {
		is := newIssuer(t)
		is.advertisedIss = "https://someone-else.example"
		v, err := New(map[string]Provider{"p": {Issuer: is.srv.URL, ClientID: clientID}}, WithHTTPClient(is.srv.Client()))
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(context.Background(), "p", "x.y.z")
		if !errors.Is(err, upstreamtoken.ErrUpstreamUnavailable) {
			t.Fatalf("err = %v, want ErrUpstreamUnavailable (our configuration, not the token)", err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		v, err := New(map[string]Provider{"p": {Issuer: url, ClientID: clientID}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(context.Background(), "p", "x.y.z")
		if !errors.Is(err, upstreamtoken.ErrUpstreamUnavailable) {
			t.Fatalf("err = %v, want ErrUpstreamUnavailable", err)
		}
	})
}

func TestCallerCancelledDuringDiscovery(t *testing.T) {
	is := newIssuer(t)
	is.discoveryBlock = make(chan struct{})
	clock := newClock()
	v, err := New(map[string]Provider{"p": {Issuer: is.srv.URL, ClientID: clientID}},
		WithHTTPClient(is.srv.Client()), WithNow(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	raw := sign(t, jose.RS256, rsaKey, "rsa1", map[string]any{
		"iss": is.srv.URL, "sub": "u", "aud": clientID, "exp": epoch.Add(time.Hour).Unix(),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = v.Verify(ctx, "p", raw)
	if !errors.Is(err, upstreamtoken.ErrUpstreamUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrUpstreamUnavailable and DeadlineExceeded", err)
	}
	// The discovery goes on without the caller; a later caller joins it.
	close(is.discoveryBlock)
	if sub, err := v.Verify(context.Background(), "p", raw); err != nil || sub != "u" {
		t.Fatalf("sub, err = %q, %v", sub, err)
	}
	if n := is.discoveryHits.Load(); n != 1 {
		t.Fatalf("discovery hits = %d, want 1", n)
	}
}

// handlerTransport answers HTTP requests with a handler in the caller's
// goroutine, with no network: inside a synctest bubble, a caller waiting for
// the handler counts as blocked.
type handlerTransport struct{ h http.Handler }

func (ht handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	ht.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

func TestConcurrentShareDiscovery(t *testing.T) {
	is := newIssuer(t)
	synctest.Test(t, func(t *testing.T) {
		is.discoveryBlock = make(chan struct{})
		client := &http.Client{Transport: handlerTransport{is.srv.Config.Handler}}
		v, err := New(map[string]Provider{"p": {Issuer: is.srv.URL, ClientID: clientID}},
			WithHTTPClient(client), WithNow(newClock().Now))
		if err != nil {
			t.Fatal(err)
		}
		raw := sign(t, jose.ES256, ecKey, "ec1", map[string]any{
			"iss": is.srv.URL, "sub": "u", "aud": clientID, "exp": epoch.Add(time.Hour).Unix(),
		})
		const n = 50
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				sub, err := v.Verify(context.Background(), "p", raw)
				if err == nil && sub != "u" {
					err = errors.New("wrong sub " + sub)
				}
				errs <- err
			})
		}
		// Every caller is now waiting, and the issuer has been asked once.
		synctest.Wait()
		if h := is.discoveryHits.Load(); h != 1 {
			t.Errorf("discovery hits while %d callers wait = %d, want 1", n, h)
		}
		close(is.discoveryBlock)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if h := is.discoveryHits.Load(); h != 1 {
			t.Errorf("discovery hits = %d, want 1", h)
		}
		if h := is.jwksHits.Load(); h != 1 {
			t.Errorf("JWKS hits = %d, want 1", h)
		}
	})
}

func TestJWKSURLSkipsDiscovery(t *testing.T) {
	is := newIssuer(t)
	clock := newClock()
	v, err := New(map[string]Provider{"p": {Issuer: is.srv.URL, ClientID: clientID, JWKSURL: is.srv.URL + "/jwks"}},
		WithHTTPClient(is.srv.Client()), WithNow(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	raw := sign(t, jose.RS256, rsaKey, "rsa1", map[string]any{
		"iss": is.srv.URL, "sub": "u", "aud": clientID, "exp": epoch.Add(time.Hour).Unix(),
	})
	if sub, err := v.Verify(context.Background(), "p", raw); err != nil || sub != "u" {
		t.Fatalf("sub, err = %q, %v", sub, err)
	}
	if n := is.discoveryHits.Load(); n != 0 {
		t.Fatalf("discovery hits = %d, want 0", n)
	}
	if n := is.jwksHits.Load(); n != 1 {
		t.Fatalf("JWKS hits = %d, want 1", n)
	}
}

func TestJWKSUnreachable(t *testing.T) {
	keys(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	jwksURL := srv.URL + "/jwks"
	srv.Close()
	clock := newClock()
	const iss = "https://issuer.example"
	v, err := New(map[string]Provider{"p": {Issuer: iss, ClientID: clientID, JWKSURL: jwksURL}}, WithNow(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	raw := sign(t, jose.RS256, rsaKey, "rsa1", map[string]any{
		"iss": iss, "sub": "u", "aud": clientID, "exp": epoch.Add(time.Hour).Unix(),
	})
	_, err = v.Verify(context.Background(), "p", raw)
	if !errors.Is(err, upstreamtoken.ErrUpstreamUnavailable) || errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrUpstreamUnavailable only", err)
	}
	checkNoLeak(t, err, raw)

	// A JWKS endpoint that answers 500 counts as unavailable too.
	srv500 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, strings.Repeat("oops ", 1000), http.StatusInternalServerError)
	}))
	defer srv500.Close()
	v, err = New(map[string]Provider{"p": {Issuer: iss, ClientID: clientID, JWKSURL: srv500.URL}}, WithNow(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), "p", raw)
	if !errors.Is(err, upstreamtoken.ErrUpstreamUnavailable) {
		t.Fatalf("err = %v, want ErrUpstreamUnavailable", err)
	}
	if len(err.Error()) > 2*maxDetail {
		t.Fatalf("error text not truncated: %d bytes", len(err.Error()))
	}
}

func TestHas(t *testing.T) {
	v, err := New(map[string]Provider{
		"okta":   {Issuer: "https://okta.example", ClientID: "c"},
		"github": {},
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"okta": true, "github": false, "unknown": false} {
		if got := v.Has(name); got != want {
			t.Errorf("Has(%q) = %v, want %v", name, got, want)
		}
	}
	for _, name := range []string{"github", "unknown"} {
		_, err := v.Verify(context.Background(), name, "a.b.c")
		if err == nil || errors.Is(err, ErrInvalid) || errors.Is(err, upstreamtoken.ErrUpstreamUnavailable) {
			t.Errorf("Verify(%q): err = %v, want a configuration error", name, err)
		}
	}
}

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name    string
		p       Provider
		wantErr string
	}{
		{name: "https", p: Provider{Issuer: "https://a.example", ClientID: "c"}},
		{name: "http", p: Provider{Issuer: "http://localhost:5556/dex", ClientID: "c"}},
		{name: "with jwks", p: Provider{Issuer: "https://a.example", ClientID: "c", JWKSURL: "https://a.example/keys"}},
		{name: "no issuer", p: Provider{ClientID: "c"}},
		{name: "relative issuer", p: Provider{Issuer: "/a", ClientID: "c"}, wantErr: "issuer must be"},
		{name: "ftp issuer", p: Provider{Issuer: "ftp://a.example", ClientID: "c"}, wantErr: "issuer must be"},
		{name: "hostless issuer", p: Provider{Issuer: "https://", ClientID: "c"}, wantErr: "issuer must be"},
		{name: "no client", p: Provider{Issuer: "https://a.example"}, wantErr: "client_id is required"},
		{name: "bad jwks", p: Provider{Issuer: "https://a.example", ClientID: "c", JWKSURL: "keys.json"}, wantErr: "jwks_url must be"},
		{name: "jwks without issuer", p: Provider{JWKSURL: "https://a.example/keys"}, wantErr: "issuer is not"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(map[string]Provider{"p": tt.p})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}

	// Every problem is reported at once.
	_, err := New(map[string]Provider{
		"a": {Issuer: "nope", ClientID: "c"},
		"b": {Issuer: "https://b.example"},
	})
	if err == nil || !strings.Contains(err.Error(), `"a"`) || !strings.Contains(err.Error(), `"b"`) {
		t.Fatalf("err = %v, want both providers named", err)
	}
}

func TestHTTPClientTimeoutDefault(t *testing.T) {
	c := &http.Client{}
	v, err := New(nil, WithHTTPClient(c))
	if err != nil {
		t.Fatal(err)
	}
	if v.opts.client.Timeout != defaultHTTPTimeout || c.Timeout != 0 {
		t.Fatalf("client time-out = %v (caller's %v)", v.opts.client.Timeout, c.Timeout)
	}
}
