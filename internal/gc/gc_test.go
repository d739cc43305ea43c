package gc_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/extauthz/extauthz/internal/gc"
	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/memory"
)

var (
	past   = time.Date(1991, time.May, 6, 7, 8, 9, 0, time.UTC) // before a synctest bubble's clock, too
	future = time.Date(2099, time.May, 6, 7, 8, 9, 0, time.UTC)
)

func sessionRow(sessionID, provider string, expires time.Time) store.Row {
	return store.Row{
		SessionID: sessionID, Provider: provider,
		Tokens:           store.Tokens{AccessToken: "secret-access-token"},
		Subject:          "sub",
		ClientID:         "client",
		SessionExpiresAt: expires,
	}
}

// fill puts expired rows "gone-0"... and the live rows "live" and "never"
// into s.
func fill(t *testing.T, s store.Store, expired int) {
	t.Helper()
	for i := range expired {
		if err := s.Put(t.Context(), sessionRow(fmt.Sprintf("gone-%d", i), "github", past)); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []store.Row{sessionRow("live", "github", future), sessionRow("never", "github", time.Time{})} {
		if err := s.Put(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
}

// remaining returns the session IDs left in s among those fill put.
func remaining(t *testing.T, s store.Store, expired int) []string {
	t.Helper()
	var left []string
	ids := []string{"live", "never"}
	for i := range expired {
		ids = append(ids, fmt.Sprintf("gone-%d", i))
	}
	for _, id := range ids {
		rows, err := s.GetSession(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) > 0 {
			left = append(left, id)
		}
	}
	return left
}

func TestPassBatches(t *testing.T) {
	for _, tt := range []struct {
		expired, batch, batches int
	}{
		{0, 10, 1},
		{25, 10, 3},
		{10, 5, 3}, // the last batch deletes nothing
		{3, 1000, 1},
	} {
		t.Run(fmt.Sprintf("%d rows in batches of %d", tt.expired, tt.batch), func(t *testing.T) {
			s := memory.New()
			fill(t, s, tt.expired)
			r, err := gc.Pass(t.Context(), s, tt.batch)
			if err != nil || !r.Ran || r.Deleted != tt.expired || r.Batches != tt.batches {
				t.Errorf("Pass = %+v, %v; want ran, %d deleted in %d batches", r, err, tt.expired, tt.batches)
			}
			if left := remaining(t, s, tt.expired); strings.Join(left, ",") != "live,never" {
				t.Errorf("sessions left: %v, want live and never", left)
			}
		})
	}
}

func TestPassSkipsWhileLocked(t *testing.T) {
	s := memory.New()
	fill(t, s, 3)
	var r gc.Result
	var err error
	ran, lockErr := s.RunExclusive(t.Context(), func(ctx context.Context) error {
		r, err = gc.Pass(ctx, s, 10)
		return nil
	})
	if !ran || lockErr != nil {
		t.Fatalf("RunExclusive = %v, %v", ran, lockErr)
	}
	if err != nil || r.Ran || r.Deleted != 0 || r.Batches != 0 {
		t.Errorf("Pass while another holds the lock = %+v, %v; want not ran, nothing deleted", r, err)
	}
	if left := remaining(t, s, 3); len(left) != 5 {
		t.Errorf("sessions left: %v, want all 5", left)
	}
}

// failing fails DeleteExpired from its call number failAt on.
type failing struct {
	*memory.Store
	mu     sync.Mutex
	calls  int
	failAt int
}

func (f *failing) DeleteExpired(ctx context.Context, limit int) (int, error) {
	f.mu.Lock()
	f.calls++
	fail := f.calls >= f.failAt
	f.mu.Unlock()
	if fail {
		return 0, fmt.Errorf("%w: test failure", store.ErrUnavailable)
	}
	return f.Store.DeleteExpired(ctx, limit)
}

func TestPassErrors(t *testing.T) {
	t.Run("store down", func(t *testing.T) {
		s := memory.New()
		fill(t, s, 3)
		s.SetUnavailable(true)
		r, err := gc.Pass(t.Context(), s, 10)
		if !errors.Is(err, store.ErrUnavailable) || r.Ran || r.Deleted != 0 {
			t.Errorf("Pass = %+v, %v; want ErrUnavailable, not ran", r, err)
		}
	})
	t.Run("fails after a batch", func(t *testing.T) {
		f := &failing{Store: memory.New(), failAt: 2}
		fill(t, f, 3)
		r, err := gc.Pass(t.Context(), f, 2)
		if !errors.Is(err, store.ErrUnavailable) || !r.Ran || r.Deleted != 2 || r.Batches != 1 {
			t.Errorf("Pass = %+v, %v; want ErrUnavailable after one batch of 2", r, err)
		}
		// The lock was released.
		if ran, err := f.RunExclusive(t.Context(), func(context.Context) error { return nil }); !ran || err != nil {
			t.Errorf("RunExclusive after a failed pass = %v, %v; want the lock free", ran, err)
		}
	})
	t.Run("batch not positive", func(t *testing.T) {
		if _, err := gc.Pass(t.Context(), memory.New(), 0); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Pass with batch 0 = %v, want ErrInvalid", err)
		}
	})
}

// lines decodes the JSON log lines in logs.
func lines(t *testing.T, logs *testutil.SyncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// interval is the collection interval of the Run tests, which run in a
// synctest bubble: Run's first wait, drawn between half and one and a half
// intervals, takes no real time.
const interval = 10 * time.Minute

// startRun runs gc.Run in the background of the test's synctest bubble until
// the test ends or stop is called; stop checks that Run returns as soon as
// its context is cancelled.
func startRun(t *testing.T, c store.Collector, interval time.Duration, batch int, log *slog.Logger) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		gc.Run(ctx, c, interval, batch, log)
	}()
	stop = func() {
		t.Helper()
		cancel()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("Run did not return when its context was cancelled")
		}
	}
	t.Cleanup(stop)
	return stop
}

