package upstreamtoken

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/extauthz/extauthz/store"
)

// IDTokenVerifier verifies ID tokens returned by a refresh, for the
// providers it knows (OIDC providers with an issuer). Verify returns the
// token's subject; a rejection of the token wraps ErrRefreshFailed or any
// error that is not ErrUpstreamUnavailable, which means the issuer's keys
// could not be fetched.
type IDTokenVerifier interface {
	Has(provider string) bool
	Verify(ctx context.Context, provider, raw string) (subject string, err error)
}

// pollInterval is how often a process waiting for another process's refresh
// looks at the row again.
const pollInterval = 50 * time.Millisecond

// maxPersistAttempts bounds the writes of one refresh's result.
const maxPersistAttempts = 5

// SessionHash returns a short, stable, non-reversible label for a session
// ID, fit for logs.
func SessionHash(sessionID string) string {
	sum := sha256.Sum256([]byte(sessionID))
	return hex.EncodeToString(sum[:6])
}

func defaultOwner() string {
	host, _ := os.Hostname()
	return host + ":" + strconv.Itoa(os.Getpid())
}

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// refresh renews row's access token. Callers in this process that find the
// same row expired at the same moment share one refresh, which runs on a
// context none of them owns, so a caller giving up (an Envoy time-out) does
// not abort the redemption for the others or lose a rotated refresh token.
// The result is stored before anyone sees it.
//
// lead is how long before its expiry the token counts as due (the skew for
// a Check, more for a refresh ahead); trigger names who started it
// (TriggerCheck, TriggerAhead) for the trigger observer.
func (s *InProcessService) refresh(ctx context.Context, row store.Row, lead time.Duration, trigger string) (store.Tokens, error) {
	if row.NeedsReauth {
		return store.Tokens{}, fmt.Errorf("%w: provider %q refused this session's refresh token earlier", ErrRefreshFailed, row.Provider)
	}
	if s.refresher == nil || row.RefreshToken == "" {
		return store.Tokens{}, fmt.Errorf("%w: provider %q", ErrNoRefreshToken, row.Provider)
	}
	if s.closing.Load() {
		return store.Tokens{}, fmt.Errorf("%w: shutting down; no new refresh at provider %q", ErrUpstreamUnavailable, row.Provider)
	}
	key := row.SessionID + "\x00" + row.Provider + "\x00" + row.Subject + "\x00" + row.ClientID
	// Each caller counts as in flight until the shared refresh has ended,
	// even if it stops waiting, so that WaitRefreshes outlasts the refresh.
	s.inflight.add()
	ch := s.flights.DoChan(key, func() (any, error) {
		// Waiting out another process's lease, redeeming and storing each
		// have their own bound; this one covers them all.
		shared, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.lockTimeout+s.refreshTimeout+s.persistTimeout)
		defer cancel()
		return s.coordinate(shared, row, lead, trigger)
	})
	select {
	case r := <-ch:
		s.inflight.done()
		if r.Err != nil {
			return store.Tokens{}, r.Err
		}
		return r.Val.(store.Tokens), nil
	case <-ctx.Done():
		go func() { <-ch; s.inflight.done() }()
		return store.Tokens{}, fmt.Errorf("%w: waiting for refresh at provider %q: %w", ErrUpstreamUnavailable, row.Provider, ctx.Err())
	}
}

// WaitRefreshes waits until no refresh is in flight and no deferred write
// is pending (each has stored its result, or failed), or until ctx is done,
// when it returns ctx's error. A refresh goes on after the Check that started
// it has given up, so a process that is shutting down calls it (through
// Shutdown) after its last Check and before closing the store: otherwise a
// refresh token the provider has just rotated could be lost.
func (s *InProcessService) WaitRefreshes(ctx context.Context) error {
	return s.inflight.wait(ctx)
}

// Shutdown stops the refresh-ahead loop and refreshes from starting (a Check that needs one from now on
// fails with ErrUpstreamUnavailable; tokens already refreshed are still
// served) and waits as WaitRefreshes does. If ctx ends first, the deferred
// writes still pending are given up, each logged with its provider and
// session hash, and ctx's error is returned.
func (s *InProcessService) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	err := s.stopAhead(ctx)
	if err == nil {
		err = s.inflight.wait(ctx)
	}
	if err != nil {
		s.pending.abandon(s.log)
	}
	return err
}

