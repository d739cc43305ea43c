package lru

import (
	"fmt"
	"hash/maphash"
	"sync"
	"testing"
	"unsafe"
)

func hash(k string) uint64 { return maphash.String(seed, k) }

var seed = maphash.MakeSeed()

func add(c *Sharded[string, int], k string, v, w int) bool {
	s := c.Shard(hash(k))
	s.Lock()
	defer s.Unlock()
	return s.Add(k, v, w)
}

func get(c *Sharded[string, int], k string) (int, bool) {
	s := c.Shard(hash(k))
	s.Lock()
	defer s.Unlock()
	return s.Get(k)
}

func remove(c *Sharded[string, int], k string) {
	s := c.Shard(hash(k))
	s.Lock()
	defer s.Unlock()
	s.Remove(k)
}

// weights returns the number of entries and the sum of their weights, read
// from the shards themselves.
func weights(c *Sharded[string, int]) (n, w int) {
	for i := range c.shards {
		s := &c.shards[i]
		s.Lock()
		n += s.lru.Len()
		w += s.lru.Weight()
		s.Unlock()
	}
	return n, w
}

func TestShardedShards(t *testing.T) {
	for _, tt := range []struct{ capacity, shards int }{{-1, 1}, {0, 1}, {1, 1}, {127, 1}, {128, 2}, {640, 10}, {2048, 32}, {1 << 20, 32}} {
		if n := NewSharded[string, int](tt.capacity).Shards(); n != tt.shards {
			t.Errorf("capacity %d: %d shards, want %d", tt.capacity, n, tt.shards)
		}
	}
	if size := unsafe.Sizeof(Shard[string, int]{}); size%64 != 0 {
		t.Errorf("a Shard is %d bytes, not a multiple of a cache line", size)
	}
}

// TestShardedHoldsItsCapacity is the bound as a whole: entries of a total
// weight equal to the capacity all fit however they hash, so a second pass
// over them hits every time.
func TestShardedHoldsItsCapacity(t *testing.T) {
	const capacity = 10000
	c := NewSharded[string, int](capacity)
	key := func(i int) string { return fmt.Sprintf("k%d", i) }
	weight := func(i int) int { return 1 + i%3 } // 1, 2, 3, ...
	n, total := 0, 0
	for total+weight(n) <= capacity {
		total += weight(n)
		n++
	}
	for round := range 2 {
		for i := range n {
			if v, ok := get(c, key(i)); round == 1 && (!ok || v != i) {
				t.Fatalf("%s missed in round 2: the Sharded of %d holds %d", key(i), capacity, c.Weight())
			}
			add(c, key(i), i, weight(i))
		}
	}
	if l, w := weights(c); l != n || w != total || c.Len() != n || c.Weight() != w {
		t.Fatalf("Len %d, Weight %d; shards hold %d entries, weight %d; want %d, %d", c.Len(), c.Weight(), l, w, n, total)
	}
	// Beyond the capacity: the bound holds, the newest entries stay.
	for i := n; i < 3*n; i++ {
		add(c, key(i), i, weight(i))
		if c.Weight() > capacity {
			t.Fatalf("weight %d, above the capacity %d", c.Weight(), capacity)
		}
	}
	_, before := weights(c)
	removed := 0
	for i := 3*n - 100; i < 3*n; i++ {
		if _, ok := get(c, key(i)); !ok {
			t.Fatalf("recent %s evicted", key(i))
		}
		remove(c, key(i))
		removed += weight(i)
	}
	if _, w := weights(c); w != c.Weight() || w != before-removed {
		t.Fatalf("after 100 removals: shards weigh %d, Weight %d; want %d", w, c.Weight(), before-removed)
	}
	c.Clear()
	if l, w := weights(c); l != 0 || w != 0 || c.Weight() != 0 {
		t.Fatalf("after Clear: %d entries, weight %d, Weight %d", l, w, c.Weight())
	}
}

// TestShardedEvictsOtherShards: an entry that does not fit evicts from the
// other shards when its own holds nothing else, and one heavier than the
// whole capacity is not stored.
func TestShardedEvictsOtherShards(t *testing.T) {
	c := NewSharded[string, int](256) // 4 shards
	for i := range 256 {
		add(c, fmt.Sprint(i), i, 1)
	}
	// Empty the first shard and add there an entry that only the other
	// shards' evictions make room for.
	var heavy string
	for i := 0; heavy == ""; i++ {
		k := fmt.Sprintf("heavy%d", i)
		if c.Shard(hash(k)) == &c.shards[0] {
			heavy = k
		}
	}
	s := &c.shards[0]
	s.Lock()
	s.Clear()
	s.Unlock()
	if c.Weight() <= 256-200 {
		t.Fatalf("weight %d after clearing a shard leaves no test", c.Weight())
	}
	if !add(c, heavy, 0, 200) {
		t.Fatal("Add of an entry within the capacity reported false")
	}
	if _, ok := get(c, heavy); !ok {
		t.Fatal("the heavy entry was not kept")
	}
	if _, w := weights(c); w > 256 || w != c.Weight() {
		t.Fatalf("shards weigh %d, Weight %d; want at most 256", w, c.Weight())
	}
	if add(c, heavy, 0, 257) {
		t.Error("Add of an entry heavier than the capacity reported true")
	}
	if _, ok := get(c, heavy); ok {
		t.Error("a too-heavy Add left the previous value")
	}
	if _, w := weights(c); w != c.Weight() {
		t.Fatalf("shards weigh %d, Weight %d", w, c.Weight())
	}
}

// TestShardedBoundConcurrent: concurrent adds and removals over every shard
// never leave the total above the capacity, and keep the count exact.
func TestShardedBoundConcurrent(t *testing.T) {
	for _, capacity := range []int{1, 7, 100, 1000, 5000} {
		c := NewSharded[string, int](capacity)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 3000 {
					k := fmt.Sprintf("%d-%d", g, i)
					add(c, k, i, 1+i%4)
					switch i % 5 {
					case 0:
						remove(c, k)
					case 1:
						get(c, fmt.Sprintf("%d-%d", g, i/2))
					}
				}
			})
		}
		wg.Wait()
		if l, w := weights(c); w > capacity || w != c.Weight() || l != c.Len() {
			t.Errorf("capacity %d: shards hold %d entries, weight %d; Len %d, Weight %d", capacity, l, w, c.Len(), c.Weight())
		}
	}
}
