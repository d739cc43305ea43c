// Command harness measures extauthz under load: it alternates, round after
// round, the scenarios below under the same load on 127.0.0.1 and reports,
// for the median round of each, requests/s, latency percentiles, the
// server's CPU time per 1000 Checks and its peak RSS. Over gRPC, with ghz as
// the load generator:
//
//   - floor: bench/noop, the same gRPC stack answering OK without any work;
//   - hot: `extauthz serve` with valid JWTs and fresh upstream tokens in
//     PostgreSQL, every request for another of -sessions sessions;
//   - storm: every session's upstream token expired at once; each Check
//     refreshes at a token endpoint (in this process) that answers after
//     -token-latency, rotates refresh tokens and counts redemptions, which
//     must be exactly one per session.
//
// Over HTTP (scenario "http", which runs the two below one after the
// other), through nginx (-nginx) configured with exactly what `extauthz
// proxy-config nginx` prints, in front of a backend answering 200 (noop
// -http), with the harness's own HTTP client as the load generator:
//
//   - http-floor: nginx's auth_request answered by noop -http (200, no
//     work): the cost of nginx, its subrequest and the backend;
//   - http-hot: the same nginx block in front of extauthz's HTTP front
//     (listen.http), the sessions seeded and warmed up as for hot.
//
// It prints a Markdown table and writes the figures as JSON to
// <out>/results-<timestamp>.json and <out>/latest.json, and pictures of
// each scenario's median round over time (plot.go) to
// <out>/plots-<timestamp>/ and, with -plots DIR, to DIR.
//
// Run it through bench/run, which installs ghz and PostgreSQL when missing
// and builds the binaries it needs. See the README, "Performance".
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/extauthz/extauthz/tokencrypt"
)

// Targets the hot path is held to (see README, Performance).
const (
	targetThroughputRatio = 0.85
	targetP99Ratio        = 1.5
	targetStormMarginMs   = 50
	targetRSSMiB          = 64
)

type options struct {
	// serveMemLimit is GOMEMLIMIT for the extauthz serve processes ("": none).
	serveMemLimit string
	rounds        int
	concurrency   int
	requests      int
	sessions      int
	warmup        int
	connections   int
	latency       time.Duration
	verify        int
	scenarios     string
	out           string
	bin           string
	ghz           string
	nginx         string
	databaseURL   string
	settle        time.Duration
	keep          bool
	plots         string

	retries         int
	maxInterference float64
	build           string

	scale scaleOptions
}

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each runs every scenario once, alternating; the median round is reported")
	flag.IntVar(&o.concurrency, "concurrency", 50, "requests in flight at once (ghz workers; HTTP client connections)")
	flag.IntVar(&o.requests, "requests", 20000, "requests measured per scenario and round")
	flag.IntVar(&o.sessions, "sessions", 10000, "distinct sessions (each request uses the next session's JWT)")
	flag.IntVar(&o.warmup, "warmup", -1, "unmeasured requests sent to floor and hot before measuring (-1: one per session)")
	flag.IntVar(&o.connections, "connections", 1, "gRPC connections ghz spreads its workers over (HTTP: one connection per request in flight)")
	flag.DurationVar(&o.latency, "token-latency", 20*time.Millisecond, "latency of the token endpoint in the refresh storm")
	flag.IntVar(&o.verify, "verify", 100, "sessions checked one by one after hot and storm for the expected upstream token")
	flag.StringVar(&o.scenarios, "scenarios", "floor,hot,storm,http", "scenarios to run, in this order within each round: floor, hot, storm, and http (nginx: http-floor then http-hot); scale (a million sessions, see -scale-*) runs once, after the rounds")
	flag.StringVar(&o.out, "out", "bench/out", "directory for results, logs and the work files")
	flag.StringVar(&o.bin, "bin", "bench/out/bin", "directory holding the extauthz and noop binaries")
	flag.StringVar(&o.ghz, "ghz", "bench/out/bin/ghz", "ghz binary (v0.120.0), for the gRPC scenarios")
	flag.StringVar(&o.nginx, "nginx", "", "nginx binary (with auth_request), for the http scenario (bench/run finds or installs it)")
	flag.StringVar(&o.databaseURL, "database-url", "", "use this PostgreSQL server (migrated and seeded by the harness) instead of a throwaway one")
	flag.DurationVar(&o.settle, "settle", 11*time.Second, "pause after the hot path's warm-up, so that PostgreSQL's backends have reported their statistics (they may wait 10 s)")
	flag.StringVar(&o.build, "build", "", "what extauthz binary is measured, for the report (bench/run sets it)")
	flag.IntVar(&o.retries, "retries", 1, "times a scenario's run is repeated when other processes took more than -max-interference cores during it")
	flag.Float64Var(&o.maxInterference, "max-interference", 0.1, "CPU (in cores) other processes and the hypervisor may take during a run before it is repeated")
	flag.BoolVar(&o.keep, "keep-reports", false, "keep ghz's JSON reports (about 12 MB per run: they hold every request's latency, and the request data) in the log directory")
	flag.StringVar(&o.plots, "plots", "", "also write the plots (PNG) to this directory, e.g. docs/img for docs/performance.md; with -print, plot that file's figures")
	flag.IntVar(&o.scale.sessions, "scale-sessions", 1000000, "scale: sessions written to PostgreSQL")
	flag.IntVar(&o.scale.active, "scale-active", 100000, "scale: of which checked by the load (and cached)")
	flag.IntVar(&o.scale.expired, "scale-expired", 500000, "scale: of which expired, deleted by garbage collection under load")
	flag.IntVar(&o.scale.batch, "scale-batch", 2000, "scale: rows per PutBatch when writing the sessions")
	flag.IntVar(&o.scale.writers, "scale-writers", 4, "scale: PutBatch calls in flight when writing the sessions")
	flag.DurationVar(&o.scale.spread, "scale-spread", time.Hour, "scale: the active sessions' tokens expire evenly over this, for refresh ahead")
	flag.DurationVar(&o.scale.observe, "scale-observe", 3*time.Minute, "scale: how long the load runs while refresh ahead redeems the tokens coming due")
	flag.StringVar(&o.serveMemLimit, "serve-gomemlimit", "", "GOMEMLIMIT for the extauthz serve processes only (e.g. 200MiB, as deploy/kubernetes sets it); empty: the Go default, no limit")
	printFile := flag.String("print", "", "print the table of a results JSON file written earlier, and exit")
	flag.Parse()
	if *printFile != "" {
		if err := reprint(*printFile, o.plots); err != nil {
			fmt.Fprintln(os.Stderr, "harness:", err)
			os.Exit(1)
		}
		return
	}
	if flag.NArg() > 0 || o.rounds < 1 || o.concurrency < 1 || o.requests < 1 || o.sessions < 1 || o.connections < 1 {
		flag.Usage()
		os.Exit(2)
	}
	if o.warmup < 0 {
		o.warmup = o.sessions
	}
	if err := o.scale.check(); err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
}

