package jwtauth

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

const (
	// maxJWKSBytes bounds a JWKS document, fetched or read from a file.
	maxJWKSBytes = 1 << 20
	// noKeysRetryInterval is the least time between fetch attempts while no
	// key set has ever been fetched (capped by MinRefetchInterval).
	noKeysRetryInterval = time.Second
)

// keySnapshot is an immutable parsed key set: public signing keys only,
// each usable with at least one allowed algorithm.
type keySnapshot struct {
	keys      []jose.JSONWebKey
	fetchedAt time.Time
}

// find selects the key for a token header: a key fits when its JWK "alg",
// if any, is alg and it has the type, curve and strength alg requires. With
// a kid, the first fitting key with that kid is returned. Without one, the
// key is returned only when it is the single fitting key in the set. (The
// library's own JWKS look-up takes the first key with the kid, fitting or
// not, and refuses a token without one.)
func (s *keySnapshot) find(kid, alg string) (crypto.PublicKey, error) {
	var found crypto.PublicKey
	n := 0
	for i := range s.keys {
		k := &s.keys[i]
		if kid != "" && k.KeyID != kid {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != alg {
			continue
		}
		if !keyFitsAlg(k.Key, alg) {
			continue
		}
		if kid != "" {
			return k.Key, nil
		}
		found = k.Key
		n++
	}
	switch n {
	case 0:
		return nil, errUnknownKey
	case 1:
		return found, nil
	default:
		return nil, errAmbiguousKey
	}
}

// parseJWKS parses a JWKS document and keeps the keys usable for verifying
// signatures. Keys marked for encryption ("use" other than "sig", or
// "key_ops" without "verify") and keys restricted to an algorithm outside the
// allow-list are skipped silently. In strict mode (a local file, which the
// operator controls) any other unusable key is an error; otherwise (a fetched
// set, which may legitimately list keys this service cannot use) it is
// skipped. Private and symmetric keys are never used. A set without any
// usable key is an error in both modes.
func parseJWKS(data []byte, strict bool) ([]jose.JSONWebKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, errors.New("not a JSON Web Key Set")
	}
	if doc.Keys == nil {
		return nil, errors.New(`not a JSON Web Key Set: no "keys" array`)
	}
	var keys []jose.JSONWebKey
	for i, raw := range doc.Keys {
		var meta struct {
			Use    *string  `json:"use"`
			KeyOps []string `json:"key_ops"`
		}
		if err := json.Unmarshal(raw, &meta); err != nil {
			if strict {
				return nil, fmt.Errorf("key %d: not a JSON object", i)
			}
			continue
		}
		if meta.Use != nil && *meta.Use != "sig" {
			continue
		}
		if meta.KeyOps != nil && !slices.Contains(meta.KeyOps, "verify") {
			continue
		}
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(raw); err != nil {
			if strict {
				return nil, fmt.Errorf("key %d: %v", i, err)
			}
			continue
		}
		if jwk.Algorithm != "" && !slices.Contains(allowedAlgs, jose.SignatureAlgorithm(jwk.Algorithm)) {
			continue
		}
		if !jwk.IsPublic() {
			if strict {
				return nil, fmt.Errorf("key %d (kid %q): not a public key (private and symmetric keys are refused)", i, jwk.KeyID)
			}
			continue
		}
		if !keyUsable(jwk.Key) {
			if strict {
				return nil, fmt.Errorf("key %d (kid %q): unsupported key type or size", i, jwk.KeyID)
			}
			continue
		}
		keys = append(keys, jwk)
	}
	if len(keys) == 0 {
		return nil, errors.New("no usable public signing key in the key set")
	}
	return keys, nil
}

// keyUsable reports whether key fits at least one allowed algorithm.
func keyUsable(key crypto.PublicKey) bool {
	for _, alg := range allowedAlgs {
		if keyFitsAlg(key, string(alg)) {
			return true
		}
	}
	return false
}

// staticKeySet is a key set that never changes.
type staticKeySet struct{ snap keySnapshot }

func (s *staticKeySet) VerificationKey(_ context.Context, kid, alg string) (crypto.PublicKey, error) {
	return s.snap.find(kid, alg)
}

func loadKeySetFile(path string) (*staticKeySet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("jwtauth: JWKSFile: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("jwtauth: JWKSFile: %w", err)
	}
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("jwtauth: JWKSFile %s: larger than %d bytes", path, maxJWKSBytes)
	}
	keys, err := parseJWKS(data, true)
	if err != nil {
		return nil, fmt.Errorf("jwtauth: JWKSFile %s: %w", path, err)
	}
	return &staticKeySet{snap: keySnapshot{keys: keys}}, nil
}

// remoteKeySet is a JWKS fetched over HTTP and cached.
//
// The hot path reads the current snapshot from an atomic pointer and takes no
// lock. Fetches run through a singleflight group, so concurrent callers share
// one request, on a context that no single caller owns (a caller that gives
// up does not cancel the fetch for the others). lastAttempt enforces the
// minimum interval between fetches: a caller that finds it too recent uses
// the cached set, which another caller may just have refreshed.
type remoteKeySet struct {
	url        string
	client     *http.Client
	now        func() time.Time
	minRefetch time.Duration
	maxAge     time.Duration

	cur         atomic.Pointer[keySnapshot]
	lastAttempt atomic.Int64 // Unix nanoseconds of the last fetch attempt; 0 = none
	group       singleflight.Group

	mu      sync.Mutex
	lastErr error // guarded by mu: why the last fetch failed
}

