// Package connect is where extauthz obtains a user's upstream tokens itself,
// through a browser flow, when a Check finds the grant missing or dead. It
// holds the connect tickets, the links that carry them, and the flow's
// handler (Handler: GET /connect, the two callbacks, the pages), which
// serve does not serve yet.
//
// A connect ticket is an opaque, URL-safe string sealed with the encryption
// keyring (tokencrypt.Keyring.SealPayload, purpose TicketPurpose: it can
// never be taken for a row's ciphertext, nor a row's for a ticket). It holds
// the session, subject and client ID of the verified JWT whose Check was
// denied, the provider to connect, an expiry and a random ID. Tickets are
// single use: Redeem records the ID in the store, and a second redemption,
// on any replica, fails.
package connect

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/extauthz/extauthz/tokencrypt"
)

// TicketPurpose is the purpose tickets are sealed for.
const TicketPurpose = "extauthz connect ticket v1"

// DefaultTicketTTL is how long a ticket is valid unless configured
// otherwise (connect.ticket_ttl).
const DefaultTicketTTL = 10 * time.Minute

// MaxTicketLength bounds a ticket: Issue refuses to make a longer one (the
// session ID, subject, client ID and provider together must fit), and
// Open refuses a longer one without decoding it.
const MaxTicketLength = 1024

// idSize is the size of a ticket's random ID.
const idSize = 16

// Errors of Open and Redeem. Each failure has its own; none contains the
// ticket or what it holds.
var (
	// ErrTicketForeign: the ticket was sealed by another keyring (a key
	// this one does not hold, or another key under the same ID).
	ErrTicketForeign = errors.New("connect: ticket sealed with another key")
	// ErrTicketTampered: the ticket was altered, cut short, is too long or
	// is not a ticket at all.
	ErrTicketTampered = errors.New("connect: ticket altered or malformed")
	// ErrTicketExpired: the ticket's time is over.
	ErrTicketExpired = errors.New("connect: ticket expired")
	// ErrTicketUsed: the ticket was redeemed before.
	ErrTicketUsed = errors.New("connect: ticket already used")
)

// ErrTicketTooLong is Issue's error for a ticket that would exceed
// MaxTicketLength.
var ErrTicketTooLong = errors.New("connect: ticket would exceed its maximum length")

// Ticket is what a ticket holds.
type Ticket struct {
	// ID is the ticket's random ID, 32 lower-case hex digits. It is what
	// Redeem records, and may be shown (an MCP elicitationId): it opens
	// nothing.
	ID string
	// SessionID, Subject and ClientID are those of the verified JWT whose
	// Check was denied: the session a connect writes to, and its binding.
	SessionID string
	Subject   string
	ClientID  string
	// Provider is the provider to connect.
	Provider string
	// ExpiresAt is when the ticket stops being valid, to the second.
	ExpiresAt time.Time
}

// UseRecorder records redeemed ticket IDs. postgres.Store implements it.
type UseRecorder interface {
	// UseTicket records id, of a ticket valid until expiresAt, and returns
	// true if it was not recorded before, by any process sharing the
	// recorder. The record is kept at least until expiresAt.
	UseTicket(ctx context.Context, id []byte, expiresAt time.Time) (first bool, err error)
}

// Tickets issues, opens and redeems tickets. It is safe for concurrent use.
type Tickets struct {
	keys *tokencrypt.Keyring
	used UseRecorder
	ttl  time.Duration
	now  func() time.Time
}

// TicketOption configures NewTickets.
type TicketOption func(*Tickets)

// WithClock makes tickets read the time from now (for tests).
func WithClock(now func() time.Time) TicketOption { return func(t *Tickets) { t.now = now } }

// NewTickets returns tickets sealed with keys, valid for ttl (DefaultTicketTTL
// when not positive), whose redemptions used records. used may be nil for
// a Tickets that only issues.
func NewTickets(keys *tokencrypt.Keyring, used UseRecorder, ttl time.Duration, opts ...TicketOption) *Tickets {
	if ttl <= 0 {
		ttl = DefaultTicketTTL
	}
	t := &Tickets{keys: keys, used: used, ttl: ttl, now: time.Now}
	for _, o := range opts {
		o(t)
	}
	return t
}

