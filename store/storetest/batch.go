package storetest

import (
	"errors"
	"testing"

	"github.com/extauthz/extauthz/store"
)

// testPutBatch checks store.BatchWriter, for a store that implements it: a
// batch writes each row as Put does (a replaced row keeps CreatedAt, moves
// its version on and loses its re-authentication mark and lease), and a
// batch with an invalid row or a repeated key writes nothing.
func testPutBatch(t *testing.T, s store.Store) {
	bw, ok := s.(store.BatchWriter)
	if !ok {
		return // optional: nothing to check
	}
	if err := bw.PutBatch(t.Context(), nil); err != nil {
		t.Fatalf("PutBatch(nil) = %v", err)
	}
	mustPut(t, s, fullRow("s1", "github"))
	before := mustGet(t, s, "s1", "github")
	markReauth(t, s, "s1", "github")
	mustHold(t, s, "s1", "github", "owner-batch", longTTL)

	replaced := fullRow("s1", "github")
	replaced.AccessToken = "at-batch"
	bare := store.Row{SessionID: "s2", Provider: "google", Subject: "as-subject", ClientID: "as-client",
		Tokens: store.Tokens{AccessToken: "at-bare"}} // no expiries, no token type
	rows := []store.Row{replaced, fullRow("s2", "github"), bare}
	if err := bw.PutBatch(t.Context(), rows); err != nil {
		t.Fatalf("PutBatch = %v", err)
	}
	got := mustGet(t, s, "s1", "github")
	if d := diff(replaced, got); d != "" {
		t.Errorf("replaced row: %s", d)
	}
	if !got.CreatedAt.Equal(before.CreatedAt) || got.Version <= before.Version {
		t.Errorf("replaced row: CreatedAt %v (was %v), version %d (was %d)", got.CreatedAt, before.CreatedAt, got.Version, before.Version)
	}
	if c, err := s.ClaimRefresh(t.Context(), "s1", "github", "owner-after", longTTL); err != nil || !c.Held || c.Row.NeedsReauth {
		t.Errorf("ClaimRefresh after PutBatch = held %v, needs reauth %v, %v: the batch should have cleared the lease and the mark", c.Held, c.Row.NeedsReauth, err)
	}
	if d := diff(fullRow("s2", "github"), mustGet(t, s, "s2", "github")); d != "" {
		t.Errorf("new row: %s", d)
	}
	bare.TokenType = "Bearer"
	if d := diff(bare, mustGet(t, s, "s2", "google")); d != "" {
		t.Errorf("row without expiries: %s", d)
	}

	for name, bad := range map[string][]store.Row{
		"repeated key": {fullRow("s3", "github"), fullRow("s3", "github")},
		"invalid row":  {fullRow("s3", "github"), {SessionID: "s3", Provider: "google"}},
	} {
		if err := bw.PutBatch(t.Context(), bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("PutBatch with a %s = %v, want ErrInvalid", name, err)
		}
		if _, err := s.Get(t.Context(), "s3", "github"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("after PutBatch with a %s, Get = %v; want ErrNotFound (nothing written)", name, err)
		}
	}
}
