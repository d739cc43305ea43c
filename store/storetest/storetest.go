// Package storetest is the conformance suite of the store contract. Every
// store.Store implementation runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return memory.New() })
//	}
//
// The refresh lease tests need time to pass by the store's clock. A store
// that implements Advancer has its clock moved forward; any other store is
// waited for with time.Sleep, a few hundred milliseconds at a time.
//
// The store.Rewriter and store.Collector tests run if the store under test
// implements them, and are skipped otherwise. The collection lock tests play
// two replicas if the store implements Replicator.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extauthz/extauthz/store"
)

// Run runs the conformance suite as subtests of t. newStore is called once
// per subtest, possibly from several subtests at the same time, and must
// return an empty store of its own; it arranges its own clean-up with
// t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"PutGetRoundTrip", testPutGetRoundTrip},
		{"GetNotFound", testGetNotFound},
		{"GetSession", testGetSession},
		{"PutUpserts", testPutUpserts},
		{"PutBatch", testPutBatch},
		{"Delete", testDelete},
		{"Invalid", testInvalid},
		{"ReturnsCopies", testReturnsCopies},
		{"ConcurrentPuts", testConcurrentPuts},
		{"CancelledContext", testCancelledContext},
		{"Versions", testVersions},
		{"ClaimFree", testClaimFree},
		{"ClaimHeld", testClaimHeld},
		{"ClaimAfterExpiry", testClaimAfterExpiry},
		{"CompleteAfterOwnExpiry", testCompleteAfterOwnExpiry},
		{"CompleteRefresh", testCompleteRefresh},
		{"CompleteRefreshKeepsReauth", testCompleteRefreshKeepsReauth},
		{"WritesSupersedeLease", testWritesSupersedeLease},
		{"ReleaseRefresh", testReleaseRefresh},
		{"ConcurrentClaims", testConcurrentClaims},
		{"LeaseMissingRow", testLeaseMissingRow},
		{"Scan", testScan},
		{"RewriteTokens", testRewriteTokens},
		{"RewriteKeepsLease", testRewriteKeepsLease},
		{"RewriterCancelledContext", testRewriterCancelledContext},
		{"DeleteExpired", testDeleteExpired},
		{"DeleteExpiredLimit", testDeleteExpiredLimit},
		{"DeleteExpiredByStoreClock", testDeleteExpiredByStoreClock},
		{"RunExclusive", testRunExclusive},
		{"ConcurrentPasses", testConcurrentPasses},
		{"CollectorCancelledContext", testCollectorCancelledContext},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
}

// Advancer is implemented by a store under test whose clock the suite may
// move forward by d, instead of waiting for d to pass.
type Advancer interface {
	Advance(d time.Duration)
}

// pass lets d pass by the store's clock.
func pass(s store.Store, d time.Duration) {
	if a, ok := s.(Advancer); ok {
		a.Advance(d)
		return
	}
	time.Sleep(d)
}

// timeIn returns a fixed time with microsecond precision in a zone other than
// UTC and Local, so that a store that drops the instant's offset is caught.
func timeIn(year int, month time.Month, day int) time.Time {
	return time.Date(year, month, day, 13, 14, 15, 123456000, time.FixedZone("UTC+5:30", 5*3600+1800))
}

// fullRow returns a row with every field set.
func fullRow(sessionID, provider string) store.Row {
	return store.Row{
		SessionID: sessionID,
		Provider:  provider,
		Tokens: store.Tokens{
			AccessToken:  "at-" + sessionID + "-" + provider,
			RefreshToken: "rt-" + sessionID + "-" + provider,
			IDToken:      "idt-" + sessionID + "-" + provider,
			TokenType:    "DPoP",
			ExpiresAt:    timeIn(2031, time.March, 4),
		},
		Subject:          "as-subject",
		ClientID:         "as-client",
		UpstreamSubject:  "idp-subject",
		SessionExpiresAt: timeIn(2032, time.April, 5),
	}
}

