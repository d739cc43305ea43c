// Package instrumented is a store.Store decorator that measures every store
// call: its latency, whether it failed, and whether the store answered at
// all, for metrics (see package telemetry).
//
// Operations are named in snake case after the method: "get",
// "get_session", "put", "delete",
// "claim_refresh", "complete_refresh", "release_refresh", "scan",
// "rewrite_tokens", "delete_expired" and "ping".
//
// An operation failed unless it returned nil or an answer a caller expects in
// normal operation: store.ErrNotFound, store.ErrLeaseLost or
// store.ErrConflict. The store is up after any answer (a failure wrapping
// store.ErrInvalid included: the store refused the values, it did not fail
// to answer) and down after a failure wrapping store.ErrUnavailable. When
// the caller's context is already done, the failure says nothing about the
// store: its latency is recorded, but neither a failure nor the store's
// state.
//
// If the wrapped store implements store.Rewriter or store.Collector, so does
// the decorator. Ping calls the wrapped store's Ping when it has one; Watch
// pings periodically so that the store's state stays current while no
// request uses it.
package instrumented

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/extauthz/extauthz/store"
)

// Recorder receives the measurements. telemetry.Metrics implements it. Its
// methods must be quick and safe for concurrent use.
type Recorder interface {
	// StoreOperation records one operation's latency and whether it
	// failed.
	StoreOperation(op string, elapsed time.Duration, failed bool)
	// SetStoreUp records whether the store answers.
	SetStoreUp(up bool)
}

// Pinger is a store that can check that it answers (store/postgres.Store
// does).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Store measures the calls to an inner store. It is safe for concurrent use
// when the inner store and the Recorder are.
type Store struct {
	inner store.Store
	rec   Recorder
}

var (
	_ store.Store = (*Store)(nil)
	_ Pinger      = (*Store)(nil)
)

// New returns inner with every call measured into rec. The result implements
// store.Rewriter if inner does, store.Collector if inner does, and Pinger
// always.
func New(inner store.Store, rec Recorder) store.Store {
	s := &Store{inner: inner, rec: rec}
	rw, isRW := inner.(store.Rewriter)
	c, isC := inner.(store.Collector)
	switch {
	case isRW && isC:
		return &rewritingCollecting{s, rewriter{s, rw}, collector{s, c}}
	case isRW:
		return &rewriting{s, rewriter{s, rw}}
	case isC:
		return &collecting{s, collector{s, c}}
	}
	return s
}

type rewriting struct {
	*Store
	rewriter
}

type collecting struct {
	*Store
	collector
}

type rewritingCollecting struct {
	*Store
	rewriter
	collector
}

var (
	_ store.Rewriter  = (*rewriting)(nil)
	_ store.Collector = (*collecting)(nil)
	_ store.Rewriter  = (*rewritingCollecting)(nil)
	_ store.Collector = (*rewritingCollecting)(nil)
)

// failed reports whether err is a failure rather than an answer.
func failed(err error) bool {
	return err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrLeaseLost) &&
		!errors.Is(err, store.ErrConflict)
}

// record measures one call that started at start and returned err.
func (s *Store) record(ctx context.Context, op string, start time.Time, err error) {
	elapsed := time.Since(start)
	if err != nil && ctx.Err() != nil {
		// The caller gave up (an Envoy time-out, say): the failure is
		// theirs, not the store's.
		s.rec.StoreOperation(op, elapsed, false)
		return
	}
	f := failed(err)
	s.rec.StoreOperation(op, elapsed, f)
	switch {
	case !f || errors.Is(err, store.ErrInvalid):
		s.rec.SetStoreUp(true)
	case errors.Is(err, store.ErrUnavailable):
		s.rec.SetStoreUp(false)
	}
}

// Get implements store.Reader.
func (s *Store) Get(ctx context.Context, sessionID, provider string) (store.Row, error) {
	start := time.Now()
	r, err := s.inner.Get(ctx, sessionID, provider)
	s.record(ctx, "get", start, err)
	return r, err
}

// GetSession implements store.Reader.
func (s *Store) GetSession(ctx context.Context, sessionID string) ([]store.Row, error) {
	start := time.Now()
	rows, err := s.inner.GetSession(ctx, sessionID)
	s.record(ctx, "get_session", start, err)
	return rows, err
}

