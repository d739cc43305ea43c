package cached_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/cached"
)

var notifyKey = []byte("0123456789abcdef0123456789abcdef")

// TestInvalidateTag: a session named by its tag under the key is forgotten;
// a tag under another key, or of another session, forgets nothing.
func TestInvalidateTag(t *testing.T) {
	f := newFixture(t, 100)
	f.c.SetNotifyKey(notifyKey)
	f.put(t, row("s1", "gh", "at1", t0.Add(time.Hour)))
	f.put(t, row("s2", "gh", "at1", t0.Add(time.Hour)))
	f.expect(t, "s1", "gh", "at1", true)
	if _, err := f.c.GetSession(t.Context(), "s2"); err != nil {
		t.Fatal(err)
	}
	f.put(t, row("s1", "gh", "at2", t0.Add(time.Hour)))
	f.put(t, row("s2", "gh", "at2", t0.Add(time.Hour)))
	f.c.InvalidateTag(store.NotifyTag([]byte("another key, 32 bytes long......"), "s1"))
	f.c.InvalidateTag(store.NotifyTag(notifyKey, "s3"))
	f.expect(t, "s1", "gh", "at1", false)
	f.expect(t, "s2", "gh", "at1", false)
	f.c.InvalidateTag(store.NotifyTag(notifyKey, "s1"))
	f.expect(t, "s1", "gh", "at2", true)
	f.expect(t, "s2", "gh", "at1", false)
	f.c.InvalidateTag(store.NotifyTag(notifyKey, "s2"))
	f.expect(t, "s2", "gh", "at2", true)
	// Cached again, found again.
	f.put(t, row("s1", "gh", "at3", t0.Add(time.Hour)))
	f.c.InvalidateTag(store.NotifyTag(notifyKey, "s1"))
	f.expect(t, "s1", "gh", "at3", true)
}

// TestInvalidateTagDuringReadWins: an invalidation by tag that overtakes a
// read keeps it from caching what it read, though the tag was not yet in
// the index when it arrived.
func TestInvalidateTagDuringReadWins(t *testing.T) {
	for _, op := range []string{"Get", "GetSession"} {
		t.Run(op, func(t *testing.T) {
			inner := newCounting()
			var c *cached.Store
			var once sync.Once
			inner.hook = func() {
				once.Do(func() {
					if err := inner.Store.Put(context.Background(), row("s1", "gh", "new", time.Now().Add(time.Hour))); err != nil {
						t.Error(err)
					}
					c.InvalidateTag(store.NotifyTag(notifyKey, "s1"))
				})
			}
			c = cached.New(inner, cached.Options{Size: 10})
			c.SetNotifyKey(notifyKey)
			c.Trust(forever())
			if err := inner.Store.Put(t.Context(), row("s1", "gh", "old", time.Now().Add(time.Hour))); err != nil {
				t.Fatal(err)
			}
			read := func() string {
				if op == "Get" {
					r, err := c.Get(t.Context(), "s1", "gh")
					if err != nil {
						t.Fatal(err)
					}
					return r.AccessToken
				}
				rows, err := c.GetSession(t.Context(), "s1")
				if err != nil || len(rows) != 1 {
					t.Fatal(rows, err)
				}
				return rows[0].AccessToken
			}
			if got := read(); got != "old" {
				t.Fatalf("first read = %q", got)
			}
			if got := read(); got != "new" {
				t.Fatalf("second read = %q; want new: the overtaken read was cached", got)
			}
		})
	}
}

// TestTagIndexPruned: sessions evicted from a small cache leave their tags
// behind only until the index is pruned, and the tags of cached sessions
// survive pruning: they are still invalidated by tag.
func TestTagIndexPruned(t *testing.T) {
	const size = 4
	f := newFixture(t, size)
	f.c.SetNotifyKey(notifyKey)
	for i := range 5000 {
		s := fmt.Sprintf("s%d", i)
		f.put(t, row(s, "gh", "at1", t0.Add(time.Hour)))
		f.expect(t, s, "gh", "at1", true)
	}
	// The last sessions are cached; their tags still find them.
	for i := 5000 - size; i < 5000; i++ {
		s := fmt.Sprintf("s%d", i)
		f.expect(t, s, "gh", "at1", false)
		f.put(t, row(s, "gh", "at2", t0.Add(time.Hour)))
		f.c.InvalidateTag(store.NotifyTag(notifyKey, s))
		f.expect(t, s, "gh", "at2", true)
	}
	if n := f.c.IndexLen(); n > 2*size+1024+1 {
		t.Errorf("tag index holds %d tags for a cache of %d sessions", n, size)
	}
}

// TestKeyChange: after a change of key (and the InvalidateAll that goes
// with it), sessions are found by their tags under the new key.
func TestKeyChange(t *testing.T) {
	f := newFixture(t, 100)
	f.c.SetNotifyKey(notifyKey)
	f.put(t, row("s1", "gh", "at1", t0.Add(time.Hour)))
	f.expect(t, "s1", "gh", "at1", true)
	newKey := []byte("fedcba9876543210fedcba9876543210")
	f.c.SetNotifyKey(newKey)
	f.c.InvalidateAll()
	f.expect(t, "s1", "gh", "at1", true)
	f.put(t, row("s1", "gh", "at2", t0.Add(time.Hour)))
	f.expect(t, "s1", "gh", "at1", false)
	f.c.InvalidateTag(store.NotifyTag(newKey, "s1"))
	f.expect(t, "s1", "gh", "at2", true)
}