// diff describes how got differs from want, ignoring CreatedAt and
// UpdatedAt; it returns "" if they are equal. Times are compared as
// instants.
func diff(want, got store.Row) string {
	var d []string
	str := func(name, w, g string) {
		if w != g {
			d = append(d, fmt.Sprintf("%s = %q, want %q", name, g, w))
		}
	}
	tm := func(name string, w, g time.Time) {
		if !w.Equal(g) || w.IsZero() != g.IsZero() {
			d = append(d, fmt.Sprintf("%s = %v, want %v", name, g, w))
		}
	}
	str("SessionID", want.SessionID, got.SessionID)
	str("Provider", want.Provider, got.Provider)
	str("AccessToken", want.AccessToken, got.AccessToken)
	str("RefreshToken", want.RefreshToken, got.RefreshToken)
	str("IDToken", want.IDToken, got.IDToken)
	str("TokenType", want.TokenType, got.TokenType)
	tm("ExpiresAt", want.ExpiresAt, got.ExpiresAt)
	str("Subject", want.Subject, got.Subject)
	str("ClientID", want.ClientID, got.ClientID)
	str("UpstreamSubject", want.UpstreamSubject, got.UpstreamSubject)
	tm("SessionExpiresAt", want.SessionExpiresAt, got.SessionExpiresAt)
	if want.NeedsReauth != got.NeedsReauth {
		d = append(d, fmt.Sprintf("NeedsReauth = %v, want %v", got.NeedsReauth, want.NeedsReauth))
	}
	return strings.Join(d, "; ")
}

func mustPut(t *testing.T, s store.Store, row store.Row) {
	t.Helper()
	if err := s.Put(t.Context(), row); err != nil {
		t.Fatalf("Put(%q, %q) = %v", row.SessionID, row.Provider, err)
	}
}

func mustGet(t *testing.T, s store.Store, sessionID, provider string) store.Row {
	t.Helper()
	row, err := s.Get(t.Context(), sessionID, provider)
	if err != nil {
		t.Fatalf("Get(%q, %q) = %v", sessionID, provider, err)
	}
	return row
}

func testPutGetRoundTrip(t *testing.T, s store.Store) {
	nanos := fullRow("s-nanos", "github")
	nanos.ExpiresAt = time.Date(2031, time.March, 4, 5, 6, 7, 123456789, time.UTC)
	nanos.SessionExpiresAt = time.Date(2032, time.March, 4, 5, 6, 7, 999999999, time.UTC)
	nanosWant := nanos
	nanosWant.ExpiresAt = time.Date(2031, time.March, 4, 5, 6, 7, 123456000, time.UTC)
	nanosWant.SessionExpiresAt = time.Date(2032, time.March, 4, 5, 6, 7, 999999000, time.UTC)

	never := fullRow("s-never", "github")
	never.ExpiresAt = time.Time{}
	never.SessionExpiresAt = time.Time{}

	minimal := store.Row{
		SessionID: "s-minimal", Provider: "dex",
		Tokens:  store.Tokens{AccessToken: "at-minimal"},
		Subject: "sub", ClientID: "client",
	}
	minimalWant := minimal
	minimalWant.TokenType = "Bearer"

	ignored := fullRow("s-ignored", "okta")
	ignored.NeedsReauth = true
	ignored.CreatedAt = time.Date(2001, time.January, 1, 0, 0, 0, 0, time.UTC)
	ignored.UpdatedAt = time.Date(2001, time.January, 1, 0, 0, 0, 0, time.UTC)
	ignoredWant := ignored
	ignoredWant.NeedsReauth = false

	unicode := fullRow("s-ünïcødé 🔑", "provider/with spaces & 'quotes'")
	unicode.AccessToken = "tøken with \"quotes\", 'apostrophes', \\backslashes\\ and\ttabs"

	tests := []struct {
		name string
		put  store.Row
		want store.Row
	}{
		{"every field", fullRow("s-full", "github"), fullRow("s-full", "github")},
		{"sub-microsecond times are truncated", nanos, nanosWant},
		{"zero expiries mean never", never, never},
		{"empty optional fields, token type defaults to Bearer", minimal, minimalWant},
		{"NeedsReauth and times passed to Put are ignored", ignored, ignoredWant},
		{"arbitrary text", unicode, unicode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now().Add(-time.Hour) // slack for a database server whose clock is off
			mustPut(t, s, tt.put)
			got := mustGet(t, s, tt.put.SessionID, tt.put.Provider)
			if d := diff(tt.want, got); d != "" {
				t.Errorf("Get after Put: %s", d)
			}
			if got.CreatedAt.Before(before) || got.UpdatedAt.Before(got.CreatedAt) {
				t.Errorf("CreatedAt = %v, UpdatedAt = %v: want set by the store (recent), UpdatedAt not before CreatedAt", got.CreatedAt, got.UpdatedAt)
			}
		})
	}
}

func testGetNotFound(t *testing.T, s store.Store) {
	mustPut(t, s, fullRow("s1", "github"))
	tests := []struct{ sessionID, provider string }{
		{"unknown", "github"},
		{"s1", "google"},
		{"S1", "github"},
		{"s1", "GitHub"},
	}
	for _, tt := range tests {
		row, err := s.Get(t.Context(), tt.sessionID, tt.provider)
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%q, %q) = %+v, %v; want ErrNotFound", tt.sessionID, tt.provider, row, err)
		}
	}
}

