package instrumented_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/instrumented"
	"github.com/extauthz/extauthz/store/memory"
	"github.com/extauthz/extauthz/store/postgres"
	"github.com/extauthz/extauthz/store/storetest"
)

// recorder counts what the decorator reports.
type recorder struct {
	mu     sync.Mutex
	ops    map[string]int
	errors map[string]int
	up     []bool
}

func newRecorder() *recorder {
	return &recorder{ops: map[string]int{}, errors: map[string]int{}}
}

func (r *recorder) StoreOperation(op string, elapsed time.Duration, failed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if elapsed < 0 {
		panic("negative latency")
	}
	r.ops[op]++
	if failed {
		r.errors[op]++
	}
}

func (r *recorder) SetStoreUp(up bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.up = append(r.up, up)
}

// state returns the last reported state: 1 up, 0 down, -1 none reported.
func (r *recorder) state() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case len(r.up) == 0:
		return -1
	case r.up[len(r.up)-1]:
		return 1
	}
	return 0
}

func (r *recorder) counts(op string) (ops, errs int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ops[op], r.errors[op]
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return instrumented.New(memory.New(), newRecorder()) })
}

func TestOptionalInterfacesFollowTheInnerStore(t *testing.T) {
	full := instrumented.New(memory.New(), newRecorder())
	if _, ok := full.(store.Rewriter); !ok {
		t.Error("wrapping a Rewriter: result is not a Rewriter")
	}
	if _, ok := full.(store.Collector); !ok {
		t.Error("wrapping a Collector: result is not a Collector")
	}
	plain := instrumented.New(plainStore{memory.New()}, newRecorder())
	if _, ok := plain.(store.Rewriter); ok {
		t.Error("wrapping a store without Rewriter: result is a Rewriter")
	}
	if _, ok := plain.(store.Collector); ok {
		t.Error("wrapping a store without Collector: result is a Collector")
	}
	if err := plain.(instrumented.Pinger).Ping(context.Background()); !errors.Is(err, instrumented.ErrNoPing) {
		t.Errorf("Ping of a store without Ping = %v, want ErrNoPing", err)
	}
	// Watch gives up at once on a store that cannot be pinged.
	done := make(chan struct{})
	go func() { instrumented.Watch(context.Background(), plain.(instrumented.Pinger), time.Hour); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch kept running on a store that cannot be pinged")
	}
}

// plainStore hides every method of the memory store but store.Store's.
type plainStore struct{ store.Store }

func TestErrorsAndState(t *testing.T) {
	mem := memory.New()
	rec := newRecorder()
	s := instrumented.New(mem, rec)
	ctx := context.Background()
	row := store.Row{SessionID: "s", Provider: "gh", Tokens: store.Tokens{AccessToken: "at"}, Subject: "sub", ClientID: "c"}

	if rec.state() != -1 {
		t.Fatalf("state reported before any call")
	}
	if err := s.Put(ctx, row); err != nil {
		t.Fatal(err)
	}
	if n, e := rec.counts("put"); n != 1 || e != 0 || rec.state() != 1 {
		t.Errorf("put: %d ops %d errors state %d; want 1, 0, up", n, e, rec.state())
	}

	// Answers that are not failures.
	if _, err := s.Get(ctx, "nope", "gh"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	if err := s.ReleaseRefresh(ctx, "s", "gh", store.Lease{Owner: "o", Version: 99}, false); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatal(err)
	}
	if err := s.(store.Rewriter).RewriteTokens(ctx, "s", "gh", 99, row.Tokens); !errors.Is(err, store.ErrConflict) {
		t.Fatal(err)
	}
	for _, op := range []string{"get", "release_refresh", "rewrite_tokens"} {
		if n, e := rec.counts(op); n != 1 || e != 0 {
			t.Errorf("%s: %d ops %d errors; want 1 op, no error", op, n, e)
		}
	}
	if rec.state() != 1 {
		t.Errorf("state %d after answers, want up", rec.state())
	}

	// A refused value is a failure, but the store answered.
	if err := s.Put(ctx, store.Row{}); !errors.Is(err, store.ErrInvalid) {
		t.Fatal(err)
	}
	if n, e := rec.counts("put"); n != 2 || e != 1 || rec.state() != 1 {
		t.Errorf("invalid put: %d ops %d errors state %d; want 2, 1, up", n, e, rec.state())
	}

	// The store is down.
	mem.SetUnavailable(true)
	if _, err := s.GetSession(ctx, "s"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatal(err)
	}
	if n, e := rec.counts("get_session"); n != 1 || e != 1 || rec.state() != 0 {
		t.Errorf("get_session while down: %d ops %d errors state %d; want 1, 1, down", n, e, rec.state())
	}
	if _, err := s.(store.Collector).DeleteExpired(ctx, 10); !errors.Is(err, store.ErrUnavailable) {
		t.Fatal(err)
	}
	if n, e := rec.counts("delete_expired"); n != 1 || e != 1 {
		t.Errorf("delete_expired while down: %d ops %d errors; want 1, 1", n, e)
	}

	// A caller that gave up says nothing about the store.
	mem.SetUnavailable(false)
	if _, err := s.Get(ctx, "s", "gh"); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	mem.SetUnavailable(true)
	if _, err := s.Get(cancelled, "s", "gh"); err == nil {
		t.Fatal("Get on a down store succeeded")
	}
	if n, e := rec.counts("get"); n != 3 || e != 0 || rec.state() != 1 {
		t.Errorf("get by a caller that gave up: %d ops %d errors state %d; want 3 ops, no error, still up", n, e, rec.state())
	}
}

func TestPingAndWatchOnPostgres(t *testing.T) {
	dsn := pgtest.New(t)
	pg, err := postgres.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	rec := newRecorder()
	s := instrumented.New(pg, rec)
	if _, ok := s.(store.Rewriter); !ok {
		t.Error("wrapping postgres: not a Rewriter")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { instrumented.Watch(ctx, s.(instrumented.Pinger), 20*time.Millisecond); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if n, _ := rec.counts("ping"); n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Watch did not ping three times within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if _, e := rec.counts("ping"); e != 0 || rec.state() != 1 {
		t.Errorf("pings: %d errors, state %d; want none, up", e, rec.state())
	}

	// A database that cannot be reached: ping fails and the store is down.
	bad, err := postgres.New(context.Background(), unreachable(t))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	rec = newRecorder()
	s = instrumented.New(bad, rec)
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	if err := s.(instrumented.Pinger).Ping(pctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("ping of an unreachable database = %v, want ErrUnavailable", err)
	}
	if n, e := rec.counts("ping"); n != 1 || e != 1 || rec.state() != 0 {
		t.Errorf("ping of an unreachable database: %d ops %d errors state %d; want 1, 1, down", n, e, rec.state())
	}
}

// unreachable returns a connection URL to a port nothing listens on.
func unreachable(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=2", closedPort(t))
}

// closedPort returns a TCP port on 127.0.0.1 that was free a moment ago.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
