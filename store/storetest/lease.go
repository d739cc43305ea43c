package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/extauthz/extauthz/store"
)

const (
	// longTTL is a lease that does not run out during a test.
	longTTL = 30 * time.Second
	// remainingSlack is how much less than longTTL a lease claimed during a
	// test may have left when looked at.
	remainingSlack = 10 * time.Second
	// shortTTL is a lease that a test lets run out, with expiryWait.
	shortTTL   = 200 * time.Millisecond
	expiryWait = shortTTL + 150*time.Millisecond
)

func mustClaim(t *testing.T, s store.Store, sessionID, provider, owner string, ttl time.Duration) store.Claim {
	t.Helper()
	c, err := s.ClaimRefresh(t.Context(), sessionID, provider, owner, ttl)
	if err != nil {
		t.Fatalf("ClaimRefresh(%q, %q, %q, %v) = %v", sessionID, provider, owner, ttl, err)
	}
	return c
}

// mustHold claims the lease and fails the test if it is not granted.
func mustHold(t *testing.T, s store.Store, sessionID, provider, owner string, ttl time.Duration) store.Lease {
	t.Helper()
	c := mustClaim(t, s, sessionID, provider, owner, ttl)
	if !c.Held {
		t.Fatalf("ClaimRefresh(%q, %q, %q) not held, remaining %v; want held", sessionID, provider, owner, c.Remaining)
	}
	return c.Lease
}

// wantNotHeld claims the lease and fails the test if it is granted.
func wantNotHeld(t *testing.T, s store.Store, sessionID, provider, owner string) store.Claim {
	t.Helper()
	c := mustClaim(t, s, sessionID, provider, owner, longTTL)
	if c.Held {
		t.Errorf("ClaimRefresh(%q, %q, %q) held with lease %+v; want another owner's lease in the way", sessionID, provider, owner, c.Lease)
	}
	if c.Remaining <= 0 {
		t.Errorf("ClaimRefresh(%q, %q, %q) not held, Remaining = %v; want > 0", sessionID, provider, owner, c.Remaining)
	}
	return c
}

func wantVersion(t *testing.T, s store.Store, sessionID, provider string, want int64, after string) {
	t.Helper()
	if got := mustGet(t, s, sessionID, provider).Version; got != want {
		t.Errorf("Version = %d after %s, want %d", got, after, want)
	}
}

// mustComplete refreshes the row as the refresh path does: it claims the
// lease and completes it with t, and returns the updated row.
func mustComplete(t *testing.T, s store.Store, sessionID, provider string, tokens store.Tokens) store.Row {
	t.Helper()
	lease := mustHold(t, s, sessionID, provider, "owner-complete", longTTL)
	r, err := s.CompleteRefresh(t.Context(), sessionID, provider, lease, tokens)
	if err != nil {
		t.Fatalf("CompleteRefresh(%q, %q) = %v", sessionID, provider, err)
	}
	return r
}

// markReauth sets the row's NeedsReauth as the refresh path does when the
// provider refuses: it claims the lease and releases it with reauth.
func markReauth(t *testing.T, s store.Store, sessionID, provider string) {
	t.Helper()
	lease := mustHold(t, s, sessionID, provider, "owner-reauth", longTTL)
	if err := s.ReleaseRefresh(t.Context(), sessionID, provider, lease, true); err != nil {
		t.Fatalf("ReleaseRefresh(%q, %q) with reauth = %v", sessionID, provider, err)
	}
}

func newTokens(n int) store.Tokens {
	return store.Tokens{
		AccessToken:  fmt.Sprintf("at-refreshed-%d", n),
		RefreshToken: fmt.Sprintf("rt-refreshed-%d", n),
		IDToken:      fmt.Sprintf("idt-refreshed-%d", n),
		TokenType:    "Bearer",
		ExpiresAt:    timeIn(2035, time.June, n),
	}
}

