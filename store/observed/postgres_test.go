package observed_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/observed"
	"github.com/extauthz/extauthz/store/postgres"
)

func TestPingAndWatchOnPostgres(t *testing.T) {
	dsn := pgtest.New(t)
	pg, err := postgres.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	rec := newRecorder()
	s := observed.New(pg, observed.Options{Recorder: rec})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	// Each ping is bounded by the interval: one long enough that a ping
	// under load is not cut short (and then recorded as given up).
	go func() { s.Watch(ctx, 200*time.Millisecond); close(done) }()
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
	s = observed.New(bad, observed.Options{Recorder: rec})
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	if err := s.Ping(pctx); !errors.Is(err, store.ErrUnavailable) {
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
