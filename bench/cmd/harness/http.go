package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/extauthz/extauthz/internal/localnginx"
)

// What the HTTP load asks nginx for: the request of checkRequestJSON.
const (
	httpHost = "api.bench.invalid"
	httpPath = "/v1/items?limit=20"
)

// nginxWorkerConnections is the worker_connections of the benchmark's
// nginx: each request in flight holds a client connection and one to the
// auth endpoint or the backend.
const nginxWorkerConnections = 4096

// startBackend starts the backend behind nginx: noop serving HTTP only,
// answering 200 with an empty body. Both HTTP scenarios use it.
func (h *harness) startBackend(ctx context.Context) (*process, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	return startListening(ctx, exec.Command(h.noop, "-listen", "", "-http", addr), addr, filepath.Join(h.logs, "backend.log"), nil)
}

// startNginx starts nginx with exactly what `extauthz proxy-config nginx`
// prints for the extauthz configuration at cfgPath, with the backend as the
// protected location's upstream. nginx's configuration and error log are
// copied to the log directory when it exits.
func (h *harness) startNginx(ctx context.Context, name string, round int, cfgPath string) (*process, error) {
	var stderr bytes.Buffer
	pc := exec.CommandContext(ctx, h.extauthz, "proxy-config", "nginx", "--config", cfgPath, "--backend", "http://"+h.backend.addr)
	pc.Env, pc.Stderr = serverEnv(), &stderr
	block, err := pc.Output()
	if err != nil {
		return nil, fmt.Errorf("proxy-config nginx: %w: %s", err, stderr.String())
	}
	// A directory nginx may use when it runs as nobody (see localnginx):
	// the checkout may be out of its reach.
	dir, err := os.MkdirTemp("", "extauthz-bench-nginx.")
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd, err := localnginx.Command(h.o.nginx, localnginx.Options{
		Dir: dir, Listen: addr, Server: string(block), WorkerConnections: nginxWorkerConnections, LogLevel: "warn",
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	prefix := filepath.Join(h.logs, fmt.Sprintf("%s-%d-nginx", name, round))
	keep := func() {
		for from, to := range map[string]string{filepath.Join(dir, "nginx.conf"): prefix + ".conf", localnginx.ErrorLog(dir): prefix + "-error.log"} {
			if b, err := os.ReadFile(from); err == nil {
				_ = os.WriteFile(to, b, 0o644)
			}
		}
		os.RemoveAll(dir)
	}
	return startListening(ctx, cmd, addr, prefix+".log", keep)
}

func (h *harness) runHTTPFloor(ctx context.Context, round int) (roundResult, error) {
	authAddr, err := freeAddr()
	if err != nil {
		return roundResult{}, err
	}
	p, err := startListening(ctx, exec.Command(h.noop, "-listen", "", "-http", authAddr), authAddr,
		filepath.Join(h.logs, fmt.Sprintf("http-floor-%d.log", round)), nil)
	if err != nil {
		return roundResult{}, err
	}
	defer p.stop()
	// The nginx block is printed for a configuration whose listen.http is
	// the no-op server: the same block as http-hot's, but for the address.
	unused, err := freeAddr()
	if err != nil {
		return roundResult{}, err
	}
	cfg, err := h.serveConfig("http-floor", round, unused, authAddr)
	if err != nil {
		return roundResult{}, err
	}
	ngx, err := h.startWarmNginx(ctx, "http-floor", round, cfg)
	if err != nil {
		return roundResult{}, err
	}
	defer ngx.stop()
	r, err := h.measure(ctx, measured{server: p, proxy: ngx.proc, backend: h.backend, load: ngx.load(h.o.requests).run})
	if err != nil {
		return roundResult{}, err
	}
	return r, errors.Join(ngx.stop(), p.stop())
}

func (h *harness) runHTTPHot(ctx context.Context, round int) (roundResult, error) {
	h.epoch++
	epoch := h.epoch
	if err := h.seeder.seed(ctx, h.o.sessions, epoch, time.Now().Add(time.Hour)); err != nil {
		return roundResult{}, err
	}
	grpcAddr, err := freeAddr()
	if err != nil {
		return roundResult{}, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return roundResult{}, err
	}
	cfg, err := h.serveConfig("http-hot", round, grpcAddr, httpAddr)
	if err != nil {
		return roundResult{}, err
	}
	p, err := h.serve(ctx, "http-hot", round, grpcAddr, cfg)
	if err != nil {
		return roundResult{}, err
	}
	defer p.stop()
	if err := p.waitListening(ctx, httpAddr, startTimeout); err != nil {
		return roundResult{}, fmt.Errorf("listen.http: %w", err)
	}
	ngx, err := h.startWarmNginx(ctx, "http-hot", round, cfg)
	if err != nil {
		return roundResult{}, err
	}
	defer ngx.stop()
	// Through nginx the load sees only the status: check that the front
	// answers the sessions with their own upstream tokens.
	touched := min(h.o.sessions, h.o.requests)
	if err := verifyAllowedHTTP(ctx, httpAddr, h.sample(touched), h.jwts, func(i int) string {
		return fmt.Sprintf("at.%s.%d.0", sessionID(i), epoch)
	}); err != nil {
		return roundResult{}, fmt.Errorf("HTTP front verification: %w", err)
	}
	// Let the backends report what the warm-up did before counting.
	sleep(ctx, h.o.settle)
	r, err := h.measure(ctx, measured{server: p, proxy: ngx.proc, backend: h.backend, load: ngx.load(h.o.requests).run, db: true})
	if err != nil {
		return roundResult{}, err
	}
	return r, ngx.stop()
}

// nginxRun is nginx started for one run and the client that loads it.
type nginxRun struct {
	proc   *process
	client *http.Client
	h      *harness
}

// startWarmNginx starts nginx (see startNginx) and sends the unmeasured
// warm-up through it; every warm-up request must be allowed. The caller
// stops it.
func (h *harness) startWarmNginx(ctx context.Context, name string, round int, cfgPath string) (*nginxRun, error) {
	p, err := h.startNginx(ctx, name, round, cfgPath)
	if err != nil {
		return nil, err
	}
	n := &nginxRun{proc: p, client: newHTTPClient(h.o.concurrency), h: h}
	if h.o.warmup == 0 {
		return n, nil
	}
	lf, err := n.load(h.o.warmup).run(ctx)
	if err == nil && lf.Errors > 0 {
		err = fmt.Errorf("warm-up: %d of %d requests failed, the first: %w", lf.Errors, lf.Requests, lf.failure)
	}
	if err != nil {
		n.stop()
		return nil, err
	}
	return n, nil
}

// load is a load of requests through n.
func (n *nginxRun) load(requests int) httpLoad {
	return httpLoad{client: n.client, url: "http://" + n.proc.addr + httpPath, bearer: n.h.bearer,
		concurrency: n.h.o.concurrency, requests: requests}
}

func (n *nginxRun) stop() error {
	n.client.CloseIdleConnections()
	return n.proc.stop()
}

// newHTTPClient returns a client that keeps up to conns connections alive
// to one host and ignores the environment's proxy settings.
func newHTTPClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
	}
}

