package encrypted_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/encrypted"
	"github.com/extauthz/extauthz/store/memory"
	"github.com/extauthz/extauthz/store/storetest"
	"github.com/extauthz/extauthz/tokencrypt"
)

func keyring(t *testing.T, primary string, ids ...string) *tokencrypt.Keyring {
	t.Helper()
	var keys []tokencrypt.Key
	for _, id := range ids {
		keys = append(keys, tokencrypt.Key{ID: id, Secret: secrets[id]})
	}
	k, err := tokencrypt.New(keys, primary)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var secrets = map[string][]byte{}

func init() {
	for _, id := range []string{"a", "b"} {
		secrets[id], _ = tokencrypt.ParseKey(tokencrypt.GenerateKey())
	}
}

// The decorator keeps the whole store contract.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return encrypted.New(memory.New(), keyring(t, "a", "a"))
	})
}

func row(session, provider, access string) store.Row {
	return store.Row{SessionID: session, Provider: provider, Subject: "alice", ClientID: "app",
		Tokens: store.Tokens{AccessToken: access, RefreshToken: "rt-" + access, IDToken: "id-" + access, ExpiresAt: time.Now().Add(time.Hour)}}
}

func TestNothingStoredInClear(t *testing.T) {
	ctx := context.Background()
	inner := memory.New()
	s := encrypted.New(inner, keyring(t, "a", "a"))
	if err := s.Put(ctx, row("s1", "gh", "secret-access")); err != nil {
		t.Fatal(err)
	}
	raw, _ := inner.Get(ctx, "s1", "gh")
	for _, v := range []string{raw.AccessToken, raw.RefreshToken, raw.IDToken} {
		if strings.Contains(v, "secret-access") || !strings.HasPrefix(v, "v2.a.") {
			t.Errorf("stored value %q is not a ciphertext", v)
		}
	}
	got, err := s.Get(ctx, "s1", "gh")
	if err != nil || got.AccessToken != "secret-access" || got.RefreshToken != "rt-secret-access" || got.IDToken != "id-secret-access" {
		t.Errorf("Get = %+v, %v", got.Tokens, err)
	}
}

