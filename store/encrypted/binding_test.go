package encrypted_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/encrypted"
	"github.com/extauthz/extauthz/store/memory"
	"github.com/extauthz/extauthz/tokencrypt"
	"github.com/extauthz/extauthz/tokencrypt/tokencrypttest"
)

// rebind rewrites the stored row of (session, gh) as someone with write
// access to the table would: same ciphertexts, binding changed by f.
func rebind(t *testing.T, inner *memory.Store, session string, f func(*store.Row)) {
	t.Helper()
	raw, err := inner.Get(context.Background(), session, "gh")
	if err != nil {
		t.Fatal(err)
	}
	f(&raw)
	if err := inner.Put(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
}

// TestChangedBindingUnreadable: a row whose subject, client ID or upstream
// subject was changed in the table does not open, by any read, and its
// tokens appear in no error.
func TestChangedBindingUnreadable(t *testing.T) {
	ctx := context.Background()
	for name, f := range map[string]func(*store.Row){
		"subject":          func(r *store.Row) { r.Subject = "mallory" },
		"client ID":        func(r *store.Row) { r.ClientID = "mallory-app" },
		"upstream subject": func(r *store.Row) { r.UpstreamSubject = "gh-mallory" },
		"upstream blanked": func(r *store.Row) { r.UpstreamSubject = "" },
	} {
		t.Run(name, func(t *testing.T) {
			inner := memory.New()
			s := encrypted.New(inner, keyring(t, "a", "a"))
			r := row("s1", "gh", "victim-access")
			r.UpstreamSubject = "gh-alice"
			if err := s.Put(ctx, r); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Get(ctx, "s1", "gh"); err != nil {
				t.Fatalf("before: %v", err)
			}
			rebind(t, inner, "s1", f)
			reads := map[string]func() error{
				"Get":        func() error { _, err := s.Get(ctx, "s1", "gh"); return err },
				"GetSession": func() error { _, err := s.GetSession(ctx, "s1"); return err },
				"ClaimRefresh": func() error {
					_, err := s.ClaimRefresh(ctx, "s1", "gh", "owner", time.Minute)
					return err
				},
			}
			for op, read := range reads {
				err := read()
				if !errors.Is(err, store.ErrUnreadable) || !errors.Is(err, tokencrypt.ErrDecrypt) {
					t.Errorf("%s: %v, want ErrUnreadable (ErrDecrypt)", op, err)
				}
				if err != nil && strings.Contains(err.Error(), "victim-access") {
					t.Errorf("%s: error reveals the token: %v", op, err)
				}
			}
			// Nothing was written under the changed binding.
			if raw, _ := inner.Get(ctx, "s1", "gh"); raw.Version != 2 {
				t.Errorf("a read wrote to the rebound row (version %d)", raw.Version)
			}
		})
	}
}

// TestWritesSealTheBinding: every write path seals the binding it leaves
// in the row: Put the row's own, CompleteRefresh the one already stored.
func TestWritesSealTheBinding(t *testing.T) {
	ctx := context.Background()
	inner := memory.New()
	s := encrypted.New(inner, keyring(t, "a", "a"))
	r := row("s1", "gh", "first")
	r.UpstreamSubject = "gh-alice"
	if err := s.Put(ctx, r); err != nil {
		t.Fatal(err)
	}
	c, err := s.ClaimRefresh(ctx, "s1", "gh", "owner", time.Minute)
	if err != nil || !c.Held {
		t.Fatal(c, err)
	}
	got, err := s.CompleteRefresh(ctx, "s1", "gh", c.Lease, store.Tokens{AccessToken: "third", RefreshToken: "rt3", IDToken: "id3"})
	if err != nil || got.AccessToken != "third" || got.Subject != "alice" || got.UpstreamSubject != "gh-alice" {
		t.Fatalf("CompleteRefresh = %+v, %v", got, err)
	}
	raw, _ := inner.Get(ctx, "s1", "gh")
	for _, v := range []string{raw.AccessToken, raw.RefreshToken, raw.IDToken} {
		if info, ok := tokencrypt.Inspect(v); !ok || info.Format != tokencrypt.FormatV2 {
			t.Errorf("stored %.12q...: %+v, want v2", v, info)
		}
	}
	// The refreshed tokens are bound: a changed subject makes them unreadable.
	rebind(t, inner, "s1", func(r *store.Row) { r.Subject = "mallory" })
	if _, err := s.Get(ctx, "s1", "gh"); !errors.Is(err, store.ErrUnreadable) {
		t.Errorf("refreshed row rebound: %v, want ErrUnreadable", err)
	}
}

// TestCompleteRefreshAfterRebindWritesNothing: the binding changed while a
// refresh was in flight: the refresh's tokens are not stored under it.
func TestCompleteRefreshAfterRebindWritesNothing(t *testing.T) {
	ctx := context.Background()
	inner := memory.New()
	s := encrypted.New(inner, keyring(t, "a", "a"))
	if err := s.Put(ctx, row("s1", "gh", "first")); err != nil {
		t.Fatal(err)
	}
	c, err := s.ClaimRefresh(ctx, "s1", "gh", "owner", time.Minute)
	if err != nil || !c.Held {
		t.Fatal(c, err)
	}
	rebind(t, inner, "s1", func(r *store.Row) { r.Subject = "mallory" })
	if _, err := s.CompleteRefresh(ctx, "s1", "gh", c.Lease, store.Tokens{AccessToken: "refreshed"}); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("CompleteRefresh after the rebind: %v, want ErrLeaseLost", err)
	}
	if _, err := s.Get(ctx, "s1", "gh"); !errors.Is(err, store.ErrUnreadable) {
		t.Errorf("rebound row: %v, want ErrUnreadable", err)
	}
}