// harness holds what the scenarios share.
type harness struct {
	o        options
	work     string
	logs     string
	extauthz string
	noop     string
	protoset string
	hotData  string
	stormDat string
	jwts     []string
	jwksFile string
	keyB64   string
	db       *database
	seeder   *seeder
	idp      *tokenEndpoint
	bearer   [][]string // per session, the Authorization header of the HTTP load
	backend  *process   // behind nginx, for the HTTP scenarios
	epoch    int
	stormK   int // copies of each session in a row in the storm's data
	progress io.Writer
}

func run(ctx context.Context, o options) error {
	h := &harness{o: o, progress: os.Stderr}
	h.extauthz = filepath.Join(o.bin, "extauthz")
	h.noop = filepath.Join(o.bin, "noop")
	scen, err := parseScenarios(o.scenarios)
	if err != nil {
		return err
	}
	needs := []string{h.extauthz, h.noop}
	needHTTP := slices.Contains(scen, "http-hot")
	if needGRPC := slices.ContainsFunc(scen, func(s string) bool { return !strings.HasPrefix(s, "http-") }); needGRPC {
		needs = append(needs, o.ghz)
	}
	if needHTTP {
		if o.nginx == "" {
			return errors.New("the http scenario needs nginx: give -nginx (bench/run finds or installs it)")
		}
		needs = append(needs, o.nginx)
	}
	for _, b := range needs {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("%w (run bench/run, which builds and installs what the harness needs)", err)
		}
	}

	started := time.Now()
	h.work = filepath.Join(o.out, "work")
	h.logs = filepath.Join(o.out, "logs", started.Format("20060102-150405"))
	for _, d := range []string{h.work, h.logs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}

	// PostgreSQL, unless it is needed by no scenario (the HTTP floor's nginx
	// block is printed from a configuration that names it).
	// The scale scenario runs once, after the rounds of the others.
	scale := slices.Contains(scen, "scale")
	scen = slices.DeleteFunc(scen, func(s string) bool { return s == "scale" })
	needDB := slices.Contains(scen, "hot") || slices.Contains(scen, "storm") || needHTTP || scale
	if needDB {
		if o.databaseURL != "" {
			h.db = &database{dsn: o.databaseURL}
		} else {
			h.logf("starting a throwaway PostgreSQL")
			pglog, err := os.Create(filepath.Join(h.logs, "postgres.log"))
			if err != nil {
				return err
			}
			defer pglog.Close()
			db, err := startDatabase(ctx, pglog)
			if err != nil {
				return fmt.Errorf("PostgreSQL: %w", err)
			}
			h.db = db
			defer db.stop()
		}
		if err := migrate(ctx, h.extauthz, h.db.dsn, io.Discard); err != nil {
			return err
		}
	}

	// Keys, tokens, data files.
	sg, err := newSigner()
	if err != nil {
		return err
	}
	h.jwksFile = filepath.Join(h.work, "jwks.json")
	if err := os.WriteFile(h.jwksFile, sg.jwks, 0o644); err != nil {
		return err
	}
	h.keyB64 = tokencrypt.GenerateKey()
	secret, err := tokencrypt.ParseKey(h.keyB64)
	if err != nil {
		return err
	}
	keys, err := tokencrypt.New([]tokencrypt.Key{{ID: "bench", Secret: secret}}, "bench")
	if err != nil {
		return err
	}
	h.logf("signing %d JWTs", o.sessions)
	h.bearer = make([][]string, o.sessions)
	now := time.Now()
	h.jwts = make([]string, o.sessions)
	hot := make([]map[string]any, o.sessions)
	for i := range o.sessions {
		if h.jwts[i], err = sg.token(i, now, 6*time.Hour); err != nil {
			return err
		}
		hot[i] = checkRequestJSON(h.jwts[i], i)
		h.bearer[i] = []string{"Bearer " + h.jwts[i]}
	}
	h.hotData = filepath.Join(h.work, "data-hot.json")
	if err := writeData(h.hotData, hot); err != nil {
		return err
	}
	// The storm sends each session's JWT stormK times in a row, so that
	// concurrent Checks find the same expired token.
	h.stormK = max(1, o.requests/o.sessions)
	storm := make([]map[string]any, 0, o.sessions*h.stormK)
	for i := range o.sessions {
		for range h.stormK {
			storm = append(storm, hot[i])
		}
	}
	h.stormDat = filepath.Join(h.work, "data-storm.json")
	if err := writeData(h.stormDat, storm); err != nil {
		return err
	}
	h.protoset = filepath.Join(h.work, "authz.protoset")
	if err := writeProtoset(h.protoset); err != nil {
		return err
	}

	if needDB {
		h.seeder = &seeder{dsn: h.db.dsn, keys: keys}
		if h.idp, err = startTokenEndpoint(o.latency); err != nil {
			return err
		}
		defer h.idp.close()
	}
	if needHTTP {
		if h.backend, err = h.startBackend(ctx); err != nil {
			return fmt.Errorf("backend: %w", err)
		}
		defer h.backend.stop()
	}

	results := map[string]*scenarioResult{}
	for _, s := range scen {
		results[s] = &scenarioResult{Name: s, Description: descriptions[s]}
	}
	for round := 1; round <= o.rounds; round++ {
		for _, s := range scen {
			// A run during which other processes took CPU measures a busy
			// machine: run it again, up to -retries times, and keep the
			// quietest attempt (the others are kept in the JSON).
			var best roundResult
			for attempt := 0; attempt <= o.retries; attempt++ {
				again := ""
				if attempt > 0 {
					again = " (again: the machine was busy)"
				}
				h.logf("round %d/%d: %s%s", round, o.rounds, s, again)
				var r roundResult
				switch s {
				case "floor":
					r, err = h.runFloor(ctx, round)
				case "hot":
					r, err = h.runHot(ctx, round)
				case "storm":
					r, err = h.runStorm(ctx, round)
				case "http-floor":
					r, err = h.runHTTPFloor(ctx, round)
				case "http-hot":
					r, err = h.runHTTPHot(ctx, round)
				}
				if err != nil {
					return fmt.Errorf("round %d, %s: %w", round, s, err)
				}
				r.Round, r.Attempt = round, attempt+1
				h.logf("  %.0f req/s, p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, %.3f CPU s/1k, %.1f MiB, %d errors; other processes %.2f cores, steal %.2f",
					r.RPS, r.P50ms, r.P99ms, r.P999ms, r.CPUPer1k, r.PeakRSSMiB, r.Errors, r.OtherCores, r.StealCores)
				if r.failure != nil {
					h.logf("  first failed request: %v", r.failure)
				}
				switch {
				case attempt == 0:
					best = r
				case r.interference() < best.interference():
					results[s].Discarded = append(results[s].Discarded, best)
					best = r
				default:
					results[s].Discarded = append(results[s].Discarded, r)
				}
				if best.interference() <= o.maxInterference {
					break
				}
			}
			results[s].Rounds = append(results[s].Rounds, best)
		}
	}

	var sr *scaleResult
	if scale {
		if sr, err = h.runScale(ctx, sg); err != nil {
			return fmt.Errorf("scale: %w", err)
		}
	}
	rep := h.report(ctx, started, scen, results)
	if sr != nil {
		rep.Scale = sr
		rep.Interference = max(rep.Interference, sr.OtherCores)
		rep.Targets = append(scaleTargets(sr), rep.Targets...)
	}
	printReport(os.Stdout, rep)
	if err := writeReport(o.out, started, rep); err != nil {
		return err
	}
	return plotReport(rep, o.out, started, o.plots)
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.progress, "bench: "+format+"\n", args...)
}

