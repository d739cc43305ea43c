package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/httpfront"
	"github.com/extauthz/extauthz/internal/tlsreload"
)

// unixSocketMode is the mode of the listen.http Unix socket: the service's
// user and group may connect (a proxy in the group), no one else.
const unixSocketMode = 0o660

// httpTLS returns the TLS configuration of listen.http from http.tls, or nil
// when no certificate is configured (plaintext, for a proxy on the same host
// or a Unix socket). A file that does not load is a usage error. The
// reloader goes into certs.
func httpTLS(cfg config.TLS, log *slog.Logger, certs tlsCerts) (*tls.Config, error) {
	return listenerTLS("http", "http.tls", "HTTP authorization", cfg, log, certs)
}

// listenerTLS returns the TLS configuration of the listener named
// listener from cfg (the settings at key), or nil when no certificate is
// configured: the listener, described as what, is then plaintext. A file
// that does not load is a usage error. The reloader goes into certs.
func listenerTLS(listener, key, what string, cfg config.TLS, log *slog.Logger, certs tlsCerts) (*tls.Config, error) {
	if cfg.Cert == "" {
		log.Info(key + " not set: the " + what + " listener is plaintext")
		return nil, nil
	}
	r, err := tlsreload.New(tlsreload.Files{Cert: cfg.Cert, Key: cfg.Key, ClientCA: cfg.ClientCA},
		tlsreload.Options{Logger: log.With("component", "tls", "listener", listener), ClientIdentities: cfg.ClientIdentities})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errUsage, key, err)
	}
	certs[listener] = r
	return r.TLSConfig(), nil
}

// httpListener is an HTTP listener beside gRPC: the HTTP authorization
// front on listen.http, the session API on listen.admin or the connect
// flow on listen.connect.
type httpListener struct {
	name string // the listen key, for errors and logs
	srv  *http.Server
	lis  net.Listener
}

// listenHTTP listens on listen.http (a Unix socket is created with
// unixSocketMode, replacing a stale socket file that nothing answers on) and
// returns the server for d with the front's options, not yet serving.
func listenHTTP(cfg *config.Config, d httpfront.Decider, front httpfront.Options, tlsConfig *tls.Config, log *slog.Logger) (*httpListener, error) {
	network, addr := cfg.Listen.HTTPAddr()
	if network == "unix" {
		if err := removeStaleSocket(addr); err != nil {
			return nil, fmt.Errorf("listen.http: %w", err)
		}
	}
	lis, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("listen.http: %w", err)
	}
	if network == "unix" {
		if err := os.Chmod(addr, unixSocketMode); err != nil {
			lis.Close()
			return nil, fmt.Errorf("listen.http: %w", err)
		}
	}
	if tlsConfig != nil {
		lis = tls.NewListener(lis, tlsConfig)
	}
	hlog := log.With("component", "http")
	srv := &http.Server{
		Handler:           httpfront.New(d, front),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// Connection-level errors (TLS handshakes refused by
		// client_identities among them); they never carry request data.
		ErrorLog: slog.NewLogLogger(hlog.Handler(), slog.LevelWarn),
	}
	return &httpListener{name: "http", srv: srv, lis: lis}, nil
}

// removeStaleSocket removes a Unix socket left at path by a process that
// is gone. A socket something answers on, or a file that is not a socket,
// is left alone (listening then fails).
func removeStaleSocket(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) || err == nil && st.Mode()&fs.ModeSocket == 0 {
		return nil
	}
	if err != nil {
		return err
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%s: another process is listening on it", path)
	}
	return os.Remove(path)
}

// fronts are the HTTP listeners, started, drained and stopped together
// with the gRPC listener.
type fronts []*httpListener

// start serves each front and returns the channel that receives one result
// per front: nil once it is shut down, an error naming it when it fails.
func (f fronts) start() <-chan error {
	errc := make(chan error, len(f))
	for _, h := range f {
		go func() {
			err := h.srv.Serve(h.lis)
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			if err != nil {
				err = fmt.Errorf("%s server: %w", h.name, err)
			}
			errc <- err
		}()
	}
	return errc
}

// close closes the listeners of fronts that never served.
func (f fronts) close() {
	for _, h := range f {
		h.lis.Close()
	}
}

// drainAll drains every front.
func (f fronts) drainAll() {
	for _, h := range f {
		h.drain()
	}
}

// shutdownAll shuts every front down within ctx and returns the names of
// those that had to cut requests.
func (f fronts) shutdownAll(ctx context.Context) (cut []string) {
	for _, h := range f {
		if h.shutdown(ctx) {
			cut = append(cut, h.name)
		}
	}
	return cut
}

// drain makes every answer close its connection, so that proxies reconnect
// (to another replica) while this one still answers.
func (h *httpListener) drain() { h.srv.SetKeepAlivesEnabled(false) }

// shutdown stops accepting and waits for the requests in flight until ctx
// is done, then closes the connections that remain. It reports whether it
// had to cut any.
func (h *httpListener) shutdown(ctx context.Context) (cut bool) {
	if err := h.srv.Shutdown(ctx); err != nil {
		_ = h.srv.Close()
		return true
	}
	return false
}