// inflight counts refreshes in flight.
type inflight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0
}

func (f *inflight) add() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		f.idle = make(chan struct{})
	}
	f.n++
}

func (f *inflight) done() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.n == 0 {
		close(f.idle)
	}
}

func (f *inflight) wait(ctx context.Context) error {
	f.mu.Lock()
	if f.n == 0 {
		f.mu.Unlock()
		return nil
	}
	idle := f.idle
	f.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// coordinate makes sure that of all the processes sharing the store exactly
// one redeems the row's refresh token, and that the others get its result.
//
// It claims the row's refresh lease, which also re-reads the row: if another
// process has refreshed it meanwhile, the stored token is served and nothing
// is redeemed. While another process holds a live lease it polls the row
// until that process stores its result or its lease lapses (it died or hung),
// then claims the lease itself.
func (s *InProcessService) coordinate(ctx context.Context, row store.Row, lead time.Duration, trigger string) (store.Tokens, error) {
	log := s.log.With("provider", row.Provider, "session", SessionHash(row.SessionID), "trigger", trigger)
	begin := time.Now()
	done := func(outcome string) {
		s.observe(row.Provider, outcome, time.Since(begin))
		s.observeTrigger(row.Provider, trigger, outcome)
	}
	for {
		// This process redeemed the row already and is still writing the
		// result: serve it, never redeem the spent refresh token again.
		if p, ok := s.pending.get(row.SessionID, row.Provider, row.Version); ok {
			return p.Tokens, nil
		}
		if err := s.paused(row); err != nil {
			log.Debug("refresh", "outcome", OutcomeBackingOff, "retry_after", err.wait)
			done(OutcomeBackingOff)
			return store.Tokens{}, err
		}
		claimStart := time.Now()
		claim, err := s.storage.ClaimRefresh(ctx, row.SessionID, row.Provider, s.owner+":"+randomID(), s.lockTimeout)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return store.Tokens{}, fmt.Errorf("%w: session deleted before refresh at provider %q", ErrSessionNotFound, row.Provider)
		case err != nil:
			return store.Tokens{}, storeErr(err)
		}
		cur := claim.Row
		if err := s.redeemable(row, cur); err != nil {
			s.release(ctx, claim, false)
			return store.Tokens{}, err
		}
		if !cur.Expired(s.now(), lead) {
			s.release(ctx, claim, false)
			log.Info("refresh", "outcome", OutcomeSkipped, "why", "already refreshed")
			done(OutcomeSkipped)
			return cur.Tokens, nil
		}
		if !claim.Held {
			if !sleep(ctx, min(pollInterval, max(claim.Remaining, time.Millisecond))) {
				return store.Tokens{}, fmt.Errorf("%w: waiting for another process's refresh at provider %q: %w", ErrUpstreamUnavailable, row.Provider, ctx.Err())
			}
			continue
		}
		// The lease ends lockTimeout after the store granted it, which was
		// after claimStart by the store's clock.
		leaseEnd := claimStart.Add(s.lockTimeout)
		// A process paused (GC, SIGSTOP) between claiming and redeeming may
		// have seen its lease lapse and another process take over: it must
		// not redeem then. What is left of the lease must still cover the
		// provider call and the write.
		if time.Until(leaseEnd) < s.refreshTimeout+s.persistTimeout {
			s.release(ctx, claim, false)
			continue
		}
		return s.redeem(ctx, log, cur, claim.Lease, leaseEnd, done)
	}
}

// redeemable reports why the current row must not be refreshed for a caller
// that read row earlier, if it must not.
func (s *InProcessService) redeemable(row, cur store.Row) error {
	switch {
	case cur.Subject != row.Subject || cur.ClientID != row.ClientID:
		return ErrInvalidBinding
	case cur.SessionExpired(s.now()):
		return ErrSessionExpired
	case cur.NeedsReauth:
		return fmt.Errorf("%w: provider %q refused this session's refresh token earlier", ErrRefreshFailed, cur.Provider)
	case cur.RefreshToken == "" && cur.Expired(s.now(), s.skew):
		return fmt.Errorf("%w: provider %q", ErrNoRefreshToken, cur.Provider)
	}
	return nil
}