func testGetSession(t *testing.T, s store.Store) {
	// Providers are ordered byte by byte: upper case before lower case, as
	// no natural-language collation would have it.
	for _, p := range []string{"okta", "github", "Zeta", "dex-2", "dex"} {
		mustPut(t, s, fullRow("s1", p))
	}
	mustPut(t, s, fullRow("s2", "aaa"))
	mustPut(t, s, fullRow("s10", "aaa"))

	rows, err := s.GetSession(t.Context(), "s1")
	if err != nil {
		t.Fatalf("GetSession(s1) = %v", err)
	}
	want := []string{"Zeta", "dex", "dex-2", "github", "okta"}
	var got []string
	for _, r := range rows {
		got = append(got, r.Provider)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("GetSession(s1) providers = %q, want %q", got, want)
	}
	for _, r := range rows {
		if d := diff(fullRow("s1", r.Provider), r); d != "" {
			t.Errorf("GetSession(s1) row %q: %s", r.Provider, d)
		}
		if r.CreatedAt.IsZero() || r.UpdatedAt.IsZero() {
			t.Errorf("GetSession(s1) row %q: CreatedAt or UpdatedAt is zero", r.Provider)
		}
	}

	for _, sessionID := range []string{"unknown", "s", "S1"} {
		rows, err := s.GetSession(t.Context(), sessionID)
		if err != nil || len(rows) != 0 {
			t.Errorf("GetSession(%q) = %d rows, %v; want none, nil", sessionID, len(rows), err)
		}
	}
}

func testPutUpserts(t *testing.T, s store.Store) {
	first := fullRow("s1", "github")
	mustPut(t, s, first)
	before := mustGet(t, s, "s1", "github")
	markReauth(t, s, "s1", "github")

	second := store.Row{
		SessionID: "s1", Provider: "github",
		Tokens: store.Tokens{
			AccessToken: "at-new", RefreshToken: "rt-new", TokenType: "Bearer",
			ExpiresAt: timeIn(2040, time.January, 2),
		},
		Subject: "other-subject", ClientID: "other-client",
	}
	mustPut(t, s, second)
	got := mustGet(t, s, "s1", "github")
	if d := diff(second, got); d != "" {
		t.Errorf("Get after second Put: %s", d)
	}
	if !got.CreatedAt.Equal(before.CreatedAt) {
		t.Errorf("CreatedAt = %v after upsert, want unchanged %v", got.CreatedAt, before.CreatedAt)
	}
	if got.UpdatedAt.Before(before.UpdatedAt) {
		t.Errorf("UpdatedAt = %v after upsert, before %v", got.UpdatedAt, before.UpdatedAt)
	}
	rows, err := s.GetSession(t.Context(), "s1")
	if err != nil || len(rows) != 1 {
		t.Errorf("GetSession after upsert = %d rows, %v; want 1 row", len(rows), err)
	}
}

func testDelete(t *testing.T, s store.Store) {
	tests := []struct {
		name             string
		sessionID, prov  string
		wantLeftInS1     []string
		wantLeftInOthers bool
	}{
		{"one provider", "s1", "github", []string{"google", "okta"}, true},
		{"missing provider", "s1", "github", []string{"google", "okta"}, true},
		{"missing session", "unknown", "", []string{"google", "okta"}, true},
		{"missing session and provider", "unknown", "okta", []string{"google", "okta"}, true},
		{"whole session", "s1", "", nil, true},
		{"whole session again", "s1", "", nil, true},
	}
	for _, p := range []string{"github", "google", "okta"} {
		mustPut(t, s, fullRow("s1", p))
	}
	mustPut(t, s, fullRow("s10", "github"))
	mustPut(t, s, fullRow("s", "github"))
	for _, tt := range tests {
		if err := s.Delete(t.Context(), tt.sessionID, tt.prov); err != nil {
			t.Fatalf("%s: Delete(%q, %q) = %v", tt.name, tt.sessionID, tt.prov, err)
		}
		rows, err := s.GetSession(t.Context(), "s1")
		if err != nil {
			t.Fatalf("%s: GetSession = %v", tt.name, err)
		}
		var left []string
		for _, r := range rows {
			left = append(left, r.Provider)
		}
		if strings.Join(left, ",") != strings.Join(tt.wantLeftInS1, ",") {
			t.Errorf("%s: providers left in s1 = %q, want %q", tt.name, left, tt.wantLeftInS1)
		}
		for _, other := range []string{"s10", "s"} {
			if _, err := s.Get(t.Context(), other, "github"); err != nil {
				t.Errorf("%s: Get(%q, github) = %v: Delete touched another session", tt.name, other, err)
			}
		}
	}
}