// Put implements store.Writer.
func (s *Store) Put(ctx context.Context, row store.Row) error {
	start := time.Now()
	err := s.inner.Put(ctx, row)
	s.record(ctx, "put", start, err)
	return err
}

// Delete implements store.Writer.
func (s *Store) Delete(ctx context.Context, sessionID, provider string) error {
	start := time.Now()
	err := s.inner.Delete(ctx, sessionID, provider)
	s.record(ctx, "delete", start, err)
	return err
}

// ClaimRefresh implements store.RefreshCoordinator.
func (s *Store) ClaimRefresh(ctx context.Context, sessionID, provider, owner string, ttl time.Duration) (store.Claim, error) {
	start := time.Now()
	c, err := s.inner.ClaimRefresh(ctx, sessionID, provider, owner, ttl)
	s.record(ctx, "claim_refresh", start, err)
	return c, err
}

// CompleteRefresh implements store.RefreshCoordinator.
func (s *Store) CompleteRefresh(ctx context.Context, sessionID, provider string, lease store.Lease, t store.Tokens) (store.Row, error) {
	start := time.Now()
	r, err := s.inner.CompleteRefresh(ctx, sessionID, provider, lease, t)
	s.record(ctx, "complete_refresh", start, err)
	return r, err
}

// ReleaseRefresh implements store.RefreshCoordinator.
func (s *Store) ReleaseRefresh(ctx context.Context, sessionID, provider string, lease store.Lease, reauth bool) error {
	start := time.Now()
	err := s.inner.ReleaseRefresh(ctx, sessionID, provider, lease, reauth)
	s.record(ctx, "release_refresh", start, err)
	return err
}

// ErrNoPing is returned by Ping when the inner store cannot be pinged.
var ErrNoPing = fmt.Errorf("instrumented: the store cannot be pinged: %w", errors.ErrUnsupported)

// Ping pings the inner store, if it implements Pinger, and records the
// result as the operation "ping". Otherwise it returns ErrNoPing and records
// nothing.
func (s *Store) Ping(ctx context.Context) error {
	p, ok := s.inner.(Pinger)
	if !ok {
		return ErrNoPing
	}
	start := time.Now()
	err := p.Ping(ctx)
	s.record(ctx, "ping", start, err)
	return err
}

// Watch pings p now and then every interval until ctx is done, so that the
// store's state is measured while no request uses the store. Each ping is
// bounded by interval. p is normally the Store returned by New, whose Ping
// records the result. Watch returns at once if p cannot be pinged
// (ErrNoPing).
func Watch(ctx context.Context, p Pinger, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, interval)
		err := p.Ping(pctx)
		cancel()
		if errors.Is(err, ErrNoPing) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// rewriter measures the store.Rewriter methods.
type rewriter struct {
	s  *Store
	rw store.Rewriter
}

// Scan implements store.Rewriter.
func (r rewriter) Scan(ctx context.Context, after store.Key, limit int) ([]store.Row, error) {
	start := time.Now()
	rows, err := r.rw.Scan(ctx, after, limit)
	r.s.record(ctx, "scan", start, err)
	return rows, err
}

// RewriteTokens implements store.Rewriter.
func (r rewriter) RewriteTokens(ctx context.Context, sessionID, provider string, version int64, t store.Tokens) error {
	start := time.Now()
	err := r.rw.RewriteTokens(ctx, sessionID, provider, version, t)
	r.s.record(ctx, "rewrite_tokens", start, err)
	return err
}

// collector measures store.Collector's DeleteExpired. RunExclusive is passed
// through: its duration is the whole pass it runs.
type collector struct {
	s *Store
	c store.Collector
}

// DeleteExpired implements store.Collector.
func (c collector) DeleteExpired(ctx context.Context, limit int) (int, error) {
	start := time.Now()
	n, err := c.c.DeleteExpired(ctx, limit)
	c.s.record(ctx, "delete_expired", start, err)
	return n, err
}

// RunExclusive implements store.Collector.
func (c collector) RunExclusive(ctx context.Context, fn func(ctx context.Context) error) (bool, error) {
	return c.c.RunExclusive(ctx, fn)
}
