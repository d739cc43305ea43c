package jwtauth

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/extauthz/extauthz/internal/testutil"
)

// wantCount fails the test when the server has not seen exactly n requests.
func wantCount(t *testing.T, srv *jwksServer, n int64) {
	t.Helper()
	if got := srv.requests.Load(); got != n {
		t.Fatalf("JWKS requests = %d, want %d", got, n)
	}
}

func TestRemoteFetchedLazilyAndCached(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256, "k1")
	srv := newJWKSServer(t, jwksOf(t, k.public()))
	v := newRemoteVerifier(t, clock, srv.URL)
	wantCount(t, srv, 0) // New does not fetch

	tok := k.sign(t, baseClaims())
	for range 5 {
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	}
	wantCount(t, srv, 1)
}

func TestRemoteUnknownKidRefetchIsRateLimited(t *testing.T) {
	clock := newClock()
	k1 := newKey(t, jose.ES256, "k1")
	stranger := newKey(t, jose.ES256, "stranger")
	srv := newJWKSServer(t, jwksOf(t, k1.public()))
	v := newRemoteVerifier(t, clock, srv.URL)

	if _, err := v.Verify(t.Context(), k1.sign(t, baseClaims())); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	wantCount(t, srv, 1)

	unknown := stranger.sign(t, baseClaims())
	// Within MinRefetchInterval of the initial fetch: no refetch.
	if _, err := v.Verify(t.Context(), unknown); !errors.Is(err, errUnknownKey) {
		t.Fatalf("unknown kid: %v", err)
	}
	wantCount(t, srv, 1)

	clock.Advance(DefaultMinRefetchInterval)
	// Many callers at once: exactly one refetch.
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := v.Verify(t.Context(), unknown); !errors.Is(err, errUnknownKey) {
				t.Errorf("unknown kid: %v", err)
			}
		})
	}
	wg.Wait()
	wantCount(t, srv, 2)

	// And then rate limited again.
	for range 10 {
		if _, err := v.Verify(t.Context(), unknown); !errors.Is(err, errUnknownKey) {
			t.Fatalf("unknown kid: %v", err)
		}
	}
	clock.Advance(DefaultMinRefetchInterval - time.Second)
	if _, err := v.Verify(t.Context(), unknown); !errors.Is(err, errUnknownKey) {
		t.Fatalf("unknown kid: %v", err)
	}
	wantCount(t, srv, 2)
	clock.Advance(time.Second)
	if _, err := v.Verify(t.Context(), unknown); !errors.Is(err, errUnknownKey) {
		t.Fatalf("unknown kid: %v", err)
	}
	wantCount(t, srv, 3)

	// Known keys keep working throughout, without fetching.
	if _, err := v.Verify(t.Context(), k1.sign(t, baseClaims())); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	wantCount(t, srv, 3)
}

func TestRemoteCustomRefetchInterval(t *testing.T) {
	clock := newClock()
	k1 := newKey(t, jose.ES256, "k1")
	stranger := newKey(t, jose.ES256, "stranger")
	srv := newJWKSServer(t, jwksOf(t, k1.public()))
	cfg := testConfig(clock)
	cfg.JWKSURL = srv.URL
	cfg.MinRefetchInterval = 5 * time.Minute
	v, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	unknown := stranger.sign(t, baseClaims())
	_, _ = v.Verify(t.Context(), unknown)
	wantCount(t, srv, 1)
	clock.Advance(DefaultMinRefetchInterval)
	_, _ = v.Verify(t.Context(), unknown)
	wantCount(t, srv, 1)
	clock.Advance(5 * time.Minute)
	_, _ = v.Verify(t.Context(), unknown)
	wantCount(t, srv, 2)
}

func TestRemoteKeyRotation(t *testing.T) {
	clock := newClock()
	k1 := newKey(t, jose.ES256, "k1")
	k2 := newKey(t, jose.RS256, "k2")
	srv := newJWKSServer(t, jwksOf(t, k1.public()))
	v := newRemoteVerifier(t, clock, srv.URL)
	if _, err := v.Verify(t.Context(), k1.sign(t, baseClaims())); err != nil {
		t.Fatalf("k1: %v", err)
	}

	// The AS publishes k2 and starts signing with it.
	srv.set(http.StatusOK, jwksOf(t, k1.public(), k2.public()))
	clock.Advance(DefaultMinRefetchInterval)
	if _, err := v.Verify(t.Context(), k2.sign(t, baseClaims())); err != nil {
		t.Fatalf("k2 after rotation: %v", err)
	}
	wantCount(t, srv, 2)
	if _, err := v.Verify(t.Context(), k1.sign(t, baseClaims())); err != nil {
		t.Fatalf("k1 after rotation: %v", err)
	}
	wantCount(t, srv, 2)
}

