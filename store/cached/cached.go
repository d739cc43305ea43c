// Package cached is a store.Store decorator that keeps recently read rows in
// memory, so that a Check for a session read recently costs no database
// round trip (and, placed above store/encrypted, no decryption either).
//
// # What is cached
//
// Rows are cached per session: one entry holds the rows of a session that
// have been read, and knows whether they are all of them (GetSession read
// the whole session) so that GetSession can be answered from it too. Absent
// rows are remembered as well, so that a client presenting a deleted
// session's token does not reach the database on every request either. An
// entry is served until the earliest of
//
//   - the expiry of the access token of any of its rows, minus Skew (a row
//     that is about to need a refresh is never served from the cache: the
//     refresh path, which re-reads the row, takes over);
//   - MaxAge after it was read (a defence in depth against a lost
//     invalidation; rows whose token never expires are bounded by it alone);
//   - an invalidation of its session.
//
// The cache holds at most Size rows (an absent row counts as one, and so
// does a session without rows); beyond that the least recently used
// sessions are evicted. The bound is the cache's as a whole, not each of its
// shards' (see lru.Sharded), so a cache as large as the sessions in use
// holds them all however they hash.
//
// # Invalidation
//
// A write through the Store (Put, Delete, CompleteRefresh, ReleaseRefresh
// with reauth) invalidates its session here once the write returns, whether
// or not it failed. ClaimRefresh always goes to the inner store: a lease is
// never served from memory. Writes made elsewhere (other replicas, 'extauthz
// tokens', an authorization server writing SQL, and key rotation and
// garbage collection, which work on the database directly) are reported by
// an invalidation source, normally postgres.Listener, through Invalidate and
// InvalidateAll.
//
// The source also vouches for the cache with Trust: the cache is used only
// while the source's last vouching holds (it says that every change
// committed before some time has been reported); at any other time, before
// the first vouching and whenever the source is down or late, every read
// goes to the inner store and nothing is cached. So without a source the
// Store is a pass-through.
//
// A read that misses is stored only if no invalidation of its session (and
// no InvalidateAll) happened while it was being read: a write that commits
// while a replica reads the old row can never leave that old row cached.
//
// # Stale if error
//
// With Options.StaleIfError set, a read that the cache may not answer (the
// source is down or late) and that the inner store fails with
// store.ErrUnavailable is answered from the cache after all, if the
// session's entry holds the row and is still valid by the bounds above, and
// no more than StaleIfError has passed since the source's last vouching ran
// out. So a database failover, which cuts the source and the store alike,
// does not turn the Checks of sessions read recently into errors. The cost
// is the staleness bound: a change committed at t that this process could
// not learn of is served until at most t plus the source's bound plus
// StaleIfError, and only while the inner store cannot be read. Rows known
// to be absent are never served this way (the error is returned).
package cached

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/extauthz/extauthz/internal/intern"
	"github.com/extauthz/extauthz/internal/lru"
	"github.com/extauthz/extauthz/store"
)

// DefaultMaxAge is the longest an entry is served when Options.MaxAge is 0.
const DefaultMaxAge = 5 * time.Minute

// Options configure a Store.
type Options struct {
	// Size is the most rows the cache holds; it must be positive.
	Size int
	// Skew is the refresh skew of the service (refresh.skew): a row whose
	// access token expires within Skew is not served from the cache.
	Skew time.Duration
	// MaxAge bounds how long an entry is served after it was read; 0 means
	// DefaultMaxAge.
	MaxAge time.Duration
	// Now returns the current time, for the entries' expiry; nil means
	// time.Now. Trust is always measured on the monotonic clock.
	Now func() time.Time
	// StaleIfError is how long after the invalidation source's last
	// vouching ran out the cached rows may still answer reads that the
	// inner store fails with store.ErrUnavailable (see the package
	// documentation); 0 never serves them so.
	StaleIfError time.Duration
}

const stripesPerShard = 64

// tagStripes is the number of stripes of tags: an invalidation by tag moves
// its stripe on, so that a read in flight of a session with a tag in that
// stripe does not store its result, whether or not the index knew the tag.
const tagStripes = 4096

