package upstreamtoken

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"hash/maphash"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/extauthz/extauthz/internal/lru"
	"github.com/extauthz/extauthz/store"
)

// Triggers of a refresh, the values the trigger observer receives.
const (
	// TriggerCheck is a refresh started by a request that found the token
	// expired (within the skew): that request waits for it.
	TriggerCheck = "check"
	// TriggerAhead is a refresh started in the background, before any
	// request needs it (see WithRefreshAhead).
	TriggerAhead = "ahead"
)

// Triggers lists every trigger.
var Triggers = []string{TriggerCheck, TriggerAhead}

// Ahead configures refresh ahead (see WithRefreshAhead).
type Ahead struct {
	// Window: only sessions served by this process within the window are
	// refreshed ahead.
	Window time.Duration
	// Margin: a served session's token is refreshed when it comes within
	// its lead of expiry, a lead spread by a hash of the session and
	// provider between the skew and Margin.
	Margin time.Duration
	// Concurrency bounds the background refreshes in flight per provider.
	// Each of them takes the next due row as soon as it is done, so a
	// provider answering in d is refreshed ahead at up to Concurrency / d
	// rows per second.
	Concurrency int
	// MaxEntries bounds the record of served sessions (one entry per
	// session and provider); the least recently served are forgotten first.
	MaxEntries int
	// Interval is how often the record is scanned for due tokens, which
	// then wait their turn in a queue per provider.
	Interval time.Duration
}

// WithRefreshAhead makes the service remember the sessions it serves and,
// once StartRefreshAhead has been called, refresh their tokens in the
// background before a request finds them expired. A background refresh goes
// through the same lease as a request's, so across all processes sharing
// the store each refresh token is still redeemed once, and a request that
// arrives meanwhile waits for it; it honours the providers' and sessions'
// back-off. Without this option nothing is recorded and nothing is
// refreshed ahead.
func WithRefreshAhead(a Ahead) Option {
	return func(s *InProcessService) {
		a.Concurrency = max(a.Concurrency, 1)
		a.MaxEntries = max(a.MaxEntries, 1)
		if a.Interval <= 0 {
			a.Interval = time.Second
		}
		seen := lru.NewSharded[aheadKey, aheadEntry](a.MaxEntries)
		wake := make([]int64, seen.Shards())
		for i := range wake {
			wake[i] = math.MaxInt64
		}
		s.ahead = &ahead{cfg: a, seen: seen, wake: wake, seed: maphash.MakeSeed(),
			busy: map[string]int{}, running: map[aheadKey]bool{}, queue: map[string][]aheadJob{}}
	}
}

// WithTriggerObserver makes the service call observe once per refresh it
// coordinates, with the provider, the trigger (one of Triggers) and the
// outcome (one of RefreshOutcomes). Like the refresh observer it must be
// quick and safe for concurrent use.
func WithTriggerObserver(observe func(provider, trigger, outcome string)) Option {
	return func(s *InProcessService) { s.observeTrigger = observe }
}

// WithWaitObserver makes the service call waited with the provider each time
// a request finds a token expired and so waits on a refresh (its own, or one
// already in flight).
func WithWaitObserver(waited func(provider string)) Option {
	return func(s *InProcessService) { s.waited = waited }
}

// aheadKey identifies a recorded row: its session, and its provider by
// number in the record's provider table (see providerTable).
type aheadKey struct {
	session  string
	provider uint16
}

// aheadEntry is what the record keeps of a served row. It holds no pointer
// (times are Unix nanoseconds), so the garbage collector does not scan it.
type aheadEntry struct {
	served  int64 // when a request was last served the row
	expires int64 // the access token's expiry then
	// life is the lifetime of the token a refresh ahead last obtained
	// (zero before one): the lead is capped at half of it, so that a
	// provider issuing tokens shorter than the margin does not have them
	// refreshed again at once.
	life time.Duration
	// lead is the session's jittered lead (see ahead.lead), computed once
	// when it is first recorded.
	lead time.Duration
}

// due returns when e's row is due for a refresh ahead (Unix nanoseconds),
// and the lead that makes it so.
func (e aheadEntry) due() (at int64, lead time.Duration) {
	lead = e.lead
	if e.life > 0 {
		lead = min(lead, e.life/2)
	}
	return e.expires - int64(lead), lead
}