func testVersions(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustPut(t, s, fullRow("s1", "github"))
	mustPut(t, s, fullRow("s1", "google"))
	wantVersion(t, s, "s1", "github", 1, "insert")

	mustPut(t, s, fullRow("s1", "github"))
	wantVersion(t, s, "s1", "github", 2, "upsert")

	lease := mustHold(t, s, "s1", "github", "owner-1", longTTL)
	if lease.Version != 2 {
		t.Errorf("lease Version = %d, want 2", lease.Version)
	}
	wantVersion(t, s, "s1", "github", 2, "ClaimRefresh")
	if err := s.ReleaseRefresh(ctx, "s1", "github", lease, false); err != nil {
		t.Fatalf("ReleaseRefresh = %v", err)
	}
	wantVersion(t, s, "s1", "github", 2, "ReleaseRefresh without reauth")

	lease = mustHold(t, s, "s1", "github", "owner-2", longTTL)
	completed, err := s.CompleteRefresh(ctx, "s1", "github", lease, newTokens(2))
	if err != nil {
		t.Fatalf("CompleteRefresh = %v", err)
	}
	if completed.Version != 3 {
		t.Errorf("CompleteRefresh returned Version %d, want 3", completed.Version)
	}
	wantVersion(t, s, "s1", "github", 3, "CompleteRefresh")

	lease = mustHold(t, s, "s1", "github", "owner-3", longTTL)
	if err := s.ReleaseRefresh(ctx, "s1", "github", lease, true); err != nil {
		t.Fatalf("ReleaseRefresh with reauth = %v", err)
	}
	wantVersion(t, s, "s1", "github", 4, "ReleaseRefresh with reauth")

	// A Put clears NeedsReauth and moves the version on.
	mustPut(t, s, fullRow("s1", "github"))
	wantVersion(t, s, "s1", "github", 5, "upsert")

	rows, err := s.GetSession(ctx, "s1")
	if err != nil || len(rows) != 2 {
		t.Fatalf("GetSession = %d rows, %v", len(rows), err)
	}
	if rows[0].Version != 5 || rows[1].Version != 1 {
		t.Errorf("GetSession versions = %d, %d; want 5, 1 (other rows untouched)", rows[0].Version, rows[1].Version)
	}

	if err := s.Delete(ctx, "s1", "github"); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	mustPut(t, s, fullRow("s1", "github"))
	wantVersion(t, s, "s1", "github", 1, "insert after Delete")
}

func testClaimFree(t *testing.T, s store.Store) {
	mustPut(t, s, fullRow("s1", "github"))
	mustPut(t, s, fullRow("s1", "google"))
	c := mustClaim(t, s, "s1", "github", "owner-a", longTTL)
	if !c.Held {
		t.Fatalf("ClaimRefresh on a free row: not held, remaining %v", c.Remaining)
	}
	if c.Lease != (store.Lease{Owner: "owner-a", Version: 1}) {
		t.Errorf("Lease = %+v, want owner-a at version 1", c.Lease)
	}
	if c.Remaining != 0 {
		t.Errorf("Remaining = %v when held, want 0", c.Remaining)
	}
	if d := diff(fullRow("s1", "github"), c.Row); d != "" {
		t.Errorf("claimed Row: %s", d)
	}
	if c.Row.Version != 1 || c.Row.CreatedAt.IsZero() {
		t.Errorf("claimed Row: Version %d, CreatedAt %v; want the stored row", c.Row.Version, c.Row.CreatedAt)
	}
	// The lease is on the row, not the session.
	if other := mustClaim(t, s, "s1", "google", "owner-b", longTTL); !other.Held {
		t.Errorf("ClaimRefresh on another provider of the session: not held")
	}
}

func testClaimHeld(t *testing.T, s store.Store) {
	mustPut(t, s, fullRow("s1", "github"))
	lease := mustHold(t, s, "s1", "github", "owner-a", longTTL)

	c := wantNotHeld(t, s, "s1", "github", "owner-b")
	if c.Remaining > longTTL || c.Remaining < longTTL-remainingSlack {
		t.Errorf("Remaining = %v, want about %v", c.Remaining, longTTL)
	}
	if c.Lease != (store.Lease{}) {
		t.Errorf("Lease = %+v when not held, want zero", c.Lease)
	}
	if d := diff(fullRow("s1", "github"), c.Row); d != "" || c.Row.Version != 1 {
		t.Errorf("Row when not held: %s; Version %d, want 1", d, c.Row.Version)
	}

	// A live lease is not granted again, even to its owner.
	wantNotHeld(t, s, "s1", "github", "owner-a")

	// The refused claims did not disturb the holder.
	if _, err := s.CompleteRefresh(t.Context(), "s1", "github", lease, newTokens(1)); err != nil {
		t.Errorf("CompleteRefresh by the holder after refused claims = %v", err)
	}
}

