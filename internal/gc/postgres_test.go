package gc_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/extauthz/extauthz/internal/gc"
	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/postgres"
)

// replica opens a Store with a connection pool of its own on dsn, as one
// replica of the service would.
func replica(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// watched counts the passes of a Collector that are running, across every
// watched Collector sharing it, and remembers the most seen at once.
type watched struct {
	store.Collector
	inFlight, most *atomic.Int32
	during         func(ctx context.Context)
}

func (w watched) RunExclusive(ctx context.Context, fn func(context.Context) error) (bool, error) {
	return w.Collector.RunExclusive(ctx, func(ctx context.Context) error {
		n := w.inFlight.Add(1)
		defer w.inFlight.Add(-1)
		for m := w.most.Load(); n > m && !w.most.CompareAndSwap(m, n); m = w.most.Load() {
		}
		if w.during != nil {
			w.during(ctx)
		}
		time.Sleep(5 * time.Millisecond)
		return fn(ctx)
	})
}

// TestPostgresReplicas plays several replicas collecting from one database
// at once: the expired rows are deleted, each by exactly one of them, the
// live ones are kept, and no two passes ever run at the same time;
// directly, and with the replicas behind PgBouncer in transaction mode.
func TestPostgresReplicas(t *testing.T) { pgtest.Routes(t, postgresReplicas) }

func postgresReplicas(t *testing.T, pgbouncer bool) {
	dsn := pgtest.Route(t, pgtest.New(t), pgbouncer)
	const replicas, expired = 3, 50
	var inFlight, most atomic.Int32
	collectors := make([]store.Collector, replicas)
	var first *postgres.Store
	for i := range collectors {
		s := replica(t, dsn)
		if first == nil {
			first = s
		}
		collectors[i] = watched{Collector: s, inFlight: &inFlight, most: &most}
	}
	fill(t, first, expired)

	const rounds = 5
	var (
		wg               sync.WaitGroup
		mu               sync.Mutex
		deleted, ran, sk int
	)
	for range rounds {
		start := make(chan struct{})
		for _, c := range collectors {
			wg.Go(func() {
				<-start
				r, err := gc.Pass(t.Context(), c, 7)
				if err != nil {
					t.Errorf("Pass = %v", err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				deleted += r.Deleted
				if r.Ran {
					ran++
				} else {
					sk++
				}
			})
		}
		close(start)
		wg.Wait()
	}
	if m := most.Load(); m != 1 {
		t.Errorf("%d passes ran at once, want 1", m)
	}
	if deleted != expired {
		t.Errorf("passes deleted %d rows in all, want %d", deleted, expired)
	}
	if left := remaining(t, first, expired); len(left) != 2 || left[0] != "live" || left[1] != "never" {
		t.Errorf("sessions left: %v, want live and never", left)
	}
	t.Logf("%d passes ran, %d skipped", ran, sk)
}

// TestPostgresLock shows the lock at work: while another session holds
// postgres.GCLockKey in a transaction, passes are skipped and delete
// nothing; once it lets go, even by dying, they run. Directly, and with
// the replica and the holder behind PgBouncer in transaction mode.
func TestPostgresLock(t *testing.T) { pgtest.Routes(t, postgresLock) }

func postgresLock(t *testing.T, pgbouncer bool) {
	dsn := pgtest.Route(t, pgtest.New(t), pgbouncer)
	s := replica(t, dsn)
	fill(t, s, 3)
	ctx := t.Context()

	hold := func() *pgx.Conn {
		t.Helper()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		var locked bool
		if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", postgres.GCLockKey).Scan(&locked); err != nil || !locked {
			t.Fatalf("taking the GC lock from another session = %v, %v", locked, err)
		}
		return conn
	}

	conn := hold()
	r, err := gc.Pass(ctx, s, 10)
	if err != nil || r.Ran || r.Deleted != 0 {
		t.Errorf("Pass while another session holds the lock = %+v, %v; want skipped", r, err)
	}
	if left := remaining(t, s, 3); len(left) != 5 {
		t.Errorf("sessions left: %v, want all 5", left)
	}
	if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if r, err := gc.Pass(ctx, s, 10); err != nil || !r.Ran || r.Deleted != 3 {
		t.Errorf("Pass once the lock is released = %+v, %v; want 3 deleted", r, err)
	}

	// A holder whose connection dies releases the lock.
	conn = hold()
	if r, err := gc.Pass(ctx, s, 10); err != nil || r.Ran {
		t.Fatalf("Pass while held = %+v, %v; want skipped", r, err)
	}
	conn.Close(ctx)
	testutil.Eventually(t, 10*time.Second, "the lock of a closed connection released", func() bool {
		r, err := gc.Pass(ctx, s, 10)
		return err == nil && r.Ran
	})
}

// TestPostgresPassHoldsNoSnapshot checks what the postgres package says of
// the transaction that holds the lock during a pass: idle, it holds no
// snapshot (it does not hold back vacuum), and it ends with the pass.
func TestPostgresPassHoldsNoSnapshot(t *testing.T) {
	dsn := pgtest.New(t)
	s := replica(t, dsn)
	fill(t, s, 3)
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	const query = `SELECT count(*), count(backend_xmin) FROM pg_stat_activity
		WHERE datname = current_database() AND state = 'idle in transaction'`
	var during [2]int
	w := watched{Collector: s, inFlight: new(atomic.Int32), most: new(atomic.Int32), during: func(ctx context.Context) {
		if err := conn.QueryRow(ctx, query).Scan(&during[0], &during[1]); err != nil {
			t.Error(err)
		}
	}}
	if r, err := gc.Pass(t.Context(), w, 10); err != nil || r.Deleted != 3 {
		t.Fatalf("Pass = %+v, %v", r, err)
	}
	if during != [2]int{1, 0} {
		t.Errorf("during the pass: %d sessions idle in transaction, %d of them with a snapshot; want 1, 0", during[0], during[1])
	}
	var after int
	if err := conn.QueryRow(t.Context(), query).Scan(&after, new(int)); err != nil || after != 0 {
		t.Errorf("after the pass: %d sessions idle in transaction (%v), want 0", after, err)
	}
}