// putV1 stores a row sealed in the earlier format under key id.
func putV1(t *testing.T, inner *memory.Store, id string, r store.Row) {
	t.Helper()
	k := tokencrypt.Key{ID: id, Secret: secrets[id]}
	for col, v := range map[string]*string{
		encrypted.ColumnAccess: &r.AccessToken, encrypted.ColumnRefresh: &r.RefreshToken, encrypted.ColumnID: &r.IDToken,
	} {
		*v = tokencrypttest.SealV1(k, *v, tokencrypt.Place{SessionID: r.SessionID, Provider: r.Provider, Column: col})
	}
	if err := inner.Put(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

// TestV1RowsReadThenUpgraded: rows sealed in the earlier format keep
// working (and are reported to the observer); Rotate seals them again in
// the current format even under the primary key, after which their binding
// is sealed too.
func TestV1RowsReadThenUpgraded(t *testing.T) {
	ctx := context.Background()
	inner := memory.New()
	putV1(t, inner, "a", row("old-1", "gh", "v1-token-1"))
	putV1(t, inner, "a", row("old-2", "gh", "v1-token-2"))
	var legacy atomic.Int64
	keys := keyring(t, "a", "a")
	s := encrypted.New(inner, keys, encrypted.WithLegacyReadObserver(func(provider string) {
		if provider == "gh" {
			legacy.Add(1)
		}
	}))
	if err := s.Put(ctx, row("new", "gh", "v2-token")); err != nil {
		t.Fatal(err)
	}
	for _, sid := range []string{"old-1", "old-2", "new"} {
		if _, err := s.Get(ctx, sid, "gh"); err != nil {
			t.Fatalf("%s: %v", sid, err)
		}
	}
	if n := legacy.Load(); n != 2 {
		t.Errorf("observer told of %d v1 reads, want 2", n)
	}
	stats, err := encrypted.Rotate(ctx, inner, keys, 2, nil)
	if err != nil || stats.Scanned != 3 || stats.Rewritten != 2 || stats.Upgraded != 2 || len(stats.Plaintext) != 0 {
		t.Fatalf("Rotate = %+v, %v; want the two v1 rows upgraded", stats, err)
	}
	if got, err := s.Get(ctx, "old-1", "gh"); err != nil || got.AccessToken != "v1-token-1" || got.IDToken != "id-v1-token-1" {
		t.Fatalf("old-1 after the upgrade: %+v, %v", got.Tokens, err)
	}
	if n := legacy.Load(); n != 2 {
		t.Errorf("v1 reads after the upgrade: %d, want still 2", n)
	}
	if stats, err := encrypted.Rotate(ctx, inner, keys, 2, nil); err != nil || stats.Rewritten != 0 {
		t.Errorf("second Rotate = %+v, %v; want nothing to do", stats, err)
	}
	rebind(t, inner, "old-2", func(r *store.Row) { r.Subject = "mallory" })
	if _, err := s.Get(ctx, "old-2", "gh"); !errors.Is(err, store.ErrUnreadable) {
		t.Errorf("upgraded row rebound: %v, want ErrUnreadable", err)
	}
}

// TestRotateNeverSealsPlaintext: a row mixing a ciphertext and a plaintext
// token (say, an access token written into the table by hand) is reported
// and left as it is.
func TestRotateNeverSealsPlaintext(t *testing.T) {
	ctx := context.Background()
	inner := memory.New()
	keys := keyring(t, "b", "a", "b")
	s := encrypted.New(inner, keys)
	putV1(t, inner, "a", row("s1", "gh", "genuine"))
	rebind(t, inner, "s1", func(r *store.Row) { r.AccessToken = "planted-token" })
	stats, err := encrypted.Rotate(ctx, inner, keys, 10, nil)
	if err != nil || stats.Rewritten != 0 || len(stats.Plaintext) != 1 || stats.Plaintext[0].SessionID != "s1" {
		t.Fatalf("Rotate = %+v, %v; want the row reported, not rewritten", stats, err)
	}
	raw, _ := inner.Get(ctx, "s1", "gh")
	if raw.AccessToken != "planted-token" || !strings.HasPrefix(raw.RefreshToken, "v1.a.") {
		t.Errorf("the row was changed: access %q, refresh %.8q", raw.AccessToken, raw.RefreshToken)
	}
	if _, err := s.Get(ctx, "s1", "gh"); !errors.Is(err, tokencrypt.ErrNotEncrypted) {
		t.Errorf("Get: %v, want unreadable (not encrypted)", err)
	}
}

// TestWithoutV1: once every row is sealed again, a v1 ciphertext written
// back into a row (with a changed binding, say) is refused, while v2 rows
// read as before.
func TestWithoutV1(t *testing.T) {
	ctx := context.Background()
	inner := memory.New()
	putV1(t, inner, "a", row("old", "gh", "v1-token"))
	s := encrypted.New(inner, keyring(t, "a", "a"), encrypted.WithoutV1())
	if err := s.Put(ctx, row("new", "gh", "v2-token")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, "new", "gh"); err != nil || got.AccessToken != "v2-token" {
		t.Errorf("v2 row: %+v, %v", got.Tokens, err)
	}
	_, err := s.Get(ctx, "old", "gh")
	if !errors.Is(err, store.ErrUnreadable) || strings.Contains(err.Error(), "v1-token") {
		t.Errorf("v1 row: %v, want ErrUnreadable without the token", err)
	}
	if rows, err := s.GetSession(ctx, "old"); !errors.Is(err, store.ErrUnreadable) {
		t.Errorf("v1 session: %v, %v; want ErrUnreadable", rows, err)
	}
}
