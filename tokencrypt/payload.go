package tokencrypt

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// prefixPayload starts a payload (SealPayload) and its additional
// authenticated data. It differs from the rows' prefixes, so neither kind
// of ciphertext is ever taken for the other.
const prefixPayload = "p1."

// keyCheckSize is the length of a payload's key check value.
const keyCheckSize = 8

// keyCheckLabel is what a key's check value is computed over.
const keyCheckLabel = "extauthz tokencrypt key check v1"

// keyCheck is a short value that tells a key from another key under the
// same ID: the first bytes of HMAC-SHA256 under the key of a fixed label.
// It reveals nothing usable about the key (HMAC is a pseudo-random function)
// and lets OpenPayload tell a payload sealed by another keyring (whose key
// happens to share an ID with one of ours) from a tampered one.
func keyCheck(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(keyCheckLabel))
	return m.Sum(nil)[:keyCheckSize]
}

// payloadAAD binds a payload to its purpose and the ID of its key.
func payloadAAD(purpose, id string) []byte {
	b := make([]byte, 0, len(prefixPayload)+2*binary.MaxVarintLen64+len(purpose)+len(id))
	b = append(b, prefixPayload...)
	b = binary.AppendUvarint(b, uint64(len(purpose)))
	b = append(b, purpose...)
	b = binary.AppendUvarint(b, uint64(len(id)))
	return append(b, id...)
}

// SealPayload encrypts plaintext, which is not a row's token, for purpose
// (a fixed, non-empty name such as "connect ticket v1") under the primary
// key. The result is URL-safe (letters, digits, "-", "_" and "."): it may
// go into a query parameter as it is. Its length is
// PayloadOverhead(len(plaintext)) plus the primary key's ID.
func (k *Keyring) SealPayload(purpose string, plaintext []byte) (string, error) {
	if purpose == "" {
		return "", errors.New("tokencrypt: a payload needs a purpose")
	}
	aead := k.aeads[k.primary]
	buf := make([]byte, keyCheckSize+aead.NonceSize(), keyCheckSize+aead.NonceSize()+len(plaintext)+aead.Overhead())
	copy(buf, k.checks[k.primary])
	nonce := buf[keyCheckSize:]
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("tokencrypt: nonce: %w", err)
	}
	sealed := aead.Seal(buf, nonce, plaintext, payloadAAD(purpose, k.primary))
	return prefixPayload + k.primary + "." + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// PayloadOverhead is the length of a payload of n plaintext bytes, less the
// length of its key's ID.
func PayloadOverhead(n int) int {
	const nonce, tag = 12, 16 // AES-GCM's standard nonce and tag
	return len(prefixPayload) + 1 + base64.RawURLEncoding.EncodedLen(keyCheckSize+nonce+n+tag)
}

// OpenPayload decrypts a payload sealed by SealPayload for purpose. A value
// that is not a payload is ErrNotEncrypted; one whose key this keyring does
// not hold (an unknown ID, or a known ID whose key check differs: another
// keyring's key under the same name) wraps ErrUnknownKey; one that was
// altered, or sealed for another purpose, is ErrDecrypt.
func (k *Keyring) OpenPayload(purpose, payload string) ([]byte, error) {
	rest, ok := strings.CutPrefix(payload, prefixPayload)
	if !ok {
		return nil, ErrNotEncrypted
	}
	id, body, ok := strings.Cut(rest, ".")
	if !ok || !keyID.MatchString(id) {
		return nil, ErrNotEncrypted
	}
	aead, known := k.aeads[id]
	if !known {
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, id)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil || len(raw) < keyCheckSize+aead.NonceSize()+aead.Overhead() {
		return nil, ErrDecrypt
	}
	if !hmac.Equal(raw[:keyCheckSize], k.checks[id]) {
		return nil, fmt.Errorf("%w %q (another key under this ID)", ErrUnknownKey, id)
	}
	nonce := raw[keyCheckSize : keyCheckSize+aead.NonceSize()]
	plain, err := aead.Open(nil, nonce, raw[keyCheckSize+aead.NonceSize():], payloadAAD(purpose, id))
	if err != nil {
		return nil, ErrDecrypt
	}
	return plain, nil
}
