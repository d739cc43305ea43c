package tokencrypt

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func key(t *testing.T, id string) Key {
	t.Helper()
	b, err := ParseKey(GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	return Key{ID: id, Secret: b}
}

func TestSealOpen(t *testing.T) {
	a := key(t, "a")
	ring, err := New([]Key{a}, "a")
	if err != nil {
		t.Fatal(err)
	}
	p := Place{SessionID: "s1", Provider: "github", Column: "access_token"}
	ct, err := ring.Seal("gho_secret", p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ct, "gho_secret") || !strings.HasPrefix(ct, "v1.a.") {
		t.Fatalf("ciphertext %q", ct)
	}
	if again, _ := ring.Seal("gho_secret", p); again == ct {
		t.Error("two seals of one value must differ (random nonce)")
	}
	if got, err := ring.Open(ct, p); err != nil || got != "gho_secret" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if id, ok := ring.KeyID(ct); !ok || id != "a" {
		t.Errorf("KeyID = %q, %v", id, ok)
	}
	if ct, err := ring.Seal("", p); err != nil || ct != "" {
		t.Errorf("empty value must stay empty: %q %v", ct, err)
	}
}

func TestCiphertextBoundToItsPlace(t *testing.T) {
	ring, _ := New([]Key{key(t, "a")}, "a")
	p := Place{SessionID: "s1", Provider: "github", Column: "refresh_token"}
	ct, _ := ring.Seal("rt", p)
	for _, other := range []Place{
		{SessionID: "s2", Provider: "github", Column: "refresh_token"},
		{SessionID: "s1", Provider: "google", Column: "refresh_token"},
		{SessionID: "s1", Provider: "github", Column: "access_token"},
		// Length prefixes keep parts from sliding into each other.
		{SessionID: "s1g", Provider: "ithub", Column: "refresh_token"},
	} {
		if _, err := ring.Open(ct, other); !errors.Is(err, ErrDecrypt) {
			t.Errorf("opened at %+v: err %v, want ErrDecrypt", other, err)
		}
	}
}

func TestOpenRefusals(t *testing.T) {
	a, b := key(t, "a"), key(t, "b")
	ringA, _ := New([]Key{a}, "a")
	ringB, _ := New([]Key{b}, "b")
	// A different key under the same ID.
	impostor, _ := New([]Key{{ID: "a", Secret: b.Secret}}, "a")
	p := Place{SessionID: "s", Provider: "p", Column: "c"}
	ct, _ := ringA.Seal("secret", p)
	flipped := []byte(ct)
	flipped[len(flipped)-2] ^= 1
	tests := []struct {
		name string
		ring *Keyring
		ct   string
		want error
	}{
		{"plaintext", ringA, "gho_plain", ErrNotEncrypted},
		{"unknown key", ringB, ct, ErrUnknownKey},
		{"same id, other key", impostor, ct, ErrDecrypt},
		{"tampered", ringA, string(flipped), ErrDecrypt},
		{"truncated", ringA, ct[:12], ErrDecrypt},
		{"not base64", ringA, "v1.a.!!!", ErrDecrypt},
		{"bad key id", ringA, "v1.a b.xyz", ErrNotEncrypted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.ring.Open(tc.ct, p)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "gho_plain") {
				t.Errorf("error leaks the value: %v", err)
			}
		})
	}
}

func TestRotationReadsOldKeys(t *testing.T) {
	a, b := key(t, "a"), key(t, "b")
	old, _ := New([]Key{a}, "a")
	both, _ := New([]Key{a, b}, "b")
	p := Place{SessionID: "s", Provider: "p", Column: "c"}
	ct, _ := old.Seal("v", p)
	if got, err := both.Open(ct, p); err != nil || got != "v" {
		t.Fatalf("open under old key: %q %v", got, err)
	}
	ct2, _ := both.Seal("v", p)
	if id, _ := both.KeyID(ct2); id != "b" {
		t.Errorf("new ciphertexts use the primary key, got %q", id)
	}
}

func TestNewAndParseKeyErrors(t *testing.T) {
	a := key(t, "a")
	_, err := New([]Key{a, a, {ID: "bad id", Secret: a.Secret}, {ID: "short", Secret: []byte("tooshort")}}, "missing")
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{`"a": defined twice`, "key 3: id", `"short": must be 32 bytes`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), string(a.Secret)) || strings.Contains(err.Error(), "tooshort") {
		t.Error("error contains key material")
	}
	if _, err := New([]Key{a}, "b"); err == nil || !strings.Contains(err.Error(), `primary key "b"`) {
		t.Errorf("missing primary: %v", err)
	}
	for _, enc := range []string{
		base64.StdEncoding.EncodeToString(a.Secret), base64.RawURLEncoding.EncodeToString(a.Secret),
		hex.EncodeToString(a.Secret), " " + base64.StdEncoding.EncodeToString(a.Secret) + "\n",
	} {
		if got, err := ParseKey(enc); err != nil || string(got) != string(a.Secret) {
			t.Errorf("ParseKey(%d chars) = %v", len(enc), err)
		}
	}
	if _, err := ParseKey("c2hvcnQ="); err == nil || strings.Contains(err.Error(), "c2hvcnQ") {
		t.Errorf("short key: %v", err)
	}
}

func FuzzOpen(f *testing.F) {
	ring, _ := New([]Key{{ID: "a", Secret: make([]byte, 32)}}, "a")
	p := Place{SessionID: "s", Provider: "p", Column: "c"}
	ct, _ := ring.Seal("value", p)
	f.Add(ct)
	f.Add("v1.a.")
	f.Add("v1..x")
	f.Add("plain")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ring.Open(s, p)
		if err == nil && s != "" && s != ct && got == "value" {
			// Any other accepted ciphertext must be a genuine seal.
			if _, ok := ring.KeyID(s); !ok {
				t.Fatalf("accepted a non-ciphertext %q", s)
			}
		}
	})
}