// paused returns the pause that keeps row from being refreshed now, if
// any: its provider's, or its session's there.
func (s *InProcessService) paused(row store.Row) *backoffError {
	if wait := s.backoff.remaining(row.Provider); wait > 0 {
		return &backoffError{provider: row.Provider, wait: wait}
	}
	if wait := s.backoff.remaining(sessionKey(row.Provider, row.SessionID)); wait > 0 {
		return &backoffError{provider: row.Provider, session: true, wait: wait}
	}
	return nil
}

// redeem calls the provider once with the lease held, checks the answer and
// stores it. Everything between the provider's answer and the write fits in
// the lease, which ends at leaseEnd: checking a new ID token gets what is
// left of it less the write's budget, so that no other process can claim
// the row and redeem the spent refresh token while this one is still busy.
// done records the refresh's outcome.
func (s *InProcessService) redeem(ctx context.Context, log *slog.Logger, cur store.Row, lease store.Lease, leaseEnd time.Time, done func(outcome string)) (store.Tokens, error) {
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, s.refreshTimeout)
	t, err := s.refresher.Refresh(rctx, cur.Provider, cur.RefreshToken)
	cancel()
	if err != nil {
		err = s.refused(log, cur, err, start, done)
		// A refusal is recorded so that no process redeems the token again.
		s.release(ctx, store.Claim{Held: true, Row: cur, Lease: lease}, errors.Is(err, ErrRefreshFailed))
		return store.Tokens{}, err
	}
	s.backoff.succeed(cur.Provider, sessionKey(cur.Provider, cur.SessionID))
	if t.RefreshToken == "" {
		t.RefreshToken = cur.RefreshToken
	}
	if t.TokenType == "" {
		t.TokenType = "Bearer"
	}
	if t.IDToken == "" {
		t.IDToken = cur.IDToken
	} else {
		vctx, cancel := context.WithDeadline(ctx, leaseEnd.Add(-s.persistTimeout))
		err := s.checkIDToken(vctx, log, cur, &t)
		cancel()
		if err != nil {
			done(OutcomeRefused)
			s.release(ctx, store.Claim{Held: true, Row: cur, Lease: lease}, true)
			return store.Tokens{}, err
		}
	}
	return s.persist(ctx, log, cur, lease, t, func(outcome string) {
		if outcome == OutcomeOK {
			log.Info("refresh", "outcome", outcome, "duration", time.Since(start))
		}
		done(outcome)
	})
}

// refused logs and records a failed redemption and starts the pause it
// calls for, by who is to blame: none for a refusal of the session's grant
// (permanent), the provider's for its health or our client registration,
// the session's alone for a refusal nobody can place. It returns the error
// to hand back, which carries the pause as its Retry-After.
func (s *InProcessService) refused(log *slog.Logger, cur store.Row, err error, start time.Time, done func(outcome string)) error {
	elapsed := time.Since(start)
	pause := func(session bool) *backoffError {
		key := cur.Provider
		if session {
			key = sessionKey(cur.Provider, cur.SessionID)
		}
		return &backoffError{provider: cur.Provider, session: session, wait: s.backoff.fail(key, RetryAfter(err)), cause: err}
	}
	outcome := RefreshOutcome(err)
	switch outcome {
	case OutcomeRefused:
		log.Info("refresh", "outcome", outcome, "duration", elapsed, "error", err)
	case OutcomeMisconfigured:
		p := pause(false)
		log.Error("refresh", "outcome", outcome, "duration", elapsed, "backoff", p.wait, "error", err)
		err = p
	case OutcomeUnknownRefusal:
		p := pause(true)
		log.Warn("refresh", "outcome", outcome, "duration", elapsed, "backoff", p.wait, "error", err)
		err = p
	default:
		p := pause(false)
		log.Warn("refresh", "outcome", outcome, "duration", elapsed, "backoff", p.wait, "error", err)
		err = p
	}
	done(outcome)
	return err
}

