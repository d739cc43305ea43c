package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/store"
)

// rewriter returns s as a store.Rewriter, or skips the test if it is not one.
func rewriter(t *testing.T, s store.Store) store.Rewriter {
	t.Helper()
	rw, ok := s.(store.Rewriter)
	if !ok {
		t.Skipf("%T does not implement store.Rewriter", s)
	}
	return rw
}

// same describes how got differs from want, every field included; it
// returns "" if they are equal.
func same(want, got store.Row) string {
	d := diff(want, got)
	if !want.CreatedAt.Equal(got.CreatedAt) || !want.UpdatedAt.Equal(got.UpdatedAt) {
		d += fmt.Sprintf("; CreatedAt, UpdatedAt = %v, %v, want %v, %v", got.CreatedAt, got.UpdatedAt, want.CreatedAt, want.UpdatedAt)
	}
	if want.Version != got.Version {
		d += fmt.Sprintf("; Version = %d, want %d", got.Version, want.Version)
	}
	return strings.TrimPrefix(d, "; ")
}

func keyOf(r store.Row) store.Key { return store.Key{SessionID: r.SessionID, Provider: r.Provider} }

func compareKeys(a, b store.Key) int {
	if c := strings.Compare(a.SessionID, b.SessionID); c != 0 {
		return c
	}
	return strings.Compare(a.Provider, b.Provider)
}

// scanAll pages through the whole store with limit, starting after after,
// and checks that every page is short enough and in order.
func scanAll(t *testing.T, rw store.Rewriter, after store.Key, limit int) []store.Row {
	t.Helper()
	var all []store.Row
	for page := 0; ; page++ {
		if page > 1000 {
			t.Fatalf("Scan with limit %d: no end after %d pages", limit, page)
		}
		rows, err := rw.Scan(t.Context(), after, limit)
		if err != nil {
			t.Fatalf("Scan(%+v, %d) = %v", after, limit, err)
		}
		if len(rows) == 0 {
			return all
		}
		if len(rows) > limit {
			t.Fatalf("Scan(%+v, %d) = %d rows, more than the limit", after, limit, len(rows))
		}
		for _, r := range rows {
			if compareKeys(keyOf(r), after) <= 0 {
				t.Fatalf("Scan: row %+v does not come after %+v", keyOf(r), after)
			}
			after = keyOf(r)
			all = append(all, r)
		}
	}
}

func testScan(t *testing.T, s store.Store) {
	rw := rewriter(t, s)
	ctx := t.Context()

	if rows, err := rw.Scan(ctx, store.Key{}, 10); err != nil || len(rows) != 0 {
		t.Errorf("Scan of an empty store = %d rows, %v; want none, nil", len(rows), err)
	}

	// Keys in byte order, as no natural-language collation would have them:
	// upper case before lower case, "s1" < "s10" < "s2", a prefix first.
	var keys []store.Key
	for _, sessionID := range []string{"s1", "s10", "s2", "S1", "s", "s-ünï 🔑"} {
		for _, provider := range []string{"okta", "github", "Zeta", "dex-2", "dex"} {
			if sessionID != "s1" && provider == "dex-2" {
				continue // sessions of different sizes
			}
			keys = append(keys, store.Key{SessionID: sessionID, Provider: provider})
			mustPut(t, s, fullRow(sessionID, provider))
		}
	}
	slices.SortFunc(keys, compareKeys)

	// Versions and flags that differ from row to row.
	mustComplete(t, s, "s10", "okta", newTokens(1))
	markReauth(t, s, "s2", "Zeta")
	mustPut(t, s, fullRow("S1", "dex"))
	mustHold(t, s, "s", "github", "holder", longTTL)

	want := make([]store.Row, len(keys))
	for i, k := range keys {
		want[i] = mustGet(t, s, k.SessionID, k.Provider)
	}
	check := func(t *testing.T, got, want []store.Row) {
		t.Helper()
		if len(got) != len(want) {
			var gotKeys []store.Key
			for _, r := range got {
				gotKeys = append(gotKeys, keyOf(r))
			}
			t.Fatalf("Scan returned %d rows %+v, want %d", len(got), gotKeys, len(want))
		}
		for i := range want {
			if d := same(want[i], got[i]); d != "" {
				t.Errorf("row %d (%+v): %s", i, keyOf(want[i]), d)
			}
		}
	}

	for _, limit := range []int{1, 2, 3, 100} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			check(t, scanAll(t, rw, store.Key{}, limit), want)
		})
	}

	t.Run("first page", func(t *testing.T) {
		rows, err := rw.Scan(ctx, store.Key{}, 4)
		if err != nil {
			t.Fatalf("Scan = %v", err)
		}
		check(t, rows, want[:4])
	})

	t.Run("after a key", func(t *testing.T) {
		afters := []struct {
			name  string
			after store.Key
		}{
			{"stored key", store.Key{SessionID: "s1", Provider: "dex"}},
			{"key between stored ones", store.Key{SessionID: "s1", Provider: "e"}},
			{"session alone", store.Key{SessionID: "s1"}},
			{"session between stored ones", store.Key{SessionID: "s11", Provider: "zzz"}},
			{"last key", keys[len(keys)-1]},
			{"beyond the last key", store.Key{SessionID: "\U0010FFFF"}},
		}
		for _, a := range afters {
			t.Run(a.name, func(t *testing.T) {
				i := 0
				for i < len(keys) && compareKeys(keys[i], a.after) <= 0 {
					i++
				}
				check(t, scanAll(t, rw, a.after, 2), want[i:])
			})
		}
	})

	t.Run("sees writes between pages", func(t *testing.T) {
		rows, err := rw.Scan(ctx, store.Key{}, 1)
		if err != nil || len(rows) != 1 {
			t.Fatalf("Scan = %d rows, %v; want 1", len(rows), err)
		}
		if err := s.Delete(ctx, keys[1].SessionID, keys[1].Provider); err != nil {
			t.Fatalf("Delete = %v", err)
		}
		rest := scanAll(t, rw, keyOf(rows[0]), 3)
		check(t, rest, want[2:])
	})

	t.Run("limit not positive", func(t *testing.T) {
		for _, limit := range []int{0, -1} {
			if rows, err := rw.Scan(ctx, store.Key{}, limit); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("Scan with limit %d = %d rows, %v; want ErrInvalid", limit, len(rows), err)
			}
		}
	})
}

