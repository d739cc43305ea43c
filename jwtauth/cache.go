package jwtauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"strconv"
	"strings"

	"github.com/extauthz/extauthz/internal/intern"
	"github.com/extauthz/extauthz/internal/lru"
)

// tokenCache remembers tokens that passed Verify, keyed by the SHA-256 of the
// whole token, so that the next presentation of the same token skips the
// signature check and the claims parsing. It holds at most size tokens (one
// more per add in progress, until it has evicted), in LRU shards.
//
// The bound is the cache's as a whole, not each shard's (see lru.Sharded):
// with a fixed share per shard, about half of the shards of a cache as
// large as its working set overflowed and evicted their own least recently
// used tokens while others had room, and tokens presented in turn (many
// sessions, each calling now and then) then missed on every look-up in
// those shards: with 10 000 sessions and the default size of 10 000, half
// of bench/run's hot-path Checks paid the ES256 check.
//
// The values that many tokens hold alike (client IDs, scope lists, key IDs
// and algorithms) are interned, so that each cached token holds only what is
// its own: its subject and session ID.
type tokenCache struct {
	lru *lru.Sharded[[sha256.Size]byte, verified]
	// strs holds the shared strings, scopes the shared scope lists, keyed
	// by their space-joined scopes.
	strs   intern.Strings
	scopes *intern.Pool[[]string]
}

// verified is a cache entry: a token's claims and the key that verified its
// signature. Verify accepts the token while now is before the claims'
// ExpiresAt plus the leeway. The cache holds entries by value, so that a
// cached token is only its entry's slot and one string (its subject and
// session ID, see remember) for the garbage collector to mark.
type verified struct {
	claims   Claims
	kid, alg string
	key      crypto.PublicKey
}

// internLimit bounds each of a cache's pools of shared values: beyond it,
// values are stored unshared, as they come.
const internLimit = 4096

func newTokenCache(size int) *tokenCache {
	return &tokenCache{lru: lru.NewSharded[[sha256.Size]byte, verified](size),
		strs: intern.NewStrings(internLimit), scopes: intern.New[[]string](internLimit)}
}

func (c *tokenCache) shard(key *[sha256.Size]byte) *lru.Shard[[sha256.Size]byte, verified] {
	return c.lru.Shard(binary.LittleEndian.Uint64(key[:8]))
}

// get returns the entry for key and whether there is one.
func (c *tokenCache) get(key *[sha256.Size]byte) (verified, bool) {
	s := c.shard(key)
	s.Lock()
	e, ok := s.Get(*key)
	s.Unlock()
	return e, ok
}

func (c *tokenCache) add(key *[sha256.Size]byte, e verified) {
	s := c.shard(key)
	s.Lock()
	s.Add(*key, e, 1)
	s.Unlock()
}

func (c *tokenCache) remove(key *[sha256.Size]byte) {
	s := c.shard(key)
	s.Lock()
	s.Remove(*key)
	s.Unlock()
}

// len returns the number of cached tokens.
func (c *tokenCache) len() int { return c.lru.Len() }

// cached returns the claims of raw if it is in the cache and Verify would
// still accept it: its exp (with the leeway) has not passed, and the key
// set still holds the key that verified its signature. An entry that fails
// either test is dropped.
func (v *Verifier) cached(ctx context.Context, key *[sha256.Size]byte) (Claims, bool) {
	e, ok := v.cache.get(key)
	if !ok {
		return Claims{}, false
	}
	if !v.now().Before(e.claims.ExpiresAt.Add(v.leeway)) {
		v.cache.remove(key)
		return Claims{}, false
	}
	// A key removed from the JWKS (or replaced under the same kid) stops
	// its tokens at once, as it would without the cache.
	k, err := v.keys.VerificationKey(ctx, e.kid, e.alg)
	if err != nil || !sameKey(e.key, k) {
		v.cache.remove(key)
		return Claims{}, false
	}
	return e.claims, true
}

// remember caches the claims of a token that has just been verified with
// key.
func (v *Verifier) remember(key *[sha256.Size]byte, c Claims, kid, alg string, pub crypto.PublicKey) {
	tc := v.cache
	c.ClientID = tc.strs.String(c.ClientID)
	if c.Scopes != nil {
		// Full capacity: an append by a caller cannot write into the
		// cached (and shared) array.
		c.Scopes = tc.scopes.Value(scopesKey(c.Scopes), slices.Clip(c.Scopes))
	}
	// The subject and the session ID, each a string of its own as decoded,
	// become slices of one.
	both := c.Subject + c.SessionID
	c.Subject, c.SessionID = both[:len(c.Subject)], both[len(c.Subject):]
	tc.add(key, verified{claims: c, kid: tc.strs.String(kid), alg: tc.strs.String(alg), key: pub})
}

// scopesKey returns a key that tells scope lists apart: each scope with its
// length before it (a scope from an "scp" array may contain any character,
// a space included, so joining them would make ["a b"] and ["a", "b"] one).
func scopesKey(scopes []string) string {
	var b strings.Builder
	for _, s := range scopes {
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	return b.String()
}

// tokenKey returns the SHA-256 of raw. It feeds the hash through a buffer
// on the stack, so that a cache hit allocates nothing ([]byte(raw) would copy
// the whole token to the heap).
func tokenKey(raw string) (sum [sha256.Size]byte) {
	h := sha256.New()
	var buf [512]byte
	for raw != "" {
		n := copy(buf[:], raw)
		h.Write(buf[:n])
		raw = raw[n:]
	}
	h.Sum(sum[:0])
	return sum
}

// sameKey reports whether a and b are the same public key.
func sameKey(a, b crypto.PublicKey) bool {
	switch a := a.(type) {
	case *rsa.PublicKey:
		b, ok := b.(*rsa.PublicKey)
		return ok && (a == b || a.Equal(b))
	case *ecdsa.PublicKey:
		b, ok := b.(*ecdsa.PublicKey)
		return ok && (a == b || a.Equal(b))
	case ed25519.PublicKey:
		b, ok := b.(ed25519.PublicKey)
		return ok && a.Equal(b)
	}
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}
