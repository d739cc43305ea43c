package jwtauth

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/extauthz/extauthz/upstreamtoken"
)

func TestSessionIDClaimIsUpstreamtokens(t *testing.T) {
	// The session ID is read from the claim the library contract names,
	// and from no other spelling of it.
	key := upstreamtoken.TokenSessionIDClaimKey
	c, err := decodeClaims([]byte(`{"` + key + `":"s1","` + strings.ToUpper(key) + `":"s2"}`))
	if err != nil || c.SessionID != "s1" {
		t.Fatalf("decodeClaims = %+v, %v; want the session ID from claim %q", c, err, key)
	}
}

func TestVerifyEachAlgorithm(t *testing.T) {
	for _, alg := range allowedAlgs {
		t.Run(string(alg), func(t *testing.T) {
			clock := newClock()
			k := newKey(t, alg, "key-"+string(alg))
			v := newStaticVerifier(t, clock, k.public())
			got, err := v.Verify(t.Context(), k.sign(t, baseClaims()))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := Claims{
				Subject:   "user-1",
				ClientID:  "client-1",
				SessionID: "session-1",
				Scopes:    []string{"read", "write"},
				ExpiresAt: time.Unix(t0.Add(5*time.Minute).Unix(), 0).UTC(),
			}
			if got.Subject != want.Subject || got.ClientID != want.ClientID || got.SessionID != want.SessionID ||
				!slices.Equal(got.Scopes, want.Scopes) || !got.ExpiresAt.Equal(want.ExpiresAt) {
				t.Fatalf("claims = %+v, want %+v", got, want)
			}
		})
	}
}