// checkIDToken verifies a refreshed ID token for an OIDC provider: its
// signature and issuer, and that its subject is the stored upstream subject
// (when one is stored). A rejection is permanent. When the issuer's keys
// cannot be fetched the new access and refresh tokens are still kept (the
// refresh token may have been rotated) but the unverified ID token is not:
// the previous one stays.
func (s *InProcessService) checkIDToken(ctx context.Context, log *slog.Logger, cur store.Row, t *store.Tokens) error {
	if s.idTokens == nil || !s.idTokens.Has(cur.Provider) {
		return nil
	}
	sub, err := s.idTokens.Verify(ctx, cur.Provider, t.IDToken)
	switch {
	case errors.Is(err, ErrUpstreamUnavailable):
		log.Warn("refresh: ID token not verifiable now; keeping the previous one", "error", err)
		t.IDToken = cur.IDToken
		return nil
	case err != nil:
		log.Warn("refresh", "outcome", OutcomeRefused, "why", "invalid ID token", "error", err)
		return fmt.Errorf("%w: provider %q returned an invalid ID token: %w", ErrRefreshFailed, cur.Provider, err)
	case cur.UpstreamSubject != "" && sub != cur.UpstreamSubject:
		log.Warn("refresh", "outcome", OutcomeRefused, "why", "ID token subject differs from the stored upstream subject")
		return fmt.Errorf("%w: provider %q returned an ID token for another subject", ErrRefreshFailed, cur.Provider)
	}
	return nil
}

// persist stores refreshed tokens and releases the lease. The provider may
// have rotated the refresh token, so the write has a budget of its own and
// is retried while the store's failure is transient; if the store still fails
// when the budget is spent, the write is deferred (see pending) and the new
// tokens are served meanwhile. If the row changed since the claim (a new
// login wrote it), the newer row wins.
func (s *InProcessService) persist(ctx context.Context, log *slog.Logger, cur store.Row, lease store.Lease, t store.Tokens, done func(outcome string)) (store.Tokens, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.persistTimeout)
	defer cancel()
	var err error
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		_, err = s.storage.CompleteRefresh(ctx, cur.SessionID, cur.Provider, lease, t)
		switch {
		case err == nil:
			done(OutcomeOK)
			return t, nil
		case errors.Is(err, store.ErrNotFound):
			log.Info("refresh", "outcome", OutcomeSuperseded, "why", "the session was deleted during the refresh")
			done(OutcomeSuperseded)
			return store.Tokens{}, fmt.Errorf("%w: session deleted during refresh at provider %q", ErrSessionNotFound, cur.Provider)
		case errors.Is(err, store.ErrLeaseLost):
			log.Warn("refresh", "outcome", OutcomeSuperseded, "why", "the row changed during the refresh; its new content wins")
			done(OutcomeSuperseded)
			return store.Tokens{}, fmt.Errorf("%w: the session changed during the refresh at provider %q; retry", ErrUpstreamUnavailable, cur.Provider)
		}
		if !errors.Is(err, store.ErrUnavailable) || attempt == maxPersistAttempts || !sleep(ctx, wait) {
			break
		}
		wait *= 2
	}
	if errors.Is(err, store.ErrUnavailable) && s.deferWrite(cur, lease, t) {
		log.Warn("refresh", "outcome", OutcomeDeferred, "why", "the store failed; the new tokens are kept in memory, served by this process and written as soon as the store answers", "error", err)
		done(OutcomeDeferred)
		return t, nil
	}
	done(OutcomeNotStored)
	log.Error("refresh", "outcome", OutcomeNotStored, "why", "the store failed; the provider's new tokens are lost and the next refresh may need re-authentication", "error", err)
	return store.Tokens{}, fmt.Errorf("%w: refreshed tokens for provider %q could not be stored: %w", ErrUpstreamUnavailable, cur.Provider, err)
}

// release gives up a held lease, marking the row for re-authentication when
// reauth is set. It has its own short budget so that it happens even when the
// caller's context is done; a lease already lost needs no release.
func (s *InProcessService) release(ctx context.Context, c store.Claim, reauth bool) {
	if !c.Held {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.persistTimeout)
	defer cancel()
	err := s.storage.ReleaseRefresh(ctx, c.Row.SessionID, c.Row.Provider, c.Lease, reauth)
	if err != nil && !errors.Is(err, store.ErrLeaseLost) && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("refresh: releasing the lease failed; it lapses by itself", "provider", c.Row.Provider,
			"session", SessionHash(c.Row.SessionID), "reauth", reauth, "error", err)
	}
}

// sleep waits for d and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