var descriptions = map[string]string{
	"floor":      "no-op ext_authz server on the same gRPC stack (bench/noop): always OK, no work",
	"hot":        "extauthz serve: valid JWT, fresh upstream token in PostgreSQL, each request another session",
	"storm":      "extauthz serve: every session's upstream token expired at once; refresh at a token endpoint with fixed latency that rotates refresh tokens",
	"http-floor": "nginx with the block proxy-config nginx prints, its auth_request answered 200 by bench/noop -http (no work), in front of a backend answering 200",
	"http-hot":   "the same nginx block in front of extauthz serve's HTTP front (listen.http): valid JWT, fresh upstream token in PostgreSQL, each request another session; the same backend",
}

// parseScenarios reads -scenarios: a comma-separated list of floor, hot,
// storm and http; http stands for http-floor followed by http-hot, which
// only run together (the ratio of the two is the point).
func parseScenarios(list string) ([]string, error) {
	var out []string
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		switch s {
		case "floor", "hot", "storm", "scale":
			out = append(out, s)
		case "http":
			out = append(out, "http-floor", "http-hot")
		default:
			return nil, fmt.Errorf("unknown scenario %q (want floor, hot, storm, http, scale)", s)
		}
	}
	seen := map[string]bool{}
	for _, s := range out {
		if seen[s] {
			return nil, fmt.Errorf("scenario %q named twice", s)
		}
		seen[s] = true
	}
	return out, nil
}

// roundResult is one scenario's figures in one round.
type roundResult struct {
	Round   int `json:"round"`
	Attempt int `json:"attempt"`
	loadFigures
	ServerCPUSeconds float64 `json:"server_cpu_seconds"`
	CPUPer1k         float64 `json:"server_cpu_seconds_per_1000_checks"`
	PeakRSSBytes     int64   `json:"server_peak_rss_bytes"`
	PeakRSSMiB       float64 `json:"server_peak_rss_mib"`
	// PostgreSQL: CPU of the whole local server, and transactions (one per
	// statement outside a transaction: round trips) per Check. Absent for
	// the floor; the CPU is absent when the server is not local.
	PGCPUPer1k      *float64 `json:"postgres_cpu_seconds_per_1000_checks,omitempty"`
	PGXactsPerCheck *float64 `json:"postgres_transactions_per_check,omitempty"`
	// HTTP scenarios only: the CPU time per 1000 requests of nginx and of
	// the backend behind it.
	ProxyCPUPer1k   *float64 `json:"proxy_cpu_seconds_per_1000_requests,omitempty"`
	BackendCPUPer1k *float64 `json:"backend_cpu_seconds_per_1000_requests,omitempty"`
	// OtherCores is the CPU that processes other than the server, ghz,
	// nginx, the backend, PostgreSQL and the harness used during the load, in cores (CPU
	// seconds per second); StealCores is the CPU the hypervisor took. Both
	// should be near 0: otherwise the figures measure a busy machine.
	OtherCores float64       `json:"other_processes_cores"`
	StealCores float64       `json:"steal_cores"`
	Storm      *stormFigures `json:"storm,omitempty"`
}

