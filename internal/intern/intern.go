// Package intern shares the values that many long-lived cache entries hold
// alike (client IDs, provider names, scope lists, key IDs), so that a cache
// of many sessions holds each such value once rather than once per entry.
//
// Unlike the standard library's unique package, a Pool keeps its values for
// its own lifetime: a value interned once is shared by every later entry,
// however many garbage collections run between them. It is bounded: once it
// holds its maximum, further values are returned as given, so values of high
// cardinality (which gain nothing from sharing) cannot make it grow without
// bound.
package intern

import (
	"strings"
	"sync"
)

// Pool maps keys to canonical values, at most a fixed number of them. The
// zero Pool is not usable: call New. A Pool is safe for concurrent use.
type Pool[V any] struct {
	mu    sync.Mutex
	vals  map[string]V
	limit int
}

// New returns an empty Pool that holds at most limit values (taken as 1 if
// below).
func New[V any](limit int) *Pool[V] {
	return &Pool[V]{vals: make(map[string]V), limit: max(limit, 1)}
}

// Value returns the pool's value for key if it holds one, else v, which
// becomes the pool's value for key if the pool has room. The caller must
// not modify a value once it has passed it to the pool, and must treat the
// values returned as read-only.
func (p *Pool[V]) Value(key string, v V) V {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.vals[key]; ok {
		return c
	}
	if len(p.vals) < p.limit {
		// The key may be a slice of a larger string: keep only its bytes.
		p.vals[strings.Clone(key)] = v
	}
	return v
}

// Len returns the number of values the pool holds.
func (p *Pool[V]) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.vals)
}

// Strings is a Pool of strings, each its own key.
type Strings struct{ p *Pool[string] }

// NewStrings returns an empty Strings that holds at most limit strings
// (taken as 1 if below).
func NewStrings(limit int) Strings { return Strings{New[string](limit)} }

// String returns a string equal to s: the pool's copy if it holds one, else
// a copy of s that the pool keeps if it has room, else s itself. The empty
// string is returned as is.
func (s Strings) String(v string) string {
	if v == "" {
		return v
	}
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if c, ok := s.p.vals[v]; ok {
		return c
	}
	if len(s.p.vals) < s.p.limit {
		c := strings.Clone(v) // v may be a slice of a larger string
		s.p.vals[c] = c
		return c
	}
	return v
}

// Len returns the number of strings the pool holds.
func (s Strings) Len() int { return s.p.Len() }