func TestVerifyClaims(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256, "k1")
	v := newStaticVerifier(t, clock, k.public())
	unix := func(d time.Duration) int64 { return t0.Add(d).Unix() }

	tests := []struct {
		name    string
		claims  map[string]any
		wantErr error // nil: accepted
		check   func(t *testing.T, c Claims)
	}{
		{name: "valid", claims: baseClaims()},
		{name: "expired beyond leeway", claims: with(baseClaims(), "exp", unix(-31*time.Second)), wantErr: errExpired},
		{name: "expired exactly at leeway", claims: with(baseClaims(), "exp", unix(-testLeeway)), wantErr: errExpired},
		{name: "expired within leeway", claims: with(baseClaims(), "exp", unix(-10*time.Second))},
		{name: "exp missing", claims: with(baseClaims(), "exp", deleteClaim), wantErr: errExpMissing},
		{name: "exp string", claims: with(baseClaims(), "exp", fmt.Sprint(unix(time.Hour))), wantErr: errClaimsJSON},
		{name: "exp null is absent", claims: with(baseClaims(), "exp", nil), wantErr: errExpMissing},
		{name: "exp negative", claims: with(baseClaims(), "exp", -5), wantErr: errClaimsJSON},
		{name: "exp beyond year 9999", claims: with(baseClaims(), "exp", 1e15), wantErr: errClaimsJSON},
		{name: "exp fractional, read to the second below", claims: with(baseClaims(), "exp", float64(unix(time.Hour))+0.5), check: func(t *testing.T, c Claims) {
			if want := t0.Add(time.Hour); !c.ExpiresAt.Equal(want) {
				t.Errorf("ExpiresAt = %v, want %v", c.ExpiresAt, want)
			}
		}},
		{name: "nbf in the future", claims: with(baseClaims(), "nbf", unix(time.Minute)), wantErr: errNotYetValid},
		{name: "nbf within leeway", claims: with(baseClaims(), "nbf", unix(20*time.Second))},
		{name: "nbf absent", claims: with(baseClaims(), "nbf", deleteClaim)},
		{name: "nbf string", claims: with(baseClaims(), "nbf", "soon"), wantErr: errClaimsJSON},
		{name: "iat in the future", claims: with(baseClaims(), "iat", unix(time.Minute)), wantErr: errIssuedInFuture},
		{name: "iat within leeway", claims: with(baseClaims(), "iat", unix(20*time.Second))},
		{name: "iat bool", claims: with(baseClaims(), "iat", true), wantErr: errClaimsJSON},
		{name: "wrong issuer", claims: with(baseClaims(), "iss", "https://evil.example.com"), wantErr: errIssuer},
		{name: "issuer with trailing slash", claims: with(baseClaims(), "iss", testIssuer+"/"), wantErr: errIssuer},
		{name: "issuer missing", claims: with(baseClaims(), "iss", deleteClaim), wantErr: errIssuer},
		{name: "issuer not a string", claims: with(baseClaims(), "iss", []string{testIssuer}), wantErr: errClaimsJSON},
		{name: "aud string, second configured audience", claims: with(baseClaims(), "aud", "https://other.example.com")},
		{name: "aud array containing ours", claims: with(baseClaims(), "aud", []string{"x", testAudience})},
		{name: "aud array without ours", claims: with(baseClaims(), "aud", []string{"x", "y"}), wantErr: errAudience},
		{name: "aud empty array", claims: with(baseClaims(), "aud", []string{}), wantErr: errAudience},
		{name: "aud wrong string", claims: with(baseClaims(), "aud", "https://api.example.com/"), wantErr: errAudience},
		{name: "aud array with a non-string", claims: with(baseClaims(), "aud", []any{testAudience, 7}), wantErr: errAudience},
		{name: "aud number", claims: with(baseClaims(), "aud", 1), wantErr: errAudience},
		{name: "aud missing", claims: with(baseClaims(), "aud", deleteClaim), wantErr: errAudience},
		{name: "tsid missing", claims: with(baseClaims(), "tsid", deleteClaim), wantErr: errSessionID},
		{name: "tsid number", claims: with(baseClaims(), "tsid", 12345), wantErr: errSessionID},
		{name: "tsid empty", claims: with(baseClaims(), "tsid", ""), wantErr: errSessionID},
		{name: "tsid null", claims: with(baseClaims(), "tsid", nil), wantErr: errSessionID},
		{name: "tsid array", claims: with(baseClaims(), "tsid", []string{"session-1"}), wantErr: errSessionID},
		{name: "tsid object", claims: with(baseClaims(), "tsid", map[string]any{"id": "session-1"}), wantErr: errSessionID},
		{name: "TSID upper case is not tsid", claims: with(baseClaims(), "tsid", deleteClaim, "TSID", "session-1"), wantErr: errSessionID},
		{name: "sub missing", claims: with(baseClaims(), "sub", deleteClaim), wantErr: errSubject},
		{name: "sub number", claims: with(baseClaims(), "sub", 42), wantErr: errSubject},
		{name: "sub empty", claims: with(baseClaims(), "sub", ""), wantErr: errSubject},
		{name: "SUB upper case is not sub", claims: with(baseClaims(), "sub", deleteClaim, "SUB", "user-1"), wantErr: errSubject},
		{name: "azp fallback", claims: with(baseClaims(), "client_id", deleteClaim, "azp", "client-azp"), check: func(t *testing.T, c Claims) {
			if c.ClientID != "client-azp" {
				t.Errorf("ClientID = %q, want client-azp", c.ClientID)
			}
		}},
		{name: "client_id wins over azp", claims: with(baseClaims(), "azp", "client-azp"), check: func(t *testing.T, c Claims) {
			if c.ClientID != "client-1" {
				t.Errorf("ClientID = %q, want client-1", c.ClientID)
			}
		}},
		{name: "client id missing", claims: with(baseClaims(), "client_id", deleteClaim), wantErr: errClientID},
		{name: "client_id number", claims: with(baseClaims(), "client_id", 7), wantErr: errClientID},
		{name: "client_id number is not coerced even with azp", claims: with(baseClaims(), "client_id", 7, "azp", "client-azp"), wantErr: errClientID},
		{name: "azp number", claims: with(baseClaims(), "client_id", deleteClaim, "azp", 7), wantErr: errClientID},
		{name: "client_id empty, azp empty", claims: with(baseClaims(), "client_id", "", "azp", ""), wantErr: errClientID},
		{name: "scope absent", claims: with(baseClaims(), "scope", deleteClaim), check: func(t *testing.T, c Claims) {
			if len(c.Scopes) != 0 {
				t.Errorf("Scopes = %q, want none", c.Scopes)
			}
		}},
		{name: "scope number", claims: with(baseClaims(), "scope", 1), wantErr: errScope},
		{name: "scope array is not allowed", claims: with(baseClaims(), "scope", []string{"a"}), wantErr: errScope},
		{name: "scp array", claims: with(baseClaims(), "scope", deleteClaim, "scp", []string{"a", "b"}), check: func(t *testing.T, c Claims) {
			if !slices.Equal(c.Scopes, []string{"a", "b"}) {
				t.Errorf("Scopes = %q", c.Scopes)
			}
		}},
		{name: "scp string", claims: with(baseClaims(), "scope", deleteClaim, "scp", "a  b"), check: func(t *testing.T, c Claims) {
			if !slices.Equal(c.Scopes, []string{"a", "b"}) {
				t.Errorf("Scopes = %q", c.Scopes)
			}
		}},
		{name: "scp array with a number", claims: with(baseClaims(), "scope", deleteClaim, "scp", []any{"a", 1}), wantErr: errScope},
		{name: "scp object", claims: with(baseClaims(), "scope", deleteClaim, "scp", map[string]any{}), wantErr: errScope},
		{name: "scope wins over scp", claims: with(baseClaims(), "scp", []string{"x"}), check: func(t *testing.T, c Claims) {
			if !slices.Equal(c.Scopes, []string{"read", "write"}) {
				t.Errorf("Scopes = %q", c.Scopes)
			}
		}},
		{name: "client_id null counts as absent", claims: with(baseClaims(), "client_id", nil, "azp", "client-azp"), check: func(t *testing.T, c Claims) {
			if c.ClientID != "client-azp" {
				t.Errorf("ClientID = %q, want client-azp", c.ClientID)
			}
		}},
		{name: "jti of another type is not read", claims: with(baseClaims(), "jti", 7)},
		{name: "unknown claims are ignored", claims: with(baseClaims(), "extra", map[string]any{"nested": []any{1, "x", nil}}, "jti", "j-1")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := k.sign(t, tc.claims)
			c, err := v.Verify(t.Context(), tok)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if tc.check != nil {
					tc.check(t, c)
				}
				return
			}
			if !errors.Is(err, ErrInvalidToken) || !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify error = %v, want %v", err, tc.wantErr)
			}
			if c.Subject != "" || c.SessionID != "" || c.ClientID != "" {
				t.Fatalf("claims returned with an error: %+v", c)
			}
		})
	}
}