// interference is the CPU, in cores, that the load did not account for.
func (r roundResult) interference() float64 { return r.OtherCores + r.StealCores }

// stormFigures are the token endpoint's counts for one storm.
type stormFigures struct {
	Sessions          int `json:"sessions"`          // sessions the load touched
	Redeemed          int `json:"sessions_redeemed"` // sessions with at least one redemption
	RedeemedOnce      int `json:"sessions_redeemed_once"`
	MinRedemptions    int `json:"min_redemptions_per_session"`
	MaxRedemptions    int `json:"max_redemptions_per_session"`
	TotalRedemptions  int `json:"total_redemptions"`
	RefusedReuses     int `json:"refused_refresh_tokens"` // a spent or unknown refresh token presented
	MalformedRequests int `json:"malformed_requests"`
	// Timeline is the redemptions over the load's intervals, for the plots.
	Timeline []interval `json:"redemption_timeline,omitempty"`
}

func (s *stormFigures) ok() bool {
	return s.Redeemed == s.Sessions && s.RedeemedOnce == s.Sessions && s.MaxRedemptions == 1 &&
		s.RefusedReuses == 0 && s.MalformedRequests == 0
}

type scenarioResult struct {
	Name        string        `json:"name"`
	Description string        `json:"description"`
	Median      roundResult   `json:"median"` // the round with the median requests/s
	Rounds      []roundResult `json:"rounds"`
	// Discarded are the attempts run again because the machine was busier
	// than -max-interference.
	Discarded []roundResult `json:"discarded,omitempty"`
}

func (h *harness) ghz(data string, requests int, addr, out string) ghzRun {
	return ghzRun{bin: h.o.ghz, protoset: h.protoset, data: data, target: addr,
		concurrency: h.o.concurrency, requests: requests, connections: h.o.connections, out: out}
}

// measured is what one measured run loads and watches.
type measured struct {
	server  *process // the authorization server: noop or extauthz serve
	proxy   *process // nginx, in the HTTP scenarios
	backend *process // behind nginx, in the HTTP scenarios
	load    func(context.Context) (loadFigures, error)
	// db: PostgreSQL's figures are collected. The caller makes sure that
	// PostgreSQL's statistics are up to date (no backend holds unreported
	// counts), and measure stops the server after the load, so that its
	// backends exit and report theirs. Without db, the caller stops the
	// server.
	db bool
}

// measure runs m's load and collects the figures of m's processes and,
// with m.db, PostgreSQL's.
func (h *harness) measure(ctx context.Context, m measured) (roundResult, error) {
	p := m.server
	var xact0 int64
	pgCPU0 := -1.0
	if m.db {
		var err error
		if xact0, err = h.db.transactions(ctx); err != nil {
			return roundResult{}, err
		}
		pgCPU0 = h.db.cpuSeconds()
	}
	sys0, steal0, err := systemCPU()
	if err != nil {
		return roundResult{}, err
	}
	self0, err := cpuSeconds(os.Getpid())
	if err != nil {
		return roundResult{}, err
	}
	watched := []*process{p, m.proxy, m.backend}
	cpu0, err := processesCPU(watched)
	if err != nil {
		return roundResult{}, err
	}
	lf, err := m.load(ctx)
	if err != nil {
		return roundResult{}, err
	}
	cpu1, err := processesCPU(watched)
	if err != nil {
		return roundResult{}, err
	}
	self1, _ := cpuSeconds(os.Getpid())
	sys1, steal1, _ := systemCPU()
	pgCPU1 := -1.0
	if pgCPU0 >= 0 {
		pgCPU1 = h.db.cpuSeconds()
	}
	rss, err := peakRSS(p.pid())
	if err != nil {
		return roundResult{}, err
	}
	per1k := func(seconds float64) float64 { return round3(seconds / float64(lf.Requests) * 1000) }
	if lf.inProcess {
		lf.GhzCPUPer1k = per1k(self1 - self0)
	}
	r := roundResult{
		loadFigures:      lf,
		ServerCPUSeconds: round3(cpu1[0] - cpu0[0]),
		CPUPer1k:         per1k(cpu1[0] - cpu0[0]),
		PeakRSSBytes:     rss,
		PeakRSSMiB:       math.Round(float64(rss)/(1<<20)*10) / 10,
	}
	known := (self1 - self0) + lf.ghzCPU
	for i := range watched {
		known += cpu1[i] - cpu0[i]
	}
	if m.proxy != nil {
		v := per1k(cpu1[1] - cpu0[1])
		r.ProxyCPUPer1k = &v
	}
	if m.backend != nil {
		v := per1k(cpu1[2] - cpu0[2])
		r.BackendCPUPer1k = &v
	}
	if pgCPU0 >= 0 && pgCPU1 >= 0 {
		known += pgCPU1 - pgCPU0
		v := per1k(pgCPU1 - pgCPU0)
		r.PGCPUPer1k = &v
	}
	if wall := lf.wall; wall > 0 {
		r.OtherCores = round3(max(0, (sys1-sys0)-known) / wall)
		r.StealCores = round3((steal1 - steal0) / wall)
	}
	if !m.db {
		return r, nil
	}
	if err := p.stop(); err != nil {
		return roundResult{}, err
	}
	sleep(ctx, 200*time.Millisecond) // backends exit just after the connections close
	xact1, err := h.db.transactions(ctx)
	if err != nil {
		return roundResult{}, err
	}
	v := round3(float64(xact1-xact0) / float64(lf.Requests))
	r.PGXactsPerCheck = &v
	return r, nil
}

