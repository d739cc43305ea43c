package postgres_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/postgres"
)

func TestUseTicket(t *testing.T) {
	dsn := pgtest.New(t)
	s := newStore(t, dsn)
	id := func(b byte) []byte { return bytes.Repeat([]byte{b}, postgres.TicketIDSize) }
	soon := time.Now().Add(10 * time.Minute)

	for _, tc := range []struct {
		name  string
		id    []byte
		first bool
	}{
		{"first use", id(1), true},
		{"second use", id(1), false},
		{"another ticket", id(2), true},
	} {
		first, err := s.UseTicket(t.Context(), tc.id, soon)
		if err != nil || first != tc.first {
			t.Errorf("%s: UseTicket = %v, %v; want %v", tc.name, first, err, tc.first)
		}
	}
	if _, err := s.UseTicket(t.Context(), []byte("short"), soon); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("a short ID: %v, want store.ErrInvalid", err)
	}

	// Records expired for more than an hour go with a later use; a record
	// expired for less stays (replicas' clocks may disagree).
	if _, err := s.UseTicket(t.Context(), id(3), time.Now().Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UseTicket(t.Context(), id(4), time.Now().Add(-30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UseTicket(t.Context(), id(5), soon); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	for b, want := range map[byte]bool{1: true, 3: false, 4: true, 5: true} {
		var kept bool
		if err := conn.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM extauthz_connect_tickets WHERE id = $1)`, id(b)).Scan(&kept); err != nil {
			t.Fatal(err)
		}
		if kept != want {
			t.Errorf("record %d kept = %v, want %v", b, kept, want)
		}
	}
}