func TestVerifyRawPayload(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256, "k1")
	v := newStaticVerifier(t, clock, k.public())
	exp := t0.Add(time.Hour).Unix()
	good := fmt.Sprintf(`"iss":%q,"aud":%q,"sub":"user-1","client_id":"c","tsid":"s","exp":%d`, testIssuer, testAudience, exp)
	var many strings.Builder
	for i := range 40 {
		fmt.Fprintf(&many, `"x%d":%d,`, i, i)
	}

	tests := []struct {
		name    string
		payload string
		wantErr error
	}{
		{name: "valid", payload: "{" + good + "}"},
		{name: "valid with whitespace", payload: " {\n" + good + "\n} \n"},
		{name: "duplicate sub", payload: "{" + good + `,"sub":"admin"}`, wantErr: errDuplicateClaim},
		{name: "duplicate sub, escaped spelling", payload: "{" + good + `,"s\u0075b":"admin"}`, wantErr: errDuplicateClaim},
		{name: "duplicate tsid", payload: `{"tsid":"other",` + good + "}", wantErr: errDuplicateClaim},
		{name: "duplicate exp", payload: "{" + good + fmt.Sprintf(`,"exp":%d}`, exp+1000), wantErr: errDuplicateClaim},
		{name: "duplicate unknown claim", payload: `{"foo":1,` + good + `,"foo":2}`, wantErr: errDuplicateClaim},
		{name: "many claims, duplicate late", payload: "{" + many.String() + good + `,"x3":1}`, wantErr: errDuplicateClaim},
		{name: "many claims, duplicate of the last linear one", payload: "{" + many.String() + good + `,"x31":1}`, wantErr: errDuplicateClaim},
		{name: "many claims, no duplicate", payload: "{" + many.String() + good + "}"},
		{name: "brackets and quotes inside strings", payload: `{"x":"}\"]{,","y":["]","\\"],` + good + `,"z":{"a":"}"}}`},
		{name: "escaped claim values", payload: "{" + strings.Replace(good, `"sub":"user-1"`, `"sub":"user\u002d1"`, 1) + "}"},
		{name: "duplicates nested deeper are not top-level claims", payload: "{" + good + `,"obj":{"a":1,"a":2}}`},
		{name: "array payload", payload: `[{` + good + `}]`, wantErr: errClaimsJSON},
		{name: "string payload", payload: `"hello"`, wantErr: errClaimsJSON},
		{name: "empty payload object", payload: `{}`, wantErr: errIssuer},
		{name: "trailing object", payload: "{" + good + "}{}", wantErr: errClaimsJSON},
		{name: "trailing garbage", payload: "{" + good + "}x", wantErr: errClaimsJSON},
		{name: "truncated", payload: "{" + good, wantErr: errClaimsJSON},
		{name: "invalid UTF-8", payload: "{" + good + `,"x":"` + "\xff" + `"}`, wantErr: errClaimsJSON},
		{name: "not JSON", payload: "sub=user-1", wantErr: errClaimsJSON},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := k.signPayload(t, []byte(tc.payload), signOpts{})
			_, err := v.Verify(t.Context(), tok)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify error = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestVerifyMalformedAndRefusedForms(t *testing.T) {
	clock := newClock()
	rk := newKey(t, jose.RS256, "rsa-1")
	ek := newKey(t, jose.ES256, "ec-1")
	v := newStaticVerifier(t, clock, rk.public(), ek.public())
	valid := ek.sign(t, baseClaims())
	if _, err := v.Verify(t.Context(), valid); err != nil {
		t.Fatalf("baseline: %v", err)
	}
	parts := strings.Split(valid, ".")
	payload := parts[1]

	// HS256 "signed" with the RSA public key, as PEM and as DER.
	der, err := x509.MarshalPKIXPublicKey(rk.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	hsToken := func(secret []byte, kid string) string {
		opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid)
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, opts)
		if err != nil {
			t.Fatal(err)
		}
		obj, err := s.Sign([]byte(`{"iss":"` + testIssuer + `"}`))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := obj.CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	// A non-canonical spelling of the ES256 signature segment (86 characters,
	// so its last character carries 4 unused bits): the same bytes, so the
	// JWS library alone would accept it.
	sig := parts[2]
	if len(sig)%4 != 2 {
		t.Fatalf("ES256 signature segment has %d characters", len(sig))
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	nonCanonical := parts[0] + "." + payload + "." + sig[:len(sig)-1] + string(alphabet[strings.IndexByte(alphabet, sig[len(sig)-1])|1])
	if jws, err := jose.ParseSignedCompact(nonCanonical, allowedAlgs); err != nil {
		t.Fatalf("go-jose refuses the non-canonical token itself: %v", err)
	} else if _, err := jws.Verify(ek.priv.Public()); err != nil {
		t.Fatalf("go-jose does not verify the non-canonical token itself: %v", err)
	}
	rsaTok := rk.sign(t, baseClaims())

	tests := []struct {
		name    string
		raw     string
		wantErr error
	}{
		{name: "empty", raw: "", wantErr: errEmpty},
		{name: "one part", raw: parts[0], wantErr: errMalformed},
		{name: "two parts", raw: parts[0] + "." + parts[1], wantErr: errMalformed},
		{name: "four parts", raw: valid + ".AAAA", wantErr: errMalformed},
		{name: "JWE five parts", raw: b64(`{"alg":"RSA-OAEP","enc":"A256GCM","kid":"rsa-1"}`) + ".AAAA.AAAA.AAAA.AAAA", wantErr: errEncrypted},
		{name: "empty signature", raw: parts[0] + "." + parts[1] + ".", wantErr: errMalformed},
		{name: "empty payload", raw: parts[0] + ".." + parts[2], wantErr: errMalformed},
		{name: "padding", raw: parts[0] + "." + parts[1] + "==." + parts[2], wantErr: errMalformed},
		{name: "standard base64 alphabet", raw: parts[0] + "." + parts[1] + "+/." + parts[2], wantErr: errMalformed},
		{name: "embedded newline", raw: parts[0] + "." + parts[1][:4] + "\n" + parts[1][4:] + "." + parts[2], wantErr: errMalformed},
		{name: "embedded carriage return", raw: parts[0] + "\r." + parts[1] + "." + parts[2], wantErr: errMalformed},
		{name: "leading space", raw: " " + valid, wantErr: errMalformed},
		{name: "bearer prefix", raw: "Bearer " + valid, wantErr: errMalformed},
		{name: "impossible base64 length", raw: parts[0] + ".AAAAA." + parts[2], wantErr: errMalformed},
		{name: "header not JSON", raw: b64("not json") + "." + payload + "." + parts[2], wantErr: errMalformed},
		{name: "alg none, empty signature", raw: b64(`{"alg":"none"}`) + "." + payload + ".", wantErr: errMalformed},
		{name: "alg none, with a signature", raw: b64(`{"alg":"none"}`) + "." + payload + ".AAAA", wantErr: errAlg},
		{name: "alg None", raw: b64(`{"alg":"None","kid":"ec-1"}`) + "." + payload + ".AAAA", wantErr: errAlg},
		{name: "alg missing", raw: b64(`{"kid":"ec-1"}`) + "." + payload + "." + parts[2], wantErr: errAlg},
		{name: "HS256 keyed with the RSA public key PEM", raw: hsToken(pemBytes, "rsa-1"), wantErr: errAlg},
		{name: "HS256 keyed with the RSA public key DER", raw: hsToken(der, "rsa-1"), wantErr: errAlg},
		{name: "ES256 header on an RSA kid", raw: b64(`{"alg":"ES256","kid":"rsa-1"}`) + "." + payload + "." + parts[2], wantErr: errUnknownKey},
		{name: "signature from another token", raw: rsaTok[:strings.LastIndexByte(rsaTok, '.')] + "." + parts[2], wantErr: errSignature},
		{name: "non-canonical base64 trailing bits", raw: nonCanonical, wantErr: errMalformed},
		{name: "tampered payload", raw: parts[0] + "." + b64(`{"iss":"`+testIssuer+`","sub":"admin"}`) + "." + parts[2], wantErr: errSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(t.Context(), tc.raw)
			if !errors.Is(err, ErrInvalidToken) || !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify error = %v, want %v", err, tc.wantErr)
			}
			if c.Subject != "" {
				t.Fatalf("claims returned with an error: %+v", c)
			}
		})
	}
}