// httpLoad is one run of the HTTP load: requests GETs of url on host
// httpHost, concurrency of them in flight at once over keep-alive
// connections; request n carries session n mod len(bearer)'s JWT, as ghz
// sends the gRPC scenarios' data. A request fails unless it is answered
// 200.
type httpLoad struct {
	client      *http.Client
	url         string
	bearer      [][]string
	concurrency int
	requests    int
}

func (l httpLoad) run(ctx context.Context) (loadFigures, error) {
	lat := make([]time.Duration, l.requests)
	stamps := make([]stamp, l.requests)
	var next, failed atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range min(l.concurrency, l.requests) {
		wg.Go(func() {
			for ctx.Err() == nil {
				n := int(next.Add(1) - 1)
				if n >= l.requests {
					return
				}
				t0 := time.Now()
				err := l.one(ctx, n)
				t1 := time.Now()
				lat[n] = t1.Sub(t0)
				stamps[n] = stamp{end: t1, latency: lat[n]}
				if err != nil {
					failed.Add(1)
					once.Do(func() { first = err })
				}
			}
		})
	}
	wg.Wait()
	wall := time.Since(start).Seconds()
	if err := ctx.Err(); err != nil {
		return loadFigures{}, err
	}
	lf := loadFigures{
		Errors:    int(failed.Load()),
		Seconds:   round3(wall),
		RPS:       float64(l.requests) / wall,
		wall:      wall,
		inProcess: true,
		failure:   first,
	}
	lf.setLatencies(lat)
	lf.setTimeline(stamps, start)
	return lf, nil
}

// one sends request n and reads its answer.
func (l httpLoad) one(ctx context.Context, n int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.url, nil)
	if err != nil {
		return err
	}
	req.Host = httpHost
	req.Header = http.Header{
		"Authorization": l.bearer[n%len(l.bearer)],
		"Accept":        {"application/json"},
		"User-Agent":    {"bench-client/1.0"},
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return err
}

// verifyAllowedHTTP asks extauthz's HTTP front at addr, as nginx does, about
// each of the given sessions' requests and requires a 200 whose
// Authorization is "Bearer <want(session)>". Tokens are compared, never
// printed.
func verifyAllowedHTTP(ctx context.Context, addr string, sessions []int, jwts []string, want func(i int) string) error {
	client := newHTTPClient(1)
	defer client.CloseIdleConnections()
	for _, i := range sessions {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/auth", nil)
		if err != nil {
			return err
		}
		req.Host = httpHost
		req.Header.Set("Authorization", "Bearer "+jwts[i])
		req.Header.Set("X-Original-URI", httpPath)
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("session %s: %w", sessionID(i), err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("session %s: HTTP %d, want 200", sessionID(i), resp.StatusCode)
		}
		if got := resp.Header.Values("Authorization"); len(got) != 1 || got[0] != "Bearer "+want(i) {
			return fmt.Errorf("session %s: allowed, but with %d Authorization header(s) that are not the session's upstream token", sessionID(i), len(got))
		}
	}
	return nil
}