func testInvalid(t *testing.T, s store.Store) {
	valid := fullRow("s1", "github")
	mutate := func(f func(*store.Row)) store.Row {
		r := valid
		f(&r)
		return r
	}
	puts := []struct {
		name string
		row  store.Row
	}{
		{"empty session ID", mutate(func(r *store.Row) { r.SessionID = "" })},
		{"empty provider", mutate(func(r *store.Row) { r.Provider = "" })},
		{"empty access token", mutate(func(r *store.Row) { r.AccessToken = "" })},
		{"empty subject", mutate(func(r *store.Row) { r.Subject = "" })},
		{"empty client ID", mutate(func(r *store.Row) { r.ClientID = "" })},
		{"zero row", store.Row{}},
	}
	for _, tt := range puts {
		t.Run("Put/"+tt.name, func(t *testing.T) {
			if err := s.Put(t.Context(), tt.row); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("Put = %v, want ErrInvalid", err)
			}
		})
	}
	if rows, err := s.GetSession(t.Context(), "s1"); err != nil || len(rows) != 0 {
		t.Errorf("GetSession after refused Puts = %d rows, %v; want none stored", len(rows), err)
	}

	mustPut(t, s, valid)
	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Get empty session", func(ctx context.Context) error { _, err := s.Get(ctx, "", "github"); return err }},
		{"Get empty provider", func(ctx context.Context) error { _, err := s.Get(ctx, "s1", ""); return err }},
		{"GetSession empty session", func(ctx context.Context) error { _, err := s.GetSession(ctx, ""); return err }},
		{"Delete empty session", func(ctx context.Context) error { return s.Delete(ctx, "", "github") }},
		{"Delete empty session and provider", func(ctx context.Context) error { return s.Delete(ctx, "", "") }},
		{"ClaimRefresh empty session", func(ctx context.Context) error {
			_, err := s.ClaimRefresh(ctx, "", "github", "owner", time.Minute)
			return err
		}},
		{"ClaimRefresh empty provider", func(ctx context.Context) error {
			_, err := s.ClaimRefresh(ctx, "s1", "", "owner", time.Minute)
			return err
		}},
		{"ClaimRefresh empty owner", func(ctx context.Context) error {
			_, err := s.ClaimRefresh(ctx, "s1", "github", "", time.Minute)
			return err
		}},
		{"ClaimRefresh zero ttl", func(ctx context.Context) error {
			_, err := s.ClaimRefresh(ctx, "s1", "github", "owner", 0)
			return err
		}},
		{"ClaimRefresh negative ttl", func(ctx context.Context) error {
			_, err := s.ClaimRefresh(ctx, "s1", "github", "owner", -time.Second)
			return err
		}},
		{"CompleteRefresh empty session", func(ctx context.Context) error {
			_, err := s.CompleteRefresh(ctx, "", "github", store.Lease{Owner: "owner", Version: 1}, store.Tokens{AccessToken: "at"})
			return err
		}},
		{"CompleteRefresh empty owner", func(ctx context.Context) error {
			_, err := s.CompleteRefresh(ctx, "s1", "github", store.Lease{Version: 1}, store.Tokens{AccessToken: "at"})
			return err
		}},
		{"CompleteRefresh empty access token", func(ctx context.Context) error {
			_, err := s.CompleteRefresh(ctx, "s1", "github", store.Lease{Owner: "owner", Version: 1}, store.Tokens{RefreshToken: "rt"})
			return err
		}},
		{"ReleaseRefresh empty provider", func(ctx context.Context) error {
			return s.ReleaseRefresh(ctx, "s1", "", store.Lease{Owner: "owner", Version: 1}, true)
		}},
		{"ReleaseRefresh empty owner", func(ctx context.Context) error {
			return s.ReleaseRefresh(ctx, "s1", "github", store.Lease{Version: 1}, true)
		}},
	}
	for _, tt := range calls {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(t.Context()); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("got %v, want ErrInvalid", err)
			}
		})
	}
	got := mustGet(t, s, "s1", "github")
	if d := diff(valid, got); d != "" {
		t.Errorf("row changed by refused calls: %s", d)
	}
	if got.Version != 1 {
		t.Errorf("Version = %d after refused calls, want 1", got.Version)
	}
	// None of the refused claims took the lease.
	c := mustClaim(t, s, "s1", "github", "after-refused", time.Minute)
	if !c.Held {
		t.Errorf("ClaimRefresh after refused claims: not held (remaining %v)", c.Remaining)
	}
}