func TestVerifySizeBound(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256, "k1")
	cfg := testConfig(clock)
	cfg.MaxTokenBytes = 600
	v, err := NewWithKeySet(cfg, staticSet(t, k.public()))
	if err != nil {
		t.Fatal(err)
	}
	small := k.sign(t, baseClaims())
	if len(small) > 600 {
		t.Fatalf("baseline token is %d bytes", len(small))
	}
	if _, err := v.Verify(t.Context(), small); err != nil {
		t.Fatalf("small token: %v", err)
	}
	big := k.sign(t, with(baseClaims(), "pad", strings.Repeat("x", 600)))
	if _, err := v.Verify(t.Context(), big); !errors.Is(err, errTooLarge) {
		t.Fatalf("big token: %v, want %v", err, errTooLarge)
	}

	// Default bound: 16 KiB.
	v = newStaticVerifier(t, clock, k.public())
	huge := k.sign(t, with(baseClaims(), "pad", strings.Repeat("x", 16<<10)))
	if _, err := v.Verify(t.Context(), huge); !errors.Is(err, errTooLarge) {
		t.Fatalf("huge token: %v, want %v", err, errTooLarge)
	}
	if _, err := v.Verify(t.Context(), strings.Repeat("A", 1<<20)); !errors.Is(err, errTooLarge) {
		t.Fatalf("1 MiB garbage: %v, want %v", err, errTooLarge)
	}
}

