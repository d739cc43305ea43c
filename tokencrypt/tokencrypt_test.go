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
	p := Place{SessionID: "s1", Provider: "github", Column: "access_token", Subject: "alice", ClientID: "app", UpstreamSubject: "gh-1"}
	ct, err := ring.Seal("gho_secret", p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ct, "gho_secret") || !strings.HasPrefix(ct, "v2.a.") {
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
	if info, ok := Inspect(ct); !ok || info != (Info{KeyID: "a", Format: FormatV2}) {
		t.Errorf("Inspect = %+v, %v", info, ok)
	}
	if ct, err := ring.Seal("", p); err != nil || ct != "" {
		t.Errorf("empty value must stay empty: %q %v", ct, err)
	}
}

func TestCiphertextBoundToItsPlace(t *testing.T) {
	ring, _ := New([]Key{key(t, "a")}, "a")
	p := Place{SessionID: "s1", Provider: "github", Column: "refresh_token", Subject: "alice", ClientID: "app", UpstreamSubject: "gh-1"}
	ct, _ := ring.Seal("rt", p)
	if got, err := ring.Open(ct, p); err != nil || got != "rt" {
		t.Fatalf("Open at its place = %q, %v", got, err)
	}
	moved := func(f func(*Place)) Place {
		q := p
		f(&q)
		return q
	}
	for name, other := range map[string]Place{
		"session":          moved(func(q *Place) { q.SessionID = "s2" }),
		"provider":         moved(func(q *Place) { q.Provider = "google" }),
		"column":           moved(func(q *Place) { q.Column = "access_token" }),
		"subject":          moved(func(q *Place) { q.Subject = "mallory" }),
		"client ID":        moved(func(q *Place) { q.ClientID = "other-app" }),
		"upstream subject": moved(func(q *Place) { q.UpstreamSubject = "gh-2" }),
		"upstream blanked": moved(func(q *Place) { q.UpstreamSubject = "" }),
		"subject blanked":  moved(func(q *Place) { q.Subject = "" }),
		// Length prefixes keep parts from sliding into each other.
		"session into provider": moved(func(q *Place) { q.SessionID, q.Provider = "s1g", "ithub" }),
		"subject into client":   moved(func(q *Place) { q.Subject, q.ClientID = "aliceapp", "" }),
		"client into upstream":  moved(func(q *Place) { q.ClientID, q.UpstreamSubject = "app"+"gh-1", "" }),
	} {
		if _, err := ring.Open(ct, other); !errors.Is(err, ErrDecrypt) {
			t.Errorf("%s changed: err %v, want ErrDecrypt", name, err)
		}
	}
	// A v2 ciphertext relabelled v1 (whose data binds less) does not open.
	if _, err := ring.Open("v1."+strings.TrimPrefix(ct, "v2."), p); !errors.Is(err, ErrDecrypt) {
		t.Errorf("relabelled v1: err %v, want ErrDecrypt", err)
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
		{"not base64", ringA, "v2.a.!!!", ErrDecrypt},
		{"bad key id", ringA, "v2.a b.xyz", ErrNotEncrypted},
		{"unknown format", ringA, "v3." + strings.TrimPrefix(ct, "v2."), ErrNotEncrypted},
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
	p := Place{SessionID: "s", Provider: "p", Column: "c", Subject: "alice", ClientID: "app", UpstreamSubject: "u"}
	ct, _ := ring.Seal("value", p)
	f.Add(ct)
	f.Add("v1." + strings.TrimPrefix(ct, "v2."))
	f.Add("v2.a.")
	f.Add("v1.a.")
	f.Add("v2..x")
	f.Add("v1..x")
	f.Add("plain")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ring.Open(s, p)
		info, isCiphertext := Inspect(s)
		switch {
		case err == nil && s != "" && !isCiphertext:
			t.Fatalf("accepted a non-ciphertext %q", s)
		case err == nil && s != "" && got == "value" && s != ct && info.Format != FormatV2:
			// Any other accepted ciphertext must be a genuine seal.
			t.Fatalf("opened %q as the v2 seal's value", s)
		case err != nil && !errors.Is(err, ErrDecrypt) && !errors.Is(err, ErrNotEncrypted) && !errors.Is(err, ErrUnknownKey):
			t.Fatalf("Open(%q): unexpected error %v", s, err)
		case s != "" && errors.Is(err, ErrNotEncrypted) == isCiphertext:
			t.Fatalf("Open(%q) = %v but Inspect ok = %v", s, err, isCiphertext)
		}
		// Whatever was accepted under p is refused once the binding changes,
		// unless it is v1 (which does not bind it).
		if err == nil && isCiphertext && info.Format == FormatV2 {
			q := p
			q.Subject = "mallory"
			if _, err := ring.Open(s, q); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("v2 %q opened for another subject: %v", s, err)
			}
		}
	})
}
