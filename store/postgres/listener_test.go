package postgres_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/postgres"
)

// sink records what a Listener tells it.
type sink struct {
	mu        sync.Mutex
	notifyKey []byte
	tags      []store.Tag
	all       int
	until     time.Time
}

func (s *sink) SetNotifyKey(key []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notifyKey = append([]byte(nil), key...)
}

func (s *sink) InvalidateTag(tag store.Tag) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tags = append(s.tags, tag)
}

func (s *sink) InvalidateAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all++
}

func (s *sink) Trust(until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.until = until
}

func (s *sink) trusted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Now().Before(s.until)
}

func (s *sink) state() (tags []store.Tag, all int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]store.Tag(nil), s.tags...), s.all
}

func (s *sink) key() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notifyKey
}

func startListener(t *testing.T, dsn string, s *sink, opts ...postgres.ListenerOption) *postgres.Listener {
	t.Helper()
	l, err := postgres.NewListener(dsn, s, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if s.trusted() || l.Up() {
			t.Error("the sink is still trusted after Run returned")
		}
	})
	return l
}

func TestNewListenerRefusesBadDSNWithoutEchoingIt(t *testing.T) {
	_, err := postgres.NewListener("postgres://user:hunter2@host:notaport/db", &sink{})
	if !errors.Is(err, store.ErrInvalid) || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("NewListener = %v; want ErrInvalid without the password", err)
	}
}

func TestListenerPassesNotificationsOn(t *testing.T) {
	dsn := pgtest.New(t)
	s := &sink{}
	l := startListener(t, dsn, s)
	testutil.Eventually(t, 5*time.Second, "listening", func() bool { return l.Up() && s.trusted() })
	if _, all := s.state(); all == 0 {
		t.Error("no InvalidateAll after LISTEN: changes before it would stay cached")
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var dbKey []byte
	if err := conn.QueryRow(t.Context(), `SELECT key FROM extauthz_notify_key`).Scan(&dbKey); err != nil {
		t.Fatal(err)
	}
	if string(s.key()) != string(dbKey) || len(dbKey) != store.NotifyKeySize {
		t.Fatalf("the sink was given the key %x, the database holds %x", s.key(), dbKey)
	}
	st := newStore(t, dsn)
	if err := st.Put(t.Context(), row("s\x01\"1", "gh")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, time.Second, "the Put reported", func() bool {
		tags, _ := s.state()
		return len(tags) == 1 && tags[0] == store.NotifyTag(dbKey, "s\x01\"1")
	})
	_, before := s.state()
	// "*", garbage, and the payload of the schema before migration 00004.
	for _, payload := range []string{"*", "garbage", `["only-one"]`, `["s1", "gh"]`, strings.Repeat("A", 64)} {
		if _, err := conn.Exec(t.Context(), `SELECT pg_notify($1, $2)`, postgres.NotifyChannel, payload); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, time.Second, "unknown payloads forget everything", func() bool {
		_, all := s.state()
		return all == before+5
	})
	// A changed key is read again within a heartbeat, and clears the cache.
	if _, err := conn.Exec(t.Context(), `UPDATE extauthz_notify_key SET key = sha256(key)`); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, time.Second, "the new key taken up", func() bool {
		_, all := s.state()
		return string(s.key()) != string(dbKey) && all > before+5
	})
	if err := st.Put(t.Context(), row("s2", "gh")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, time.Second, "the Put reported under the new key", func() bool {
		tags, _ := s.state()
		return len(tags) == 2 && tags[1] == store.NotifyTag(s.key(), "s2")
	})
	// Heartbeats keep extending the trust.
	time.Sleep(2 * postgres.DefaultStaleness)
	if !s.trusted() {
		t.Error("trust ran out on a healthy connection")
	}
}

// proxy forwards TCP connections to target until paused (bytes then stop
// flowing both ways, as on a network partition) or cut.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	paused chan struct{} // closed while flowing
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, paused: make(chan struct{})}
	close(p.paused)
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go p.pipe(c, u)
			go p.pipe(u, c)
		}
	}()
	return p
}

func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			gate := p.paused
			p.mu.Unlock()
			<-gate
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				dst.Close()
			}
			dst.Close()
			return
		}
	}
}

func (p *proxy) pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = make(chan struct{})
}

func (p *proxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.paused:
	default:
		close(p.paused)
	}
}

func (p *proxy) cut() {
	p.resume()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func viaProxy(t *testing.T, dsn, addr string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = addr
	return u.String()
}

// TestListenerTrustLapsesWhenTheConnectionStalls: a connection that stops
// answering (no error, no FIN) stops vouching for the cache within the
// staleness bound, and vouches again once it answers, without losing the
// cache; a cut connection reconnects and clears it after LISTEN.
func TestListenerTrustLapsesWhenTheConnectionStalls(t *testing.T) {
	dsn := pgtest.New(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, u.Host)
	s := &sink{}
	l := startListener(t, viaProxy(t, dsn, p.ln.Addr().String()), s,
		postgres.WithReconnectBackoff(50*time.Millisecond, 50*time.Millisecond))
	testutil.Eventually(t, 5*time.Second, "listening", func() bool { return l.Up() && s.trusted() })

	p.pause()
	start := time.Now()
	testutil.Eventually(t, postgres.DefaultStaleness+200*time.Millisecond, "trust lapses while the connection stalls", func() bool { return !s.trusted() })
	t.Logf("trust lapsed %v after the stall", time.Since(start).Round(time.Millisecond))
	_, allBefore := s.state()
	p.resume()
	testutil.Eventually(t, 2*time.Second, "trust back once the connection answers", s.trusted)
	if _, all := s.state(); all != allBefore {
		t.Error("the cache was cleared although no notification can have been lost")
	}

	pid := l.BackendPID()
	p.cut()
	testutil.Eventually(t, 5*time.Second, "reconnected", func() bool { return l.Up() && s.trusted() && l.BackendPID() != pid })
	if _, all := s.state(); all < allBefore+1 {
		t.Errorf("InvalidateAll called %d times over a reconnection, want at least 1 (after LISTEN)", all-allBefore)
	}
}

// TestListenerBehindPgBouncer runs a Listener on a URL with pgx's and the
// pool's own settings (default_query_exec_mode, pool_max_conns), which it
// must not send to the server, directly and through PgBouncer in transaction
// mode. Through PgBouncer, the first heartbeat that another server session
// answers (here: the listening one is taken by another client) ends the
// connection and the cache's trust.
func TestListenerBehindPgBouncer(t *testing.T) {
	pgtest.Routes(t, func(t *testing.T, pgbouncer bool) {
		dsn := pgtest.Route(t, pgtest.New(t), pgbouncer)
		withSettings := dsn + map[bool]string{true: "&", false: "?"}[strings.Contains(dsn, "?")] + "pool_max_conns=2&default_query_exec_mode=exec"
		s := &sink{}
		l := startListener(t, withSettings, s)
		testutil.Eventually(t, 10*time.Second, "listening", func() bool { return l.Up() && s.trusted() })
		if !pgbouncer {
			return
		}
		// Take the idle server session, the listening one, in a
		// transaction of another client.
		tx := pgtest.Begin(t, dsn)
		var pid uint32
		if err := tx.QueryRow(t.Context(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		if pid != l.BackendPID() {
			t.Skipf("PgBouncer gave another client session %d, not the listening one %d", pid, l.BackendPID())
		}
		testutil.Eventually(t, 10*time.Second, "the listener down", func() bool { return !l.Up() && !s.trusted() })
	})
}
