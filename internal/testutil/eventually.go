package testutil

import (
	"testing"
	"time"
)

// PollInterval is the pause between two tries of Eventually.
const PollInterval = 5 * time.Millisecond

// Eventually calls cond every PollInterval until it returns true, and
// returns how long that took. If cond still returns false once within has
// passed, Eventually fails t, saying that what did not happen.
//
// It is meant for what a test cannot otherwise wait for: a separate process,
// a real network peer, a goroutine the code under test does not let it join.
// Inside a synctest bubble its pauses take no real time, but there
// synctest.Wait is usually the exact answer.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(PollInterval)
	}
	return time.Since(start)
}
