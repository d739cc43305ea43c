package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/extauthz/extauthz/store"
)

// NotifyChannel is the channel on which the trigger of migrations 00003 and
// 00004 sends a notification for every change of a row of upstream_tokens
// (lease changes excepted). Its payload names the session by its tag
// (store.NotifyTag under the key in the table extauthz_notify_key, as 64
// hex digits), never by its ID, or is "*" for a change that concerns every
// row (TRUNCATE).
const NotifyChannel = "extauthz_tokens"

// notifyKeySQL reads the notification key, with the process ID of the
// server session that answers and whether that session listens on
// NotifyChannel. Every heartbeat runs it, so that a changed key is noticed
// within one, and so is a heartbeat answered by a session other than the
// one that listens (a pooler in transaction mode between).
const notifyKeySQL = `SELECT encode(key, 'hex'), pg_backend_pid(),
	EXISTS (SELECT FROM pg_listening_channels() AS c WHERE c = '` + NotifyChannel + `') FROM extauthz_notify_key`

// Listener defaults.
const (
	// DefaultStaleness is the default bound on how long after a change
	// commits a cache fed by a Listener may still serve the old row.
	DefaultStaleness = time.Second
	// DefaultHeartbeat is the default interval between two round trips on
	// the listening connection.
	DefaultHeartbeat = 250 * time.Millisecond
)

// Invalidator is what a Listener keeps informed: a cache of rows
// (store/cached.Store implements it).
type Invalidator interface {
	// SetNotifyKey sets the key under which notifications name sessions
	// (store.NotifyTag). The Listener calls it, then InvalidateAll, before
	// it first vouches for the cache on a connection, and again whenever a
	// heartbeat finds the key changed.
	SetNotifyKey(key []byte)
	// InvalidateTag forgets the rows of the session whose tag under the
	// key is tag.
	InvalidateTag(tag store.Tag)
	// InvalidateAll forgets every row.
	InvalidateAll()
	// Trust lets the cache be used until until (a time.Now-based time,
	// compared on the monotonic clock); the zero time stops its use at once.
	Trust(until time.Time)
}

// Listener listens on NotifyChannel over a connection of its own and tells
// an Invalidator about every change, so that the caches of all the replicas
// forget a row within a bounded time of any change to it, whoever made it.
//
// The connection must be a direct one (or through a pooler in session mode):
// LISTEN does not survive PgBouncer in transaction mode. Each round trip
// checks that the server session answering it is the one that ran LISTEN,
// and still listens: a pooler in transaction mode that hands the connection
// another session is caught, and the connection counts as failed. One that
// hands the listening session to another client meanwhile (which then
// receives the notifications) is not caught that way: ProbePooling, run
// before the Listener starts, finds such a pooler. Run keeps it open,
// reconnecting with a back-off when it fails, and makes a round trip on it
// every heartbeat interval. It vouches for the cache (Invalidator.Trust)
// only as far as it can prove that it has received every notification: a
// round trip answered proves that every notification sent before the
// previous one was received and passed on, so the cache is trusted until
// that previous round trip's start plus the staleness bound. When the
// connection fails, or merely stops answering, the trust runs out by itself
// within the staleness bound and the cache is bypassed; when it is lost,
// the trust is withdrawn at once, and the cache is cleared after the next
// LISTEN, since notifications may have been missed meanwhile. (It is not
// cleared on the loss itself: until the next LISTEN its rows answer only
// reads that the database fails, when the cache allows that; see
// store/cached Options.StaleIfError.)
//
// So a change committed at time t is no longer served by the cache after t
// plus the staleness bound, whatever happens to the connection.
//
// Notifications name sessions by a keyed hash, so that the roles that may
// LISTEN (any role) do not learn session IDs. The Listener reads the key
// (table extauthz_notify_key, migration 00004) on its connection, which
// its role must be allowed to SELECT, and hands it to the sink; each
// heartbeat reads it again. A connection on which the key cannot be read
// counts as failed: the cache is bypassed and the Listener retries.
type Listener struct {
	cfg        *pgconn.Config
	sink       Invalidator
	log        *slog.Logger
	heartbeat  time.Duration
	staleness  time.Duration
	backoffMin time.Duration
	backoffMax time.Duration

	up  atomic.Bool
	pid atomic.Uint32
	// covered is when (Unix nanoseconds) the heartbeat started before
	// which every notification has been passed on to the sink.
	covered atomic.Int64
}