// processesCPU returns the CPU seconds each process has used so far (0 for
// nil).
func processesCPU(ps []*process) ([]float64, error) {
	out := make([]float64, len(ps))
	for i, p := range ps {
		if p == nil {
			continue
		}
		var err error
		if out[i], err = cpuSeconds(p.pid()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ghzLoad is the measured ghz load of a gRPC scenario against p.
func (h *harness) ghzLoad(p *process, name string, round int, data string) func(context.Context) (loadFigures, error) {
	return h.ghz(data, h.o.requests, p.addr, h.reportPath(name, round, false)).run
}

func (h *harness) warm(ctx context.Context, p *process, name string, round int) error {
	if h.o.warmup == 0 {
		return nil
	}
	_, err := h.ghz(h.hotData, h.o.warmup, p.addr, h.reportPath(name, round, true)).run(ctx)
	return err
}

// reportPath is where ghz writes its report: the log directory with
// -keep-reports, else one file in the work directory that each run
// overwrites.
func (h *harness) reportPath(name string, round int, warmup bool) string {
	if !h.o.keep {
		return filepath.Join(h.work, "ghz-report.json")
	}
	suffix := ""
	if warmup {
		suffix = "-warmup"
	}
	return filepath.Join(h.logs, fmt.Sprintf("ghz-%s-%d%s.json", name, round, suffix))
}

func (h *harness) runFloor(ctx context.Context, round int) (roundResult, error) {
	addr, err := freeAddr()
	if err != nil {
		return roundResult{}, err
	}
	p, err := startProcess(ctx, addr, filepath.Join(h.logs, fmt.Sprintf("floor-%d.log", round)), h.noop, "-listen", addr)
	if err != nil {
		return roundResult{}, err
	}
	defer p.stop()
	if err := h.warm(ctx, p, "floor", round); err != nil {
		return roundResult{}, err
	}
	r, err := h.measure(ctx, measured{server: p, load: h.ghzLoad(p, "floor", round, h.hotData)})
	if err != nil {
		return roundResult{}, err
	}
	return r, p.stop()
}

// startServe writes a configuration for a fresh port and starts extauthz
// serve with it.
func (h *harness) startServe(ctx context.Context, name string, round int) (*process, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	path, err := h.serveConfig(name, round, addr, "")
	if err != nil {
		return nil, err
	}
	return h.serve(ctx, name, round, addr, path)
}

// serve starts extauthz serve with the configuration at path, whose gRPC
// listener is addr, and waits until it is serving.
func (h *harness) serve(ctx context.Context, name string, round int, addr, path string) (*process, error) {
	cmd := exec.Command(h.extauthz, "serve", "--config", path)
	cmd.Env = serverEnv()
	if h.o.serveMemLimit != "" {
		cmd.Env = append(cmd.Env, "GOMEMLIMIT="+h.o.serveMemLimit)
	}
	return startCommand(ctx, cmd, addr, filepath.Join(h.logs, fmt.Sprintf("%s-%d.log", name, round)))
}

// serveConfig writes the configuration of an extauthz serve run: gRPC on
// grpcAddr and, unless httpAddr is "", the HTTP front on httpAddr. It
// returns the file's path.
func (h *harness) serveConfig(name string, round int, grpcAddr, httpAddr string) (string, error) {
	return h.serveConfigWith(name, round, grpcAddr, httpAddr, serveExtras{})
}

// serveExtras are the settings of a run that departs from the defaults the
// other scenarios share.
type serveExtras struct {
	metrics string // listen.metrics address; "" for off
	cache   int    // cache.jwt_size, cache.token_size and refresh.ahead.max_sessions; 0 for the defaults
}

// serveConfigWith is serveConfig with x.
func (h *harness) serveConfigWith(name string, round int, grpcAddr, httpAddr string, x serveExtras) (string, error) {
	listenHTTP := ""
	if httpAddr != "" {
		listenHTTP = fmt.Sprintf("\n  http: %q", httpAddr)
	}
	metrics, extra, ahead := "off", "", ""
	if x.metrics != "" {
		metrics = x.metrics
	}
	if x.cache > 0 {
		extra = fmt.Sprintf("cache:\n  jwt_size: %d\n  token_size: %d\n", x.cache, x.cache)
		ahead = fmt.Sprintf("\n  ahead:\n    max_sessions: %d", x.cache)
	}
	cfg := fmt.Sprintf(`# Written by bench/cmd/harness.
listen:
  grpc: %q%s
  metrics: %q
database:
  url: %q
jwt:
  issuer: %q
  audiences: [%q]
  jwks_file: %q
providers:
  %s:
    token_url: %q
    client_id: bench-upstream-client
    client_secret: bench-upstream-secret
    auth_style: params
default_providers: [%s]
refresh:
  timeout: 5s%s
log:
  level: warn
shutdown:
  drain_delay: 0s
encryption:
  keys:
    - id: bench
      key: %q
gc:
  interval: 0s
%s`, grpcAddr, listenHTTP, metrics, h.db.dsn, benchIssuer, benchAudience, abs(h.jwksFile), benchProvider, h.idp.url, benchProvider, ahead, h.keyB64, extra)
	path := filepath.Join(h.work, fmt.Sprintf("config-%s-%d.yaml", name, round))
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// sample returns up to o.verify sessions spread over the first touched.
func (h *harness) sample(touched int) []int {
	n := min(h.o.verify, touched)
	out := make([]int, 0, n)
	for k := range n {
		out = append(out, k*touched/n)
	}
	return out
}

func (h *harness) runHot(ctx context.Context, round int) (roundResult, error) {
	h.epoch++
	epoch := h.epoch
	if err := h.seeder.seed(ctx, h.o.sessions, epoch, time.Now().Add(time.Hour)); err != nil {
		return roundResult{}, err
	}
	p, err := h.startServe(ctx, "hot", round)
	if err != nil {
		return roundResult{}, err
	}
	defer p.stop()
	if err := h.warm(ctx, p, "hot", round); err != nil {
		return roundResult{}, err
	}
	// The load's Checks must be allowed with the session's own token (ghz
	// sees only the gRPC status, which is OK for a deny too).
	touched := min(h.o.sessions, h.o.requests)
	if err := verifyAllowed(ctx, p.addr, h.sample(touched), h.jwts, func(i int) string {
		return fmt.Sprintf("at.%s.%d.0", sessionID(i), epoch)
	}); err != nil {
		return roundResult{}, fmt.Errorf("hot path verification: %w", err)
	}
	// Let the backends report what the warm-up did before counting.
	sleep(ctx, h.o.settle)
	return h.measure(ctx, measured{server: p, load: h.ghzLoad(p, "hot", round, h.hotData), db: true})
}

func (h *harness) runStorm(ctx context.Context, round int) (roundResult, error) {
	h.epoch++
	epoch := h.epoch
	h.idp.reset(epoch)
	if err := h.seeder.seed(ctx, h.o.sessions, epoch, time.Now().Add(-time.Minute)); err != nil {
		return roundResult{}, err
	}
	p, err := h.startServe(ctx, "storm", round)
	if err != nil {
		return roundResult{}, err
	}
	defer p.stop()
	r, err := h.measure(ctx, measured{server: p, load: h.ghzLoad(p, "storm", round, h.stormDat), db: true})
	if err != nil {
		return roundResult{}, err
	}
	touched := min(h.o.sessions, (h.o.requests+h.stormK-1)/h.stormK)
	red, refused, malformed := h.idp.counts()
	sf := &stormFigures{Sessions: touched, RefusedReuses: refused, MalformedRequests: malformed, MinRedemptions: math.MaxInt}
	for i := range touched {
		n := red[sessionID(i)]
		sf.TotalRedemptions += n
		sf.MinRedemptions = min(sf.MinRedemptions, n)
		sf.MaxRedemptions = max(sf.MaxRedemptions, n)
		if n > 0 {
			sf.Redeemed++
		}
		if n == 1 {
			sf.RedeemedOnce++
		}
	}
	if touched == 0 {
		sf.MinRedemptions = 0
	}
	sf.Timeline = timeline(h.idp.redemptionStamps(), r.began, r.span, r.width)
	r.Storm = sf

	// The refreshed tokens were stored: a new process serves them.
	v, err := h.startServe(ctx, "storm-verify", round)
	if err != nil {
		return roundResult{}, err
	}
	defer v.stop()
	if err := verifyAllowed(ctx, v.addr, h.sample(touched), h.jwts, func(i int) string {
		return fmt.Sprintf("at.%s.%d.1", sessionID(i), epoch)
	}); err != nil {
		return roundResult{}, fmt.Errorf("storm verification: %w", err)
	}
	return r, v.stop()
}

// report is what the harness prints and writes.
type report struct {
	Date      string                     `json:"date"`
	Machine   machine                    `json:"machine"`
	Build     string                     `json:"build,omitempty"` // which extauthz was measured
	Params    params                     `json:"params"`
	Scenarios map[string]*scenarioResult `json:"scenarios"`
	Order     []string                   `json:"order"`
	Ratios    *ratios                    `json:"hot_vs_floor,omitempty"`
	// HTTPRatios compare nginx in front of extauthz with nginx in front of
	// the no-op auth endpoint (http-hot / http-floor).
	HTTPRatios *ratios `json:"http_hot_vs_http_floor,omitempty"`
	// Scale is the scale scenario's figures, when it ran.
	Scale   *scaleResult `json:"scale,omitempty"`
	Targets []target     `json:"targets"`
	// Interference is the most CPU (in cores) that other processes, or the
	// hypervisor (steal), took during one of the median runs reported.
	Interference float64 `json:"worst_interference_cores"`
	DurationSec  float64 `json:"duration_seconds"`
}

type machine struct {
	CPU        string `json:"cpu"`
	CPUs       int    `json:"cpus"`
	Kernel     string `json:"kernel"`
	GoVersion  string `json:"go"`
	Postgres   string `json:"postgres,omitempty"`
	GhzVersion string `json:"ghz,omitempty"`
}

type params struct {
	Rounds        int     `json:"rounds"`
	Concurrency   int     `json:"concurrency"`
	Requests      int     `json:"requests"`
	Sessions      int     `json:"sessions"`
	Warmup        int     `json:"warmup"`
	Connections   int     `json:"connections"`
	TokenLatency  string  `json:"token_latency"`
	StormRepeat   int     `json:"storm_requests_per_session"`
	DatabaseLocal bool    `json:"database_local"`
	SettleSeconds float64 `json:"settle_seconds"`
	Retries       int     `json:"retries"`
	// MaxInterference is the CPU, in cores, other processes could take
	// during a run before it was repeated.
	MaxInterference float64 `json:"max_interference_cores"`
	// ServeMemLimit is the GOMEMLIMIT extauthz serve ran with ("": none).
	ServeMemLimit string `json:"serve_gomemlimit,omitempty"`
}

type ratios struct {
	Throughput float64 `json:"throughput"` // hot req/s / floor req/s
	P99        float64 `json:"p99"`        // hot p99 / floor p99
}

// ratiosOf compares hot's median round with floor's.
func ratiosOf(hot, floor *scenarioResult) *ratios {
	return &ratios{
		Throughput: round3(hot.Median.RPS / floor.Median.RPS),
		P99:        round3(hot.Median.P99ms / floor.Median.P99ms),
	}
}

type target struct {
	Name   string `json:"name"`
	Want   string `json:"want"`
	Got    string `json:"got"`
	Met    bool   `json:"met"`
	Remark string `json:"remark,omitempty"`
}

func (h *harness) report(ctx context.Context, started time.Time, scen []string, res map[string]*scenarioResult) report {
	for _, s := range res {
		rs := slices.Clone(s.Rounds)
		slices.SortStableFunc(rs, func(a, b roundResult) int {
			switch {
			case a.RPS < b.RPS:
				return -1
			case a.RPS > b.RPS:
				return 1
			}
			return 0
		})
		s.Median = rs[(len(rs)-1)/2]
	}
	rep := report{
		Date:      started.UTC().Format(time.RFC3339),
		Machine:   h.machine(ctx),
		Build:     h.o.build,
		Scenarios: res,
		Order:     scen,
		Params: params{
			Rounds: h.o.rounds, Concurrency: h.o.concurrency, Requests: h.o.requests, Sessions: h.o.sessions,
			Warmup: h.o.warmup, Connections: h.o.connections, TokenLatency: h.o.latency.String(), StormRepeat: h.stormK,
			DatabaseLocal: h.db != nil && h.db.cluster != nil, SettleSeconds: h.o.settle.Seconds(),
			Retries: h.o.retries, MaxInterference: h.o.maxInterference, ServeMemLimit: h.o.serveMemLimit,
		},
		DurationSec: math.Round(time.Since(started).Seconds()),
	}
	floor, hot, storm := res["floor"], res["hot"], res["storm"]
	if res["http-floor"] != nil && res["http-hot"] != nil {
		rep.HTTPRatios = ratiosOf(res["http-hot"], res["http-floor"])
	}
	if floor != nil && hot != nil {
		rep.Ratios = ratiosOf(hot, floor)
		rep.Targets = append(rep.Targets,
			target{Name: "hot throughput", Want: fmt.Sprintf(">= %.2f x floor", targetThroughputRatio),
				Got: fmt.Sprintf("%.2f x", rep.Ratios.Throughput), Met: rep.Ratios.Throughput >= targetThroughputRatio},
			target{Name: "hot p99", Want: fmt.Sprintf("<= %.1f x floor", targetP99Ratio),
				Got: fmt.Sprintf("%.2f x", rep.Ratios.P99), Met: rep.Ratios.P99 <= targetP99Ratio})
	}
	if hot != nil {
		t := target{Name: "hot peak RSS", Want: fmt.Sprintf("<= %d MiB with 10000 sessions", targetRSSMiB),
			Got: fmt.Sprintf("%.1f MiB with %d sessions", hot.Median.PeakRSSMiB, h.o.sessions),
			Met: hot.Median.PeakRSSMiB <= targetRSSMiB && h.o.sessions >= 10000}
		if h.o.sessions < 10000 {
			t.Remark = "fewer sessions than the target assumes: not conclusive"
		}
		rep.Targets = append(rep.Targets, t)
	}
	if storm != nil {
		once, worst := true, ""
		for _, r := range append(slices.Clone(storm.Rounds), storm.Discarded...) {
			if !r.Storm.ok() {
				once = false
				worst = fmt.Sprintf("round %d: %d of %d sessions redeemed once, max %d, %d refused", r.Round,
					r.Storm.RedeemedOnce, r.Storm.Sessions, r.Storm.MaxRedemptions, r.Storm.RefusedReuses)
			}
		}
		got := fmt.Sprintf("1 per session in every round (%d sessions)", storm.Median.Storm.Sessions)
		if !once {
			got = worst
		}
		rep.Targets = append(rep.Targets, target{Name: "storm redemptions", Want: "exactly 1 per session", Got: got, Met: once})
		limit := float64(h.o.latency.Milliseconds()) + targetStormMarginMs
		rep.Targets = append(rep.Targets, target{Name: "storm p99", Want: fmt.Sprintf("<= %.0f ms (token latency + %d ms)", limit, targetStormMarginMs),
			Got: fmt.Sprintf("%.1f ms", storm.Median.P99ms), Met: storm.Median.P99ms <= limit})
	}
	errs := 0
	for _, s := range res {
		for _, r := range s.Rounds {
			errs += r.Errors
		}
		rep.Interference = max(rep.Interference, s.Median.interference())
	}
	rep.Targets = append(rep.Targets, target{Name: "errors", Want: "0 failed requests", Got: fmt.Sprint(errs), Met: errs == 0})
	return rep
}

func (h *harness) machine(ctx context.Context) machine {
	m := machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if h.db != nil {
		if conn, err := pgx.Connect(ctx, h.db.dsn); err == nil {
			_ = conn.QueryRow(ctx, "SHOW server_version").Scan(&m.Postgres)
			conn.Close(ctx)
		}
	}
	if out, err := exec.CommandContext(ctx, "go", "version", "-m", h.o.ghz).Output(); err == nil {
		for line := range strings.Lines(string(out)) {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == "mod" && f[1] == "github.com/bojand/ghz" {
				m.GhzVersion = f[2]
			}
		}
	}
	return m
}

var labels = map[string]string{"floor": "a) floor (no-op)", "hot": "b) hot path", "storm": "c) refresh storm",
	"http-floor": "d) nginx, no-op auth", "http-hot": "e) nginx + extauthz HTTP"}

func printReport(w io.Writer, rep report) {
	fmt.Fprintf(w, "\nextauthz benchmark, %s, %s (%d CPUs), Go %s, PostgreSQL %s, ghz %s\n",
		rep.Date, rep.Machine.CPU, rep.Machine.CPUs, rep.Machine.GoVersion, rep.Machine.Postgres, rep.Machine.GhzVersion)
	if rep.Build != "" {
		fmt.Fprintln(w, rep.Build)
	}
	p := rep.Params
	fmt.Fprintf(w, "concurrency %d, %d requests per run over %d sessions, %d connection(s), warm-up %d, median of %d rounds (by req/s), token endpoint latency %s\n\n",
		p.Concurrency, p.Requests, p.Sessions, p.Connections, p.Warmup, p.Rounds, p.TokenLatency)
	if p.ServeMemLimit != "" {
		fmt.Fprintf(w, "extauthz serve ran with GOMEMLIMIT=%s\n", p.ServeMemLimit)
	}
	if len(rep.Order) > 0 {
		printRounds(w, rep)
	}
	if rep.Scale != nil {
		printScale(w, rep.Scale)
	}
	if rep.Interference > rep.Params.MaxInterference {
		fmt.Fprintf(w, "WARNING: other processes (or steal) took up to %.2f cores during a reported run: the machine was not quiet, and the figures say less than they seem\n", rep.Interference)
	} else {
		fmt.Fprintf(w, "other processes (and steal) took at most %.2f cores during the reported runs\n", rep.Interference)
	}
	fmt.Fprintln(w, "\ntargets:")
	for _, t := range rep.Targets {
		mark := "NOT MET"
		if t.Met {
			mark = "met"
		}
		fmt.Fprintf(w, "  %-18s want %-40s got %-45s %s", t.Name, t.Want, t.Got, mark)
		if t.Remark != "" {
			fmt.Fprintf(w, " (%s)", t.Remark)
		}
		fmt.Fprintln(w)
	}
}

// printRounds prints the table of the scenarios run in rounds.
func printRounds(w io.Writer, rep report) {
	fmt.Fprintln(w, "| scenario | req/s | p50 ms | p99 ms | p99.9 ms | server CPU s / 1000 Checks | server peak RSS MiB | PostgreSQL CPU s / 1000 Checks | PostgreSQL xacts / Check |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, name := range rep.Order {
		m := rep.Scenarios[name].Median
		fmt.Fprintf(w, "| %s | %.0f | %.2f | %.2f | %.2f | %.3f | %.1f | %s | %s |\n",
			labels[name], m.RPS, m.P50ms, m.P99ms, m.P999ms, m.CPUPer1k, m.PeakRSSMiB, optional(m.PGCPUPer1k, "%.3f"), optional(m.PGXactsPerCheck, "%.2f"))
	}
	if r := rep.Ratios; r != nil {
		fmt.Fprintf(w, "| hot / floor | %.2f x | | %.2f x | | | | | |\n", r.Throughput, r.P99)
	}
	if r := rep.HTTPRatios; r != nil {
		fmt.Fprintf(w, "| nginx + extauthz / nginx floor | %.2f x | | %.2f x | | | | | |\n", r.Throughput, r.P99)
	}
	fmt.Fprint(w, "\nload generator (ghz; for http-*, the harness's HTTP client; on the same cores) CPU s / 1000 requests:")
	for i, name := range rep.Order {
		sep := ","
		if i == 0 {
			sep = ""
		}
		fmt.Fprintf(w, "%s %s %.3f", sep, name, rep.Scenarios[name].Median.GhzCPUPer1k)
	}
	fmt.Fprintln(w)
	for _, name := range rep.Order {
		if m := rep.Scenarios[name].Median; m.ProxyCPUPer1k != nil {
			fmt.Fprintf(w, "%s: nginx CPU s / 1000 requests %s, backend %s\n", name, optional(m.ProxyCPUPer1k, "%.3f"), optional(m.BackendCPUPer1k, "%.3f"))
		}
	}
	if s := rep.Scenarios["storm"]; s != nil {
		sf := s.Median.Storm
		fmt.Fprintf(w, "refresh storm (median round): %d sessions, redemptions per session min %d max %d (%d redeemed exactly once), %d spent refresh tokens presented\n",
			sf.Sessions, sf.MinRedemptions, sf.MaxRedemptions, sf.RedeemedOnce, sf.RefusedReuses)
	}
}

func optional(v *float64, format string) string {
	if v == nil {
		return "–"
	}
	return fmt.Sprintf(format, *v)
}

func writeReport(dir string, started time.Time, rep report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	path := filepath.Join(dir, "results-"+started.Format("20060102-150405")+".json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "latest.json"), b, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: results written to %s and %s\n", path, filepath.Join(dir, "latest.json"))
	return nil
}

// reprint prints the table of a results file and, unless plots is "",
// writes its plots into that directory.
func reprint(path, plots string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	rep.Interference = 0
	for _, s := range rep.Scenarios {
		rep.Interference = max(rep.Interference, s.Median.interference())
	}
	printReport(os.Stdout, rep)
	if plots == "" {
		return nil
	}
	return plotReport(rep, "", time.Time{}, plots)
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