func TestVerifyHeaders(t *testing.T) {
	// A server that must never be contacted.
	var contacted atomic.Int64
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		contacted.Add(1)
		http.Error(w, "no", http.StatusTeapot)
	}))
	defer evil.Close()

	clock := newClock()
	k := newKey(t, jose.ES256, "k1")
	attacker := newKey(t, jose.ES256, "attacker")
	v := newStaticVerifier(t, clock, k.public())

	tests := []struct {
		name    string
		tok     string
		wantErr error
	}{
		{name: "jku ignored on a valid token", tok: k.sign(t, baseClaims(), signOpts{headers: map[jose.HeaderKey]any{"jku": evil.URL + "/jwks"}})},
		{name: "x5u ignored on a valid token", tok: k.sign(t, baseClaims(), signOpts{headers: map[jose.HeaderKey]any{"x5u": evil.URL + "/cert"}})},
		{name: "jku with an attacker kid", tok: attacker.sign(t, baseClaims(), signOpts{headers: map[jose.HeaderKey]any{"jku": evil.URL + "/jwks"}}), wantErr: errUnknownKey},
		{name: "x5u with an attacker kid", tok: attacker.sign(t, baseClaims(), signOpts{headers: map[jose.HeaderKey]any{"x5u": evil.URL + "/cert"}}), wantErr: errUnknownKey},
		{name: "embedded jwk of the attacker, no kid", tok: attacker.sign(t, baseClaims(), signOpts{embedJWK: true}), wantErr: errSignature},
		{name: "embedded jwk of the attacker with its kid", tok: attacker.sign(t, baseClaims(), signOpts{embedJWK: true, headers: map[jose.HeaderKey]any{"kid": "attacker"}}), wantErr: errUnknownKey},
		{name: "crit header", tok: k.sign(t, baseClaims(), signOpts{headers: map[jose.HeaderKey]any{"crit": []string{"exp"}, "exp": 1}}), wantErr: errCritical},
		{name: "no kid, single key of the type", tok: k.sign(t, baseClaims(), signOpts{noKid: true})},
		{name: "typ other than JWT is not checked", tok: k.sign(t, baseClaims(), signOpts{headers: map[jose.HeaderKey]any{"typ": "at+jwt"}})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(t.Context(), tc.tok)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidToken) || !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify error = %v, want %v", err, tc.wantErr)
			}
		})
	}
	if n := contacted.Load(); n != 0 {
		t.Fatalf("the jku/x5u server was contacted %d times", n)
	}
}