func testReturnsCopies(t *testing.T, s store.Store) {
	mustPut(t, s, fullRow("s1", "github"))
	row := mustGet(t, s, "s1", "github")
	row.AccessToken = "changed"
	row.ExpiresAt = time.Time{}
	rows, err := s.GetSession(t.Context(), "s1")
	if err != nil || len(rows) != 1 {
		t.Fatalf("GetSession = %d rows, %v", len(rows), err)
	}
	rows[0].RefreshToken = "changed"
	updated := mustComplete(t, s, "s1", "github", fullRow("s1", "github").Tokens)
	updated.IDToken = "changed"
	if d := diff(fullRow("s1", "github"), mustGet(t, s, "s1", "github")); d != "" {
		t.Errorf("stored row changed through a returned value: %s", d)
	}
}

func testConcurrentPuts(t *testing.T, s store.Store) {
	const (
		workers = 8
		rounds  = 25
	)
	providers := []string{"github", "google", "okta"}
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*4)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				row := fullRow("s1", providers[(w+i)%len(providers)])
				row.AccessToken = fmt.Sprintf("at-%d-%d", w, i)
				if err := s.Put(t.Context(), row); err != nil {
					errs <- fmt.Errorf("put: %w", err)
				}
				if _, err := s.GetSession(t.Context(), "s1"); err != nil {
					errs <- fmt.Errorf("get session: %w", err)
				}
				// A refresh that completes or ends in re-authentication;
				// another worker's Put may supersede it.
				c, err := s.ClaimRefresh(t.Context(), "s1", row.Provider, fmt.Sprintf("owner-%d-%d", w, i), time.Minute)
				switch {
				case err != nil:
					errs <- fmt.Errorf("ClaimRefresh: %w", err)
				case !c.Held:
				case i%2 == 0:
					if _, err := s.CompleteRefresh(t.Context(), "s1", row.Provider, c.Lease, row.Tokens); err != nil && !errors.Is(err, store.ErrLeaseLost) {
						errs <- fmt.Errorf("CompleteRefresh: %w", err)
					}
				default:
					if err := s.ReleaseRefresh(t.Context(), "s1", row.Provider, c.Lease, true); err != nil && !errors.Is(err, store.ErrLeaseLost) {
						errs <- fmt.Errorf("ReleaseRefresh: %w", err)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	rows, err := s.GetSession(t.Context(), "s1")
	if err != nil || len(rows) != len(providers) {
		t.Fatalf("GetSession = %d rows, %v; want %d", len(rows), err, len(providers))
	}
	for _, r := range rows {
		if !strings.HasPrefix(r.AccessToken, "at-") {
			t.Errorf("row %q: AccessToken = %q, want one that was written", r.Provider, r.AccessToken)
		}
	}
}

func testCancelledContext(t *testing.T, s store.Store) {
	mustPut(t, s, fullRow("s1", "github"))
	lease := mustHold(t, s, "s1", "github", "holder", time.Minute)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	row := fullRow("s1", "github")
	row.AccessToken = "at-after-cancel"
	calls := []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, err := s.Get(ctx, "s1", "github"); return err }},
		{"GetSession", func() error { _, err := s.GetSession(ctx, "s1"); return err }},
		{"Put", func() error { return s.Put(ctx, row) }},
		{"Delete", func() error { return s.Delete(ctx, "s1", "github") }},
		{"Delete session", func() error { return s.Delete(ctx, "s1", "") }},
		{"ClaimRefresh", func() error { _, err := s.ClaimRefresh(ctx, "s1", "github", "owner", time.Minute); return err }},
		{"CompleteRefresh", func() error {
			_, err := s.CompleteRefresh(ctx, "s1", "github", lease, row.Tokens)
			return err
		}},
		{"ReleaseRefresh", func() error { return s.ReleaseRefresh(ctx, "s1", "github", lease, true) }},
	}
	for _, tt := range calls {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.Canceled) {
				t.Errorf("got %v, want an error wrapping ErrUnavailable and context.Canceled", err)
			}
			if err != nil {
				for _, secret := range []string{row.AccessToken, row.RefreshToken, row.IDToken} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error %q contains a token", err)
					}
				}
			}
		})
	}
	if d := diff(fullRow("s1", "github"), mustGet(t, s, "s1", "github")); d != "" {
		t.Errorf("row changed by calls with a cancelled context: %s", d)
	}
	// The lease is still held: the calls did nothing.
	if err := s.ReleaseRefresh(t.Context(), "s1", "github", lease, false); err != nil {
		t.Errorf("ReleaseRefresh after calls with a cancelled context = %v, want nil", err)
	}
}
