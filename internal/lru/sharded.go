package lru

import (
	"iter"
	"sync"
	"sync/atomic"
)

// maxShards is the most shards a Sharded is split into; minShardWeight is
// the least capacity per shard (a smaller Sharded has fewer shards, down to
// one).
const (
	maxShards      = 32
	minShardWeight = 64
)

// Sharded is a weighted LRU map safe for concurrent use: its keys are spread
// (by a hash of the caller's) over shards, each an LRU behind its own lock.
//
// The capacity bounds the sum of the weights of all the shards, not each
// shard's: keys hash unevenly over the shards, and with a fixed share each
// (capacity/shards) about half of the shards of a map as large as its
// working set overflow and evict their own least recently used entries
// while others have room. Entries used in turn (many sessions, each calling
// now and then) then miss on every look-up in those shards. Each shard may
// therefore grow up to the whole capacity; an Add that takes the total over
// it evicts its own shard's least recently used entries, and, when that
// shard holds no other, other shards' (after the shard's lock is released,
// one lock at a time). The total exceeds the capacity only while Adds are
// in progress, by at most their weights.
type Sharded[K comparable, V any] struct {
	capacity int64
	weight   atomic.Int64 // the sum of the weights of all the shards
	shards   []Shard[K, V]
}

// Shard is one lock and LRU of a Sharded. Its methods other than Lock must
// be called with the lock held.
type Shard[K comparable, V any] struct {
	mu    sync.Mutex
	lru   *LRU[K, V]
	set   *Sharded[K, V]
	index int // in set.shards
	// over is how far the total was above the capacity after an Add
	// evicted what it could from this shard; Unlock evicts it from the
	// others.
	over int64
	_    [24]byte // keep neighbouring shards' locks off one cache line
}

// NewSharded returns an empty Sharded whose entries' weights sum to at most
// capacity (taken as 1 if below). It has one shard per 64 of capacity, at
// least one and at most 32.
func NewSharded[K comparable, V any](capacity int) *Sharded[K, V] {
	capacity = max(capacity, 1)
	n := min(max(capacity/minShardWeight, 1), maxShards)
	c := &Sharded[K, V]{capacity: int64(capacity), shards: make([]Shard[K, V], n)}
	for i := range c.shards {
		c.shards[i].lru = New[K, V](capacity)
		c.shards[i].set, c.shards[i].index = c, i
	}
	return c
}

// Shards returns the number of shards.
func (c *Sharded[K, V]) Shards() int { return len(c.shards) }

// Shard returns the shard for a key whose hash is h (h modulo the number of
// shards).
func (c *Sharded[K, V]) Shard(h uint64) *Shard[K, V] {
	return &c.shards[h%uint64(len(c.shards))]
}

// Len returns the number of entries.
func (c *Sharded[K, V]) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += s.lru.Len()
		s.mu.Unlock()
	}
	return n
}

// Weight returns the sum of the entries' weights (with any Add in progress).
func (c *Sharded[K, V]) Weight() int { return int(c.weight.Load()) }

// Clear removes every entry, one shard at a time.
func (c *Sharded[K, V]) Clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.Lock()
		s.Clear()
		s.Unlock()
	}
}

// Lock locks the shard.
func (s *Shard[K, V]) Lock() { s.mu.Lock() }

// Unlock unlocks the shard and then, if an Add under the lock left the
// total above the capacity, evicts the least recently used entries of the
// other shards until it fits, locking one at a time.
func (s *Shard[K, V]) Unlock() {
	over := s.over
	s.over = 0
	s.mu.Unlock()
	if over > 0 {
		s.set.evict(s.index, over)
	}
}

// Get returns the value for k and marks it most recently used.
func (s *Shard[K, V]) Get(k K) (V, bool) { return s.lru.Get(k) }

// Peek returns the value for k without marking it used.
func (s *Shard[K, V]) Peek(k K) (V, bool) { return s.lru.Peek(k) }

// Set is LRU.Set.
func (s *Shard[K, V]) Set(k K, v V) bool { return s.lru.Set(k, v) }

// Add is LRU.Add, with the capacity the whole Sharded's: it evicts this
// shard's least recently used entries (never the one it adds) while the
// total is above the capacity, and leaves the rest to Unlock.
func (s *Shard[K, V]) Add(k K, v V, w int) bool {
	c := s.set
	before := s.lru.Weight()
	ok := s.lru.Add(k, v, w)
	over := c.weight.Add(int64(s.lru.Weight()-before)) - c.capacity
	for over > 0 && s.lru.Len() > 1 {
		before = s.lru.Weight()
		s.lru.RemoveOldest()
		over = c.weight.Add(int64(s.lru.Weight()-before)) - c.capacity
	}
	s.over = max(s.over, over)
	return ok
}

// All yields the shard's entries from the most to the least recently used
// without marking them used. The shard must not be changed during the
// iteration.
func (s *Shard[K, V]) All() iter.Seq2[K, V] { return s.lru.All() }

// Remove deletes the entry for k, if any.
func (s *Shard[K, V]) Remove(k K) {
	before := s.lru.Weight()
	s.lru.Remove(k)
	s.set.weight.Add(int64(s.lru.Weight() - before))
}

// Clear removes every entry of the shard.
func (s *Shard[K, V]) Clear() {
	s.set.weight.Add(int64(-s.lru.Weight()))
	s.lru.Clear()
}

// evict removes the least recently used entries of the shards other than
// the i-th, in turn from the one after it, one lock at a time, until the
// total fits the capacity or a whole round found nothing to remove. It is
// rare: a small capacity, heavy entries, or concurrent adds. The i-th shard
// is left alone: its Add evicted all it could but the entry it added (and
// any later Add there evicts for itself).
func (c *Sharded[K, V]) evict(i int, over int64) {
	n := len(c.shards)
	for j, empty := 1, 0; over > 0 && empty < n-1; j++ {
		if j%n == 0 {
			continue
		}
		o := &c.shards[(i+j)%n]
		o.mu.Lock()
		before := o.lru.Weight()
		if o.lru.RemoveOldest() {
			over = c.weight.Add(int64(o.lru.Weight()-before)) - c.capacity
			empty = 0
		} else {
			over = c.weight.Load() - c.capacity
			empty++
		}
		o.mu.Unlock()
	}
}