func TestKeySelection(t *testing.T) {
	clock := newClock()
	ec1 := newKey(t, jose.ES256, "ec-1")
	ec2 := newKey(t, jose.ES256, "ec-2")
	ec384 := newKey(t, jose.ES384, "ec-384")
	rs := newKey(t, jose.RS256, "rsa-1")
	ed := newKey(t, jose.EdDSA, "ed-1")
	encKey := newKey(t, jose.ES256, "enc-1")
	opsKey := newKey(t, jose.ES256, "ops-1")
	algKey := newKey(t, jose.RS256, "alg-rs256", 1)

	encJWK := encKey.public()
	encJWK.Use = "enc"
	var opsRaw map[string]any
	opsBytes, _ := opsKey.public().MarshalJSON()
	if err := json.Unmarshal(opsBytes, &opsRaw); err != nil {
		t.Fatal(err)
	}
	opsRaw["key_ops"] = []string{"encrypt"}
	algJWK := algKey.public()
	algJWK.Algorithm = string(jose.RS256)

	keys, err := parseJWKS(mergeJWKS(t, jwksOf(t, ec1.public(), rs.public(), ed.public(), encJWK, algJWK), opsRaw), false)
	if err != nil {
		t.Fatal(err)
	}
	multi, err := NewWithKeySet(testConfig(clock), &staticKeySet{snap: keySnapshot{keys: keys}})
	if err != nil {
		t.Fatal(err)
	}
	twoEC, err := NewWithKeySet(testConfig(clock), staticSet(t, ec1.public(), ec2.public()))
	if err != nil {
		t.Fatal(err)
	}
	p384 := newStaticVerifier(t, clock, ec1.public(), ec384.public())

	psKey := &testKey{alg: jose.PS256, kid: "alg-rs256", priv: algKey.priv}

	tests := []struct {
		name    string
		v       *Verifier
		tok     string
		wantErr error
	}{
		{name: "kid picks RSA", v: multi, tok: rs.sign(t, baseClaims())},
		{name: "kid picks Ed25519", v: multi, tok: ed.sign(t, baseClaims())},
		{name: "no kid, one EC key among other types", v: multi, tok: ec1.sign(t, baseClaims(), signOpts{noKid: true})},
		{name: "no kid, two EC keys", v: twoEC, tok: ec1.sign(t, baseClaims(), signOpts{noKid: true}), wantErr: errAmbiguousKey},
		{name: "no kid, curve picks the key", v: p384, tok: ec384.sign(t, baseClaims(), signOpts{noKid: true})},
		{name: "kid of a P-256 key on an ES384 token", v: p384, tok: (&testKey{alg: jose.ES384, kid: "ec-1", priv: ec384.priv}).sign(t, baseClaims()), wantErr: errUnknownKey},
		{name: "enc-use key is not used", v: multi, tok: encKey.sign(t, baseClaims()), wantErr: errUnknownKey},
		{name: "key_ops without verify is not used", v: multi, tok: opsKey.sign(t, baseClaims()), wantErr: errUnknownKey},
		{name: "JWK alg RS256 honoured", v: multi, tok: algKey.sign(t, baseClaims())},
		{name: "JWK alg RS256 refuses PS256", v: multi, tok: psKey.sign(t, baseClaims()), wantErr: errUnknownKey},
		{name: "wrong key under a known kid", v: twoEC, tok: (&testKey{alg: jose.ES256, kid: "ec-1", priv: ec2.priv}).sign(t, baseClaims()), wantErr: errSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.v.Verify(t.Context(), tc.tok)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidToken) || !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify error = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestParseJWKS(t *testing.T) {
	ec := newKey(t, jose.ES256, "ec-1")
	rs := newKey(t, jose.RS256, "rsa-1")
	privJWK := jose.JSONWebKey{Key: ec.priv, KeyID: "private", Use: "sig"}
	symJWK := jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "hmac", Algorithm: "HS256"}
	priv, _ := privJWK.MarshalJSON()
	sym, _ := symJWK.MarshalJSON()
	pub, _ := ec.public().MarshalJSON()
	rsPub, _ := rs.public().MarshalJSON()
	small := `{"kty":"RSA","kid":"small","n":"` + strings.Repeat("A", 170) + `w","e":"AQAB"}`
	weird := `{"kty":"XYZ","kid":"weird"}`
	set := func(keys ...string) string { return `{"keys":[` + strings.Join(keys, ",") + `]}` }

	tests := []struct {
		name       string
		doc        string
		wantKids   []string // lenient mode
		lenientErr bool
		strictErr  bool
	}{
		{name: "public keys", doc: set(string(pub), string(rsPub)), wantKids: []string{"ec-1", "rsa-1"}},
		{name: "private key", doc: set(string(pub), string(priv)), wantKids: []string{"ec-1"}, strictErr: true},
		{name: "symmetric key", doc: set(string(pub), string(sym)), wantKids: []string{"ec-1"}},
		{name: "symmetric key without alg", doc: set(string(pub), `{"kty":"oct","kid":"k","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}`), wantKids: []string{"ec-1"}, strictErr: true},
		{name: "only private", doc: set(string(priv)), lenientErr: true, strictErr: true},
		{name: "unknown key type", doc: set(string(pub), weird), wantKids: []string{"ec-1"}, strictErr: true},
		{name: "weak RSA key", doc: set(string(pub), small), wantKids: []string{"ec-1"}, strictErr: true},
		{name: "no keys member", doc: `{"kids":[]}`, lenientErr: true, strictErr: true},
		{name: "empty keys", doc: `{"keys":[]}`, lenientErr: true, strictErr: true},
		{name: "not JSON", doc: `<html>`, lenientErr: true, strictErr: true},
		{name: "key not an object", doc: set(string(pub), `"x"`), wantKids: []string{"ec-1"}, strictErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := parseJWKS([]byte(tc.doc), false)
			if tc.lenientErr {
				if err == nil {
					t.Fatalf("lenient: no error, keys %v", keys)
				}
			} else {
				if err != nil {
					t.Fatalf("lenient: %v", err)
				}
				var kids []string
				for _, k := range keys {
					kids = append(kids, k.KeyID)
				}
				if !slices.Equal(kids, tc.wantKids) {
					t.Fatalf("lenient kids = %q, want %q", kids, tc.wantKids)
				}
			}
			_, err = parseJWKS([]byte(tc.doc), true)
			if (err != nil) != tc.strictErr {
				t.Fatalf("strict error = %v, want error %v", err, tc.strictErr)
			}
		})
	}
}