func TestSwappedCiphertextsUndecryptable(t *testing.T) {
	ctx := context.Background()
	inner := memory.New()
	s := encrypted.New(inner, keyring(t, "a", "a"))
	for _, r := range []store.Row{row("s1", "gh", "token-one"), row("s2", "gh", "token-two")} {
		if err := s.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	one, _ := inner.Get(ctx, "s1", "gh")
	two, _ := inner.Get(ctx, "s2", "gh")
	one.Tokens, two.Tokens = two.Tokens, one.Tokens
	for _, r := range []store.Row{one, two} {
		if err := inner.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// Columns swapped within one row fail too.
	three := row("s3", "gh", "token-three")
	if err := s.Put(ctx, three); err != nil {
		t.Fatal(err)
	}
	raw3, _ := inner.Get(ctx, "s3", "gh")
	raw3.AccessToken, raw3.RefreshToken = raw3.RefreshToken, raw3.AccessToken
	if err := inner.Put(ctx, raw3); err != nil {
		t.Fatal(err)
	}
	for _, sid := range []string{"s1", "s2", "s3"} {
		_, err := s.Get(ctx, sid, "gh")
		if !errors.Is(err, store.ErrUnreadable) || !errors.Is(err, tokencrypt.ErrDecrypt) {
			t.Errorf("%s: err = %v, want ErrUnreadable (ErrDecrypt)", sid, err)
		}
		if err != nil && strings.Contains(err.Error(), "token-") {
			t.Errorf("error leaks a token: %v", err)
		}
	}
}

func TestRotate(t *testing.T) {
	ctx := context.Background()
	inner := memory.New()
	underA := encrypted.New(inner, keyring(t, "a", "a"))
	for i := range 7 {
		if err := underA.Put(ctx, row(fmt.Sprintf("s%d", i), "gh", fmt.Sprintf("tok-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	// A row written before encryption existed: it is reported, never
	// sealed.
	if err := inner.Put(ctx, row("legacy", "gh", "plain-token")); err != nil {
		t.Fatal(err)
	}
	stats, err := encrypted.Rotate(ctx, inner, keyring(t, "b", "a", "b"), 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Scanned != 8 || stats.Rewritten != 7 || stats.Upgraded != 0 ||
		len(stats.Plaintext) != 1 || stats.Plaintext[0] != (store.Key{SessionID: "legacy", Provider: "gh"}) {
		t.Errorf("stats = %+v, want 8 scanned, 7 rewritten, the plaintext row reported", stats)
	}
	// Key a can now go.
	onlyB := encrypted.New(inner, keyring(t, "b", "b"))
	for i := range 7 {
		got, err := onlyB.Get(ctx, fmt.Sprintf("s%d", i), "gh")
		if err != nil || got.AccessToken != fmt.Sprintf("tok-%d", i) {
			t.Errorf("s%d after rotation: %q %v", i, got.AccessToken, err)
		}
	}
	if _, err := onlyB.Get(ctx, "legacy", "gh"); !errors.Is(err, store.ErrUnreadable) || !errors.Is(err, tokencrypt.ErrNotEncrypted) {
		t.Errorf("legacy row after rotation: %v, want unreadable (not encrypted)", err)
	}
	if raw, _ := inner.Get(ctx, "legacy", "gh"); raw.AccessToken != "plain-token" || raw.IDToken != "id-plain-token" {
		t.Errorf("the plaintext row was changed: %+v", raw.Tokens)
	}
	// A second rotation has nothing to do but report the plaintext row again.
	if stats, err := encrypted.Rotate(ctx, inner, keyring(t, "b", "b"), 3, nil); err != nil || stats.Rewritten != 0 || len(stats.Plaintext) != 1 {
		t.Errorf("second rotation: %+v %v", stats, err)
	}
}

func TestRotateKeepsConcurrentRefresh(t *testing.T) {
	ctx := context.Background()
	inner := memory.New()
	s := encrypted.New(inner, keyring(t, "a", "a"))
	if err := s.Put(ctx, row("s1", "gh", "old")); err != nil {
		t.Fatal(err)
	}
	keysAB := keyring(t, "b", "a", "b")
	both := encrypted.New(inner, keysAB)
	// A refresh claims the row, rotation runs, the refresh completes: its
	// tokens must be the ones stored.
	claim, err := both.ClaimRefresh(ctx, "s1", "gh", "replica", time.Minute)
	if err != nil || !claim.Held {
		t.Fatal(claim, err)
	}
	if _, err := encrypted.Rotate(ctx, inner, keysAB, 10, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := both.CompleteRefresh(ctx, "s1", "gh", claim.Lease, store.Tokens{AccessToken: "refreshed", RefreshToken: "rt2"}); err != nil {
		t.Fatalf("refresh after rotation: %v", err)
	}
	// The refreshed tokens are the ones stored, readable under the new key
	// alone. (The other order, a refresh stored between rotation's read and
	// write, is TestRotateRetriesAConflictingRow.)
	got, err := encrypted.New(inner, keyring(t, "b", "b")).Get(ctx, "s1", "gh")
	if err != nil || got.AccessToken != "refreshed" || got.RefreshToken != "rt2" {
		t.Errorf("after rotation and refresh: %+v %v", got.Tokens, err)
	}
}

func TestRotateStopsOnUnreadableRow(t *testing.T) {
	ctx := context.Background()
	inner := memory.New()
	if err := encrypted.New(inner, keyring(t, "a", "a")).Put(ctx, row("s1", "gh", "x")); err != nil {
		t.Fatal(err)
	}
	_, err := encrypted.Rotate(ctx, inner, keyring(t, "b", "b"), 10, nil)
	if !errors.Is(err, store.ErrUnreadable) || !errors.Is(err, tokencrypt.ErrUnknownKey) {
		t.Errorf("rotation without the old key: %v, want ErrUnreadable (unknown key)", err)
	}
}

// conflictOnce is a store whose first RewriteTokens finds the row changed:
// before it, a concurrent writer stores a refresh.
type conflictOnce struct {
	*memory.Store
	before func()
}

func (c *conflictOnce) RewriteTokens(ctx context.Context, sessionID, provider string, version int64, t store.Tokens) error {
	if f := c.before; f != nil {
		c.before = nil
		f()
	}
	return c.Store.RewriteTokens(ctx, sessionID, provider, version, t)
}

func TestRotateRetriesAConflictingRow(t *testing.T) {
	ctx := context.Background()
	inner := &conflictOnce{Store: memory.New()}
	// A replica that still seals under key a refreshes the row between
	// rotation's read and its write.
	oldReplica := encrypted.New(inner.Store, keyring(t, "a", "a"))
	if err := oldReplica.Put(ctx, row("s1", "gh", "old")); err != nil {
		t.Fatal(err)
	}
	inner.before = func() {
		c, err := oldReplica.ClaimRefresh(ctx, "s1", "gh", "old-replica", time.Minute)
		if err != nil || !c.Held {
			t.Error(c, err)
			return
		}
		if _, err := oldReplica.CompleteRefresh(ctx, "s1", "gh", c.Lease, store.Tokens{AccessToken: "refreshed", RefreshToken: "rt2"}); err != nil {
			t.Error(err)
		}
	}
	stats, err := encrypted.Rotate(ctx, inner, keyring(t, "b", "a", "b"), 10, nil)
	if err != nil || stats.Conflicts != 1 || stats.Rewritten != 1 {
		t.Fatalf("Rotate = %+v, %v; want one conflict, then the row rewritten", stats, err)
	}
	// The refreshed tokens survive, under key b: key a can go.
	got, err := encrypted.New(inner.Store, keyring(t, "b", "b")).Get(ctx, "s1", "gh")
	if err != nil || got.AccessToken != "refreshed" || got.RefreshToken != "rt2" {
		t.Errorf("after rotation: %+v %v", got.Tokens, err)
	}
}

func TestClaimOfUnreadableRowGivesTheLeaseBack(t *testing.T) {
	ctx := context.Background()
	inner := memory.New()
	if err := encrypted.New(inner, keyring(t, "a", "a")).Put(ctx, row("s1", "gh", "x")); err != nil {
		t.Fatal(err)
	}
	if _, err := encrypted.New(inner, keyring(t, "b", "b")).ClaimRefresh(ctx, "s1", "gh", "replica", time.Minute); !errors.Is(err, store.ErrUnreadable) {
		t.Fatalf("claim of an unreadable row: %v, want ErrUnreadable", err)
	}
	// The unusable claim was released, not left to lapse.
	if c, err := inner.ClaimRefresh(ctx, "s1", "gh", "other", time.Minute); err != nil || !c.Held {
		t.Errorf("another claim right after: %+v %v; want it held", c, err)
	}
}
