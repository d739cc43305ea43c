package store

import (
	"crypto/sha256"
	"encoding/hex"
)

// NotifyKeySize is the size of a notification key.
const NotifyKeySize = 32

// Tag is the name under which change notifications name a session: a keyed
// hash of its ID, so that whoever can read the notifications but not the
// key learns nothing of the session IDs.
type Tag [sha256.Size]byte

// NotifyTag returns the Tag of sessionID under key: the SHA-256 of key
// followed by the session ID's bytes (UTF-8). The PostgreSQL trigger of
// migration 00004 computes the same, as
// sha256(key || convert_to(session_id, 'UTF8')).
func NotifyTag(key []byte, sessionID string) Tag {
	h := sha256.New()
	h.Write(key)
	h.Write([]byte(sessionID))
	var t Tag
	h.Sum(t[:0])
	return t
}

// ParseTag reads a Tag written as 64 lower-case hex digits, as
// notifications carry it.
func ParseTag(s string) (Tag, bool) {
	var t Tag
	if len(s) != hex.EncodedLen(len(t)) {
		return Tag{}, false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return Tag{}, false
		}
	}
	if _, err := hex.Decode(t[:], []byte(s)); err != nil {
		return Tag{}, false
	}
	return t, true
}

// String returns t as 64 lower-case hex digits.
func (t Tag) String() string { return hex.EncodeToString(t[:]) }