func TestJWKSFile(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.EdDSA, "ed-1")
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.json", jwksOf(t, k.public()))
	priv, _ := (&jose.JSONWebKey{Key: k.priv, KeyID: "ed-1"}).MarshalJSON()
	private := write("private.json", []byte(`{"keys":[`+string(priv)+`]}`))
	encOnly := k.public()
	encOnly.Use = "enc"
	enc := write("enc.json", jwksOf(t, encOnly))
	bad := write("bad.json", []byte("{"))

	cfg := testConfig(clock)
	cfg.JWKSFile = good
	v, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Prefetch(t.Context()); err != nil {
		t.Fatalf("Prefetch with a file: %v", err)
	}
	if _, err := v.Verify(t.Context(), k.sign(t, baseClaims())); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if _, err := v.Verify(t.Context(), k.sign(t, baseClaims(), signOpts{noKid: true})); err != nil {
		t.Fatalf("Verify without kid: %v", err)
	}
	if _, err := v.Verify(t.Context(), (&testKey{alg: jose.EdDSA, kid: "ed-2", priv: k.priv}).sign(t, baseClaims())); !errors.Is(err, errUnknownKey) {
		t.Fatalf("unknown kid with a file: %v", err)
	}

	for name, path := range map[string]string{
		"missing": filepath.Join(dir, "nope.json"), "private": private, "enc only": enc, "bad JSON": bad,
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(clock)
			cfg.JWKSFile = path
			if _, err := New(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "JWKSFile") {
				t.Fatalf("New error = %v, want a JWKSFile error", err)
			}
		})
	}
}