func TestRemoteRefetchFailureKeepsCachedSet(t *testing.T) {
	clock := newClock()
	k1 := newKey(t, jose.ES256, "k1")
	stranger := newKey(t, jose.ES256, "stranger")
	srv := newJWKSServer(t, jwksOf(t, k1.public()))
	v := newRemoteVerifier(t, clock, srv.URL)
	if _, err := v.Verify(t.Context(), k1.sign(t, baseClaims())); err != nil {
		t.Fatalf("k1: %v", err)
	}

	srv.set(http.StatusInternalServerError, []byte("oops"))
	clock.Advance(DefaultMinRefetchInterval)
	_, err := v.Verify(t.Context(), stranger.sign(t, baseClaims()))
	if !errors.Is(err, ErrInvalidToken) || !errors.Is(err, errUnknownKey) || errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("unknown kid while the JWKS is down: %v, want unknown kid", err)
	}
	wantCount(t, srv, 2)
	if _, err := v.Verify(t.Context(), k1.sign(t, baseClaims())); err != nil {
		t.Fatalf("k1 while the JWKS is down: %v", err)
	}
}

func TestRemoteDownAtStartThenUp(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256, "k1")
	srv := newJWKSServer(t, nil)
	srv.set(http.StatusServiceUnavailable, []byte("starting"))
	v := newRemoteVerifier(t, clock, srv.URL) // New succeeds while the JWKS is down

	tok := k.sign(t, baseClaims())
	_, err := v.Verify(t.Context(), tok)
	if !errors.Is(err, ErrKeysUnavailable) || errors.Is(err, ErrInvalidToken) {
		t.Fatalf("Verify while down: %v, want ErrKeysUnavailable only", err)
	}
	if !strings.Contains(err.Error(), "503") {
		t.Errorf("error %q does not say why the fetch failed", err)
	}
	wantCount(t, srv, 1)
	if err := v.Prefetch(t.Context()); !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("Prefetch while down: %v", err)
	}
	// Retried at most once a second while there is no key set at all.
	_, err = v.Verify(t.Context(), tok)
	if !errors.Is(err, ErrKeysUnavailable) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Verify while down (rate limited): %v", err)
	}
	wantCount(t, srv, 1)

	srv.set(http.StatusOK, jwksOf(t, k.public()))
	clock.Advance(time.Second)
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatalf("Verify once up: %v", err)
	}
	wantCount(t, srv, 2)
	if err := v.Prefetch(t.Context()); err != nil {
		t.Fatalf("Prefetch once up: %v", err)
	}
	wantCount(t, srv, 2)
}

func TestRemoteUnreachable(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256, "k1")
	srv := newJWKSServer(t, jwksOf(t, k.public()))
	url := srv.URL
	srv.Close() // nothing listens there any more
	v := newRemoteVerifier(t, clock, url)
	if _, err := v.Verify(t.Context(), k.sign(t, baseClaims())); !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("Verify: %v, want ErrKeysUnavailable", err)
	}
}

func TestRemoteBadResponses(t *testing.T) {
	k := newKey(t, jose.ES256, "k1")
	priv, _ := (&jose.JSONWebKey{Key: k.priv, KeyID: "k1"}).MarshalJSON()
	big := append([]byte(`{"keys":[],"pad":"`), []byte(strings.Repeat("x", maxJWKSBytes))...)
	big = append(big, `"}`...)
	tests := []struct {
		name   string
		status int
		body   []byte
	}{
		{name: "404", status: http.StatusNotFound, body: []byte("not found")},
		{name: "redirect status without location", status: http.StatusFound},
		{name: "200 with HTML", status: http.StatusOK, body: []byte("<html></html>")},
		{name: "200 empty", status: http.StatusOK},
		{name: "only a private key", status: http.StatusOK, body: []byte(`{"keys":[` + string(priv) + `]}`)},
		{name: "larger than 1 MiB", status: http.StatusOK, body: big},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newClock()
			srv := newJWKSServer(t, tc.body)
			srv.set(tc.status, tc.body)
			v := newRemoteVerifier(t, clock, srv.URL)
			_, err := v.Verify(t.Context(), k.sign(t, baseClaims()))
			if !errors.Is(err, ErrKeysUnavailable) {
				t.Fatalf("Verify: %v, want ErrKeysUnavailable", err)
			}
		})
	}
}

