package tokencrypt

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestPayloadRoundTrip(t *testing.T) {
	ring, err := New([]Key{key(t, "a")}, "a")
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte("session and subject, sealed")
	sealed, err := ring.SealPayload("connect ticket v1", plain)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^p1\.a\.[A-Za-z0-9_-]+$`).MatchString(sealed) {
		t.Errorf("payload %q is not p1.<id>.<base64url>", sealed)
	}
	if strings.Contains(sealed, "subject") {
		t.Error("payload shows its plaintext")
	}
	if want := PayloadOverhead(len(plain)) + len("a"); len(sealed) != want {
		t.Errorf("payload length %d, PayloadOverhead says %d", len(sealed), want)
	}
	if again, _ := ring.SealPayload("connect ticket v1", plain); again == sealed {
		t.Error("two seals of one payload must differ (random nonce)")
	}
	got, err := ring.OpenPayload("connect ticket v1", sealed)
	if err != nil || string(got) != string(plain) {
		t.Fatalf("OpenPayload = %q, %v", got, err)
	}
	if _, err := ring.SealPayload("", plain); err == nil {
		t.Error("a payload without purpose was sealed")
	}
}

func TestPayloadRefusals(t *testing.T) {
	a := key(t, "a")
	ring, _ := New([]Key{a}, "a")
	place := Place{SessionID: "s", Provider: "gh", Column: "access_token", Subject: "alice", ClientID: "app"}
	payload, _ := ring.SealPayload("purpose", []byte("x"))
	row, _ := ring.Seal("x", place)
	otherKeySameID, _ := New([]Key{key(t, "a")}, "a")
	foreignSameID, _ := otherKeySameID.SealPayload("purpose", []byte("x"))
	otherID, _ := New([]Key{key(t, "b")}, "b")
	foreignOtherID, _ := otherID.SealPayload("purpose", []byte("x"))
	// Flip one character of the sealed part (after the key check).
	b := []byte(payload)
	i := len("p1.a.") + 20
	b[i] = map[bool]byte{true: 'A', false: 'B'}[b[i] != 'A']
	tampered := string(b)

	for _, tc := range []struct {
		name, purpose, in string
		want              error
	}{
		{"row ciphertext as payload", "purpose", row, ErrNotEncrypted},
		{"other purpose", "other", payload, ErrDecrypt},
		{"tampered", "purpose", tampered, ErrDecrypt},
		{"truncated", "purpose", payload[:len(payload)-4], ErrDecrypt},
		{"not base64", "purpose", "p1.a.!!!", ErrDecrypt},
		{"another keyring, same key ID", "purpose", foreignSameID, ErrUnknownKey},
		{"another keyring, other key ID", "purpose", foreignOtherID, ErrUnknownKey},
		{"garbage", "purpose", "hello", ErrNotEncrypted},
		{"empty", "purpose", "", ErrNotEncrypted},
	} {
		if _, err := ring.OpenPayload(tc.purpose, tc.in); !errors.Is(err, tc.want) {
			t.Errorf("%s: OpenPayload error %v, want %v", tc.name, err, tc.want)
		}
	}
	// And a payload is never a row's ciphertext.
	if _, err := ring.Open(payload, place); !errors.Is(err, ErrNotEncrypted) {
		t.Errorf("Open(payload) error %v, want ErrNotEncrypted", err)
	}
}

func FuzzOpenPayload(f *testing.F) {
	ring, _ := New([]Key{{ID: "a", Secret: make([]byte, KeySize)}}, "a")
	good, _ := ring.SealPayload("p", []byte("hello"))
	for _, s := range []string{good, "p1.a.", "p1..x", "v2.a.xx", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		plain, err := ring.OpenPayload("p", s)
		if err == nil && s != good && string(plain) != "hello" {
			t.Fatalf("OpenPayload(%q) opened to %q", s, plain)
		}
	})
}