// Store caches the reads of an inner store. It is safe for concurrent use
// when the inner store is.
type Store struct {
	inner  store.Store
	skew   time.Duration
	maxAge time.Duration
	now    func() time.Time
	seed   maphash.Seed
	lru    *lru.Sharded[string, *entry]
	// stripes[i] are guarded by the lock of the i-th shard of lru.
	stripes []stripeSet
	// epoch moves on at every InvalidateAll.
	epoch atomic.Uint64
	// base anchors trusted, which is the monotonic time (since base) until
	// which the cache may be used.
	base    time.Time
	trusted atomic.Int64
	// vouched is the last non-zero value of trusted (the time until which
	// the source last vouched), which Trust with the zero time keeps.
	vouched      atomic.Int64
	staleIfError time.Duration

	// notifyKey is the key of the sessions' tags.
	notifyKey atomic.Pointer[[]byte]
	// tagStripes move on at every invalidation by a tag in them.
	tagStripes [tagStripes]atomic.Uint64
	// index finds the session of a tag by its tagKey. It holds the key of
	// every cached entry, entered before the entry is stored, and stale keys
	// (of entries since evicted or invalidated) until prune drops them.
	indexMu sync.Mutex
	index   map[tagKey]string
	pruneAt int

	hits, misses, bypassed, stale atomic.Uint64

	// strs holds the strings that many rows hold alike (provider names,
	// token types, client IDs), so that each cached row holds only what is
	// its own.
	strs intern.Strings
}

// internLimit bounds the pool of shared strings: beyond it, strings are
// cached unshared, as read.
const internLimit = 4096

// stripeSet is a shard's stripes, which move on at every invalidation of a
// session that hashes to them; a read that saw its stripe move does not
// store its result.
type stripeSet [stripesPerShard]uint64

// entry is one session's cached rows. It is never modified once stored.
//
// The garbage collector marks every live heap object at every cycle, and
// under a memory limit a large cache makes cycles frequent: so an entry of
// one row is one allocation (the row is held inline), and the strings of
// its rows that are their own are one more (see pack).
type entry struct {
	rows     []store.Row // sorted by provider
	absent   []string    // providers known to have no row (when !complete)
	complete bool        // rows are every row of the session
	until    time.Time   // served while now is before it
	tag      tagKey      // the session's tag when it was stored
	one      [1]store.Row
}

// newEntry returns an entry holding rows (sorted by provider), served
// until until; an entry of one row holds a copy of it inline, and rows is
// then not kept.
func newEntry(rows []store.Row, until time.Time) *entry {
	if len(rows) == 1 {
		return rowEntry(rows[0], until)
	}
	return &entry{rows: rows, until: until}
}

// rowEntry returns an entry holding r inline, served until until.
func rowEntry(r store.Row, until time.Time) *entry {
	e := &entry{until: until}
	e.one[0] = r
	e.rows = e.one[:1:1]
	return e
}

// tagKey is the first 8 bytes of a tag, which is all the index keeps of it.
// Two cached sessions never share a key in the index: a session whose key
// the index holds for another is not cached (see enter), a case that tags,
// keyed hashes, make as good as impossible. An invalidation by a tag of
// another session with the same key invalidates one session too many,
// which is harmless.
type tagKey uint64

func keyOf(tag store.Tag) tagKey { return tagKey(binary.LittleEndian.Uint64(tag[:8])) }

// stamp is what a read records before it goes to the inner store, to tell
// whether its session was invalidated meanwhile.
type stamp struct {
	epoch, stripe, tagStripe uint64
	tag                      tagKey
}

var _ store.Store = (*Store)(nil)

