package postgres_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/store"
)

// TestNotificationsCarryNoSessionID listens on the notification channel as
// a separate connection of a role granted nothing (any role may LISTEN on
// any channel) while the store writes rows in every way it can: every
// payload is "*" or the tag of a session written, none contains a session
// ID, and that role cannot read the key that would link tags to sessions.
func TestNotificationsCarryNoSessionID(t *testing.T) {
	dsn := pgtest.New(t)
	ctx := t.Context()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	role := fmt.Sprintf("extauthz_eavesdropper_%d", time.Now().UnixNano()%1e9)
	if _, err := admin.Exec(ctx, "CREATE ROLE "+role+" LOGIN"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), dsn)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP ROLE IF EXISTS "+role)
			c.Close(context.Background())
		}
	})
	var key []byte
	if err := admin.QueryRow(ctx, `SELECT key FROM extauthz_notify_key`).Scan(&key); err != nil {
		t.Fatal(err)
	}

	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	eve, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer eve.Close(context.Background())
	if _, err := eve.Exec(ctx, "LISTEN extauthz_tokens"); err != nil {
		t.Fatal(err)
	}
	if _, err := eve.Exec(ctx, "SELECT key FROM extauthz_notify_key"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("a role granted nothing reads the notification key: %v", err)
	}

	st := newStore(t, dsn)
	sessions := []string{"sess-plain-1", "SESS-2", "s\"quoted\"", "sess-ünïcode", strings.Repeat("long-", 2000)}
	// A session ID that looks like a tag.
	sessions = append(sessions, store.NotifyTag(nil, "x").String())
	for _, s := range sessions {
		r := row(s, "gh")
		r.SessionExpiresAt = time.Now().Add(-time.Hour) // for DeleteExpired
		if err := st.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
		c, err := st.ClaimRefresh(ctx, s, "gh", "owner", time.Minute)
		if err != nil || !c.Held {
			t.Fatal(c, err)
		}
		if _, err := st.CompleteRefresh(ctx, s, "gh", c.Lease, store.Tokens{AccessToken: "at3"}); err != nil {
			t.Fatal(err)
		}
		if c, err = st.ClaimRefresh(ctx, s, "gh", "owner", time.Minute); err != nil || !c.Held {
			t.Fatal(c, err)
		}
		if err := st.ReleaseRefresh(ctx, s, "gh", c.Lease, true); err != nil {
			t.Fatal(err)
		}
		r2, _ := st.Get(ctx, s, "gh")
		if err := st.RewriteTokens(ctx, s, "gh", r2.Version, store.Tokens{AccessToken: "at4"}); err != nil {
			t.Fatal(err)
		}
		if err := st.Put(ctx, row(s, "google")); err != nil {
			t.Fatal(err)
		}
		if err := st.Delete(ctx, s, "google"); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := st.DeleteExpired(ctx, 100); err != nil || n != len(sessions) {
		t.Fatalf("DeleteExpired = %d, %v", n, err)
	}
	if _, err := admin.Exec(ctx, `UPDATE upstream_tokens SET session_id = 'renamed'`); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `TRUNCATE upstream_tokens`); err != nil {
		t.Fatal(err)
	}

	tags := map[string]string{}
	for _, s := range append(sessions, "renamed") {
		tags[store.NotifyTag(key, s).String()] = s
	}
	seen := map[string]int{}
	stars := 0
	for {
		wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		n, err := eve.WaitForNotification(wctx)
		cancel()
		if err != nil {
			break
		}
		for _, s := range append(sessions, "renamed", "gh", "google") {
			if strings.Contains(n.Payload, s) {
				t.Fatalf("a notification names %.20q: %.80q", s, n.Payload)
			}
		}
		if n.Payload == "*" {
			stars++
			continue
		}
		s, ok := tags[n.Payload]
		if !ok {
			t.Fatalf("payload %.80q is neither \"*\" nor the tag of a session written", n.Payload)
		}
		seen[s]++
	}
	// Put, CompleteRefresh, ReleaseRefresh with reauth, RewriteTokens, Put
	// and Delete of another provider, DeleteExpired: each notified (claims
	// do not).
	for _, s := range sessions {
		if seen[s] != 7 {
			t.Errorf("session %.20q: %d notifications, want 7", s, seen[s])
		}
	}
	if stars != 1 {
		t.Errorf("%d notifications \"*\", want 1 (TRUNCATE)", stars)
	}
}
