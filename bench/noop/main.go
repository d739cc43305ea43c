// Command noop is the benchmark floor: an ext_authz server built from the
// same gRPC stack as `extauthz serve` (server.New: grpc-go, go-control-plane
// authv3, the panic-recovery interceptor, the CheckRequest/CheckResponse
// conversion and the gRPC health service) whose decision always allows,
// without doing any work. The harness (bench/cmd/harness) measures it next
// to the real service, so the difference is the cost of the token swap.
//
// With -http it also serves HTTP: every request, whatever its method and
// path, is answered 200 with an empty body. Behind nginx's auth_request it
// is the floor of the HTTP front (an auth endpoint that allows without
// work); it is also the backend that nginx proxies allowed requests to.
// Both listeners are bound before either serves, so once the gRPC health
// service answers, the HTTP listener accepts connections too. -listen ""
// serves HTTP only.
//
// Usage: noop -listen 127.0.0.1:9001 [-http 127.0.0.1:9002]
//
// It serves until SIGTERM or SIGINT, then stops gracefully.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/server"
)

// allow is a decider that allows every request and sets no header.
type allow struct{}

func (allow) Check(context.Context, authz.Request) authz.Response {
	return authz.Response{Allowed: true, Status: 200, Reason: "ok"}
}

// ok answers every HTTP request 200 with an empty body.
func ok(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9001", `gRPC listen address ("": no gRPC)`)
	httpListen := flag.String("http", "", `HTTP listen address ("": no HTTP)`)
	flag.Parse()
	if *listen == "" && *httpListen == "" {
		fmt.Fprintln(os.Stderr, "noop: nothing to serve: give -listen or -http")
		os.Exit(2)
	}
	if err := run(*listen, *httpListen); err != nil {
		fmt.Fprintln(os.Stderr, "noop:", err)
		os.Exit(1)
	}
}

// run serves gRPC on grpcAddr and HTTP on httpAddr (either may be empty)
// until SIGTERM or SIGINT.
func run(grpcAddr, httpAddr string) error {
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var grpcLis, httpLis net.Listener
	var err error
	if grpcAddr != "" {
		if grpcLis, err = net.Listen("tcp", grpcAddr); err != nil {
			return err
		}
	}
	if httpAddr != "" {
		if httpLis, err = net.Listen("tcp", httpAddr); err != nil {
			return err
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 2)
	serving := 0
	if httpLis != nil {
		serving++
		hs := &http.Server{Handler: http.HandlerFunc(ok), ReadHeaderTimeout: 30 * time.Second}
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = hs.Shutdown(sctx)
		}()
		go func() {
			if err := hs.Serve(httpLis); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
				return
			}
			errc <- nil
		}()
	}
	if grpcLis != nil {
		serving++
		srv, health := server.New(allow{}, server.Options{Logger: log})
		go func() {
			<-ctx.Done()
			health.Shutdown()
			srv.GracefulStop()
		}()
		go func() { errc <- srv.Serve(grpcLis) }()
	}
	for range serving {
		if err := <-errc; err != nil {
			return err
		}
	}
	return nil
}