func newRemoteKeySet(cfg Config) *remoteKeySet {
	r := &remoteKeySet{
		url:        cfg.JWKSURL,
		client:     cfg.HTTPClient,
		now:        cfg.Now,
		minRefetch: cfg.MinRefetchInterval,
		maxAge:     cfg.KeySetMaxAge,
	}
	if r.client == nil {
		r.client = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.minRefetch == 0 {
		r.minRefetch = DefaultMinRefetchInterval
	}
	if r.maxAge == 0 {
		r.maxAge = DefaultKeySetMaxAge
	}
	return r
}

func (r *remoteKeySet) VerificationKey(ctx context.Context, kid, alg string) (crypto.PublicKey, error) {
	if snap := r.cur.Load(); snap != nil {
		key, err := snap.find(kid, alg)
		if err != errUnknownKey {
			if err == nil {
				r.refreshIfStale(ctx, snap)
			}
			return key, err
		}
	}
	// Unknown key, or no key set yet: refetch, subject to the rate limit.
	snap, err := r.refresh(ctx)
	if snap == nil {
		return nil, fmt.Errorf("%w: %w", ErrKeysUnavailable, err)
	}
	// A failed refetch leaves the cached set in charge: the kid is unknown.
	return snap.find(kid, alg)
}

func (r *remoteKeySet) prefetch(ctx context.Context) error {
	if r.cur.Load() != nil {
		return nil
	}
	if snap, err := r.refresh(ctx); snap == nil {
		return fmt.Errorf("%w: %w", ErrKeysUnavailable, err)
	}
	return nil
}

// refresh fetches the key set unless the last attempt is too recent, and
// returns the current snapshot with the reason a fetch failed. The snapshot
// is nil when none was ever fetched, and when ctx ended before the fetch did
// (the caller cannot decide then).
func (r *remoteKeySet) refresh(ctx context.Context) (*keySnapshot, error) {
	fetchCtx := context.WithoutCancel(ctx)
	ch := r.group.DoChan("jwks", func() (any, error) { return r.fetchIfDue(fetchCtx) })
	select {
	case res := <-ch:
		snap, _ := res.Val.(*keySnapshot)
		return snap, res.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// refreshIfStale starts a background refresh when snap is older than maxAge
// and the rate limit allows one; it does not wait.
func (r *remoteKeySet) refreshIfStale(ctx context.Context, snap *keySnapshot) {
	now := r.now()
	if now.Sub(snap.fetchedAt) < r.maxAge || !r.due(now, r.minRefetch) {
		return
	}
	fetchCtx := context.WithoutCancel(ctx)
	r.group.DoChan("jwks", func() (any, error) { return r.fetchIfDue(fetchCtx) })
}

// due reports whether at least interval has passed since the last attempt.
// A clock that went backwards makes a fetch due.
func (r *remoteKeySet) due(now time.Time, interval time.Duration) bool {
	last := r.lastAttempt.Load()
	if last == 0 {
		return true
	}
	elapsed := now.UnixNano() - last
	return elapsed < 0 || elapsed >= int64(interval)
}

// claimAttempt records now as the last attempt if one is due, and reports
// whether it did; of several racing callers only one wins.
func (r *remoteKeySet) claimAttempt(now time.Time, interval time.Duration) bool {
	for {
		last := r.lastAttempt.Load()
		if last != 0 {
			elapsed := now.UnixNano() - last
			if elapsed >= 0 && elapsed < int64(interval) {
				return false
			}
		}
		if r.lastAttempt.CompareAndSwap(last, now.UnixNano()) {
			return true
		}
	}
}

func (r *remoteKeySet) fetchIfDue(ctx context.Context) (*keySnapshot, error) {
	now := r.now()
	cur := r.cur.Load()
	interval := r.minRefetch
	if cur == nil {
		interval = min(interval, noKeysRetryInterval)
	}
	if !r.claimAttempt(now, interval) {
		if cur != nil {
			return cur, nil
		}
		r.mu.Lock()
		err := r.lastErr
		r.mu.Unlock()
		if err == nil {
			err = errors.New("jwtauth: JWKS fetch rate limited")
		}
		return nil, err
	}
	keys, err := r.fetch(ctx)
	if err != nil {
		r.mu.Lock()
		r.lastErr = err
		r.mu.Unlock()
		return cur, err
	}
	snap := &keySnapshot{keys: keys, fetchedAt: now}
	r.cur.Store(snap)
	r.mu.Lock()
	r.lastErr = nil
	r.mu.Unlock()
	return snap, nil
}

// fetch GETs the JWKS: status 200, at most 1 MiB, at least one usable key.
func (r *remoteKeySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	if r.client.Timeout == 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultHTTPTimeout)
		defer cancel()
	}
	where := r.url
	if u, err := url.Parse(r.url); err == nil {
		u.RawQuery, u.Fragment = "", ""
		where = u.Redacted()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return nil, fmt.Errorf("jwtauth: fetch JWKS %s: %w", where, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		// *url.Error repeats the full URL, query included: keep only its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("jwtauth: fetch JWKS %s: %w", where, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, fmt.Errorf("jwtauth: fetch JWKS %s: unexpected status %s", where, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("jwtauth: fetch JWKS %s: reading body: %w", where, err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("jwtauth: fetch JWKS %s: larger than %d bytes", where, maxJWKSBytes)
	}
	keys, err := parseJWKS(body, false)
	if err != nil {
		return nil, fmt.Errorf("jwtauth: fetch JWKS %s: %w", where, err)
	}
	return keys, nil
}
