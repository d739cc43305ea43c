// Package tokencrypttest writes ciphertexts of tokencrypt's earlier format,
// v1, for tests of the transition to the current one: a row sealed before
// the binding was sealed too. The service itself never writes v1.
package tokencrypttest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"

	"github.com/extauthz/extauthz/tokencrypt"
)

// SealV1 returns plaintext sealed under key in the v1 format, which binds
// place's session, provider and column and nothing else. It panics on a key
// of the wrong size. The empty string stays empty, as with Seal.
func SealV1(key tokencrypt.Key, plaintext string, place tokencrypt.Place) string {
	if plaintext == "" {
		return ""
	}
	block, err := aes.NewCipher(key.Secret)
	if err != nil {
		panic(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	aad := []byte("v1.")
	for _, part := range []string{place.SessionID, place.Provider, place.Column} {
		aad = binary.AppendUvarint(aad, uint64(len(part)))
		aad = append(aad, part...)
	}
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	sealed := aead.Seal(nonce, nonce, []byte(plaintext), aad)
	return "v1." + key.ID + "." + base64.RawURLEncoding.EncodeToString(sealed)
}
