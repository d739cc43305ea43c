package upstreamtoken

import (
	"fmt"
	"sync"
	"time"
)

// maxBackoffEntries is the size above which the back-off forgets pauses
// that have ended, so that per-session pauses cannot pile up.
const maxBackoffEntries = 4096

// backoff pauses refreshes after transient failures. A pause has a key: a
// provider's name pauses every session at that provider (the provider is
// down, or rejects our client), a sessionKey pauses one session there (the
// provider refused that session's refresh for a reason nobody knows).
type backoff struct {
	min, max time.Duration
	now      func() time.Time
	mu       sync.Mutex
	state    map[string]backoffState
}

type backoffState struct {
	until time.Time
	next  time.Duration
}

// sessionKey is the back-off key of one session at one provider.
func sessionKey(provider, sessionID string) string {
	return provider + "\x00" + sessionID
}

// remaining returns how long refreshes under key are still paused.
func (b *backoff) remaining(key string) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	st, ok := b.state[key]
	if !ok {
		return 0
	}
	return max(st.until.Sub(b.now()), 0)
}

// fail records a transient failure under key with the provider's retry hint
// and returns the pause it starts: the next step of the doubling back-off,
// or the hint if that is longer, but never more than max.
func (b *backoff) fail(key string, hint time.Duration) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if b.state == nil {
		b.state = make(map[string]backoffState)
	}
	if len(b.state) >= maxBackoffEntries {
		for k, st := range b.state {
			if !st.until.After(now) {
				delete(b.state, k)
			}
		}
	}
	d := b.min
	if st, ok := b.state[key]; ok {
		d = st.next
	}
	d = min(max(d, hint), b.max)
	b.state[key] = backoffState{until: now.Add(d), next: min(2*d, b.max)}
	return d
}

// succeed ends the pauses under keys.
func (b *backoff) succeed(keys ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range keys {
		delete(b.state, k)
	}
}

// backoffError is returned while refreshes are paused, and by the failure
// that starts a pause (then it wraps that failure). Its RetryAfter is the
// pause, which already honours the provider's hint up to the back-off's
// maximum.
type backoffError struct {
	provider string
	session  bool // only this session is paused
	wait     time.Duration
	cause    error // the failure that started the pause; nil while paused
}

func (e *backoffError) Error() string {
	who := "refreshes at provider"
	if e.session {
		who = "this session's refreshes at provider"
	}
	if e.cause != nil {
		return fmt.Sprintf("%v; %s %q paused for %v", e.cause, who, e.provider, e.wait.Round(time.Millisecond))
	}
	return fmt.Sprintf("upstreamtoken: %s %q failed recently; paused for %v", who, e.provider, e.wait.Round(time.Millisecond))
}

func (e *backoffError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrUpstreamUnavailable}
	}
	return []error{ErrUpstreamUnavailable, e.cause}
}

func (e *backoffError) RetryAfter() time.Duration { return e.wait }
