package cached_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/cached"
	"github.com/extauthz/extauthz/store/memory"

	"github.com/extauthz/extauthz/internal/testutil"
)

// fresh returns rows with strings of their own, as a database read and a
// decryption do.
type fresh struct{ *memory.Store }

func (f fresh) Get(ctx context.Context, sessionID, provider string) (store.Row, error) {
	r, err := f.Store.Get(ctx, sessionID, provider)
	for _, s := range []*string{&r.SessionID, &r.Provider, &r.AccessToken, &r.RefreshToken, &r.IDToken, &r.TokenType, &r.Subject, &r.ClientID, &r.UpstreamSubject} {
		*s = strings.Clone(*s)
	}
	return r, err
}

// TestCacheMemoryPerSession reports the live heap that each cached session
// of one row takes (go test -run CacheMemory -v ./store/cached), its rows
// read with strings of their own as from the database. The bytes depend on
// the Go version and are only reported; the heap objects per session, which
// every garbage collection marks, are held to what the entries are built to
// take.
func TestCacheMemoryPerSession(t *testing.T) {
	const n = 5000
	inner := memory.New()
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	for i := range n {
		sid := fmt.Sprintf("bench-session-%08d", i)
		r := store.Row{SessionID: sid, Provider: "github", Tokens: store.Tokens{AccessToken: "at." + sid + ".1.0", RefreshToken: "rt." + sid + ".1.0", TokenType: "Bearer", ExpiresAt: exp},
			Subject: fmt.Sprintf("user-%08d", i), ClientID: "bench-client", SessionExpiresAt: exp.Add(24 * time.Hour)}
		if err := inner.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	c := cached.New(fresh{inner}, cached.Options{Size: n})
	c.Trust(time.Now().Add(time.Hour))
	before, objsBefore := testutil.LiveHeap()
	for i := range n {
		sid := strings.Clone(fmt.Sprintf("bench-session-%08d", i))
		if _, err := c.Get(ctx, sid, "github"); err != nil {
			t.Fatal(err)
		}
	}
	after, objsAfter := testutil.LiveHeap()
	objs := float64(objsAfter-objsBefore) / n
	t.Logf("%d cached sessions: %.0f bytes of live heap and %.1f heap objects each (the objects are what the garbage collector marks)",
		c.Stats().Sessions, float64(after-before)/n, objs)
	// The entry with its row inline, the row's packed strings and the
	// session ID (a string of the test's own): a row's strings apart, or
	// its row out of line, would add one or more.
	if objs > 3.5 {
		t.Errorf("%.1f heap objects per cached session, want at most 3", objs)
	}
}