// ListenerOption configures a Listener.
type ListenerOption func(*Listener)

// WithListenerLogger makes the Listener log its connection's state changes.
func WithListenerLogger(l *slog.Logger) ListenerOption {
	return func(ln *Listener) { ln.log = l }
}

// WithStaleness sets the staleness bound and the heartbeat interval. The
// heartbeat must be well below the staleness bound (a third of it or less),
// or the cache is bypassed between heartbeats.
func WithStaleness(staleness, heartbeat time.Duration) ListenerOption {
	return func(ln *Listener) { ln.staleness, ln.heartbeat = staleness, heartbeat }
}

// WithReconnectBackoff sets the bounds of the pause between two connection
// attempts (defaults 100 ms and 5 s).
func WithReconnectBackoff(min, max time.Duration) ListenerOption {
	return func(ln *Listener) { ln.backoffMin, ln.backoffMax = min, max }
}

// NewListener returns a Listener on the database at dsn, reporting to sink.
// It fails only if dsn cannot be parsed (an error wrapping
// store.ErrInvalid); it connects when Run is called. Unless dsn sets one,
// the connection's application_name is "extauthz-listener". dsn may hold
// the settings of pgx and of its pool that New accepts
// (default_query_exec_mode, pool_max_conns, ...): they are not sent to the
// server, which would refuse them.
func NewListener(dsn string, sink Invalidator, opts ...ListenerOption) (*Listener, error) {
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: postgres: cannot parse the database URL for the listener", store.ErrInvalid)
	}
	cfg := &pcfg.ConnConfig.Config
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "extauthz-listener"
	}
	l := &Listener{
		cfg:        cfg,
		sink:       sink,
		log:        slog.New(slog.DiscardHandler),
		heartbeat:  DefaultHeartbeat,
		staleness:  DefaultStaleness,
		backoffMin: 100 * time.Millisecond,
		backoffMax: 5 * time.Second,
	}
	for _, o := range opts {
		o(l)
	}
	cfg.OnNotification = l.notified
	return l, nil
}

// Up reports whether the Listener is connected and listening.
func (l *Listener) Up() bool { return l.up.Load() }

// BackendPID returns the process ID of the server backend of the listening
// connection (0 while there is none): pg_terminate_backend of it is how an
// operator, or a test, cuts the connection.
func (l *Listener) BackendPID() uint32 { return l.pid.Load() }

// Synced reports whether every change committed before t has been passed
// on to the sink (while the Listener stays up, that is true at the latest
// two heartbeats after t).
func (l *Listener) Synced(t time.Time) bool {
	return l.up.Load() && l.covered.Load() >= t.UnixNano()
}

// Run listens until ctx is done. The sink is not trusted before Run has
// listened, nor after it returns.
func (l *Listener) Run(ctx context.Context) {
	defer l.lost()
	wait := l.backoffMin
	for {
		start := time.Now()
		err := l.session(ctx)
		l.lost()
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > l.backoffMax {
			wait = l.backoffMin // it was up for a while: start over
		}
		l.log.Warn("cache invalidation listener: connection lost; token cache bypassed until it is back",
			"error", err, "retry_in", wait)
		// Up to 50% jitter, so that replicas do not reconnect in step.
		t := time.NewTimer(wait + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, l.backoffMax)
	}
}

// lost records that the connection is gone: stop trusting the cache. It is
// cleared after the next LISTEN.
func (l *Listener) lost() {
	l.sink.Trust(time.Time{})
	l.pid.Store(0)
	l.up.Store(false)
}

