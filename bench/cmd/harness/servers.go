package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// process is a server under test.
type process struct {
	cmd    *exec.Cmd
	addr   string
	exited chan struct{}
	err    error // set when exited is closed
	log    string
}

// freeAddr returns 127.0.0.1:<a port nothing listens on now>.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startProcess runs bin with args, its output going to logPath, and waits
// until the gRPC health service at addr answers SERVING.
func startProcess(ctx context.Context, addr, logPath, bin string, args ...string) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = serverEnv()
	return startCommand(ctx, cmd, addr, logPath)
}

// startCommand runs cmd, its output going to logPath, and waits until the
// gRPC health service at addr answers SERVING.
func startCommand(ctx context.Context, cmd *exec.Cmd, addr, logPath string) (*process, error) {
	return launch(ctx, cmd, addr, logPath, func(ctx context.Context, p *process) error {
		return p.waitServing(ctx, startTimeout)
	}, nil)
}

// startListening runs cmd, its output going to logPath, and waits until it
// accepts TCP connections on addr: for servers without a gRPC health
// service (nginx, noop serving HTTP only). after, if not nil, runs once the
// process has exited.
func startListening(ctx context.Context, cmd *exec.Cmd, addr, logPath string, after func()) (*process, error) {
	return launch(ctx, cmd, addr, logPath, func(ctx context.Context, p *process) error {
		return p.waitListening(ctx, addr, startTimeout)
	}, after)
}

// startTimeout bounds how long a server may take to start serving.
const startTimeout = 30 * time.Second

// launch starts cmd with its output going to logPath and waits for ready;
// after, if not nil, runs once the process has exited.
func launch(ctx context.Context, cmd *exec.Cmd, addr, logPath string, ready func(context.Context, *process) error, after func()) (*process, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	p := &process{cmd: cmd, addr: addr, exited: make(chan struct{}), log: logPath}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		if after != nil {
			after()
		}
		close(p.exited)
	}()
	if err := ready(ctx, p); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s did not start serving (log: %s): %w", cmd.Path, logPath, err)
	}
	return p, nil
}

// serverEnv is this process's environment without what would change the
// servers' behaviour behind the configuration's back: DATABASE_URL
// (overrides database.url) and OTEL_* (turns tracing on).
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DATABASE_URL=") || strings.HasPrefix(kv, "OTEL_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// waitServing waits until the gRPC health service at p.addr answers
// SERVING, p exits or timeout passes.
func (p *process) waitServing(ctx context.Context, timeout time.Duration) error {
	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	return p.poll(ctx, timeout, func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName})
		if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			err = fmt.Errorf("health status %v", resp.GetStatus())
		}
		return err
	})
}

// waitListening waits until addr accepts TCP connections, p exits or
// timeout passes.
func (p *process) waitListening(ctx context.Context, addr string, timeout time.Duration) error {
	return p.poll(ctx, timeout, func(context.Context) error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// poll calls try every 50 ms until it succeeds, p exits, ctx is done or
// timeout passes; it then returns try's last error.
func (p *process) poll(ctx context.Context, timeout time.Duration, try func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("exited: %v", p.err)
		default:
		}
		err := try(ctx)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the process to exit (SIGKILL after 30s).
func (p *process) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return errors.New("did not exit within 30s of SIGTERM: killed")
	}
	var ee *exec.ExitError
	if p.err != nil && !(errors.As(p.err, &ee) && ee.ExitCode() == 0) {
		return fmt.Errorf("exited with %v (log: %s)", p.err, p.log)
	}
	return nil
}

// verifyAllowed sends one Check for each of the given sessions' tokens and
// requires an OK response that sets authorization to "Bearer
// <want(session)>": proof that the load's Checks were decided as intended
// (ghz only sees the gRPC status, which is OK for a deny too).
func verifyAllowed(ctx context.Context, addr string, sessions []int, jwts []string, want func(i int) string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	c := authv3.NewAuthorizationClient(conn)
	for _, i := range sessions {
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/v1/items", Headers: map[string]string{
				"authorization": "Bearer " + jwts[i],
			}},
		}}}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := c.Check(cctx, req)
		cancel()
		if err != nil {
			return fmt.Errorf("session %s: Check: %w", sessionID(i), err)
		}
		ok := resp.GetOkResponse()
		if ok == nil {
			return fmt.Errorf("session %s: denied: HTTP %d %s", sessionID(i),
				resp.GetDeniedResponse().GetStatus().GetCode(), resp.GetDeniedResponse().GetBody())
		}
		got := ""
		for _, h := range ok.GetHeaders() {
			if h.GetHeader().GetKey() == "authorization" {
				got = h.GetHeader().GetValue()
			}
		}
		if got != "Bearer "+want(i) {
			return fmt.Errorf("session %s: authorization set to %q, want the upstream token %q", sessionID(i), got, "Bearer "+want(i))
		}
	}
	return nil
}