func TestNewValidatesAllAtOnce(t *testing.T) {
	_, err := New(t.Context(), Config{Audiences: []string{""}, Leeway: -1, MinRefetchInterval: -1, MaxTokenBytes: -1, KeySetMaxAge: -1})
	if err == nil {
		t.Fatal("New accepted an empty config")
	}
	for _, want := range []string{"issuer is required", "audiences[0] is empty", "leeway must be", "min_refetch_interval", "max_token_bytes", "key_set_max_age", "one of jwks_url or jwks_file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "no audiences", cfg: Config{Issuer: "i", JWKSFile: "x"}, want: "at least one audience"},
		{name: "both sources", cfg: Config{Issuer: "i", Audiences: []string{"a"}, JWKSURL: "https://x/jwks", JWKSFile: "f"}, want: "only one"},
		{name: "bad scheme", cfg: Config{Issuer: "i", Audiences: []string{"a"}, JWKSURL: "file:///etc/jwks"}, want: "jwks_url must be an absolute http(s) URL"},
		{name: "no host", cfg: Config{Issuer: "i", Audiences: []string{"a"}, JWKSURL: "https:///jwks"}, want: "jwks_url must be an absolute http(s) URL"},
		{name: "unparsable", cfg: Config{Issuer: "i", Audiences: []string{"a"}, JWKSURL: "https://x/%zz"}, want: "jwks_url must be an absolute http(s) URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(t.Context(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New error = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := NewWithKeySet(Config{Issuer: "i", Audiences: []string{"a"}, JWKSURL: "https://x"}, nil); err == nil ||
		!strings.Contains(err.Error(), "must be empty") || !strings.Contains(err.Error(), "KeySet is nil") {
		t.Fatalf("NewWithKeySet error = %v", err)
	}
}

func TestErrorsDoNotLeakTokenContent(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256, "k1")
	v := newStaticVerifier(t, clock, k.public())
	const secret = "SECRETVALUE"
	claims := func() map[string]any {
		return with(baseClaims(), "sub", secret+"-sub", "tsid", secret+"-tsid", "x", secret)
	}
	toks := []string{
		k.sign(t, with(claims(), "exp", t0.Add(-time.Hour).Unix())),
		k.sign(t, with(claims(), "iss", secret+"-iss")),
		k.sign(t, with(claims(), "aud", secret+"-aud")),
		k.sign(t, with(claims(), "tsid", 1)),
		k.signPayload(t, []byte(`{"sub":"`+secret+`","sub":"`+secret+`"}`), signOpts{}),
		k.sign(t, claims(), signOpts{headers: map[jose.HeaderKey]any{"kid": secret}}),
		b64(`{"alg":"`+secret+`"}`) + "." + b64(secret) + ".AAAA",
		b64(`{"alg":"ES256","kid":`+secret+`}`) + "." + b64(secret) + ".AAAA",
		b64(`{"alg":"ES256","x5c":["`+secret+`"]}`) + "." + b64(secret) + ".AAAA",
	}
	for i, tok := range toks {
		_, err := v.Verify(t.Context(), tok)
		if err == nil {
			t.Fatalf("token %d accepted", i)
		}
		msg := err.Error()
		for _, part := range append(strings.Split(tok, "."), secret) {
			if len(part) >= 8 && strings.Contains(msg, part) {
				t.Errorf("token %d: error %q leaks %q", i, msg, part)
			}
		}
	}
}

func TestVerifyConcurrent(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256, "k1")
	srv := newJWKSServer(t, jwksOf(t, k.public()))
	v := newRemoteVerifier(t, clock, srv.URL)
	good := k.sign(t, baseClaims())
	expired := k.sign(t, with(baseClaims(), "exp", t0.Add(-time.Hour).Unix()))
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for range 20 {
				if _, err := v.Verify(t.Context(), good); err != nil {
					t.Errorf("good: %v", err)
					return
				}
				if _, err := v.Verify(t.Context(), expired); !errors.Is(err, errExpired) {
					t.Errorf("expired: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := srv.requests.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", n)
	}
}

func BenchmarkVerifyES256(b *testing.B) {
	clock := newClock()
	k := newKey(b, jose.ES256, "k1")
	v := newStaticVerifier(b, clock, k.public())
	tok := k.sign(b, baseClaims())
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyRejectMalformed(b *testing.B) {
	clock := newClock()
	k := newKey(b, jose.ES256, "k1")
	v := newStaticVerifier(b, clock, k.public())
	tok := strings.Repeat("A", 8000) + "." + strings.Repeat("B", 8000)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err == nil {
			b.Fatal("accepted")
		}
	}
}

// mergeJWKS appends extra keys, given as JSON objects, to a JWKS document.
func mergeJWKS(t testing.TB, doc []byte, extra ...map[string]any) []byte {
	t.Helper()
	var set struct {
		Keys []any `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		t.Fatal(err)
	}
	for _, e := range extra {
		set.Keys = append(set.Keys, e)
	}
	out, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