func testClaimAfterExpiry(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustPut(t, s, fullRow("s1", "github"))
	old := mustHold(t, s, "s1", "github", "owner-old", shortTTL)
	pass(s, expiryWait)

	taken := mustHold(t, s, "s1", "github", "owner-new", longTTL)
	if taken.Version != old.Version {
		t.Errorf("takeover lease Version = %d, want %d (the row did not change)", taken.Version, old.Version)
	}
	wantNotHeld(t, s, "s1", "github", "owner-third")

	// The old owner may no longer write, nor give up the new owner's lease.
	before := mustGet(t, s, "s1", "github")
	if _, err := s.CompleteRefresh(ctx, "s1", "github", old, newTokens(1)); !errors.Is(err, store.ErrLeaseLost) || errors.Is(err, store.ErrNotFound) {
		t.Errorf("CompleteRefresh by the old owner = %v, want ErrLeaseLost (and not ErrNotFound)", err)
	}
	if err := s.ReleaseRefresh(ctx, "s1", "github", old, true); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("ReleaseRefresh by the old owner = %v, want ErrLeaseLost", err)
	}
	after := mustGet(t, s, "s1", "github")
	if d := diff(before, after); d != "" || after.Version != before.Version || !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Errorf("row changed by the old owner: %s; Version %d -> %d", d, before.Version, after.Version)
	}
	wantNotHeld(t, s, "s1", "github", "owner-fourth")

	// The new owner completes.
	got, err := s.CompleteRefresh(ctx, "s1", "github", taken, newTokens(2))
	if err != nil {
		t.Fatalf("CompleteRefresh by the new owner = %v", err)
	}
	if got.AccessToken != newTokens(2).AccessToken || got.Version != taken.Version+1 {
		t.Errorf("CompleteRefresh by the new owner returned %q at version %d", got.AccessToken, got.Version)
	}
	// Even a late attempt of the old owner fails now.
	if _, err := s.CompleteRefresh(ctx, "s1", "github", old, newTokens(3)); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("CompleteRefresh by the old owner after the new one = %v, want ErrLeaseLost", err)
	}
	if at := mustGet(t, s, "s1", "github").AccessToken; at != newTokens(2).AccessToken {
		t.Errorf("AccessToken = %q, want the new owner's", at)
	}
}

func testCompleteAfterOwnExpiry(t *testing.T, s store.Store) {
	mustPut(t, s, fullRow("s1", "github"))
	lease := mustHold(t, s, "s1", "github", "owner-slow", shortTTL)
	pass(s, expiryWait)
	// Nobody else claimed the row: the slow owner's tokens are the newest
	// and must be kept.
	got, err := s.CompleteRefresh(t.Context(), "s1", "github", lease, newTokens(1))
	if err != nil {
		t.Fatalf("CompleteRefresh after the lease ran out, unclaimed = %v; want nil", err)
	}
	if got.AccessToken != newTokens(1).AccessToken || got.Version != lease.Version+1 {
		t.Errorf("CompleteRefresh returned %q at version %d", got.AccessToken, got.Version)
	}

	// The same holds for ReleaseRefresh.
	lease = mustHold(t, s, "s1", "github", "owner-slow-2", shortTTL)
	pass(s, expiryWait)
	if err := s.ReleaseRefresh(t.Context(), "s1", "github", lease, false); err != nil {
		t.Errorf("ReleaseRefresh after the lease ran out, unclaimed = %v; want nil", err)
	}
	mustHold(t, s, "s1", "github", "owner-next", longTTL)
}

