// Package lru is a weighted least-recently-used map, the building block of
// the service's bounded caches (verified JWTs, upstream tokens).
//
// An LRU is not safe for concurrent use: a Sharded spreads its keys over
// several LRUs, each behind its own mutex, bounded together. Every operation
// is O(1). Get allocates nothing, and Add reuses the slot of the entry it
// evicts, so a full cache allocates only for its own growth.
//
// The entries live in one slice, linked by index rather than by pointer:
// a cache of a hundred thousand entries is then a few large objects for
// the garbage collector to mark rather than a hundred thousand small ones,
// and its map holds no pointers of its own (none at all when the key has
// none), which matters to a service that runs under a memory limit and so
// collects often.
package lru

import "iter"

// LRU maps keys to values and keeps the sum of the entries' weights at or
// below its capacity by evicting the least recently used entries. The zero
// LRU is not usable: call New.
type LRU[K comparable, V any] struct {
	capacity int
	weight   int
	// items maps a key to its node's index in nodes.
	items map[K]int32
	// nodes[0] is the sentinel of a circular list: its next is the most
	// recently used entry, its prev the least. The other nodes are entries,
	// or free (linked through next from free).
	nodes []node[K, V]
	// free is the index of the first free node, or 0 when there is none.
	free int32
}

type node[K comparable, V any] struct {
	prev, next int32
	weight     int
	key        K
	val        V
}

// maxNodes bounds the entries of one LRU, so that an index fits in an int32.
const maxNodes = 1<<31 - 1

// New returns an empty LRU whose entries' weights sum to at most capacity.
// A capacity below 1 is taken as 1.
func New[K comparable, V any](capacity int) *LRU[K, V] {
	return &LRU[K, V]{capacity: max(capacity, 1), items: make(map[K]int32), nodes: make([]node[K, V], 1)}
}

// Len returns the number of entries.
func (c *LRU[K, V]) Len() int { return len(c.items) }

// Weight returns the sum of the entries' weights.
func (c *LRU[K, V]) Weight() int { return c.weight }

// Get returns the value for k and marks it most recently used.
func (c *LRU[K, V]) Get(k K) (V, bool) {
	i, ok := c.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	c.moveToFront(i)
	return c.nodes[i].val, true
}

// Peek returns the value for k without marking it used.
func (c *LRU[K, V]) Peek(k K) (V, bool) {
	i, ok := c.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	return c.nodes[i].val, true
}

// Set replaces the value of k's entry, keeping the key it was added with
// (which a caller may have copied so as not to keep a larger string alive)
// and its weight, marks it most recently used and reports true; it reports
// false, and stores nothing, when there is no entry for k.
func (c *LRU[K, V]) Set(k K, v V) bool {
	i, ok := c.items[k]
	if !ok {
		return false
	}
	c.nodes[i].val = v
	c.moveToFront(i)
	return true
}

// Add sets the value for k, with weight w (at least 1), marks it most
// recently used, and evicts least recently used entries until the weights
// fit the capacity. An entry heavier than the whole capacity is not stored
// (and any previous value for k is removed); Add then reports false, as it
// does when the LRU already holds the most entries an LRU can.
func (c *LRU[K, V]) Add(k K, v V, w int) bool {
	w = max(w, 1)
	if i, ok := c.items[k]; ok {
		c.unlink(i)
	}
	if w > c.capacity {
		return false
	}
	for c.weight+w > c.capacity {
		c.unlink(c.nodes[0].prev)
	}
	i := c.free
	if i != 0 {
		c.free = c.nodes[i].next
	} else {
		if len(c.nodes) == maxNodes {
			return false
		}
		c.nodes = append(c.nodes, node[K, V]{})
		i = int32(len(c.nodes) - 1)
	}
	n := &c.nodes[i]
	n.key, n.val, n.weight = k, v, w
	c.items[k] = i
	c.weight += w
	c.linkFront(i)
	return true
}

// Remove deletes the entry for k, if any.
func (c *LRU[K, V]) Remove(k K) {
	if i, ok := c.items[k]; ok {
		c.unlink(i)
	}
}

// RemoveOldest deletes the least recently used entry and reports whether
// there was one. It lets a caller that bounds several LRUs together evict
// from one of them.
func (c *LRU[K, V]) RemoveOldest() bool {
	i := c.nodes[0].prev
	if i == 0 {
		return false
	}
	c.unlink(i)
	return true
}

// All yields the entries from the most to the least recently used without
// marking them used. The LRU must not be changed during the iteration.
func (c *LRU[K, V]) All() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for i := c.nodes[0].next; i != 0; i = c.nodes[i].next {
			if !yield(c.nodes[i].key, c.nodes[i].val) {
				return
			}
		}
	}
}

// Clear removes every entry and lets go of the memory they took.
func (c *LRU[K, V]) Clear() {
	c.items = make(map[K]int32)
	c.nodes = make([]node[K, V], 1)
	c.free = 0
	c.weight = 0
}

// linkFront puts node i at the front of the list.
func (c *LRU[K, V]) linkFront(i int32) {
	n, root := &c.nodes[i], &c.nodes[0]
	n.prev, n.next = 0, root.next
	c.nodes[root.next].prev = i
	root.next = i
}

func (c *LRU[K, V]) moveToFront(i int32) {
	if c.nodes[0].next == i {
		return
	}
	n := &c.nodes[i]
	c.nodes[n.prev].next, c.nodes[n.next].prev = n.next, n.prev
	c.linkFront(i)
}

// unlink removes node i from the list and the map and frees it for reuse.
func (c *LRU[K, V]) unlink(i int32) {
	n := &c.nodes[i]
	c.nodes[n.prev].next, c.nodes[n.next].prev = n.next, n.prev
	delete(c.items, n.key)
	c.weight -= n.weight
	*n = node[K, V]{next: c.free} // drop references to the key and value
	c.free = i
}
