package connect_test

import (
	"context"
	"encoding/hex"
	"errors"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/connect"
	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/postgres"
	"github.com/extauthz/extauthz/tokencrypt"
)

func keyring(t *testing.T, id string) *tokencrypt.Keyring {
	t.Helper()
	secret, err := tokencrypt.ParseKey(tokencrypt.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	k, err := tokencrypt.New([]tokencrypt.Key{{ID: id, Secret: secret}}, id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// memoryUses is a UseRecorder in memory.
type memoryUses struct {
	mu   sync.Mutex
	seen map[string]time.Time
	err  error
}

func (m *memoryUses) UseTicket(_ context.Context, id []byte, expiresAt time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return false, m.err
	}
	if m.seen == nil {
		m.seen = map[string]time.Time{}
	}
	if _, ok := m.seen[string(id)]; ok {
		return false, nil
	}
	m.seen[string(id)] = expiresAt
	return true, nil
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var urlSafe = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

func TestTicketRoundTrip(t *testing.T) {
	clk := &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 600, time.UTC)}
	uses := &memoryUses{}
	tickets := connect.NewTickets(keyring(t, "k1"), uses, 0, connect.WithClock(clk.now))

	ticket, issued, err := tickets.Issue("session-1", "alice", "app", "github")
	if err != nil {
		t.Fatal(err)
	}
	if !urlSafe.MatchString(ticket) || len(ticket) > connect.MaxTicketLength {
		t.Errorf("ticket is not URL-safe or too long (%d characters)", len(ticket))
	}
	for _, secret := range []string{"session-1", "alice", "app", "github"} {
		if strings.Contains(ticket, secret) {
			t.Errorf("the ticket shows %q in the clear", secret)
		}
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(issued.ID) {
		t.Errorf("ticket ID %q is not 32 hex digits", issued.ID)
	}
	if want := clk.now().Add(connect.DefaultTicketTTL).Truncate(time.Second); !issued.ExpiresAt.Equal(want) {
		t.Errorf("expires %v, want %v (the default 10 minutes)", issued.ExpiresAt, want)
	}
	_, other, _ := tickets.Issue("session-1", "alice", "app", "github")
	if other.ID == issued.ID {
		t.Error("two tickets share an ID")
	}

	opened, err := tickets.Open(ticket)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tickets.Redeem(t.Context(), ticket)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range []connect.Ticket{opened, got} {
		if tk.ID != issued.ID || tk.SessionID != "session-1" || tk.Subject != "alice" || tk.ClientID != "app" ||
			tk.Provider != "github" || !tk.ExpiresAt.Equal(issued.ExpiresAt) {
			t.Errorf("opened ticket %+v, issued %+v", tk, issued)
		}
	}
	if !uses.seen[string(mustHex(t, issued.ID))].Equal(issued.ExpiresAt) {
		t.Error("the redemption recorded another ID or expiry")
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTicketFailures: every way a ticket fails has its own sentinel.
func TestTicketFailures(t *testing.T) {
	clk := &clock{t: time.Now()}
	keys := keyring(t, "k1")
	tickets := connect.NewTickets(keys, &memoryUses{}, 5*time.Minute, connect.WithClock(clk.now))
	issue := func(tk *connect.Tickets) string {
		s, _, err := tk.Issue("s", "alice", "app", "gh")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	flip := func(s string, at int) string {
		b := []byte(s)
		if b[at] == 'A' {
			b[at] = 'B'
		} else {
			b[at] = 'A'
		}
		return string(b)
	}
	good := issue(tickets)
	rowCiphertext, _ := keys.Seal("x", tokencrypt.Place{SessionID: "s", Provider: "gh", Column: "access_token"})
	otherPurpose, _ := keys.SealPayload("another purpose", []byte("x"))
	sameKeyOtherVersion, _ := keys.SealPayload(connect.TicketPurpose, []byte{9, 1, 2})

	for _, tc := range []struct {
		name   string
		ticket string
		want   error
	}{
		{"another keyring, other key ID", issue(connect.NewTickets(keyring(t, "k2"), nil, 0)), connect.ErrTicketForeign},
		{"another keyring, same key ID", issue(connect.NewTickets(keyring(t, "k1"), nil, 0)), connect.ErrTicketForeign},
		{"tampered in the middle", flip(good, len(good)/2), connect.ErrTicketTampered},
		{"tampered at the end", flip(good, len(good)-1), connect.ErrTicketTampered},
		{"cut short", good[:len(good)-10], connect.ErrTicketTampered},
		{"too long", good + strings.Repeat("A", connect.MaxTicketLength), connect.ErrTicketTampered},
		{"empty", "", connect.ErrTicketTampered},
		{"a row's ciphertext", rowCiphertext, connect.ErrTicketTampered},
		{"a payload for another purpose", otherPurpose, connect.ErrTicketTampered},
		{"sealed for tickets, not a ticket", sameKeyOtherVersion, connect.ErrTicketTampered},
	} {
		if _, err := tickets.Redeem(t.Context(), tc.ticket); !errors.Is(err, tc.want) {
			t.Errorf("%s: Redeem error %v, want %v", tc.name, err, tc.want)
		}
	}

	// Expired: at its expiry and after.
	expiring := issue(tickets)
	clk.add(5 * time.Minute)
	if _, err := tickets.Open(expiring); !errors.Is(err, connect.ErrTicketExpired) {
		t.Errorf("Open at expiry: %v, want ErrTicketExpired", err)
	}
	if _, err := tickets.Redeem(t.Context(), expiring); !errors.Is(err, connect.ErrTicketExpired) {
		t.Errorf("Redeem after expiry: %v, want ErrTicketExpired", err)
	}

	// Reused.
	fresh := issue(tickets)
	if _, err := tickets.Redeem(t.Context(), fresh); err != nil {
		t.Fatal(err)
	}
	if _, err := tickets.Open(fresh); err != nil {
		t.Errorf("Open of a redeemed ticket: %v (Open does not look at redemptions)", err)
	}
	if _, err := tickets.Redeem(t.Context(), fresh); !errors.Is(err, connect.ErrTicketUsed) {
		t.Errorf("second Redeem: %v, want ErrTicketUsed", err)
	}

	// The recorder's failure passes through; the ticket stays redeemable.
	uses := &memoryUses{err: store.ErrUnavailable}
	flaky := connect.NewTickets(keys, uses, 0)
	again := issue(flaky)
	if _, err := flaky.Redeem(t.Context(), again); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Redeem with the store down: %v, want store.ErrUnavailable", err)
	}
	uses.err = nil
	if _, err := flaky.Redeem(t.Context(), again); err != nil {
		t.Errorf("Redeem once the store is back: %v", err)
	}

	// Too much to hold.
	if _, _, err := tickets.Issue(strings.Repeat("s", connect.MaxTicketLength), "alice", "app", "gh"); !errors.Is(err, connect.ErrTicketTooLong) {
		t.Errorf("Issue of an oversized ticket: %v, want ErrTicketTooLong", err)
	}
}

// TestSingleUseOnPostgres redeems one ticket from many goroutines over two
// pools (two replicas) on a real database: exactly one succeeds.
func TestSingleUseOnPostgres(t *testing.T) {
	dsn := pgtest.New(t)
	var replicas []*postgres.Store
	for range 2 {
		s, err := postgres.New(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		replicas = append(replicas, s)
	}
	keys := keyring(t, "k1")
	ticket, _, err := connect.NewTickets(keys, nil, 0).Issue("s", "alice", "app", "gh")
	if err != nil {
		t.Fatal(err)
	}
	const tries = 16
	errs := make([]error, tries)
	var wg sync.WaitGroup
	for i := range tries {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			_, errs[i] = connect.NewTickets(keys, replicas[i%2], 0).Redeem(ctx, ticket)
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, connect.ErrTicketUsed):
			t.Errorf("Redeem: %v, want nil or ErrTicketUsed", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d redemptions succeeded, want exactly 1", ok)
	}
}

func TestLinks(t *testing.T) {
	keys := keyring(t, "k1")
	tickets := connect.NewTickets(keys, &memoryUses{}, 0)
	for _, bad := range []string{"", "api.example.com/.extauthz", "ftp://x/y", "https://x/y?a=b", "https://x/y#f", "https:///x"} {
		if _, err := connect.NewLinks(bad, tickets); err == nil {
			t.Errorf("NewLinks(%q) accepted", bad)
		}
	}
	links, err := connect.NewLinks("https://api.example.com/.extauthz/", tickets)
	if err != nil {
		t.Fatal(err)
	}
	link, err := links.ConnectLink(t.Context(), authz.ConnectTarget{SessionID: "s", Subject: "alice", ClientID: "app", Provider: "gh"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(link.URI)
	if err != nil || u.Scheme != "https" || u.Host != "api.example.com" || u.Path != "/.extauthz/connect" {
		t.Fatalf("link %q (%v)", link.URI, err)
	}
	tk, err := tickets.Redeem(t.Context(), u.Query().Get("ticket"))
	if err != nil || tk.ID != link.ID || tk.Subject != "alice" || tk.Provider != "gh" {
		t.Errorf("the link's ticket opens to %+v, %v; link ID %q", tk, err, link.ID)
	}
}

func FuzzOpen(f *testing.F) {
	secret := make([]byte, tokencrypt.KeySize)
	keys, _ := tokencrypt.New([]tokencrypt.Key{{ID: "k", Secret: secret}}, "k")
	tickets := connect.NewTickets(keys, nil, time.Hour)
	good, _, _ := tickets.Issue("s", "alice", "app", "gh")
	for _, s := range []string{good, "", "p1.k.", "p1.k.AAAA", good[:len(good)-3]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tk, err := tickets.Open(s)
		if err == nil && (tk.Subject != "alice" || tk.Provider != "gh") {
			t.Fatalf("Open(%q) = %+v", s, tk)
		}
	})
}