func testCompleteRefresh(t *testing.T, s store.Store) {
	ctx := t.Context()
	orig := fullRow("s1", "github")
	mustPut(t, s, orig)
	before := mustGet(t, s, "s1", "github")

	lease := mustHold(t, s, "s1", "github", "owner-a", longTTL)
	// Optional fields cleared, token type defaulted, no expiry.
	got, err := s.CompleteRefresh(ctx, "s1", "github", lease, store.Tokens{AccessToken: "at-2"})
	if err != nil {
		t.Fatalf("CompleteRefresh = %v", err)
	}
	want := orig
	want.Tokens = store.Tokens{AccessToken: "at-2", TokenType: "Bearer"}
	if d := diff(want, got); d != "" {
		t.Errorf("CompleteRefresh returned: %s", d)
	}
	stored := mustGet(t, s, "s1", "github")
	if d := diff(want, stored); d != "" {
		t.Errorf("Get after CompleteRefresh: %s", d)
	}
	if stored.Version != got.Version || !stored.UpdatedAt.Equal(got.UpdatedAt) || !stored.CreatedAt.Equal(before.CreatedAt) {
		t.Errorf("stored Version %d, UpdatedAt %v, CreatedAt %v; want %d, %v (returned), %v (unchanged)",
			stored.Version, stored.UpdatedAt, stored.CreatedAt, got.Version, got.UpdatedAt, before.CreatedAt)
	}
	if got.UpdatedAt.Before(before.UpdatedAt) {
		t.Errorf("UpdatedAt = %v, before %v", got.UpdatedAt, before.UpdatedAt)
	}

	// The lease is released: completing or releasing again fails, and
	// another owner may claim at once.
	if _, err := s.CompleteRefresh(ctx, "s1", "github", lease, newTokens(1)); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("second CompleteRefresh = %v, want ErrLeaseLost", err)
	}
	if err := s.ReleaseRefresh(ctx, "s1", "github", lease, false); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("ReleaseRefresh after CompleteRefresh = %v, want ErrLeaseLost", err)
	}
	next := mustHold(t, s, "s1", "github", "owner-b", longTTL)
	if next.Version != got.Version {
		t.Errorf("next lease Version = %d, want %d", next.Version, got.Version)
	}

	// A lease of the right owner on a stale version, or of another owner
	// on the right version, is not the lease.
	for _, l := range []store.Lease{
		{Owner: "owner-b", Version: next.Version - 1},
		{Owner: "owner-b", Version: next.Version + 1},
		{Owner: "owner-c", Version: next.Version},
	} {
		if _, err := s.CompleteRefresh(ctx, "s1", "github", l, newTokens(2)); !errors.Is(err, store.ErrLeaseLost) {
			t.Errorf("CompleteRefresh with lease %+v = %v, want ErrLeaseLost", l, err)
		}
	}
	if d := diff(want, mustGet(t, s, "s1", "github")); d != "" {
		t.Errorf("row changed by refused CompleteRefresh calls: %s", d)
	}
}

func testCompleteRefreshKeepsReauth(t *testing.T, s store.Store) {
	mustPut(t, s, fullRow("s1", "github"))
	markReauth(t, s, "s1", "github")
	got := mustComplete(t, s, "s1", "github", newTokens(1))
	if !got.NeedsReauth || !mustGet(t, s, "s1", "github").NeedsReauth {
		t.Errorf("CompleteRefresh cleared NeedsReauth; only Put may")
	}
}

// testWritesSupersedeLease: a Put (a new login) during a refresh lease
// supersedes the lease, whose holder can then neither complete nor release
// it, and frees the row for the next claim.
func testWritesSupersedeLease(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustPut(t, s, fullRow("s1", "github"))
	lease := mustHold(t, s, "s1", "github", "owner-refresh", longTTL)
	login := fullRow("s1", "github")
	login.AccessToken = "at-login"
	mustPut(t, s, login)
	written := mustGet(t, s, "s1", "github")
	if written.Version != lease.Version+1 {
		t.Errorf("Version = %d after a Put during a lease, want %d", written.Version, lease.Version+1)
	}

	if _, err := s.CompleteRefresh(ctx, "s1", "github", lease, newTokens(1)); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("CompleteRefresh after a Put = %v, want ErrLeaseLost", err)
	}
	if err := s.ReleaseRefresh(ctx, "s1", "github", lease, true); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("ReleaseRefresh after a Put = %v, want ErrLeaseLost", err)
	}
	got := mustGet(t, s, "s1", "github")
	if d := diff(written, got); d != "" || got.Version != written.Version {
		t.Errorf("row changed by the superseded lease: %s; Version %d, want %d", d, got.Version, written.Version)
	}
	if got.AccessToken != "at-login" {
		t.Errorf("AccessToken = %q, want the Put's", got.AccessToken)
	}
	mustHold(t, s, "s1", "github", "owner-after-put", longTTL)
}

