package cached

import (
	"testing"
	"time"

	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/memory"
)

// TestSharedTagKeyIsNotCached: a session whose tag key the index already
// holds for another session is read through, never cached, so that an
// invalidation by its tag cannot miss it; the other session stays cached.
func TestSharedTagKeyIsNotCached(t *testing.T) {
	ctx := t.Context()
	inner := memory.New()
	exp := time.Now().Add(time.Hour)
	for _, sid := range []string{"a", "b"} {
		if err := inner.Put(ctx, store.Row{SessionID: sid, Provider: "gh", Subject: "u", ClientID: "c",
			Tokens: store.Tokens{AccessToken: "at", RefreshToken: "rt", ExpiresAt: exp}}); err != nil {
			t.Fatal(err)
		}
	}
	s := New(inner, Options{Size: 10})
	s.Trust(time.Now().Add(time.Hour))
	s.SetNotifyKey([]byte("0123456789abcdef0123456789abcdef"))
	if _, err := s.Get(ctx, "a", "gh"); err != nil {
		t.Fatal(err)
	}
	// Give b's tag key to a, as a collision of the keys' first 8 bytes would.
	if !s.enter(keyOf(s.tagOf("b")), "a") {
		t.Fatal("enter refused a session's own first key")
	}
	for range 2 {
		if _, err := s.Get(ctx, "b", "gh"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetSession(ctx, "b"); err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if st.Sessions != 1 || st.Misses != 4+1 {
		t.Errorf("sessions %d, misses %d: want only a cached, every read of b missed", st.Sessions, st.Misses)
	}
	// b's tag now invalidates a, one session too many.
	s.InvalidateTag(store.NotifyTag([]byte("0123456789abcdef0123456789abcdef"), "b"))
	if n := s.Stats().Sessions; n != 0 {
		t.Errorf("%d sessions cached after the invalidation, want 0", n)
	}
}
