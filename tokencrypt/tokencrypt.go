// Package tokencrypt encrypts upstream tokens at rest with AES-256-GCM.
//
// A ciphertext is the text "v2.<key id>.<base64url(nonce || sealed)>": it
// names the key that sealed it, so keys can be rotated while rows under the
// old key are still readable. The additional authenticated data binds each
// ciphertext to its place (session, provider, column) and to the binding of
// its row (the authorization server's subject and client ID, and the
// upstream subject): a ciphertext moved to another row or column does not
// decrypt, and neither does one whose row's binding was changed.
//
// Payloads (SealPayload, OpenPayload) are a separate format,
// "p1.<key id>.<base64url(key check || nonce || sealed)>", for values that
// are not rows (a connect ticket): their additional authenticated data starts
// with "p1." and names a purpose, so a payload never opens as a row's
// ciphertext, a row's ciphertext never opens as a payload, and a payload
// sealed for one purpose never opens for another.
//
// Ciphertexts of the earlier format "v1.<key id>.<data>" bind the place
// only. Open still reads them, so that rows written before the binding was
// sealed keep working until they are sealed again (Seal always writes v2);
// Inspect tells the formats apart.
package tokencrypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

var (
	// ErrDecrypt means a ciphertext could not be opened: it was altered,
	// moved to another row or column, or sealed with a different key under
	// the same ID.
	ErrDecrypt = errors.New("tokencrypt: ciphertext does not decrypt")
	// ErrUnknownKey means a ciphertext names a key the keyring does not hold.
	ErrUnknownKey = errors.New("tokencrypt: unknown key")
	// ErrNotEncrypted means a stored value is not a ciphertext of this
	// package (a row written before encryption existed).
	ErrNotEncrypted = errors.New("tokencrypt: value is not encrypted")
)

// KeySize is the size of a key: AES-256.
const KeySize = 32

// The formats' prefixes. The prefix is also the first part of the
// additional authenticated data, so a ciphertext relabelled with the other
// format's prefix does not decrypt.
const (
	prefixV1 = "v1."
	prefixV2 = "v2."
)

// Format versions, as Inspect reports them.
const (
	// FormatV1 binds a ciphertext to its session, provider and column.
	FormatV1 = 1
	// FormatV2 binds it to those and to the row's subject, client ID and
	// upstream subject as well. Seal writes it.
	FormatV2 = 2
)

var keyID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Key is one named key.
type Key struct {
	ID     string
	Secret []byte
}

// Keyring holds the keys that can open ciphertexts and names the primary
// one, which seals new ones. It is safe for concurrent use.
type Keyring struct {
	primary string
	aeads   map[string]cipher.AEAD
	checks  map[string][]byte // each key's check value (see keyCheck)
}

// New returns a keyring of keys with primary sealing new ciphertexts. Every
// problem is reported at once; errors never contain key material.
func New(keys []Key, primary string) (*Keyring, error) {
	var errs []error
	k := &Keyring{primary: primary, aeads: make(map[string]cipher.AEAD, len(keys)), checks: make(map[string][]byte, len(keys))}
	for i, key := range keys {
		switch {
		case !keyID.MatchString(key.ID):
			errs = append(errs, fmt.Errorf("key %d: id must be 1-64 letters, digits, '-' or '_'", i+1))
			continue
		case k.aeads[key.ID] != nil:
			errs = append(errs, fmt.Errorf("key %q: defined twice", key.ID))
			continue
		case len(key.Secret) != KeySize:
			errs = append(errs, fmt.Errorf("key %q: must be %d bytes, is %d", key.ID, KeySize, len(key.Secret)))
			continue
		}
		block, err := aes.NewCipher(key.Secret)
		if err != nil {
			errs = append(errs, fmt.Errorf("key %q: %w", key.ID, err))
			continue
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			errs = append(errs, fmt.Errorf("key %q: %w", key.ID, err))
			continue
		}
		k.aeads[key.ID] = aead
		k.checks[key.ID] = keyCheck(key.Secret)
	}
	if len(keys) == 0 {
		errs = append(errs, errors.New("no keys"))
	}
	if _, ok := k.aeads[primary]; !ok && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("primary key %q is not among the keys", primary))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return k, nil
}

// ParseKey decodes a key written as base64 (standard or URL alphabet, with
// or without padding) or as hex. The error never repeats the input.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == KeySize {
			return b, nil
		}
	}
	if b, err := hex.DecodeString(s); err == nil && len(b) == KeySize {
		return b, nil
	}
	return nil, fmt.Errorf("a key must be %d random bytes written as base64 or hex (e.g. from 'extauthz keys generate')", KeySize)
}

