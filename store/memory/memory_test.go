package memory_test

import (
	"errors"
	"testing"
	"time"

	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/memory"
	"github.com/extauthz/extauthz/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return memory.New() })
}

func row(sessionID, provider string) store.Row {
	return store.Row{
		SessionID: sessionID, Provider: provider,
		Tokens:  store.Tokens{AccessToken: "at"},
		Subject: "sub", ClientID: "client",
	}
}

func TestClock(t *testing.T) {
	now := time.Date(2030, time.January, 2, 3, 4, 5, 6789, time.FixedZone("X", 3600))
	s := memory.New(memory.WithClock(func() time.Time { return now }))
	ctx := t.Context()

	if err := s.Put(ctx, row("s1", "github")); err != nil {
		t.Fatal(err)
	}
	created := now.Truncate(time.Microsecond)
	now = now.Add(time.Hour)
	updated := now.Truncate(time.Microsecond)

	steps := []struct {
		name string
		do   func() error
	}{
		{"Put", func() error { return s.Put(ctx, row("s1", "github")) }},
		{"UpdateTokens", func() error {
			_, err := s.UpdateTokens(ctx, "s1", "github", store.Tokens{AccessToken: "at2"})
			return err
		}},
		{"MarkReauth", func() error { return s.MarkReauth(ctx, "s1", "github") }},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := st.do(); err != nil {
				t.Fatal(err)
			}
			got, err := s.Get(ctx, "s1", "github")
			if err != nil {
				t.Fatal(err)
			}
			if !got.CreatedAt.Equal(created) || !got.UpdatedAt.Equal(updated) {
				t.Errorf("CreatedAt, UpdatedAt = %v, %v; want %v, %v", got.CreatedAt, got.UpdatedAt, created, updated)
			}
			if got.CreatedAt.Location() != time.UTC || got.UpdatedAt.Location() != time.UTC {
				t.Errorf("times not in UTC: %v, %v", got.CreatedAt, got.UpdatedAt)
			}
		})
		now = now.Add(time.Hour)
		updated = now.Truncate(time.Microsecond)
	}
}

func TestSetUnavailable(t *testing.T) {
	s := memory.New()
	ctx := t.Context()
	if err := s.Put(ctx, row("s1", "github")); err != nil {
		t.Fatal(err)
	}
	s.SetUnavailable(true)
	calls := []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, err := s.Get(ctx, "s1", "github"); return err }},
		{"GetSession", func() error { _, err := s.GetSession(ctx, "s1"); return err }},
		{"Put", func() error { return s.Put(ctx, row("s1", "google")) }},
		{"UpdateTokens", func() error {
			_, err := s.UpdateTokens(ctx, "s1", "github", store.Tokens{AccessToken: "at2"})
			return err
		}},
		{"MarkReauth", func() error { return s.MarkReauth(ctx, "s1", "github") }},
		{"Delete", func() error { return s.Delete(ctx, "s1", "") }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s while unavailable = %v, want ErrUnavailable", c.name, err)
		}
	}
	s.SetUnavailable(false)
	rows, err := s.GetSession(ctx, "s1")
	if err != nil || len(rows) != 1 || rows[0].AccessToken != "at" || rows[0].NeedsReauth {
		t.Errorf("GetSession after recovery = %+v, %v; want the row as it was before", rows, err)
	}
}