// Issue returns a new ticket for the session, subject and client ID of a
// verified JWT and a provider, expiring after the configured time, and
// what it holds. A ticket that would exceed MaxTicketLength is
// ErrTicketTooLong.
func (t *Tickets) Issue(sessionID, subject, clientID, provider string) (string, Ticket, error) {
	var id [idSize]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", Ticket{}, fmt.Errorf("connect: ticket ID: %w", err)
	}
	tk := Ticket{ID: hex.EncodeToString(id[:]), SessionID: sessionID, Subject: subject, ClientID: clientID,
		Provider: provider, ExpiresAt: t.now().Add(t.ttl).Truncate(time.Second)}
	plain := encode(id, tk)
	if tokencrypt.PayloadOverhead(len(plain))+len(t.keys.Primary()) > MaxTicketLength {
		return "", Ticket{}, ErrTicketTooLong
	}
	sealed, err := t.keys.SealPayload(TicketPurpose, plain)
	if err != nil {
		return "", Ticket{}, fmt.Errorf("connect: %w", err)
	}
	return sealed, tk, nil
}

// Open returns what ticket holds if it is genuine (sealed by this keyring
// for TicketPurpose) and not expired, without redeeming it. Its errors wrap
// ErrTicketForeign, ErrTicketTampered or ErrTicketExpired.
func (t *Tickets) Open(ticket string) (Ticket, error) {
	tk, _, err := t.open(ticket)
	return tk, err
}

// Redeem opens ticket as Open does and records its ID as used, once: a
// second redemption of the same ticket, here or on another replica, fails
// with ErrTicketUsed. A failure of the recorder is returned as it is (it
// wraps store.ErrUnavailable for postgres.Store): the ticket may then be
// redeemed again.
func (t *Tickets) Redeem(ctx context.Context, ticket string) (Ticket, error) {
	tk, id, err := t.open(ticket)
	if err != nil {
		return Ticket{}, err
	}
	if t.used == nil {
		return Ticket{}, errors.New("connect: no record of redeemed tickets")
	}
	first, err := t.used.UseTicket(ctx, id[:], tk.ExpiresAt)
	switch {
	case err != nil:
		return Ticket{}, fmt.Errorf("connect: recording the redemption: %w", err)
	case !first:
		return Ticket{}, ErrTicketUsed
	}
	return tk, nil
}

func (t *Tickets) open(ticket string) (Ticket, [idSize]byte, error) {
	var id [idSize]byte
	if len(ticket) > MaxTicketLength {
		return Ticket{}, id, ErrTicketTampered
	}
	plain, err := t.keys.OpenPayload(TicketPurpose, ticket)
	switch {
	case errors.Is(err, tokencrypt.ErrUnknownKey):
		return Ticket{}, id, ErrTicketForeign
	case err != nil:
		return Ticket{}, id, ErrTicketTampered
	}
	tk, id, ok := decode(plain)
	if !ok {
		// Sealed by us, but not a ticket of this version.
		return Ticket{}, id, ErrTicketTampered
	}
	if !t.now().Before(tk.ExpiresAt) {
		return Ticket{}, id, ErrTicketExpired
	}
	return tk, id, nil
}

// ticketVersion is the first byte of a ticket's plaintext.
const ticketVersion = 1

// encode lays a ticket out as: the version byte, the ID, the expiry in Unix
// seconds (8 bytes, big-endian), then the session ID, subject, client ID and
// provider, each preceded by its length (uvarint).
func encode(id [idSize]byte, tk Ticket) []byte {
	fields := [...]string{tk.SessionID, tk.Subject, tk.ClientID, tk.Provider}
	size := 1 + idSize + 8
	for _, f := range fields {
		size += binary.MaxVarintLen64 + len(f)
	}
	b := make([]byte, 0, size)
	b = append(b, ticketVersion)
	b = append(b, id[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(tk.ExpiresAt.Unix()))
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// decode reverses encode; ok is false for anything else (bytes left over
// included).
func decode(b []byte) (tk Ticket, id [idSize]byte, ok bool) {
	if len(b) < 1+idSize+8 || b[0] != ticketVersion {
		return Ticket{}, id, false
	}
	copy(id[:], b[1:])
	b = b[1+idSize:]
	tk.ExpiresAt = time.Unix(int64(binary.BigEndian.Uint64(b)), 0)
	b = b[8:]
	var fields [4]string
	for i := range fields {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return Ticket{}, id, false
		}
		fields[i] = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	if len(b) != 0 {
		return Ticket{}, id, false
	}
	tk.ID = hex.EncodeToString(id[:])
	tk.SessionID, tk.Subject, tk.ClientID, tk.Provider = fields[0], fields[1], fields[2], fields[3]
	return tk, id, true
}
