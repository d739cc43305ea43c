package tokencrypt_test

import (
	"errors"
	"testing"

	"github.com/extauthz/extauthz/tokencrypt"
	"github.com/extauthz/extauthz/tokencrypt/tokencrypttest"
)

// TestV1StillOpens: a ciphertext of the earlier format, which binds the
// place but not the binding, still opens (the transition), whatever the
// binding fields say; Inspect names its format, and a new seal of the value
// is v2.
func TestV1StillOpens(t *testing.T) {
	secret, _ := tokencrypt.ParseKey(tokencrypt.GenerateKey())
	k := tokencrypt.Key{ID: "k1", Secret: secret}
	ring, err := tokencrypt.New([]tokencrypt.Key{k}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	place := tokencrypt.Place{SessionID: "s1", Provider: "gh", Column: "access_token"}
	v1 := tokencrypttest.SealV1(k, "legacy-token", place)
	if info, ok := tokencrypt.Inspect(v1); !ok || info != (tokencrypt.Info{KeyID: "k1", Format: tokencrypt.FormatV1}) {
		t.Fatalf("Inspect(v1) = %+v, %v", info, ok)
	}
	bound := place
	bound.Subject, bound.ClientID, bound.UpstreamSubject = "alice", "app", "gh-1"
	for _, p := range []tokencrypt.Place{place, bound} {
		if got, err := ring.Open(v1, p); err != nil || got != "legacy-token" {
			t.Errorf("Open(v1) at %+v = %q, %v", p, got, err)
		}
	}
	// The place is still bound.
	moved := place
	moved.Column = "refresh_token"
	if _, err := ring.Open(v1, moved); !errors.Is(err, tokencrypt.ErrDecrypt) {
		t.Errorf("v1 opened in another column: %v", err)
	}
	v2, err := ring.Seal("legacy-token", bound)
	if err != nil {
		t.Fatal(err)
	}
	if info, ok := tokencrypt.Inspect(v2); !ok || info.Format != tokencrypt.FormatV2 {
		t.Errorf("Inspect(new seal) = %+v, %v; want v2", info, ok)
	}
	for _, s := range []string{"", "plain", "v1.", "v2.k1", "v9.k1.abc"} {
		if _, ok := tokencrypt.Inspect(s); ok {
			t.Errorf("Inspect(%q) ok", s)
		}
	}
}