func testReleaseRefresh(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustPut(t, s, fullRow("s1", "github"))
	before := mustGet(t, s, "s1", "github")

	t.Run("without reauth", func(t *testing.T) {
		lease := mustHold(t, s, "s1", "github", "owner-a", longTTL)
		if err := s.ReleaseRefresh(ctx, "s1", "github", store.Lease{Owner: "owner-z", Version: lease.Version}, false); !errors.Is(err, store.ErrLeaseLost) {
			t.Errorf("ReleaseRefresh by a non-owner = %v, want ErrLeaseLost", err)
		}
		wantNotHeld(t, s, "s1", "github", "owner-b") // still held by owner-a
		if err := s.ReleaseRefresh(ctx, "s1", "github", lease, false); err != nil {
			t.Fatalf("ReleaseRefresh = %v", err)
		}
		if err := s.ReleaseRefresh(ctx, "s1", "github", lease, false); !errors.Is(err, store.ErrLeaseLost) {
			t.Errorf("second ReleaseRefresh = %v, want ErrLeaseLost", err)
		}
		got := mustGet(t, s, "s1", "github")
		if d := diff(fullRow("s1", "github"), got); d != "" || got.Version != before.Version || !got.UpdatedAt.Equal(before.UpdatedAt) {
			t.Errorf("row after ReleaseRefresh: %s; Version %d, UpdatedAt %v; want unchanged", d, got.Version, got.UpdatedAt)
		}
	})

	t.Run("with reauth", func(t *testing.T) {
		lease := mustHold(t, s, "s1", "github", "owner-c", longTTL)
		if err := s.ReleaseRefresh(ctx, "s1", "github", store.Lease{Owner: "owner-z", Version: lease.Version}, true); !errors.Is(err, store.ErrLeaseLost) {
			t.Errorf("ReleaseRefresh with reauth by a non-owner = %v, want ErrLeaseLost", err)
		}
		if got := mustGet(t, s, "s1", "github"); got.NeedsReauth || got.Version != lease.Version {
			t.Errorf("refused ReleaseRefresh changed the row: NeedsReauth %v, Version %d", got.NeedsReauth, got.Version)
		}
		if err := s.ReleaseRefresh(ctx, "s1", "github", lease, true); err != nil {
			t.Fatalf("ReleaseRefresh with reauth = %v", err)
		}
		got := mustGet(t, s, "s1", "github")
		want := fullRow("s1", "github")
		want.NeedsReauth = true
		if d := diff(want, got); d != "" {
			t.Errorf("row after ReleaseRefresh with reauth: %s", d)
		}
		if got.Version != lease.Version+1 || got.UpdatedAt.Before(before.UpdatedAt) {
			t.Errorf("Version %d, UpdatedAt %v after ReleaseRefresh with reauth; want %d, not before %v", got.Version, got.UpdatedAt, lease.Version+1, before.UpdatedAt)
		}
		if err := s.ReleaseRefresh(ctx, "s1", "github", lease, true); !errors.Is(err, store.ErrLeaseLost) {
			t.Errorf("second ReleaseRefresh with reauth = %v, want ErrLeaseLost", err)
		}
		// The lease is free; the claimer sees NeedsReauth on the row.
		c := mustClaim(t, s, "s1", "github", "owner-d", longTTL)
		if !c.Held || !c.Row.NeedsReauth {
			t.Errorf("ClaimRefresh after ReleaseRefresh with reauth: held %v, NeedsReauth %v; want true, true", c.Held, c.Row.NeedsReauth)
		}
	})
}