// session connects, listens, and passes notifications on until the
// connection fails or ctx is done.
func (l *Listener) session(ctx context.Context) error {
	timeout := max(l.staleness, 5*time.Second)
	cctx, cancel := context.WithTimeout(ctx, timeout)
	conn, err := pgconn.ConnectConfig(cctx, l.cfg)
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = conn.Close(c)
		cancel()
	}()

	prev := time.Now()
	cctx, cancel = context.WithTimeout(ctx, timeout)
	_, err = conn.Exec(cctx, "LISTEN "+NotifyChannel).ReadAll()
	var key []byte
	var listening uint32 // the server session that listens
	if err == nil {
		key, listening, err = readNotifyKey(cctx, conn, 0)
	}
	cancel()
	if err != nil {
		return err
	}
	l.sink.SetNotifyKey(key)
	// Whatever changed before the LISTEN took effect was not reported.
	l.sink.InvalidateAll()
	l.sink.Trust(prev.Add(l.staleness))
	l.covered.Store(prev.UnixNano())
	l.pid.Store(listening)
	l.up.Store(true)
	l.log.Info("cache invalidation listener: listening", "channel", NotifyChannel)

	next := prev.Add(l.heartbeat)
	for {
		if time.Until(next) > 0 {
			wctx, cancel := context.WithDeadline(ctx, next)
			err := conn.WaitForNotification(wctx) // notified is called meanwhile
			due := wctx.Err() != nil
			cancel()
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case err == nil:
				continue // a notification; a steady stream of them still lets the heartbeat through
			case !due:
				return err
			}
		}
		// Heartbeat. Its answer comes after every notification the server
		// had to send before it read the heartbeat, which includes every
		// notification sent before the previous heartbeat started.
		sent := time.Now()
		hctx, cancel := context.WithTimeout(ctx, timeout)
		k, _, err := readNotifyKey(hctx, conn, listening)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("heartbeat: %w", err)
		}
		if string(k) != string(key) {
			// Notifications tagged under the new key may have gone
			// unrecognised.
			key = k
			l.sink.SetNotifyKey(key)
			l.sink.InvalidateAll()
			l.log.Info("cache invalidation listener: the notification key changed; cache cleared")
		}
		l.sink.Trust(prev.Add(l.staleness))
		l.covered.Store(prev.UnixNano())
		prev, next = sent, sent.Add(l.heartbeat)
	}
}

// errNoNotifyKey means the notification key table holds no usable key.
var errNoNotifyKey = errors.New("extauthz_notify_key holds no 32-byte key")

// errNotListening means that a server session other than the one that ran
// LISTEN answered on the listening connection.
var errNotListening = errors.New("answered by a server session that does not listen " +
	"(a pooler in transaction mode in between? LISTEN needs a connection that reaches PostgreSQL directly)")

// readNotifyKey reads the notification key on conn, and returns it with the
// process ID of the server session that answered. That session must listen
// on NotifyChannel, and be the session pid unless pid is 0.
func readNotifyKey(ctx context.Context, conn *pgconn.PgConn, pid uint32) ([]byte, uint32, error) {
	res, err := conn.Exec(ctx, notifyKeySQL).ReadAll()
	if err != nil {
		return nil, 0, fmt.Errorf("reading the notification key (has 'extauthz migrate' run, and may this role SELECT extauthz_notify_key?): %w", err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 3 {
		return nil, 0, errNoNotifyKey
	}
	row := res[0].Rows[0]
	key, err := hex.DecodeString(string(row[0]))
	if err != nil || len(key) != store.NotifyKeySize {
		return nil, 0, errNoNotifyKey
	}
	answered, err := strconv.ParseUint(string(row[1]), 10, 32)
	if err != nil || string(row[2]) != "t" || pid != 0 && uint32(answered) != pid {
		return nil, 0, errNotListening
	}
	return key, uint32(answered), nil
}

// notified passes one notification on to the sink.
func (l *Listener) notified(_ *pgconn.PgConn, n *pgconn.Notification) {
	if n.Channel != NotifyChannel {
		return
	}
	tag, ok := store.ParseTag(n.Payload)
	if !ok {
		// "*", or a payload this version does not understand (one sent by
		// the trigger of an older schema, say): forget all.
		l.sink.InvalidateAll()
		return
	}
	l.sink.InvalidateTag(tag)
}
