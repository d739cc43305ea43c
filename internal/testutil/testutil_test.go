package testutil

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestClock(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := NewClock(t0)
	steps := []struct {
		name string
		move func()
		want time.Time
	}{
		{"stands still", func() {}, t0},
		{"advance", func() { c.Advance(time.Minute) }, t0.Add(time.Minute)},
		{"advance back", func() { c.Advance(-2 * time.Minute) }, t0.Add(-time.Minute)},
		{"set", func() { c.Set(t0.Add(time.Hour)) }, t0.Add(time.Hour)},
	}
	for _, s := range steps {
		s.move()
		if got := c.Now(); !got.Equal(s.want) {
			t.Errorf("%s: Now = %v, want %v", s.name, got, s.want)
		}
	}
}

func TestEventually(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		took := Eventually(t, time.Second, "the third call", func() bool {
			calls++
			return calls == 3
		})
		if calls != 3 || took != 2*PollInterval {
			t.Errorf("calls = %d after %v, want 3 after %v", calls, took, 2*PollInterval)
		}
	})
}

// recorder is a testing.TB that records Fatalf instead of stopping the test.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = format
	panic(r)
}

func TestEventuallyGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{TB: t}
		start := time.Now()
		func() {
			defer func() {
				if p := recover(); p != r {
					panic(p)
				}
			}()
			Eventually(r, time.Second, "never", func() bool { return false })
		}()
		if r.failed == "" {
			t.Fatal("Eventually did not fail")
		}
		if took := time.Since(start); took <= time.Second || took > time.Second+PollInterval {
			t.Errorf("gave up after %v, want just after 1s", took)
		}
	})
}