func testConcurrentClaims(t *testing.T, s store.Store) {
	const claimers = 20
	mustPut(t, s, fullRow("s1", "github"))
	var (
		wg     sync.WaitGroup
		claims [claimers]store.Claim
		errs   [claimers]error
	)
	start := make(chan struct{})
	for i := range claimers {
		wg.Go(func() {
			<-start
			claims[i], errs[i] = s.ClaimRefresh(t.Context(), "s1", "github", fmt.Sprintf("owner-%d", i), longTTL)
		})
	}
	close(start)
	wg.Wait()

	held := -1
	for i, c := range claims {
		if errs[i] != nil {
			t.Errorf("claimer %d: ClaimRefresh = %v", i, errs[i])
			continue
		}
		if c.Row.Version != 1 {
			t.Errorf("claimer %d: Row.Version = %d, want 1", i, c.Row.Version)
		}
		if !c.Held {
			if c.Remaining <= 0 || c.Remaining > longTTL {
				t.Errorf("claimer %d: not held, Remaining = %v; want in (0, %v]", i, c.Remaining, longTTL)
			}
			continue
		}
		if held >= 0 {
			t.Errorf("claimers %d and %d both hold the lease", held, i)
		}
		held = i
	}
	if held < 0 {
		t.Fatalf("no claimer holds the lease")
	}

	// Only the holder may complete.
	for i := range claimers {
		if i == held {
			continue
		}
		l := store.Lease{Owner: fmt.Sprintf("owner-%d", i), Version: 1}
		if _, err := s.CompleteRefresh(t.Context(), "s1", "github", l, newTokens(i)); !errors.Is(err, store.ErrLeaseLost) {
			t.Errorf("CompleteRefresh by claimer %d (not holding) = %v, want ErrLeaseLost", i, err)
		}
	}
	got, err := s.CompleteRefresh(t.Context(), "s1", "github", claims[held].Lease, newTokens(held))
	if err != nil || got.AccessToken != newTokens(held).AccessToken {
		t.Errorf("CompleteRefresh by the holder = %q, %v", got.AccessToken, err)
	}
}

func testLeaseMissingRow(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustPut(t, s, fullRow("s1", "github"))
	for _, key := range [][2]string{{"s1", "google"}, {"unknown", "github"}} {
		if c, err := s.ClaimRefresh(ctx, key[0], key[1], "owner", longTTL); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ClaimRefresh(%q, %q) = %+v, %v; want ErrNotFound", key[0], key[1], c, err)
		}
		l := store.Lease{Owner: "owner", Version: 1}
		if _, err := s.CompleteRefresh(ctx, key[0], key[1], l, newTokens(1)); !errors.Is(err, store.ErrLeaseLost) || !errors.Is(err, store.ErrNotFound) {
			t.Errorf("CompleteRefresh(%q, %q) = %v; want ErrLeaseLost and ErrNotFound", key[0], key[1], err)
		}
		if err := s.ReleaseRefresh(ctx, key[0], key[1], l, true); !errors.Is(err, store.ErrLeaseLost) || !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ReleaseRefresh(%q, %q) = %v; want ErrLeaseLost and ErrNotFound", key[0], key[1], err)
		}
		if _, err := s.Get(ctx, key[0], key[1]); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%q, %q) = %v, want ErrNotFound (no row created)", key[0], key[1], err)
		}
	}

	// A row deleted while leased.
	lease := mustHold(t, s, "s1", "github", "owner", longTTL)
	if err := s.Delete(ctx, "s1", "github"); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	if _, err := s.CompleteRefresh(ctx, "s1", "github", lease, newTokens(1)); !errors.Is(err, store.ErrLeaseLost) || !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CompleteRefresh on a deleted row = %v; want ErrLeaseLost and ErrNotFound", err)
	}
	if _, err := s.Get(ctx, "s1", "github"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after CompleteRefresh on a deleted row = %v, want ErrNotFound", err)
	}
	// A row put again after the delete is a new row: the old lease does not
	// hold it, and it is free.
	mustPut(t, s, fullRow("s1", "github"))
	if err := s.ReleaseRefresh(ctx, "s1", "github", lease, false); !errors.Is(err, store.ErrLeaseLost) || errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReleaseRefresh of the old lease on a new row = %v; want ErrLeaseLost only", err)
	}
	mustHold(t, s, "s1", "github", "owner-2", longTTL)
}
