package jwttest_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/extauthz/extauthz/jwtauth"
	"github.com/extauthz/extauthz/jwtauth/jwttest"
)

func claims(now time.Time) map[string]any {
	return map[string]any{
		"iss":       "https://as.example.com",
		"aud":       []string{"api"},
		"sub":       "user-1",
		"client_id": "client-1",
		"tsid":      "session-1",
		"scope":     "a b",
		"exp":       now.Add(time.Hour).Unix(),
	}
}

func TestSignerWithServer(t *testing.T) {
	s := jwttest.NewSigner(t)
	srv := s.Server(t)
	v, err := jwtauth.New(t.Context(), jwtauth.Config{
		Issuer:    "https://as.example.com",
		Audiences: []string{"api"},
		JWKSURL:   srv.URL + "/jwks",
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			c, err := v.Verify(t.Context(), s.Sign(t, claims(time.Now())))
			if err != nil {
				t.Errorf("Verify: %v", err)
				return
			}
			if c.Subject != "user-1" || c.ClientID != "client-1" || c.SessionID != "session-1" || len(c.Scopes) != 2 {
				t.Errorf("claims = %+v", c)
			}
		})
	}
	wg.Wait()

	resp, err := http.Get(srv.URL + "/other")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /other = %d, want 404", resp.StatusCode)
	}
}

func TestSignerWithFile(t *testing.T) {
	s := jwttest.NewSigner(t)
	v, err := jwtauth.New(t.Context(), jwtauth.Config{
		Issuer:    "https://as.example.com",
		Audiences: []string{"api"},
		JWKSFile:  s.WriteJWKSFile(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(t.Context(), s.Sign(t, claims(time.Now()))); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	// A token from another signer is refused.
	other := jwttest.NewSigner(t)
	if _, err := v.Verify(t.Context(), other.Sign(t, claims(time.Now()))); !errors.Is(err, jwtauth.ErrInvalidToken) {
		t.Fatalf("other signer: %v", err)
	}
}

func TestJWKSIsPublic(t *testing.T) {
	s := jwttest.NewSigner(t)
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(s.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 {
		t.Fatalf("%d keys", len(set.Keys))
	}
	k := set.Keys[0]
	if _, private := k["d"]; private {
		t.Fatal("JWKS contains the private key")
	}
	if k["kid"] != s.KeyID() || k["alg"] != "ES256" || k["use"] != "sig" || k["kty"] != "EC" {
		t.Fatalf("key = %v", k)
	}
}

func TestSignPayloadSignsBytesAsGiven(t *testing.T) {
	s := jwttest.NewSigner(t)
	v, err := jwtauth.New(t.Context(), jwtauth.Config{
		Issuer:    "https://as.example.com",
		Audiences: []string{"api"},
		JWKSFile:  s.WriteJWKSFile(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(t.Context(), s.SignPayload(t, payload)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	// A repeated claim survives signing, so the verifier sees (and refuses) it.
	dup := append([]byte(`{"sub":"admin",`), payload[1:]...)
	if _, err := v.Verify(t.Context(), s.SignPayload(t, dup)); !errors.Is(err, jwtauth.ErrInvalidToken) {
		t.Fatalf("duplicate sub: %v", err)
	}
}
