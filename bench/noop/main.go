// Command noop is the benchmark floor: an ext_authz server built from the
// same gRPC stack as `extauthz serve` (server.New: grpc-go, go-control-plane
// authv3, the panic-recovery interceptor, the CheckRequest/CheckResponse
// conversion and the gRPC health service) whose decision always allows,
// without doing any work. The harness (bench/cmd/harness) measures it next
// to the real service, so the difference is the cost of the token swap.
//
// Usage: noop -listen 127.0.0.1:9001
//
// It serves until SIGTERM or SIGINT, then stops gracefully.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/server"
)

// allow is a decider that allows every request and sets no header.
type allow struct{}

func (allow) Check(context.Context, authz.Request) authz.Response {
	return authz.Response{Allowed: true, Status: 200, Reason: "ok"}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9001", "gRPC listen address")
	flag.Parse()

	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "noop:", err)
		os.Exit(1)
	}
	srv, health := server.New(allow{}, server.Options{Logger: log})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		health.Shutdown()
		srv.GracefulStop()
	}()
	if err := srv.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, "noop:", err)
		os.Exit(1)
	}
}