func testRewriteTokens(t *testing.T, s store.Store) {
	rw := rewriter(t, s)
	ctx := t.Context()
	orig := fullRow("s1", "github")
	mustPut(t, s, orig)
	mustPut(t, s, fullRow("s1", "google"))
	mustComplete(t, s, "s1", "github", orig.Tokens)
	markReauth(t, s, "s1", "github")
	before := mustGet(t, s, "s1", "github")
	if before.Version != 3 {
		t.Fatalf("Version = %d before the rewrite, want 3", before.Version)
	}
	other := mustGet(t, s, "s1", "google")

	tests := []struct {
		name   string
		tokens store.Tokens
		want   store.Tokens
	}{
		{
			name:   "every token",
			tokens: store.Tokens{AccessToken: "at-rewritten", RefreshToken: "rt-rewritten", IDToken: "idt-rewritten", TokenType: "DPoP", ExpiresAt: timeIn(2034, time.July, 8)},
			want:   store.Tokens{AccessToken: "at-rewritten", RefreshToken: "rt-rewritten", IDToken: "idt-rewritten", TokenType: "DPoP", ExpiresAt: timeIn(2034, time.July, 8)},
		},
		{
			name:   "cleared optional fields",
			tokens: store.Tokens{AccessToken: "at-rewritten-2"},
			want:   store.Tokens{AccessToken: "at-rewritten-2", TokenType: "Bearer"},
		},
		{
			name:   "back to the original",
			tokens: orig.Tokens,
			want:   orig.Tokens,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pass(s, 5*time.Millisecond) // an UpdatedAt that moved would show
			if err := rw.RewriteTokens(ctx, "s1", "github", before.Version, tt.tokens); err != nil {
				t.Fatalf("RewriteTokens = %v", err)
			}
			want := before
			want.Tokens = tt.want
			if d := same(want, mustGet(t, s, "s1", "github")); d != "" {
				t.Errorf("Get after RewriteTokens: %s", d)
			}
		})
	}
	if d := same(other, mustGet(t, s, "s1", "google")); d != "" {
		t.Errorf("other provider after RewriteTokens: %s", d)
	}

	t.Run("stale version", func(t *testing.T) {
		before := mustGet(t, s, "s1", "github")
		for _, v := range []int64{before.Version - 1, before.Version + 1, 0} {
			err := rw.RewriteTokens(ctx, "s1", "github", v, store.Tokens{AccessToken: "at-stale"})
			if !errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
				t.Errorf("RewriteTokens at version %d (row at %d) = %v, want ErrConflict", v, before.Version, err)
			}
		}
		if d := same(before, mustGet(t, s, "s1", "github")); d != "" {
			t.Errorf("row changed by refused rewrites: %s", d)
		}
	})

	t.Run("after another write", func(t *testing.T) {
		read := mustGet(t, s, "s1", "github")
		updated := mustComplete(t, s, "s1", "github", newTokens(1))
		err := rw.RewriteTokens(ctx, "s1", "github", read.Version, store.Tokens{AccessToken: "at-stale"})
		if !errors.Is(err, store.ErrConflict) {
			t.Errorf("RewriteTokens on the version read before CompleteRefresh = %v, want ErrConflict", err)
		}
		if d := same(updated, mustGet(t, s, "s1", "github")); d != "" {
			t.Errorf("row after the refused rewrite: %s", d)
		}
	})

	t.Run("missing row", func(t *testing.T) {
		for _, key := range [][2]string{{"s1", "okta"}, {"unknown", "github"}} {
			err := rw.RewriteTokens(ctx, key[0], key[1], 1, store.Tokens{AccessToken: "at"})
			if !errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
				t.Errorf("RewriteTokens(%q, %q) = %v, want ErrNotFound", key[0], key[1], err)
			}
			if _, err := s.Get(ctx, key[0], key[1]); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get(%q, %q) after RewriteTokens = %v, want ErrNotFound (no row created)", key[0], key[1], err)
			}
		}
	})

	t.Run("invalid", func(t *testing.T) {
		before := mustGet(t, s, "s1", "github")
		calls := []struct {
			name                string
			sessionID, provider string
			tokens              store.Tokens
		}{
			{"empty access token", "s1", "github", store.Tokens{RefreshToken: "rt", IDToken: "idt"}},
			{"empty session", "", "github", store.Tokens{AccessToken: "at"}},
			{"empty provider", "s1", "", store.Tokens{AccessToken: "at"}},
		}
		for _, c := range calls {
			err := rw.RewriteTokens(ctx, c.sessionID, c.provider, before.Version, c.tokens)
			if !errors.Is(err, store.ErrInvalid) {
				t.Errorf("RewriteTokens with %s = %v, want ErrInvalid", c.name, err)
			}
		}
		if d := same(before, mustGet(t, s, "s1", "github")); d != "" {
			t.Errorf("row changed by refused rewrites: %s", d)
		}
	})
}