// maxProviders bounds the provider table: rows of further providers are not
// recorded (nor refreshed ahead). A deployment has a handful.
const maxProviders = 1024

// providerTable numbers the provider names of the record's keys, so that a
// key holds two bytes instead of a second string. Looking a known name up
// takes no lock.
type providerTable struct {
	mu    sync.Mutex // serializes additions
	names atomic.Pointer[[]string]
}

// id returns name's number, adding it when new, and false when the table
// is full.
func (t *providerTable) id(name string) (uint16, bool) {
	if i, ok := t.find(name); ok {
		return i, true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if i, ok := t.find(name); ok {
		return i, true
	}
	var names []string
	if p := t.names.Load(); p != nil {
		names = *p
	}
	if len(names) >= maxProviders {
		return 0, false
	}
	names = append(slices.Clip(names), strings.Clone(name))
	t.names.Store(&names)
	return uint16(len(names) - 1), true
}

func (t *providerTable) find(name string) (uint16, bool) {
	if p := t.names.Load(); p != nil {
		for i, n := range *p {
			if n == name {
				return uint16(i), true
			}
		}
	}
	return 0, false
}

// name returns the name numbered id, which id returned.
func (t *providerTable) name(id uint16) string { return (*t.names.Load())[id] }

// ahead is the record of served sessions and the background loop's state.
//
// The record is sharded by a hash of the session, each shard behind its own
// lock, so that the Checks recording what they served do not queue on one
// lock; mu guards the loop's own state and is never taken by a Check. The
// loop, next and finish take mu before a shard's lock; the provider table's
// lock is taken under neither.
type ahead struct {
	cfg  Ahead
	skew time.Duration // the service's skew, the shortest lead
	seen *lru.Sharded[aheadKey, aheadEntry]
	// wake holds, per shard of seen and under its lock, a time (Unix
	// nanoseconds) before which no entry of the shard is due or stale
	// (math.MaxInt64: none will be until one is recorded): the scan skips
	// the shards whose time has not come.
	wake      []int64
	providers providerTable
	seed      maphash.Seed // spreads sessions over seen's shards
	mu        sync.Mutex
	busy      map[string]int    // workers refreshing ahead, per provider
	running   map[aheadKey]bool // rows queued or being refreshed ahead
	// queue holds the due rows waiting for a worker, per provider, the
	// earliest due first within each scan's additions.
	queue map[string][]aheadJob
	stop  chan struct{} // closed to stop the loop
	done  chan struct{} // closed when the loop and its refreshes have ended
	once  sync.Once
}

// served records that row was served at now. A row that cannot be refreshed
// (no refresh token, or refused for good) is not recorded. A new entry keeps
// its own copy of the session ID, never a larger string that the row's may
// be part of.
func (a *ahead) served(row store.Row, now time.Time) {
	if a == nil || row.RefreshToken == "" || row.NeedsReauth || row.ExpiresAt.IsZero() {
		return
	}
	p, ok := a.providers.id(row.Provider)
	if !ok {
		return
	}
	k := aheadKey{row.SessionID, p}
	i, sh := a.shard(k.session)
	nowNs, expires := now.UnixNano(), row.ExpiresAt.UnixNano()
	sh.Lock()
	defer sh.Unlock()
	e, ok := sh.Peek(k)
	switch {
	case ok && e.expires == expires && nowNs-e.served < int64(time.Second):
		// Served again within the second, its token unchanged: left as
		// recorded, one map read instead of a move in the LRU.
		return
	case ok:
		e.served, e.expires = nowNs, expires
		sh.Set(k, e)
	default:
		e = aheadEntry{served: nowNs, expires: expires, lead: a.lead(row.SessionID, row.Provider)}
		k.session = strings.Clone(k.session)
		sh.Add(k, e, 1)
	}
	at, _ := e.due()
	a.wake[i] = min(a.wake[i], at, a.staleAt(e))
}

// staleAt is when an entry, not served again, is dropped from the record
// (Unix nanoseconds): the first instant more than the window after it was
// last served.
func (a *ahead) staleAt(e aheadEntry) int64 { return e.served + int64(a.cfg.Window) + 1 }

// shard returns the shard of the record that holds session's rows (a
// session's providers share a shard), and its index.
func (a *ahead) shard(session string) (int, *lru.Shard[aheadKey, aheadEntry]) {
	i := int(maphash.String(a.seed, session) % uint64(a.seen.Shards()))
	return i, a.seen.Shard(uint64(i))
}

// wakeBy lowers the wake time of session's shard to at most at.
func (a *ahead) wakeBy(session string, at int64) {
	i, sh := a.shard(session)
	sh.Lock()
	a.wake[i] = min(a.wake[i], at)
	sh.Unlock()
}

// lead returns how long before expiry the row of k is due: between skew and
// margin, spread by a hash of k so that tokens issued together are not all
// refreshed in the same second.
func (a *ahead) lead(session, provider string) time.Duration {
	skew := a.skew
	if a.cfg.Margin <= skew {
		return skew
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(session))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(provider))
	var b [8]byte
	frac := float64(binary.BigEndian.Uint64(h.Sum(b[:0]))>>11) / (1 << 53)
	return skew + time.Duration(frac*float64(a.cfg.Margin-skew))
}