// afterFirstPass lets the longest first wait of Run pass, and waits for the
// pass to end.
func afterFirstPass() {
	time.Sleep(interval * 3 / 2)
	synctest.Wait()
}

func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memory.New()
		const expired = 12
		fill(t, s, expired)
		logs := &testutil.SyncBuffer{}
		log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		stop := startRun(t, s, interval, 5, log)

		// No pass before half the interval, one by one and a half times it.
		time.Sleep(interval/2 - time.Nanosecond)
		synctest.Wait()
		if left := remaining(t, s, expired); len(left) != expired+2 {
			t.Fatalf("sessions left before half the interval: %v, want all %d", left, expired+2)
		}
		time.Sleep(interval + time.Nanosecond)
		synctest.Wait()
		if left := remaining(t, s, expired); strings.Join(left, ",") != "live,never" {
			t.Fatalf("sessions left after one and a half intervals: %v, want live and never", left)
		}
		// Later passes delete nothing and log nothing.
		time.Sleep(10 * interval)
		stop()

		var deleted []map[string]any
		for _, l := range lines(t, logs) {
			if l["outcome"] != "deleted" {
				t.Errorf("unexpected log line: %v", l)
				continue
			}
			deleted = append(deleted, l)
		}
		if len(deleted) != 1 {
			t.Fatalf("%d lines with outcome deleted, want 1: %s", len(deleted), logs.String())
		}
		l := deleted[0]
		if l["msg"] != "gc" || l["level"] != "INFO" || l["rows"] != float64(expired) || l["batches"] != float64(3) {
			t.Errorf("log line = %v; want msg gc, level INFO, %d rows in 3 batches", l, expired)
		}
		if _, ok := l["duration"]; !ok {
			t.Errorf("log line = %v; want a duration", l)
		}
		for _, secret := range []string{"gone-", "secret-access-token", "sub", "client"} {
			if strings.Contains(logs.String(), `"`+secret) {
				t.Errorf("logs mention %q: %s", secret, logs.String())
			}
		}

		// New expired rows are collected by later passes, until Run stops.
		startRun(t, s, interval, 5, log)
		if err := s.Put(t.Context(), sessionRow("gone-late", "github", past)); err != nil {
			t.Fatal(err)
		}
		afterFirstPass()
		if rows, err := s.GetSession(t.Context(), "gone-late"); err != nil || len(rows) != 0 {
			t.Errorf("a session expired later: rows %v, %v; want none", rows, err)
		}
	})
}

func TestRunLogsFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memory.New()
		s.SetUnavailable(true)
		logs := &testutil.SyncBuffer{}
		startRun(t, s, interval, 10, slog.New(slog.NewJSONHandler(logs, nil)))
		afterFirstPass()
		// By then one pass has run, and maybe a second (each wait is drawn
		// from half to one and a half intervals): each failed pass logs one
		// warning naming the error.
		got := lines(t, logs)
		if len(got) == 0 {
			t.Fatal("no log line after a failed pass")
		}
		for _, l := range got {
			if l["level"] != "WARN" || l["msg"] != "gc" || l["outcome"] != "failed" || !strings.Contains(fmt.Sprint(l["error"]), "unavailable") {
				t.Errorf("log line = %v; want a warning naming the error", l)
			}
		}
	})
}

func TestRunSkipsWhileLocked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memory.New()
		fill(t, s, 3)
		logs := &testutil.SyncBuffer{}
		log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		release := make(chan struct{})
		held := make(chan struct{})
		go func() {
			_, _ = s.RunExclusive(context.Background(), func(context.Context) error {
				close(held)
				<-release
				return nil
			})
		}()
		<-held
		startRun(t, s, interval, 10, log)
		afterFirstPass()
		if !strings.Contains(logs.String(), `"outcome":"skipped"`) {
			t.Errorf("no skipped pass logged: %s", logs.String())
		}
		if left := remaining(t, s, 3); len(left) != 5 {
			t.Errorf("sessions left while another pass holds the lock: %v, want all 5", left)
		}
		close(release)
		afterFirstPass()
		if left := remaining(t, s, 3); len(left) != 2 {
			t.Errorf("sessions left once the lock is free: %v, want live and never", left)
		}
	})
}

func TestRunDisabled(t *testing.T) {
	for _, interval := range []time.Duration{0, -time.Second} {
		synctest.Test(t, func(t *testing.T) {
			s := memory.New()
			fill(t, s, 1)
			start := time.Now()
			gc.Run(context.Background(), s, interval, 10, nil)
			if waited := time.Since(start); waited != 0 {
				t.Errorf("Run with interval %v returned after %v, want at once", interval, waited)
			}
			if left := remaining(t, s, 1); len(left) != 3 {
				t.Errorf("sessions left: %v, want all 3", left)
			}
		})
	}
}

func TestRunDefaultBatchAndNilLogger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memory.New()
		fill(t, s, 3)
		startRun(t, s, interval, 0, nil)
		afterFirstPass()
		if left := remaining(t, s, 3); len(left) != 2 {
			t.Errorf("sessions left: %v, want live and never", left)
		}
	})
}
