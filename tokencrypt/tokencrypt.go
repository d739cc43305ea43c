// Package tokencrypt encrypts upstream tokens at rest with AES-256-GCM.
//
// A ciphertext is the text "v1.<key id>.<base64url(nonce || sealed)>": it
// names the key that sealed it, so keys can be rotated while rows under the
// old key are still readable. The additional authenticated data binds each
// ciphertext to its place (session, provider, column): a ciphertext moved to
// another row or column does not decrypt.
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

const prefix = "v1."

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
}

// New returns a keyring of keys with primary sealing new ciphertexts. Every
// problem is reported at once; errors never contain key material.
func New(keys []Key, primary string) (*Keyring, error) {
	var errs []error
	k := &Keyring{primary: primary, aeads: make(map[string]cipher.AEAD, len(keys))}
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

// Place is where a ciphertext lives: it is bound into the ciphertext.
type Place struct {
	SessionID string
	Provider  string
	Column    string
}

// aad encodes p unambiguously (each part length-prefixed).
func (p Place) aad() []byte {
	b := make([]byte, 0, 16+len(p.SessionID)+len(p.Provider)+len(p.Column))
	b = append(b, prefix...)
	for _, part := range []string{p.SessionID, p.Provider, p.Column} {
		b = binary.AppendUvarint(b, uint64(len(part)))
		b = append(b, part...)
	}
	return b
}

// Seal encrypts plaintext for place under the primary key. The empty string
// stays empty: an absent token is not a secret, and must remain
// recognisable as absent.
func (k *Keyring) Seal(plaintext string, place Place) (string, error) {
	if plaintext == "" {
		return "", nil
	}
	aead := k.aeads[k.primary]
	buf := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("tokencrypt: nonce: %w", err)
	}
	sealed := aead.Seal(buf, buf, []byte(plaintext), place.aad())
	return prefix + k.primary + "." + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Open decrypts a ciphertext from place. The empty string opens to itself.
func (k *Keyring) Open(ciphertext string, place Place) (string, error) {
	if ciphertext == "" {
		return "", nil
	}
	id, body, ok := split(ciphertext)
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
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], place.aad())
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
	id, _, ok = split(ciphertext)
	return id, ok
}

func split(ciphertext string) (id, body string, ok bool) {
	rest, ok := strings.CutPrefix(ciphertext, prefix)
	if !ok {
		return "", "", false
	}
	id, body, ok = strings.Cut(rest, ".")
	if !ok || !keyID.MatchString(id) {
		return "", "", false
	}
	return id, body, true
}