// due queues the rows due at now whose provider is not paused, marking
// them running, forgets entries not served within the window, and returns
// how many workers to start per provider (taking their slots): enough to
// reach the concurrency while the provider's queue has rows.
func (a *ahead) due(now time.Time, paused func(provider string) bool) map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	// A provider's back-off is asked once per scan, not once per due row
	// under the shards' locks.
	pausedNow, ask := map[string]bool{}, paused
	paused = func(provider string) bool {
		p, ok := pausedNow[provider]
		if !ok {
			p = ask(provider)
			pausedNow[provider] = p
		}
		return p
	}
	var jobs []aheadJob
	nowNs := now.UnixNano()
	for i := range a.seen.Shards() {
		sh := a.seen.Shard(uint64(i))
		sh.Lock()
		if a.wake[i] <= nowNs {
			jobs = a.dueIn(i, sh, nowNs, paused, jobs)
		}
		sh.Unlock()
	}
	slices.SortFunc(jobs, func(x, y aheadJob) int { return cmp.Compare(x.at, y.at) })
	for _, j := range jobs {
		a.queue[j.provider] = append(a.queue[j.provider], j)
	}
	start := map[string]int{}
	for p, q := range a.queue {
		if n := min(len(q), a.cfg.Concurrency-a.busy[p]); n > 0 {
			a.busy[p] += n
			start[p] = n
		}
	}
	return start
}

// dueIn is due for the i-th shard, whose lock and a.mu the caller holds,
// at now (Unix nanoseconds); it appends the shard's due rows to jobs and
// sets the shard's wake time to the earliest time an entry not queued now
// becomes due or stale. (A queued row's shard is woken again when the row
// leaves the queue or its refresh is done: see next and finish.)
func (a *ahead) dueIn(i int, sh *lru.Shard[aheadKey, aheadEntry], now int64, paused func(string) bool, jobs []aheadJob) []aheadJob {
	var stale []aheadKey
	wake := int64(math.MaxInt64)
	for k, e := range sh.All() {
		if now >= a.staleAt(e) {
			stale = append(stale, k)
			continue
		}
		wake = min(wake, a.staleAt(e))
		at, lead := e.due()
		if now < at {
			wake = min(wake, at)
			continue
		}
		if a.running[k] {
			continue
		}
		provider := a.providers.name(k.provider)
		if paused(provider) {
			wake = min(wake, at)
			continue
		}
		a.running[k] = true
		jobs = append(jobs, aheadJob{k, provider, lead, at})
	}
	for _, k := range stale {
		sh.Remove(k)
	}
	a.wake[i] = wake
	return jobs
}

// next returns provider's next queued row; when there is none, or the
// provider is paused (its queue is then dropped: the next scan after the
// pause queues its due rows again), it frees the caller's worker slot and
// returns false.
func (a *ahead) next(provider string, paused bool) (aheadJob, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	q := a.queue[provider]
	if len(q) == 0 || paused {
		for _, j := range q {
			delete(a.running, j.key)
			a.wakeBy(j.key.session, j.at) // still due
		}
		delete(a.queue, provider)
		a.busy[provider]--
		return aheadJob{}, false
	}
	j := q[0]
	q[0] = aheadJob{}
	a.queue[provider] = q[1:]
	return j, true
}

