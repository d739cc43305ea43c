package lru

import (
	"fmt"
	"slices"
	"testing"
	"unsafe"
)

func TestEvictsLeastRecentlyUsed(t *testing.T) {
	c := New[string, int](3)
	c.Add("a", 1, 1)
	c.Add("b", 2, 1)
	c.Add("c", 3, 1)
	if v, ok := c.Get("a"); !ok || v != 1 { // a is now the most recent
		t.Fatalf("Get(a) = %v, %v", v, ok)
	}
	c.Add("d", 4, 1) // evicts b
	if _, ok := c.Peek("b"); ok {
		t.Error("b survived; want it evicted as least recently used")
	}
	for _, k := range []string{"a", "c", "d"} {
		if _, ok := c.Peek(k); !ok {
			t.Errorf("%s evicted", k)
		}
	}
	if c.Len() != 3 || c.Weight() != 3 {
		t.Errorf("Len, Weight = %d, %d; want 3, 3", c.Len(), c.Weight())
	}
}

func TestRemoveOldest(t *testing.T) {
	c := New[string, int](5)
	if c.RemoveOldest() {
		t.Fatal("RemoveOldest on an empty LRU reported an entry")
	}
	c.Add("a", 1, 2)
	c.Add("b", 2, 1)
	c.Get("a") // b is now the least recently used
	if !c.RemoveOldest() {
		t.Fatal("RemoveOldest reported no entry")
	}
	if _, ok := c.Peek("b"); ok {
		t.Error("b survived RemoveOldest")
	}
	if c.Len() != 1 || c.Weight() != 2 {
		t.Errorf("Len, Weight = %d, %d; want 1, 2", c.Len(), c.Weight())
	}
	if !c.RemoveOldest() || c.Len() != 0 || c.Weight() != 0 || c.RemoveOldest() {
		t.Errorf("after removing a: Len, Weight = %d, %d; want an empty LRU", c.Len(), c.Weight())
	}
}

func TestWeights(t *testing.T) {
	c := New[int, string](10)
	for i := range 10 {
		c.Add(i, fmt.Sprint(i), 1)
	}
	c.Add(100, "heavy", 4) // evicts 0..3
	if c.Weight() != 10 || c.Len() != 7 {
		t.Fatalf("Len, Weight = %d, %d; want 7, 10", c.Len(), c.Weight())
	}
	for i := range 4 {
		if _, ok := c.Peek(i); ok {
			t.Errorf("%d survived", i)
		}
	}
	// Replacing an entry replaces its weight.
	c.Add(100, "light", 1)
	if c.Weight() != 7 || c.Len() != 7 {
		t.Fatalf("after replace: Len, Weight = %d, %d; want 7, 7", c.Len(), c.Weight())
	}
	// Too heavy for the whole cache: not stored, old value gone.
	if c.Add(5, "huge", 11) {
		t.Error("Add of an entry heavier than the capacity reported true")
	}
	if _, ok := c.Peek(5); ok || c.Weight() != 6 {
		t.Errorf("after a too-heavy Add: present %v, weight %d; want absent, 6", ok, c.Weight())
	}
	c.Remove(100)
	c.Remove(12345)
	if c.Weight() != 5 || c.Len() != 5 {
		t.Errorf("after Remove: Len, Weight = %d, %d; want 5, 5", c.Len(), c.Weight())
	}
	c.Clear()
	if c.Weight() != 0 || c.Len() != 0 {
		t.Errorf("after Clear: Len, Weight = %d, %d", c.Len(), c.Weight())
	}
	c.Add(1, "x", 1)
	if v, ok := c.Get(1); !ok || v != "x" {
		t.Errorf("after Clear, Add then Get = %q, %v", v, ok)
	}
}

func TestNoAllocationsWhenFull(t *testing.T) {
	c := New[int, int](64)
	for i := range 64 {
		c.Add(i, i, 1)
	}
	// Warm up: the map has its size; evictions free nodes for reuse.
	for i := 64; i < 1000; i++ {
		c.Add(i, i, 1)
	}
	i := 1000
	allocs := testing.AllocsPerRun(1000, func() {
		c.Add(i, i, 1)
		c.Get(i)
		i++
	})
	if allocs > 0.1 {
		t.Errorf("Add+Get on a full cache: %v allocations, want none", allocs)
	}
}

func BenchmarkGet(b *testing.B) {
	c := New[int, int](1024)
	for i := range 1024 {
		c.Add(i, i, 1)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Get(i & 1023)
	}
}

func TestAllMostRecentFirst(t *testing.T) {
	c := New[string, int](10)
	c.Add("a", 1, 1)
	c.Add("b", 2, 1)
	c.Add("c", 3, 1)
	c.Get("a")
	var got []string
	for k := range c.All() {
		got = append(got, k)
	}
	if want := []string{"a", "c", "b"}; !slices.Equal(got, want) {
		t.Errorf("All yielded %v, want %v", got, want)
	}
}

func TestSetKeepsKeyAndWeight(t *testing.T) {
	type key struct{ s string }
	c := New[key, int](10)
	stored := string([]byte("a")) // the key the entry keeps
	c.Add(key{stored}, 1, 3)
	c.Add(key{"b"}, 2, 1)
	if c.Set(key{"absent"}, 9) {
		t.Error("Set of an absent key reported true")
	}
	if !c.Set(key{"a"}, 5) { // an equal key, another string
		t.Fatal("Set of a present key reported false")
	}
	var keys []key
	var vals []int
	for k, v := range c.All() {
		keys, vals = append(keys, k), append(vals, v)
	}
	if !slices.Equal(vals, []int{5, 2}) || c.Weight() != 4 || c.Len() != 2 {
		t.Errorf("after Set: values %v (most recent first), weight %d, len %d; want [5 2], 4, 2", vals, c.Weight(), c.Len())
	}
	if unsafe.StringData(keys[0].s) != unsafe.StringData(stored) {
		t.Error("Set replaced the stored key")
	}
}
