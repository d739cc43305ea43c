// Package lru is a weighted least-recently-used map, the building block of
// the service's bounded caches (verified JWTs, upstream tokens).
//
// An LRU is not safe for concurrent use: a Sharded spreads its keys over
// several LRUs, each behind its own mutex, bounded together. Every operation
// is O(1). Get allocates nothing, and Add reuses the node of the entry it
// evicts, so a full cache allocates only for the map's own growth.
package lru

import "iter"

// LRU maps keys to values and keeps the sum of the entries' weights at or
// below its capacity by evicting the least recently used entries. The zero
// LRU is not usable: call New.
type LRU[K comparable, V any] struct {
	capacity int
	weight   int
	items    map[K]*node[K, V]
	// root is the sentinel of a circular list: root.next is the most
	// recently used entry, root.prev the least.
	root node[K, V]
	// free is a node kept for reuse by the next Add.
	free *node[K, V]
}

type node[K comparable, V any] struct {
	prev, next *node[K, V]
	key        K
	val        V
	weight     int
}

// New returns an empty LRU whose entries' weights sum to at most capacity.
// A capacity below 1 is taken as 1.
func New[K comparable, V any](capacity int) *LRU[K, V] {
	c := &LRU[K, V]{capacity: max(capacity, 1), items: make(map[K]*node[K, V])}
	c.root.next, c.root.prev = &c.root, &c.root
	return c
}

// Len returns the number of entries.
func (c *LRU[K, V]) Len() int { return len(c.items) }

// Weight returns the sum of the entries' weights.
func (c *LRU[K, V]) Weight() int { return c.weight }

// Get returns the value for k and marks it most recently used.
func (c *LRU[K, V]) Get(k K) (V, bool) {
	n, ok := c.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	c.moveToFront(n)
	return n.val, true
}

// Peek returns the value for k without marking it used.
func (c *LRU[K, V]) Peek(k K) (V, bool) {
	n, ok := c.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	return n.val, true
}

// Set replaces the value of k's entry, keeping the key it was added with
// (which a caller may have copied so as not to keep a larger string alive)
// and its weight, marks it most recently used and reports true; it reports
// false, and stores nothing, when there is no entry for k.
func (c *LRU[K, V]) Set(k K, v V) bool {
	n, ok := c.items[k]
	if !ok {
		return false
	}
	n.val = v
	c.moveToFront(n)
	return true
}

// Add sets the value for k, with weight w (at least 1), marks it most
// recently used, and evicts least recently used entries until the weights
// fit the capacity. An entry heavier than the whole capacity is not stored
// (and any previous value for k is removed); Add then reports false.
func (c *LRU[K, V]) Add(k K, v V, w int) bool {
	w = max(w, 1)
	if n, ok := c.items[k]; ok {
		c.unlink(n)
	}
	if w > c.capacity {
		return false
	}
	for c.weight+w > c.capacity {
		c.unlink(c.root.prev)
	}
	n := c.free
	if n != nil {
		c.free = nil
	} else {
		n = new(node[K, V])
	}
	n.key, n.val, n.weight = k, v, w
	c.items[k] = n
	c.weight += w
	n.prev, n.next = &c.root, c.root.next
	n.next.prev = n
	c.root.next = n
	return true
}

// Remove deletes the entry for k, if any.
func (c *LRU[K, V]) Remove(k K) {
	if n, ok := c.items[k]; ok {
		c.unlink(n)
	}
}

// RemoveOldest deletes the least recently used entry and reports whether
// there was one. It lets a caller that bounds several LRUs together evict
// from one of them.
func (c *LRU[K, V]) RemoveOldest() bool {
	if c.root.prev == &c.root {
		return false
	}
	c.unlink(c.root.prev)
	return true
}

// All yields the entries from the most to the least recently used without
// marking them used. The LRU must not be changed during the iteration.
func (c *LRU[K, V]) All() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for n := c.root.next; n != &c.root; n = n.next {
			if !yield(n.key, n.val) {
				return
			}
		}
	}
}

// Clear removes every entry.
func (c *LRU[K, V]) Clear() {
	clear(c.items)
	c.root.next, c.root.prev = &c.root, &c.root
	c.weight = 0
	c.free = nil
}

func (c *LRU[K, V]) moveToFront(n *node[K, V]) {
	if c.root.next == n {
		return
	}
	n.prev.next, n.next.prev = n.next, n.prev
	n.prev, n.next = &c.root, c.root.next
	n.next.prev = n
	c.root.next = n
}

// unlink removes n from the list and the map and keeps it for reuse.
func (c *LRU[K, V]) unlink(n *node[K, V]) {
	n.prev.next, n.next.prev = n.next, n.prev
	delete(c.items, n.key)
	c.weight -= n.weight
	var zero node[K, V]
	*n = zero // drop references to the key and value
	c.free = n
}