type aheadJob struct {
	key      aheadKey
	provider string
	lead     time.Duration
	at       int64 // when the row became due (Unix nanoseconds)
}

// finish marks job's row no longer running and records the token's new
// expiry, if known, obtained at now.
func (a *ahead) finish(j aheadJob, expires, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.running, j.key)
	i, sh := a.shard(j.key.session)
	sh.Lock()
	defer sh.Unlock()
	if e, ok := sh.Peek(j.key); ok {
		if expires.IsZero() {
			// Failed or nothing to do: forget the row until a request
			// serves it again, rather than retry it every scan.
			sh.Remove(j.key)
			return
		}
		exp := expires.UnixNano()
		if exp > e.expires {
			e.life = expires.Sub(now)
		}
		e.expires = exp
		sh.Set(j.key, e)
		at, _ := e.due()
		a.wake[i] = min(a.wake[i], at)
	}
}

// StartRefreshAhead starts the background loop of refresh ahead, if the
// service was built WithRefreshAhead; it does nothing otherwise, or when
// called again. The loop ends at Shutdown, which waits for it and for the
// background refreshes it started.
func (s *InProcessService) StartRefreshAhead() {
	a := s.ahead
	if a == nil {
		return
	}
	a.once.Do(func() {
		a.stop = make(chan struct{})
		a.done = make(chan struct{})
		go s.aheadLoop(a)
	})
}

// stopAhead ends the background loop and waits for it until ctx is done.
func (s *InProcessService) stopAhead(ctx context.Context) error {
	a := s.ahead
	if a == nil {
		return nil
	}
	a.once.Do(func() {}) // a loop not started now never starts
	if a.stop == nil {
		return nil
	}
	a.mu.Lock()
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	a.mu.Unlock()
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *InProcessService) aheadLoop(a *ahead) {
	var wg sync.WaitGroup
	defer close(a.done)
	defer wg.Wait()
	tick := time.NewTicker(a.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-tick.C:
		}
		for p, n := range a.due(s.now(), s.providerPaused) {
			for range n {
				wg.Go(func() { s.aheadWorker(a, p) })
			}
		}
	}
}

// aheadWorker refreshes provider's queued rows one after the other until the
// queue is empty, the provider is paused or the loop stops.
func (s *InProcessService) aheadWorker(a *ahead, provider string) {
	for {
		select {
		case <-a.stop:
			return
		default:
		}
		j, ok := a.next(provider, s.providerPaused(provider))
		if !ok {
			return
		}
		expires := s.refreshAhead(j)
		a.finish(j, expires, s.now())
	}
}

// providerPaused reports whether provider is backing off as a whole.
func (s *InProcessService) providerPaused(provider string) bool {
	return s.backoff.remaining(provider) > 0
}

// refreshAhead refreshes one recorded row through the same path as a
// request's refresh and returns the new expiry, or the zero time when
// nothing was refreshed.
func (s *InProcessService) refreshAhead(j aheadJob) time.Time {
	ctx := context.Background()
	row, err := s.storage.Get(ctx, j.key.session, j.provider)
	if err != nil {
		return time.Time{}
	}
	now := s.now()
	if row.SessionExpired(now) || row.NeedsReauth || row.RefreshToken == "" {
		return time.Time{}
	}
	if !row.Expired(now, j.lead) {
		return row.ExpiresAt // refreshed elsewhere meanwhile
	}
	if s.paused(row) != nil {
		return row.ExpiresAt // kept: tried again once the pause is over
	}
	t, err := s.refresh(ctx, row, j.lead, TriggerAhead)
	switch {
	case errors.Is(err, ErrUpstreamUnavailable):
		return row.ExpiresAt // transient: the back-off it started paces the next try
	case err != nil:
		s.log.Debug("refresh ahead failed", "provider", row.Provider, "session", SessionHash(row.SessionID), "error", err)
		return time.Time{}
	}
	return t.ExpiresAt
}