func TestRemotePrivateKeyInSetIsNotUsed(t *testing.T) {
	clock := newClock()
	good := newKey(t, jose.ES256, "good")
	leaked := newKey(t, jose.ES256, "leaked")
	priv, _ := (&jose.JSONWebKey{Key: leaked.priv, KeyID: "leaked", Use: "sig"}).MarshalJSON()
	pub, _ := good.public().MarshalJSON()
	srv := newJWKSServer(t, []byte(`{"keys":[`+string(pub)+`,`+string(priv)+`]}`))
	v := newRemoteVerifier(t, clock, srv.URL)
	if _, err := v.Verify(t.Context(), good.sign(t, baseClaims())); err != nil {
		t.Fatalf("good: %v", err)
	}
	if _, err := v.Verify(t.Context(), leaked.sign(t, baseClaims())); !errors.Is(err, errUnknownKey) {
		t.Fatalf("leaked: %v, want unknown kid", err)
	}
}

func TestRemoteStaleSetRefreshedInBackground(t *testing.T) {
	clock := newClock()
	k1 := newKey(t, jose.ES256, "k1")
	k2 := newKey(t, jose.ES256, "k2")
	srv := newJWKSServer(t, jwksOf(t, k1.public(), k2.public()))
	v := newRemoteVerifier(t, clock, srv.URL)
	longLived := func() map[string]any { return with(baseClaims(), "exp", t0.Add(24*time.Hour).Unix()) }
	if _, err := v.Verify(t.Context(), k2.sign(t, longLived())); err != nil {
		t.Fatalf("k2: %v", err)
	}

	// k2 is withdrawn. Before the set is stale, it stays trusted.
	srv.set(http.StatusOK, jwksOf(t, k1.public()))
	clock.Advance(DefaultKeySetMaxAge - time.Second)
	if _, err := v.Verify(t.Context(), k2.sign(t, longLived())); err != nil {
		t.Fatalf("k2 before the set is stale: %v", err)
	}
	wantCount(t, srv, 1)

	// Once stale, a verification is served from the cache and starts a
	// background refresh, after which k2 is refused.
	clock.Advance(2 * time.Second)
	if _, err := v.Verify(t.Context(), k2.sign(t, longLived())); err != nil {
		t.Fatalf("k2 while stale: %v", err)
	}
	testutil.Eventually(t, 5*time.Second, "the stale key set refreshed in the background", func() bool {
		return !v.keys.(*remoteKeySet).cur.Load().fetchedAt.Equal(t0)
	})
	wantCount(t, srv, 2)
	if _, err := v.Verify(t.Context(), k2.sign(t, longLived())); !errors.Is(err, errUnknownKey) {
		t.Fatalf("withdrawn k2: %v, want unknown kid", err)
	}
	if _, err := v.Verify(t.Context(), k1.sign(t, longLived())); err != nil {
		t.Fatalf("k1: %v", err)
	}
}

func TestRemoteCallerGivesUpSharedFetchContinues(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256, "k1")
	srv := newJWKSServer(t, jwksOf(t, k.public()))
	gate := make(chan struct{})
	srv.setGate(gate)
	v := newRemoteVerifier(t, clock, srv.URL)
	tok := k.sign(t, baseClaims())

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := v.Verify(ctx, tok)
	if !errors.Is(err, ErrKeysUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Verify with a short deadline: %v", err)
	}

	// The fetch goes on for others and completes once the server answers.
	srv.setGate(nil)
	close(gate)
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	wantCount(t, srv, 1)
}

func TestRemoteHTTPClientTimeout(t *testing.T) {
	clock := newClock()
	k := newKey(t, jose.ES256, "k1")
	srv := newJWKSServer(t, jwksOf(t, k.public()))
	gate := make(chan struct{})
	srv.setGate(gate)
	defer close(gate)
	cfg := testConfig(clock)
	cfg.JWKSURL = srv.URL
	cfg.HTTPClient = &http.Client{Timeout: 50 * time.Millisecond}
	v, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := v.Verify(t.Context(), k.sign(t, baseClaims())); !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("Verify: %v, want ErrKeysUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("fetch took %v despite the client time-out", d)
	}
}