// GenerateKey returns a new random key, base64-encoded.
func GenerateKey() string {
	b := make([]byte, KeySize)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// Primary returns the ID of the key that seals new ciphertexts.
func (k *Keyring) Primary() string { return k.primary }

// Place is where a ciphertext lives and what it belongs to: all of it is
// bound into the ciphertext, which opens only at the same Place.
type Place struct {
	SessionID string
	Provider  string
	Column    string
	// The binding of the row: the authorization server's subject and client
	// ID, and the provider's own subject (may be empty). A v1 ciphertext
	// does not bind them: opening one ignores these fields.
	Subject         string
	ClientID        string
	UpstreamSubject string
}

// aad encodes p for the format named by prefix unambiguously: the prefix,
// then each part length-prefixed.
func (p Place) aad(prefix string) []byte {
	parts := [...]string{p.SessionID, p.Provider, p.Column, p.Subject, p.ClientID, p.UpstreamSubject}
	n := 3 // v1 binds the place only
	if prefix == prefixV2 {
		n = len(parts)
	}
	size := len(prefix)
	for _, part := range parts[:n] {
		size += binary.MaxVarintLen64 + len(part)
	}
	b := make([]byte, 0, size)
	b = append(b, prefix...)
	for _, part := range parts[:n] {
		b = binary.AppendUvarint(b, uint64(len(part)))
		b = append(b, part...)
	}
	return b
}

// Seal encrypts plaintext for place under the primary key, in the current
// format (v2, which binds the whole of place). The empty string stays empty:
// an absent token is not a secret, and must remain recognisable as absent.
func (k *Keyring) Seal(plaintext string, place Place) (string, error) {
	if plaintext == "" {
		return "", nil
	}
	aead := k.aeads[k.primary]
	buf := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("tokencrypt: nonce: %w", err)
	}
	sealed := aead.Seal(buf, buf, []byte(plaintext), place.aad(prefixV2))
	return prefixV2 + k.primary + "." + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Open decrypts a ciphertext from place. The empty string opens to itself.
// A v2 ciphertext opens only if every field of place is what it was sealed
// with; a v1 one, if its session, provider and column are.
func (k *Keyring) Open(ciphertext string, place Place) (string, error) {
	if ciphertext == "" {
		return "", nil
	}
	prefix, id, body, ok := split(ciphertext)
	if !ok {
		return "", ErrNotEncrypted
	}
	aead, known := k.aeads[id]
	if !known {
		return "", fmt.Errorf("%w %q", ErrUnknownKey, id)
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil || len(raw) < aead.NonceSize()+aead.Overhead() {
		return "", ErrDecrypt
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], place.aad(prefix))
	if err != nil {
		return "", ErrDecrypt
	}
	return string(plain), nil
}

// KeyID returns the ID of the key that sealed ciphertext; ok is false when
// the value is not a ciphertext of this package. The empty string has no key
// and needs none: it reports the primary key.
func (k *Keyring) KeyID(ciphertext string) (id string, ok bool) {
	if ciphertext == "" {
		return k.primary, true
	}
	_, id, _, ok = split(ciphertext)
	return id, ok
}

// Info describes a ciphertext without opening it.
type Info struct {
	// KeyID names the key that sealed it.
	KeyID string
	// Format is FormatV1 or FormatV2.
	Format int
}

// Inspect reads the format and key ID of ciphertext without opening it; ok
// is false when the value is not a ciphertext of this package (the empty
// string included). It says nothing of whether the ciphertext is genuine.
func Inspect(ciphertext string) (info Info, ok bool) {
	prefix, id, _, ok := split(ciphertext)
	if !ok {
		return Info{}, false
	}
	info = Info{KeyID: id, Format: FormatV2}
	if prefix == prefixV1 {
		info.Format = FormatV1
	}
	return info, true
}

// split cuts a ciphertext into its format prefix, key ID and body.
func split(ciphertext string) (prefix, id, body string, ok bool) {
	var rest string
	for _, p := range [...]string{prefixV2, prefixV1} {
		if rest, ok = strings.CutPrefix(ciphertext, p); ok {
			prefix = p
			break
		}
	}
	if !ok {
		return "", "", "", false
	}
	id, body, ok = strings.Cut(rest, ".")
	if !ok || !keyID.MatchString(id) {
		return "", "", "", false
	}
	return prefix, id, body, true
}