// testRewriteKeepsLease checks that a rewrite during a refresh neither
// takes nor breaks the lease: the holder's CompleteRefresh succeeds and its
// tokens win.
func testRewriteKeepsLease(t *testing.T, s store.Store) {
	rw := rewriter(t, s)
	ctx := t.Context()
	mustPut(t, s, fullRow("s1", "github"))
	mustPut(t, s, fullRow("s1", "google"))
	lease := mustHold(t, s, "s1", "github", "holder", longTTL)
	before := mustGet(t, s, "s1", "github")

	rewritten := store.Tokens{AccessToken: "at-rewritten", RefreshToken: "rt-rewritten"}
	if err := rw.RewriteTokens(ctx, "s1", "github", before.Version, rewritten); err != nil {
		t.Fatalf("RewriteTokens during a refresh = %v", err)
	}
	want := before
	want.Tokens = rewritten
	want.TokenType = "Bearer"
	if d := same(want, mustGet(t, s, "s1", "github")); d != "" {
		t.Errorf("Get after RewriteTokens: %s", d)
	}
	// The lease is still held, by the holder alone.
	wantNotHeld(t, s, "s1", "github", "other")

	got, err := s.CompleteRefresh(ctx, "s1", "github", lease, newTokens(2))
	if err != nil {
		t.Fatalf("CompleteRefresh after RewriteTokens = %v, want nil", err)
	}
	want = before
	want.Tokens = newTokens(2)
	if d := diff(want, got); d != "" {
		t.Errorf("CompleteRefresh returned: %s", d)
	}
	if got.Version != before.Version+1 {
		t.Errorf("Version = %d after CompleteRefresh, want %d", got.Version, before.Version+1)
	}
	// The rewrite on the version read before the refresh is refused: the
	// refreshed tokens stay.
	err = rw.RewriteTokens(ctx, "s1", "github", before.Version, rewritten)
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("RewriteTokens on the version before CompleteRefresh = %v, want ErrConflict", err)
	}
	if d := same(got, mustGet(t, s, "s1", "github")); d != "" {
		t.Errorf("Get after the refused rewrite: %s", d)
	}
	mustHold(t, s, "s1", "github", "next", longTTL)

	// Likewise for a release, with and without reauth.
	lease = mustHold(t, s, "s1", "google", "holder", longTTL)
	if err := rw.RewriteTokens(ctx, "s1", "google", lease.Version, rewritten); err != nil {
		t.Fatalf("RewriteTokens during a refresh = %v", err)
	}
	if err := s.ReleaseRefresh(ctx, "s1", "google", lease, true); err != nil {
		t.Errorf("ReleaseRefresh after RewriteTokens = %v, want nil", err)
	}
	if r := mustGet(t, s, "s1", "google"); !r.NeedsReauth || r.AccessToken != rewritten.AccessToken {
		t.Errorf("after ReleaseRefresh: NeedsReauth %v, AccessToken %q; want true, %q", r.NeedsReauth, r.AccessToken, rewritten.AccessToken)
	}
}

func testRewriterCancelledContext(t *testing.T, s store.Store) {
	rw := rewriter(t, s)
	mustPut(t, s, fullRow("s1", "github"))
	before := mustGet(t, s, "s1", "github")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	tokens := store.Tokens{AccessToken: "at-after-cancel"}
	calls := []struct {
		name string
		call func() error
	}{
		{"Scan", func() error { _, err := rw.Scan(ctx, store.Key{}, 10); return err }},
		{"RewriteTokens", func() error { return rw.RewriteTokens(ctx, "s1", "github", before.Version, tokens) }},
	}
	for _, c := range calls {
		err := c.call()
		if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Errorf("%s = %v, want an error wrapping ErrUnavailable and context.Canceled", c.name, err)
		}
		if err != nil && strings.Contains(err.Error(), tokens.AccessToken) {
			t.Errorf("%s = %q, which contains a token", c.name, err)
		}
	}
	if d := same(before, mustGet(t, s, "s1", "github")); d != "" {
		t.Errorf("row changed by calls with a cancelled context: %s", d)
	}
}
