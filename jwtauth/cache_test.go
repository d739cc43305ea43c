package jwtauth

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/extauthz/extauthz/internal/testutil"
)

func newCachedVerifier(t testing.TB, clock *testutil.Clock, size int, keys KeySet) *Verifier {
	t.Helper()
	cfg := testConfig(clock)
	cfg.CacheSize = size
	v, err := NewWithKeySet(cfg, keys)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// countingKeySet counts look-ups and lets a test swap the keys.
type countingKeySet struct {
	mu    sync.Mutex
	set   KeySet
	calls int
}

func (c *countingKeySet) VerificationKey(ctx context.Context, kid, alg string) (crypto.PublicKey, error) {
	c.mu.Lock()
	c.calls++
	set := c.set
	c.mu.Unlock()
	return set.VerificationKey(ctx, kid, alg)
}

func (c *countingKeySet) swap(set KeySet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.set = set
}

func TestCacheHitReturnsIdenticalClaims(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256, "k1")
	v := newCachedVerifier(t, clock, 100, staticSet(t, k.public()))
	tok := k.sign(t, baseClaims())

	first, err := v.Verify(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if n := v.cache.len(); n != 1 {
		t.Fatalf("cache holds %d tokens after one Verify, want 1", n)
	}
	for range 3 {
		again, err := v.Verify(t.Context(), tok)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(first, again) {
			t.Fatalf("cached claims %+v differ from the first %+v", again, first)
		}
	}
	// The same as an uncached verifier's answer.
	plain := newStaticVerifier(t, clock, k.public())
	want, err := plain.Verify(t.Context(), tok)
	if err != nil || !reflect.DeepEqual(want, first) {
		t.Fatalf("uncached Verify = %+v, %v; cached %+v", want, err, first)
	}
	// A hit costs no signature check: it allocates next to nothing.
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("a cache hit allocates %v times, want at most 1", allocs)
	}
}

// TestCacheHonoursExpiry checks that a cached token is accepted exactly as
// long as Verify accepts it: until exp plus the leeway, never beyond.
func TestCacheHonoursExpiry(t *testing.T) {
	k := newKey(t, jose.ES256, "k1")
	exp := t0.Add(5 * time.Minute)
	for _, tt := range []struct {
		name  string
		after time.Duration // after exp
		ok    bool
	}{
		{"before exp", -time.Second, true},
		{"at exp, within leeway", 0, true},
		{"just within leeway", testLeeway - time.Nanosecond, true},
		{"at exp + leeway", testLeeway, false},
		{"beyond leeway", testLeeway + time.Hour, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clock := newClock()
			v := newCachedVerifier(t, clock, 10, staticSet(t, k.public()))
			plain := newStaticVerifier(t, clock, k.public())
			tok := k.sign(t, with(baseClaims(), "exp", exp.Unix()))
			if _, err := v.Verify(t.Context(), tok); err != nil {
				t.Fatal(err)
			}
			clock.Advance(exp.Add(tt.after).Sub(clock.Now()))
			_, err := v.Verify(t.Context(), tok)
			_, plainErr := plain.Verify(t.Context(), tok)
			if (err == nil) != tt.ok || (plainErr == nil) != tt.ok {
				t.Fatalf("cached: %v, uncached: %v; want accepted = %v", err, plainErr, tt.ok)
			}
			if !tt.ok {
				if !errors.Is(err, errExpired) {
					t.Errorf("err = %v, want %v", err, errExpired)
				}
				if n := v.cache.len(); n != 0 {
					t.Errorf("expired token still cached (%d entries)", n)
				}
			}
		})
	}
}

func TestCacheBounded(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256, "k1")
	const size = 10
	v := newCachedVerifier(t, clock, size, staticSet(t, k.public()))
	var toks []string
	for i := range 100 {
		tok := k.sign(t, with(baseClaims(), "tsid", fmt.Sprintf("session-%d", i)))
		toks = append(toks, tok)
		c, err := v.Verify(t.Context(), tok)
		if err != nil || c.SessionID != fmt.Sprintf("session-%d", i) {
			t.Fatalf("Verify %d = %+v, %v", i, c, err)
		}
		if n := v.cache.len(); n > size {
			t.Fatalf("cache holds %d tokens, more than its size %d", n, size)
		}
	}
	// Evicted tokens are verified again, correctly.
	for i, tok := range toks {
		c, err := v.Verify(t.Context(), tok)
		if err != nil || c.SessionID != fmt.Sprintf("session-%d", i) {
			t.Fatalf("Verify %d again = %+v, %v", i, c, err)
		}
	}
	if n := v.cache.len(); n > size {
		t.Fatalf("cache holds %d tokens, more than its size %d", n, size)
	}
}

func TestCacheOneCharacterDiffersIsAMiss(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256, "k1")
	v := newCachedVerifier(t, clock, 10, staticSet(t, k.public()))
	tok := k.sign(t, baseClaims())
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	for _, i := range []int{0, len(tok) / 2, len(tok) - 2, len(tok) - 1} {
		bad := flip(tok, i)
		if _, err := v.Verify(t.Context(), bad); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("token with byte %d changed: err = %v, want ErrInvalidToken", i, err)
		}
	}
	if _, err := v.Verify(t.Context(), tok+"A"); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("token with a byte appended: err = %v, want ErrInvalidToken", err)
	}
	if n := v.cache.len(); n != 1 {
		t.Errorf("cache holds %d tokens, want only the valid one", n)
	}
}

