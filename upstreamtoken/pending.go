package upstreamtoken

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/tokencrypt"
)

// Retry bounds of a deferred write (see pending).
const (
	pendingRetryMin = 100 * time.Millisecond
	pendingRetryMax = 2 * time.Second
)

// pending holds refreshed tokens that the provider issued but the store
// could not take within the write's budget. The provider may have rotated
// the refresh token, so dropping them would force the user to log in again.
// Each is kept, sealed under a key that lives only in this process, served
// to this process's Checks for its session, and written by a goroutine of
// its own as soon as the store answers, with the lease of the refresh that
// redeemed it. The lease keeps other replicas from redeeming the spent
// refresh token until it lapses (refresh.lock_timeout); within this process,
// a pending result is served instead of redeeming again.
type pending struct {
	ring  *tokencrypt.Keyring
	count atomic.Int64 // number of entries, read without the lock on the hot path

	mu      sync.Mutex
	entries map[string]map[string]*pendingWrite // session ID -> provider -> write
	giveUp  chan struct{}                       // closed when shutdown gives up the writes
	closed  bool
}

// pendingWrite is one deferred write. row holds the claimed row's metadata
// (binding, version, session expiry) and the new tokens, sealed.
type pendingWrite struct {
	row   store.Row
	lease store.Lease
}

func newPending() pending {
	secret := make([]byte, tokencrypt.KeySize)
	_, _ = rand.Read(secret)
	ring, err := tokencrypt.New([]tokencrypt.Key{{ID: "memory", Secret: secret}}, "memory")
	if err != nil {
		panic("upstreamtoken: in-memory keyring: " + err.Error())
	}
	return pending{ring: ring, entries: make(map[string]map[string]*pendingWrite), giveUp: make(chan struct{})}
}

// tokenFields lists a Tokens value's secret columns with their names.
func tokenFields(t *store.Tokens) [3]struct {
	column string
	value  *string
} {
	return [3]struct {
		column string
		value  *string
	}{{"access_token", &t.AccessToken}, {"refresh_token", &t.RefreshToken}, {"id_token", &t.IDToken}}
}

func (p *pending) transform(r store.Row, t store.Tokens, f func(string, tokencrypt.Place) (string, error)) (store.Tokens, error) {
	for _, c := range tokenFields(&t) {
		v, err := f(*c.value, tokencrypt.Place{SessionID: r.SessionID, Provider: r.Provider, Column: c.column})
		if err != nil {
			return store.Tokens{}, err
		}
		*c.value = v
	}
	return t, nil
}

// add keeps t, the refreshed tokens of cur redeemed under lease, and reports
// whether it did (not after shutdown has given the writes up).
func (p *pending) add(cur store.Row, lease store.Lease, t store.Tokens) (*pendingWrite, bool) {
	sealed, err := p.transform(cur, t, p.ring.Seal)
	if err != nil {
		return nil, false
	}
	w := &pendingWrite{row: cur, lease: lease}
	w.row.Tokens = sealed
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, false
	}
	bySession := p.entries[cur.SessionID]
	if bySession == nil {
		bySession = make(map[string]*pendingWrite)
		p.entries[cur.SessionID] = bySession
	}
	if _, dup := bySession[cur.Provider]; !dup {
		p.count.Add(1)
	}
	bySession[cur.Provider] = w
	return w, true
}

// remove forgets w, unless another write replaced it.
func (p *pending) remove(w *pendingWrite) {
	p.mu.Lock()
	defer p.mu.Unlock()
	bySession := p.entries[w.row.SessionID]
	if bySession[w.row.Provider] != w {
		return
	}
	delete(bySession, w.row.Provider)
	if len(bySession) == 0 {
		delete(p.entries, w.row.SessionID)
	}
	p.count.Add(-1)
}

// get returns the pending row of (sessionID, provider), tokens opened.
// version, when not 0, must be the version the write's lease was taken on:
// a row that changed since (a new login) is not overridden.
func (p *pending) get(sessionID, provider string, version int64) (store.Row, bool) {
	if p.count.Load() == 0 {
		return store.Row{}, false
	}
	p.mu.Lock()
	w := p.entries[sessionID][provider]
	p.mu.Unlock()
	if w == nil || (version != 0 && w.lease.Version != version) {
		return store.Row{}, false
	}
	return p.open(w)
}

func (p *pending) open(w *pendingWrite) (store.Row, bool) {
	t, err := p.transform(w.row, w.row.Tokens, p.ring.Open)
	if err != nil {
		return store.Row{}, false
	}
	r := w.row
	r.Tokens = t
	return r, true
}

// abandon gives up every pending write, logging each, and makes add refuse
// new ones.
func (p *pending) abandon(log *slog.Logger) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	close(p.giveUp)
	for _, bySession := range p.entries {
		for _, w := range bySession {
			log.Error("refresh", "outcome", OutcomeNotStored, "why", "shutdown.timeout reached before the store took the refreshed tokens; the next refresh of this session may need re-authentication",
				"provider", w.row.Provider, "session", SessionHash(w.row.SessionID))
		}
	}
	p.entries = make(map[string]map[string]*pendingWrite)
	p.count.Store(0)
}

// deferWrite keeps t for a later write and starts the goroutine that writes it.
// It reports false when the write cannot be deferred (shutdown gave up).
func (s *InProcessService) deferWrite(cur store.Row, lease store.Lease, t store.Tokens) bool {
	w, ok := s.pending.add(cur, lease, t)
	if !ok {
		return false
	}
	s.inflight.add()
	go s.flush(w)
	return true
}

// flush writes a deferred result as soon as the store takes it, retrying
// with a growing pause, until it is stored, superseded (the row changed or
// was deleted: the newer row wins), refused for a reason retrying cannot
// mend, or given up at shutdown.
func (s *InProcessService) flush(w *pendingWrite) {
	defer s.inflight.done()
	defer s.pending.remove(w)
	log := s.log.With("provider", w.row.Provider, "session", SessionHash(w.row.SessionID))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.pending.giveUp:
			cancel()
		case <-ctx.Done():
		}
	}()
	wait := pendingRetryMin
	for {
		if !sleep(ctx, wait) {
			return // given up: abandon logged it
		}
		r, ok := s.pending.open(w)
		if !ok {
			log.Error("refresh", "outcome", OutcomeNotStored, "why", "the deferred tokens cannot be opened")
			return
		}
		wctx, wcancel := context.WithTimeout(ctx, s.persistTimeout)
		_, err := s.storage.CompleteRefresh(wctx, r.SessionID, r.Provider, w.lease, r.Tokens)
		wcancel()
		switch {
		case err == nil:
			log.Info("refresh: deferred write stored")
			return
		case errors.Is(err, store.ErrLeaseLost), errors.Is(err, store.ErrNotFound):
			log.Warn("refresh", "outcome", OutcomeSuperseded, "why", "the row changed or was deleted before the deferred write; its new content wins")
			return
		case ctx.Err() != nil:
			return
		case !errors.Is(err, store.ErrUnavailable):
			log.Error("refresh", "outcome", OutcomeNotStored, "why", "the store refused the deferred write", "error", err)
			return
		}
		wait = min(2*wait, pendingRetryMax)
	}
}
