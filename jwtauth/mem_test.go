package jwtauth

import (
	"fmt"
	"reflect"
	"runtime"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/extauthz/extauthz/internal/testutil"
)

// TestCachedTokensShareOnlyEqualScopes checks that the scope lists the
// cache shares between tokens are shared only when equal, element by
// element: a scope may contain a space when it comes from an "scp" array.
func TestCachedTokensShareOnlyEqualScopes(t *testing.T) {
	tests := []struct {
		name   string
		claims [2][]any // "scope" or "scp" claim name and value, per token
		want   [2][]string
	}{
		{"equal lists", [2][]any{{"scope", "read write"}, {"scp", []string{"read", "write"}}},
			[2][]string{{"read", "write"}, {"read", "write"}}},
		{"a scope with a space", [2][]any{{"scope", "a b"}, {"scp", []string{"a b"}}},
			[2][]string{{"a", "b"}, {"a b"}}},
		{"a scope with a separator", [2][]any{{"scp", []string{"1:a", "b"}}, {"scp", []string{"1:a1:b"}}},
			[2][]string{{"1:a", "b"}, {"1:a1:b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newClock()
			k := newKey(t, jose.ES256, "k1")
			v := newCachedVerifier(t, clock, 100, staticSet(t, k.public()))
			for round := range 2 { // the second round is served from the cache
				for i, c := range tt.claims {
					tok := k.sign(t, with(baseClaims(), "scope", deleteClaim, "tsid", fmt.Sprint("s", i), c[0], c[1]))
					got, err := v.Verify(t.Context(), tok)
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(got.Scopes, tt.want[i]) {
						t.Errorf("round %d, token %d: Scopes = %q, want %q", round, i, got.Scopes, tt.want[i])
					}
				}
			}
		})
	}
}

// TestCacheMemoryPerToken reports the live heap that each cached token
// takes (go test -run CacheMemory -v ./jwtauth). The bytes depend on the Go
// version and are only reported; the heap objects per token, which every
// garbage collection marks, are held to what the entries are built to take.
func TestCacheMemoryPerToken(t *testing.T) {
	if testing.Short() {
		t.Skip("signs and verifies 1000 tokens")
	}
	const n = 1000
	clock := newClock()
	k := newKey(t, jose.ES256, "k1")
	v := newCachedVerifier(t, clock, n, staticSet(t, k.public()))
	toks := make([]string, n)
	for i := range toks {
		toks[i] = k.sign(t, with(baseClaims(), "sub", fmt.Sprintf("user-%08d", i), "tsid", fmt.Sprintf("session-%016d", i)))
	}
	before, objsBefore := testutil.LiveHeap()
	for _, tok := range toks {
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
	}
	after, objsAfter := testutil.LiveHeap()
	runtime.KeepAlive(toks)
	objs := float64(objsAfter-objsBefore) / n
	t.Logf("%d cached tokens: %.0f bytes of live heap and %.1f heap objects each (the objects are what the garbage collector marks)",
		v.cache.len(), float64(after-before)/n, objs)
	// One string for the subject and the session ID; the entry is held by
	// value in the LRU's slice.
	if objs > 1.5 {
		t.Errorf("%.1f heap objects per cached token, want 1", objs)
	}
}