// TestCacheFollowsKeySet checks that a cached token stops being accepted
// once its key leaves the key set, as it would without the cache.
func TestCacheFollowsKeySet(t *testing.T) {
	clock := newClock()
	k1 := newKey(t, jose.ES256, "k1")
	impostor := newKey(t, jose.ES256, "k1") // same kid, another key
	k2 := newKey(t, jose.ES256, "k2")
	keys := &countingKeySet{set: staticSet(t, k1.public(), k2.public())}
	v := newCachedVerifier(t, clock, 10, keys)
	tok := k1.sign(t, baseClaims())
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	keys.swap(staticSet(t, impostor.public(), k2.public()))
	if _, err := v.Verify(t.Context(), tok); !errors.Is(err, errSignature) {
		t.Errorf("key replaced under the same kid: err = %v, want %v", err, errSignature)
	}
	keys.swap(staticSet(t, k1.public(), k2.public()))
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	keys.swap(staticSet(t, k2.public()))
	if _, err := v.Verify(t.Context(), tok); !errors.Is(err, errUnknownKey) {
		t.Errorf("key removed: err = %v, want %v", err, errUnknownKey)
	}
}

func TestCacheSizeValidated(t *testing.T) {
	cfg := testConfig(newClock())
	cfg.CacheSize = -1
	if _, err := NewWithKeySet(cfg, staticSet(t, newKey(t, jose.ES256, "k").public())); err == nil {
		t.Error("negative CacheSize accepted")
	}
}

func TestCacheConcurrent(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256, "k1")
	v := newCachedVerifier(t, clock, 8, staticSet(t, k.public()))
	var toks []string
	for i := range 16 {
		toks = append(toks, k.sign(t, with(baseClaims(), "tsid", fmt.Sprintf("s%d", i))))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				j := (g + i) % len(toks)
				c, err := v.Verify(context.Background(), toks[j])
				if err != nil || c.SessionID != fmt.Sprintf("s%d", j) {
					t.Errorf("Verify = %+v, %v", c, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkVerify verifies one token without and with the cache, and, as
// "miss", tokens presented in turn that the cache cannot hold, so that each
// call verifies and caches (the cache-miss Check's cost).
func BenchmarkVerify(b *testing.B) {
	clock := newClock()
	k := newKey(b, jose.ES256, "k1")
	tok := k.sign(b, baseClaims())
	for _, size := range []int{0, 1000} {
		b.Run(fmt.Sprintf("cache=%d", size), func(b *testing.B) {
			v := newCachedVerifier(b, clock, size, staticSet(b, k.public()))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(context.Background(), tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("cache=100/miss", func(b *testing.B) {
		v := newCachedVerifier(b, clock, 100, staticSet(b, k.public()))
		toks := make([]string, 2*100)
		for i := range toks {
			toks[i] = k.sign(b, with(baseClaims(), "sub", fmt.Sprint("user-", i), "tsid", fmt.Sprint("session-", i)))
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := v.Verify(context.Background(), toks[i%len(toks)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// TestCacheHoldsItsSize is the bound as a whole: a cache holds as many
// tokens as its size however they spread over its shards, so a working set
// of exactly that many tokens, presented in turn, always hits. (With a fixed
// share per shard, the shards that drew more than their share evicted their
// own tokens, and about half the look-ups missed.)
func TestCacheHoldsItsSize(t *testing.T) {
	const size = 10000
	c := newTokenCache(size)
	key := func(i int) *[sha256.Size]byte {
		k := sha256.Sum256([]byte(fmt.Sprintf("token-%d", i)))
		return &k
	}
	for round := range 2 {
		for i := range size {
			if _, ok := c.get(key(i)); round == 1 && !ok {
				t.Fatalf("token %d missed in round 2; the cache of %d holds %d", i, size, c.len())
			}
			c.add(key(i), verified{})
		}
	}
	// More tokens than the size: the bound holds, and the count matches.
	for i := size; i < 2*size; i++ {
		c.add(key(i), verified{})
		if i%997 == 0 && c.len() > size {
			t.Fatalf("cache holds %d tokens, more than its size %d", c.len(), size)
		}
	}
	if n := c.len(); n != size || c.lru.Weight() != size {
		t.Fatalf("cache holds %d tokens (count %d); want %d", n, c.lru.Weight(), size)
	}
	// The most recent tokens are there, and removal keeps the count.
	for i := 2*size - 100; i < 2*size; i++ {
		if _, ok := c.get(key(i)); !ok {
			t.Fatalf("recent token %d evicted", i)
		}
		c.remove(key(i))
	}
	if n := c.len(); n != size-100 || c.lru.Weight() != size-100 {
		t.Fatalf("after 100 removals: %d tokens (count %d); want %d", n, c.lru.Weight(), size-100)
	}
}

// TestCacheBoundConcurrent: concurrent adds over every shard never leave
// the cache above its size.
func TestCacheBoundConcurrent(t *testing.T) {
	for _, size := range []int{1, 7, 100, 1000} {
		c := newTokenCache(size)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 2000 {
					k := sha256.Sum256([]byte(fmt.Sprintf("%d-%d", g, i)))
					c.add(&k, verified{})
					if i%3 == 0 {
						c.remove(&k)
					}
				}
			})
		}
		wg.Wait()
		if n := c.len(); n > size || n != c.lru.Weight() {
			t.Errorf("size %d: cache holds %d tokens (count %d)", size, n, c.lru.Weight())
		}
	}
}
