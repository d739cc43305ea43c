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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/extauthz/extauthz/internal/lru"
)

// cacheShards is the most shards a verified-token cache is split into, each
// with its own lock; minShardTokens is the fewest tokens per shard (a smaller
// cache has fewer shards, down to one).
const (
	cacheShards    = 32
	minShardTokens = 64
)

// tokenCache remembers tokens that passed Verify, keyed by the SHA-256 of the
// whole token, so that the next presentation of the same token skips the
// signature check and the claims parsing. It holds at most size tokens (one
// more per add in progress, until it has evicted), in LRU shards.
//
// The bound is the cache's as a whole, not each shard's: the tokens hash
// unevenly over the shards, and with a fixed share each (size/shards) about
// half of the shards of a cache as large as its working set overflow and
// evict their own least recently used tokens while others have room. Tokens
// presented in turn (many sessions, each calling now and then) then miss on
// every look-up in those shards: with 10 000 sessions and the default size
// of 10 000, half of bench/run's hot-path Checks paid the ES256 check. Each
// shard may therefore grow up to size; count is the total, and an add that
// takes it over size evicts its own shard's least recently used token (or,
// when that shard holds no other, another shard's).
type tokenCache struct {
	size   int64
	count  atomic.Int64 // tokens held by all the shards
	shards []cacheShard
}

type cacheShard struct {
	mu  sync.Mutex
	lru *lru.LRU[[sha256.Size]byte, *verified]
	_   [48]byte // keep neighbouring shards' locks off one cache line
}

// verified is a cache entry: a token's claims, how long Verify would go on
// accepting it, and the key that verified its signature.
type verified struct {
	claims Claims
	// until is exp plus the leeway: Verify accepts the token while now is
	// before it.
	until    time.Time
	kid, alg string
	key      crypto.PublicKey
}

func newTokenCache(size int) *tokenCache {
	n := min(max(size/minShardTokens, 1), cacheShards)
	c := &tokenCache{size: int64(size), shards: make([]cacheShard, n)}
	for i := range c.shards {
		c.shards[i].lru = lru.New[[sha256.Size]byte, *verified](size)
	}
	return c
}

func (c *tokenCache) shardIndex(key *[sha256.Size]byte) int {
	return int(binary.LittleEndian.Uint64(key[:8]) % uint64(len(c.shards)))
}

// get returns the entry for key, or nil.
func (c *tokenCache) get(key *[sha256.Size]byte) *verified {
	s := &c.shards[c.shardIndex(key)]
	s.mu.Lock()
	e, _ := s.lru.Get(*key)
	s.mu.Unlock()
	return e
}

func (c *tokenCache) add(key *[sha256.Size]byte, e *verified) {
	i := c.shardIndex(key)
	s := &c.shards[i]
	s.mu.Lock()
	before := s.lru.Len()
	s.lru.Add(*key, e, 1)
	over := c.count.Add(int64(s.lru.Len()-before)) - c.size
	for over > 0 && s.lru.Len() > 1 {
		s.lru.RemoveOldest()
		over = c.count.Add(-1) - c.size
	}
	s.mu.Unlock()
	// Rare (a small cache, or concurrent adds): evict from the next
	// shards, one lock at a time.
	for j := 1; over > 0 && j < 2*len(c.shards); j++ {
		o := &c.shards[(i+j)%len(c.shards)]
		o.mu.Lock()
		if o.lru.RemoveOldest() {
			over = c.count.Add(-1) - c.size
		} else {
			over = c.count.Load() - c.size
		}
		o.mu.Unlock()
	}
}

func (c *tokenCache) remove(key *[sha256.Size]byte) {
	s := &c.shards[c.shardIndex(key)]
	s.mu.Lock()
	before := s.lru.Len()
	s.lru.Remove(*key)
	c.count.Add(int64(s.lru.Len() - before))
	s.mu.Unlock()
}

// len returns the number of cached tokens.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += s.lru.Len()
		s.mu.Unlock()
	}
	return n
}

// cached returns the claims of raw if it is in the cache and Verify would
// still accept it: its exp (with the leeway) has not passed, and the key
// set still holds the key that verified its signature. An entry that fails
// either test is dropped.
func (v *Verifier) cached(ctx context.Context, key *[sha256.Size]byte) (Claims, bool) {
	e := v.cache.get(key)
	if e == nil {
		return Claims{}, false
	}
	if !v.now().Before(e.until) {
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
	// The claims' strings are substrings of the whole payload: copy them so
	// that the entry does not keep the payload alive.
	c.Subject = strings.Clone(c.Subject)
	c.ClientID = strings.Clone(c.ClientID)
	c.SessionID = strings.Clone(c.SessionID)
	if c.Scopes != nil {
		scopes := make([]string, len(c.Scopes))
		for i, s := range c.Scopes {
			scopes[i] = strings.Clone(s)
		}
		// Full capacity: an append by a caller cannot write into the
		// cached array.
		c.Scopes = slices.Clip(scopes)
	}
	v.cache.add(key, &verified{claims: c, until: c.ExpiresAt.Add(v.leeway), kid: kid, alg: alg, key: pub})
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
