package jwtauth

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// fuzzFixture is a verifier over a static set of one key per family, with
// its keys, built once per fuzz target.
type fuzzFixture struct {
	v    *Verifier
	keys []*testKey
}

func newFuzzFixture(f *testing.F) *fuzzFixture {
	clock := newClock()
	keys := []*testKey{
		newKey(f, jose.ES256, "ec"),
		newKey(f, jose.RS256, "rsa"),
		newKey(f, jose.EdDSA, "ed"),
	}
	var pubs []jose.JSONWebKey
	for _, k := range keys {
		pubs = append(pubs, k.public())
	}
	return &fuzzFixture{v: newStaticVerifier(f, clock, pubs...), keys: keys}
}

// checkAccepted enforces the contract on any accepted token.
func checkAccepted(t *testing.T, c Claims) {
	t.Helper()
	if c.Subject == "" || c.ClientID == "" || c.SessionID == "" {
		t.Fatalf("accepted token with empty identity: %+v", c)
	}
	if !t0.Before(c.ExpiresAt.Add(testLeeway)) {
		t.Fatalf("accepted an expired token: %+v", c)
	}
}

// FuzzVerify feeds arbitrary strings to Verify: it must not panic, must
// classify every rejection as ErrInvalidToken (the key set is static), and
// anything accepted must carry a subject, client ID and session ID.
func FuzzVerify(f *testing.F) {
	fx := newFuzzFixture(f)
	for _, k := range fx.keys {
		valid := k.sign(f, baseClaims())
		f.Add(valid)
		f.Add(k.sign(f, baseClaims(), signOpts{noKid: true}))
		f.Add(k.sign(f, with(baseClaims(), "client_id", deleteClaim, "azp", "a")))
		f.Add(k.sign(f, with(baseClaims(), "tsid", 1)))
		f.Add(k.sign(f, with(baseClaims(), "exp", t0.Add(-time.Hour).Unix())))
		f.Add(k.signPayload(f, []byte(`{"sub":"a","sub":"b"}`), signOpts{}))
		f.Add(k.sign(f, baseClaims(), signOpts{headers: map[jose.HeaderKey]any{"jku": "http://127.0.0.1:1/jwks"}}))
		f.Add(k.sign(f, baseClaims(), signOpts{headers: map[jose.HeaderKey]any{"crit": []string{"b64"}, "b64": false}}))
		parts := strings.Split(valid, ".")
		f.Add(parts[0] + "." + parts[1] + ".")
		f.Add(parts[0] + "." + parts[1] + "." + parts[2] + "." + parts[2] + "." + parts[2])
		f.Add(strings.Replace(valid, ".", "=.", 1))
	}
	f.Add("")
	f.Add(".")
	f.Add("..")
	f.Add(b64(`{"alg":"none"}`) + "." + b64(`{"sub":"a","client_id":"c","tsid":"s"}`) + ".")
	f.Add(b64(`{"alg":"HS256","kid":"rsa"}`) + "." + b64(`{}`) + ".AAAA")
	f.Add(b64(`{"alg":"ES256","kid":["ec"]}`) + "." + b64(`{}`) + ".AAAA")
	f.Add(b64(`{"alg":"ES256","jwk":{"kty":"oct","k":"AAAA"}}`) + "." + b64(`{}`) + ".AAAA")

	f.Fuzz(func(t *testing.T, raw string) {
		c, err := fx.v.Verify(t.Context(), raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("rejection does not wrap ErrInvalidToken: %v", err)
			}
			if c.Subject != "" || c.ClientID != "" || c.SessionID != "" || c.Scopes != nil {
				t.Fatalf("claims returned with an error: %+v", c)
			}
			return
		}
		checkAccepted(t, c)
	})
}

// FuzzVerifySignedPayload signs arbitrary payload bytes with a trusted key,
// so that the claim checks (duplicate detection, types, times) are fuzzed
// behind a valid signature, then cross-checks an accepted payload against
// encoding/json.
func FuzzVerifySignedPayload(f *testing.F) {
	fx := newFuzzFixture(f)
	ed := fx.keys[2]
	seed := func(m map[string]any) {
		b, err := json.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(baseClaims())
	seed(with(baseClaims(), "aud", []any{"x", testAudience}))
	seed(with(baseClaims(), "client_id", deleteClaim, "azp", "a", "scp", []string{"a", "b"}))
	seed(with(baseClaims(), "exp", 1.5e9, "nbf", "x"))
	f.Add([]byte(`{"iss":"https://as.example.com","aud":"https://api.example.com","sub":"u","client_id":"c","tsid":"s","exp":1900000000,"sub":"v"}`))
	f.Add([]byte(`{"iss":"https://as.example.com","aud":"https://api.example.com","sub":"u","client_id":"c","t\u0073id":"s","exp":1900000000}`))
	f.Add([]byte(`{"iss":"https://as.example.com","aud":"https://api.example.com","sub":"u","client_id":"c","tsid":"s","exp":1900000000}  `))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"a":{"b":[1,2,{"c":null}]}}`))

	f.Fuzz(func(t *testing.T, payload []byte) {
		tok := ed.signPayload(t, payload, signOpts{})
		c, err := fx.v.Verify(t.Context(), tok)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("rejection does not wrap ErrInvalidToken: %v", err)
			}
			return
		}
		checkAccepted(t, c)
		// What was accepted must read the same with encoding/json.
		var m map[string]any
		if err := json.Unmarshal(payload, &m); err != nil {
			t.Fatalf("accepted a payload encoding/json refuses: %v", err)
		}
		if m["sub"] != c.Subject || m["tsid"] != c.SessionID || m["iss"] != testIssuer {
			t.Fatalf("accepted claims %+v differ from encoding/json's reading %v", c, m)
		}
		if id, ok := m["client_id"].(string); ok && id != "" && id != c.ClientID {
			t.Fatalf("ClientID %q, client_id %q", c.ClientID, id)
		}
	})
}