// New returns a Store caching the reads of inner. It panics if o.Size is not
// positive.
func New(inner store.Store, o Options) *Store {
	if o.Size <= 0 {
		panic("cached: Size must be positive")
	}
	s := &Store{inner: inner, skew: o.Skew, maxAge: o.MaxAge, now: o.Now, seed: maphash.MakeSeed(), base: time.Now(),
		index: map[tagKey]string{}, pruneAt: 2*o.Size + 1024, staleIfError: max(o.StaleIfError, 0),
		strs: intern.NewStrings(internLimit)}
	if s.maxAge <= 0 {
		s.maxAge = DefaultMaxAge
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.lru = lru.NewSharded[string, *entry](o.Size)
	s.stripes = make([]stripeSet, s.lru.Shards())
	return s
}

// Trust lets the cache be used until until (read on the monotonic clock): the
// invalidation source vouches that every change committed before until
// minus its staleness bound has been reported. A later call replaces an
// earlier one; the zero time stops the use of the cache at once (rows may
// then still be served as stale if Options.StaleIfError allows, counted from
// the last non-zero until).
func (s *Store) Trust(until time.Time) {
	if until.IsZero() {
		s.trusted.Store(0)
		return
	}
	s.trusted.Store(int64(until.Sub(s.base)))
	s.vouched.Store(int64(until.Sub(s.base)))
}

// Trusted reports whether the cache is in use now.
func (s *Store) Trusted() bool {
	return int64(time.Since(s.base)) < s.trusted.Load()
}

// Invalidate forgets the cached rows of a session. provider names the row
// that changed ("" for the whole session); the whole session is forgotten
// either way.
func (s *Store) Invalidate(sessionID, provider string) {
	sh, stripe := s.locate(sessionID)
	sh.Lock()
	*stripe++
	sh.Remove(sessionID)
	sh.Unlock()
}

// InvalidateAll forgets every cached row.
func (s *Store) InvalidateAll() {
	s.epoch.Add(1)
	s.lru.Clear()
}

// SetNotifyKey sets the key of the tags under which InvalidateTag names
// sessions (store.NotifyTag). Entries stored under an earlier key are not
// found by the new key's tags: the caller clears the cache (InvalidateAll)
// after a change of key.
func (s *Store) SetNotifyKey(key []byte) {
	k := slices.Clone(key)
	s.notifyKey.Store(&k)
}

// tagOf returns the tag of sessionID under the current key.
func (s *Store) tagOf(sessionID string) store.Tag {
	var key []byte
	if k := s.notifyKey.Load(); k != nil {
		key = *k
	}
	return store.NotifyTag(key, sessionID)
}

func tagStripe(k tagKey) int { return int(uint16(k) % tagStripes) }

// InvalidateTag forgets the cached rows of the session whose tag is tag,
// and keeps a read of it in flight from storing what it read.
func (s *Store) InvalidateTag(tag store.Tag) {
	// The stripe moves on before the index is looked at: a read that
	// entered its tag after this look-up sees the stripe moved.
	k := keyOf(tag)
	s.tagStripes[tagStripe(k)].Add(1)
	s.indexMu.Lock()
	sessionID, ok := s.index[k]
	delete(s.index, k)
	s.indexMu.Unlock()
	if ok {
		s.Invalidate(sessionID, "")
	}
}

// enter records that sessionID has the tag of key k, before an entry with
// it is stored. It reports false, and records nothing, when the index holds
// k for another session: the entry must then not be stored.
func (s *Store) enter(k tagKey, sessionID string) bool {
	s.indexMu.Lock()
	defer s.indexMu.Unlock()
	if other, ok := s.index[k]; ok && other != sessionID {
		return false
	}
	s.index[k] = sessionID
	if len(s.index) > s.pruneAt {
		s.prune()
	}
	return true
}

// prune drops the index's tags whose session is no longer cached, with
// indexMu held. Each tag's stripe moves on before its session is looked
// for: a read that entered the tag but has not stored its entry yet then
// stores nothing, so no entry is ever left without its tag.
func (s *Store) prune() {
	for k, sessionID := range s.index {
		s.tagStripes[tagStripe(k)].Add(1)
		sh, _ := s.locate(sessionID)
		sh.Lock()
		e, ok := sh.Peek(sessionID)
		sh.Unlock()
		if !ok || e.tag != k {
			delete(s.index, k)
		}
	}
}

// tagged completes the stamp of a read that missed with its session's tag.
func (s *Store) tagged(st stamp, sessionID string) stamp {
	st.tag = keyOf(s.tagOf(sessionID))
	st.tagStripe = s.tagStripes[tagStripe(st.tag)].Load()
	return st
}

// Stats are counters of a Store's reads.
type Stats struct {
	// Hits were answered from the cache, Misses read from the inner store
	// and cached (if still valid), Bypassed read from the inner store
	// because the cache was not trusted, Stale answered from the cache,
	// although not trusted, because the inner store was unavailable
	// (Options.StaleIfError).
	Hits, Misses, Bypassed, Stale uint64
	// Sessions and Rows are what the cache holds now (absent rows and
	// sessions without rows count as one row).
	Sessions, Rows int
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	return Stats{
		Hits: s.hits.Load(), Misses: s.misses.Load(), Bypassed: s.bypassed.Load(), Stale: s.stale.Load(),
		Sessions: s.lru.Len(), Rows: s.lru.Weight(),
	}
}

// locate returns the shard of a session and its stripe, which the shard's
// lock guards.
func (s *Store) locate(sessionID string) (*lru.Shard[string, *entry], *uint64) {
	h := maphash.String(s.seed, sessionID)
	i := h % uint64(len(s.stripes))
	return s.lru.Shard(i), &s.stripes[i][(h>>32)%stripesPerShard]
}

// errNotFound is returned for a row the cache knows to be absent.
var errNotFound = fmt.Errorf("%w: cached: no row for this session and provider", store.ErrNotFound)

// lookup returns the session's entry if it is cached and valid, and
// otherwise the stamp to store a read with. ok is false when the cache is
// not trusted: the read must neither use nor fill it.
func (s *Store) lookup(sessionID string, now time.Time) (e *entry, st stamp, ok bool) {
	if !s.Trusted() {
		return nil, stamp{}, false
	}
	sh, stripe := s.locate(sessionID)
	st.epoch = s.epoch.Load()
	sh.Lock()
	e, found := sh.Get(sessionID)
	if found && !now.Before(e.until) {
		sh.Remove(sessionID)
		e = nil
	}
	st.stripe = *stripe
	sh.Unlock()
	return e, st, true
}

// store merges what a read found into the session's entry, unless the
// session was invalidated since st was taken or the cache is no longer
// trusted. merge gets the current valid entry (nil if none) and returns the
// new one, or nil to store nothing.
func (s *Store) store(sessionID string, st stamp, merge func(cur *entry) *entry) {
	if !s.Trusted() {
		return
	}
	// The tag is entered before the entry is stored, and the stripes are
	// checked after: an invalidation by tag either finds the tag or has
	// moved the stripe on by the time it is checked.
	if !s.enter(st.tag, sessionID) {
		return
	}
	now := s.now()
	sh, stripe := s.locate(sessionID)
	sh.Lock()
	defer sh.Unlock()
	if *stripe != st.stripe || s.epoch.Load() != st.epoch || s.tagStripes[tagStripe(st.tag)].Load() != st.tagStripe {
		return
	}
	cur, _ := sh.Peek(sessionID)
	if cur != nil && !now.Before(cur.until) {
		cur = nil
	}
	e := merge(cur)
	if e == nil {
		return
	}
	e.tag = st.tag
	if !now.Before(e.until) {
		sh.Remove(sessionID)
		return
	}
	sh.Add(sessionID, e, max(1, len(e.rows)+len(e.absent)))
}

// staleEntry returns the session's entry for a read that the cache was not
// trusted to answer and that the inner store failed with err: the entry if
// err wraps store.ErrUnavailable, Options.StaleIfError has not run out since
// the last vouching, and the entry is still valid at now; else nil.
func (s *Store) staleEntry(sessionID string, err error, now time.Time) *entry {
	if s.staleIfError <= 0 || !errors.Is(err, store.ErrUnavailable) {
		return nil
	}
	v := s.vouched.Load()
	if v == 0 || int64(time.Since(s.base)) >= v+int64(s.staleIfError) {
		return nil
	}
	sh, _ := s.locate(sessionID)
	sh.Lock()
	e, found := sh.Peek(sessionID)
	sh.Unlock()
	if !found || !now.Before(e.until) {
		return nil
	}
	return e
}

// validUntil returns how long r may be served if read at now.
func (s *Store) validUntil(r *store.Row, now time.Time) time.Time {
	until := now.Add(s.maxAge)
	if !r.ExpiresAt.IsZero() {
		if t := r.ExpiresAt.Add(-s.skew); t.Before(until) {
			until = t
		}
	}
	if !r.SessionExpiresAt.IsZero() && r.SessionExpiresAt.Before(until) {
		until = r.SessionExpiresAt
	}
	return until
}

// share makes rows, rows of sessionID about to be cached, hold the strings
// they have in common with other cached rows rather than copies of their
// own (the session ID of the cache's key, and the pool's provider name,
// token type and client ID) and the rest in one string (see pack). The
// rows' content does not change.
func (s *Store) share(rows []store.Row, sessionID string) {
	for i := range rows {
		r := &rows[i]
		if r.SessionID == sessionID {
			r.SessionID = sessionID
		}
		r.Provider = s.strs.String(r.Provider)
		r.TokenType = s.strs.String(r.TokenType)
		r.ClientID = s.strs.String(r.ClientID)
	}
	pack(rows)
}

// pack makes the strings that are the rows' own (tokens, subjects) slices
// of one string: a read from the database and a decryption allocate each
// of them apart, and one object to mark instead of up to five per row is
// what a cache of a hundred thousand sessions needs from the garbage
// collector. The rows' content does not change.
func pack(rows []store.Row) {
	n := 0
	for i := range rows {
		for _, p := range ownStrings(&rows[i]) {
			n += len(*p)
		}
	}
	var b strings.Builder
	b.Grow(n)
	for i := range rows {
		for _, p := range ownStrings(&rows[i]) {
			b.WriteString(*p)
		}
	}
	text, off := b.String(), 0
	for i := range rows {
		for _, p := range ownStrings(&rows[i]) {
			l := len(*p)
			*p = text[off : off+l]
			off += l
		}
	}
}

// ownStrings returns the fields of r that no other row shares.
func ownStrings(r *store.Row) [5]*string {
	return [5]*string{&r.AccessToken, &r.RefreshToken, &r.IDToken, &r.Subject, &r.UpstreamSubject}
}

// find returns the index of provider's row in rows, or -1.
func find(rows []store.Row, provider string) int {
	for i := range rows {
		if rows[i].Provider == provider {
			return i
		}
	}
	return -1
}

// Get implements store.Reader.
func (s *Store) Get(ctx context.Context, sessionID, provider string) (store.Row, error) {
	if sessionID == "" || provider == "" || ctx.Err() != nil {
		return s.inner.Get(ctx, sessionID, provider) // for its error
	}
	now := s.now()
	e, st, ok := s.lookup(sessionID, now)
	if !ok {
		r, err := s.inner.Get(ctx, sessionID, provider)
		if se := s.staleEntry(sessionID, err, now); se != nil {
			if i := find(se.rows, provider); i >= 0 {
				s.stale.Add(1)
				return se.rows[i], nil
			}
		}
		s.bypassed.Add(1)
		return r, err
	}
	if e != nil {
		if i := find(e.rows, provider); i >= 0 {
			s.hits.Add(1)
			return e.rows[i], nil
		}
		if e.complete || slices.Contains(e.absent, provider) {
			s.hits.Add(1)
			return store.Row{}, errNotFound
		}
	}
	s.misses.Add(1)
	st = s.tagged(st, sessionID)
	r, err := s.inner.Get(ctx, sessionID, provider)
	switch {
	case err == nil:
		one := [1]store.Row{r}
		s.share(one[:], sessionID)
		r = one[0]
		s.store(sessionID, st, func(cur *entry) *entry {
			until := s.validUntil(&r, now)
			if cur == nil {
				return rowEntry(r, until)
			}
			rows := make([]store.Row, 0, len(cur.rows)+1)
			rows = append(rows, cur.rows...)
			if i := find(rows, provider); i >= 0 {
				rows[i] = r
			} else {
				rows = append(rows, r)
				slices.SortFunc(rows, func(a, b store.Row) int { return compare(a.Provider, b.Provider) })
			}
			if cur.until.Before(until) {
				until = cur.until
			}
			e := newEntry(rows, until)
			e.absent = slices.DeleteFunc(slices.Clone(cur.absent), func(p string) bool { return p == provider })
			e.complete = false // a row the full read did not see: read it whole again
			return e
		})
	case errors.Is(err, store.ErrNotFound):
		s.store(sessionID, st, func(cur *entry) *entry {
			if cur == nil {
				return &entry{absent: []string{provider}, until: now.Add(s.maxAge)}
			}
			if find(cur.rows, provider) >= 0 {
				return nil // contradicts the entry: leave it to an invalidation
			}
			e := newEntry(cur.rows, cur.until)
			e.complete = cur.complete
			e.absent = append(slices.Clone(cur.absent), provider)
			return e
		})
	}
	return r, err
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// GetSession implements store.Reader. The returned slice is the caller's.
func (s *Store) GetSession(ctx context.Context, sessionID string) ([]store.Row, error) {
	if sessionID == "" || ctx.Err() != nil {
		return s.inner.GetSession(ctx, sessionID) // for its error
	}
	now := s.now()
	e, st, ok := s.lookup(sessionID, now)
	if !ok {
		rows, err := s.inner.GetSession(ctx, sessionID)
		if se := s.staleEntry(sessionID, err, now); se != nil && se.complete && len(se.rows) > 0 {
			s.stale.Add(1)
			return append([]store.Row{}, se.rows...), nil
		}
		s.bypassed.Add(1)
		return rows, err
	}
	if e != nil && e.complete {
		s.hits.Add(1)
		return append([]store.Row{}, e.rows...), nil
	}
	s.misses.Add(1)
	st = s.tagged(st, sessionID)
	rows, err := s.inner.GetSession(ctx, sessionID)
	if err != nil {
		return rows, err
	}
	until := now.Add(s.maxAge)
	for i := range rows {
		if t := s.validUntil(&rows[i], now); t.Before(until) {
			until = t
		}
	}
	// The entry's rows are its own (one is copied inline, several are
	// cloned), so sharing their strings leaves the caller's as read.
	kept := rows
	if len(rows) > 1 {
		kept = slices.Clone(rows)
	}
	e = newEntry(kept, until)
	s.share(e.rows, sessionID)
	e.complete = true
	s.store(sessionID, st, func(*entry) *entry { return e })
	return rows, nil
}

// invalidated runs a write and then invalidates its session.
func (s *Store) invalidated(sessionID, provider string, err error) error {
	if sessionID != "" {
		s.Invalidate(sessionID, provider)
	}
	return err
}

// Put implements store.Writer.
func (s *Store) Put(ctx context.Context, row store.Row) error {
	return s.invalidated(row.SessionID, row.Provider, s.inner.Put(ctx, row))
}

// Delete implements store.Writer.
func (s *Store) Delete(ctx context.Context, sessionID, provider string) error {
	return s.invalidated(sessionID, provider, s.inner.Delete(ctx, sessionID, provider))
}

// ClaimRefresh implements store.RefreshCoordinator. It always asks the inner
// store.
func (s *Store) ClaimRefresh(ctx context.Context, sessionID, provider, owner string, ttl time.Duration) (store.Claim, error) {
	return s.inner.ClaimRefresh(ctx, sessionID, provider, owner, ttl)
}

// CompleteRefresh implements store.RefreshCoordinator.
func (s *Store) CompleteRefresh(ctx context.Context, sessionID, provider string, lease store.Lease, t store.Tokens) (store.Row, error) {
	r, err := s.inner.CompleteRefresh(ctx, sessionID, provider, lease, t)
	return r, s.invalidated(sessionID, provider, err)
}

// ReleaseRefresh implements store.RefreshCoordinator. A release without
// reauth changes no cached content and invalidates nothing.
func (s *Store) ReleaseRefresh(ctx context.Context, sessionID, provider string, lease store.Lease, reauth bool) error {
	err := s.inner.ReleaseRefresh(ctx, sessionID, provider, lease, reauth)
	if !reauth {
		return err
	}
	return s.invalidated(sessionID, provider, err)
}
