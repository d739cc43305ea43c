package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/encrypted"
	"github.com/extauthz/extauthz/store/postgres"
	"github.com/extauthz/extauthz/telemetry"
)

// Targets of the scale scenario (issue 15).
const (
	targetScaleHotRatio  = 0.9
	targetScaleMissRatio = 0.4
	targetScaleRSSMiB    = 256
	targetScaleCached    = 100000
)

// scaleOptions are the scale scenario's flags.
type scaleOptions struct {
	sessions int           // rows written
	active   int           // of which checked by the load (the first ones)
	expired  int           // of which expired, for garbage collection (the last ones)
	batch    int           // rows per PutBatch
	writers  int           // PutBatch calls in flight
	spread   time.Duration // the active tokens' expiries are spread over this, for refresh ahead
	observe  time.Duration // how long the refresh-ahead phase runs its load
}

// scaleResult is what the scale scenario measured.
type scaleResult struct {
	Sessions int `json:"sessions"`
	Active   int `json:"active_sessions"`
	Expired  int `json:"expired_sessions"`
	// Write: every row written with store/encrypted over store/postgres's
	// PutBatch (sealed as the service seals them).
	WriteSeconds    float64 `json:"write_seconds"`
	WriteRowsPerSec float64 `json:"write_rows_per_second"`
	WriteBatch      int     `json:"write_batch_rows"`
	WriteWriters    int     `json:"write_writers"`
	Sizes           pgSizes `json:"postgres_sizes"`

	// Floor, miss and hot are the no-op server's, a fresh extauthz's first
	// Check of each active session (both caches miss: JWT verification,
	// one indexed read, decryption) and the same process's Checks once all
	// are cached. The floor is measured before the misses (Floor), between
	// the misses and the hits (FloorMid) and after the hits (FloorEnd), so
	// that each ratio is to the floors on either side of its run: the VM's
	// speed drifts over minutes, and one floor measured minutes before
	// skewed the ratios by a third either way. Files written before
	// FloorMid was measured have only Floor.
	Floor          loadFigures `json:"floor"`
	FloorMid       loadFigures `json:"floor_between_miss_and_hit"`
	FloorEnd       loadFigures `json:"floor_after_hit"`
	Miss           loadFigures `json:"miss"`
	Hot            loadFigures `json:"hot"`
	MissCPUPer1k   float64     `json:"miss_server_cpu_seconds_per_1000_checks"`
	MissPGCPUPer1k float64     `json:"miss_postgres_cpu_seconds_per_1000_checks"`
	HotCPUPer1k    float64     `json:"hot_server_cpu_seconds_per_1000_checks"`
	// RSS of the server before its first Check, with every active session
	// cached, and its peak (VmHWM) at the end of the hot load.
	RSSStartMiB      float64 `json:"rss_start_mib"`
	RSSCachedMiB     float64 `json:"rss_cached_mib"`
	PeakRSSMiB       float64 `json:"peak_rss_mib"`
	RSSPerSessionKiB float64 `json:"rss_per_cached_session_kib"`

	// Garbage collection by `extauthz gc` while the hot load runs.
	GCDeleted   int           `json:"gc_deleted"`
	GCSeconds   float64       `json:"gc_seconds"`
	GCLeft      int           `json:"gc_expired_rows_left"`
	GCLoad      []loadFigures `json:"gc_load_runs"` // the hot load's runs that overlapped it
	GCWorstP99  float64       `json:"gc_worst_p99_ms"`
	GCTotalRows int           `json:"rows_after_gc"`

	Ahead aheadFigures `json:"refresh_ahead"`
	// OtherCores is the most CPU, in cores, that other processes and steal
	// took during the floor, miss and hit runs.
	OtherCores float64 `json:"worst_interference_cores"`
}

// pgSizes are PostgreSQL's sizes after the write (and VACUUM ANALYZE).
type pgSizes struct {
	Rows       int64            `json:"rows"`
	Database   int64            `json:"database_bytes"`
	Table      int64            `json:"table_bytes"` // heap only
	Toast      int64            `json:"toast_bytes"`
	Indexes    int64            `json:"indexes_bytes"`
	PerIndex   map[string]int64 `json:"index_bytes"`
	TotalTable int64            `json:"table_total_bytes"` // heap, TOAST and indexes
}

// aheadFigures are the refresh-ahead phase's: the active sessions' tokens
// expire spread evenly over the spread (one hour: real time, nothing
// compressed), the load keeps checking every active session, and refresh
// ahead redeems the tokens as they come due.
type aheadFigures struct {
	SpreadSeconds    float64     `json:"spread_seconds"`
	ObservedSeconds  float64     `json:"observed_seconds"`
	ModelPerSec      float64     `json:"model_redemptions_per_second"` // active / spread
	Redeemed         int         `json:"redemptions"`
	TailPerSec       float64     `json:"redemptions_per_second_last_30s"`
	MaxPerSession    int         `json:"max_redemptions_per_session"`
	Refused          int         `json:"refused_refresh_tokens"`
	ByTrigger        [2]float64  `json:"refreshes_check_ahead"` // extauthz_refresh_by_trigger_total, check then ahead
	CheckWaits       float64     `json:"check_refresh_waits"`
	Load             loadFigures `json:"load"` // the last load run
	Concurrency      int         `json:"ahead_concurrency"`
	TokenLatencyMs   float64     `json:"token_latency_ms"`
	CapacityModelSec float64     `json:"capacity_model_per_second"` // concurrency / token latency, per replica and provider
}

// scaleData signs one JWT per active session and writes the load's data
// file.
func (h *harness) scaleData(ctx context.Context, sg *signer, active int) ([]string, string, error) {
	h.logf("scale: signing %d JWTs", active)
	now := time.Now()
	jwts := make([]string, active)
	msgs := make([]map[string]any, active)
	for i := range active {
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		var err error
		if jwts[i], err = sg.token(i, now, 6*time.Hour); err != nil {
			return nil, "", err
		}
		msgs[i] = checkRequestJSON(jwts[i], i)
	}
	path := filepath.Join(h.work, "data-scale.json")
	return jwts, path, writeData(path, msgs)
}

// runScale runs the scale scenario once (see scaleResult).
func (h *harness) runScale(ctx context.Context, sg *signer) (*scaleResult, error) {
	so := h.o.scale
	res := &scaleResult{Sessions: so.sessions, Active: so.active, Expired: so.expired, WriteBatch: so.batch, WriteWriters: so.writers}
	if h.db.cluster != nil {
		if err := h.db.exec(ctx, "TRUNCATE upstream_tokens"); err != nil {
			return nil, err
		}
	}

	// Write.
	h.epoch++
	epoch := h.epoch
	now := time.Now()
	h.logf("scale: writing %d sessions (%d active, %d expired) with PutBatch, %d rows per batch, %d writers", so.sessions, so.active, so.expired, so.batch, so.writers)
	took, err := h.writeBatches(ctx, so.sessions, func(i int) store.Row {
		r := benchRow(i, epoch, now.Add(2*time.Hour))
		r.SessionExpiresAt = now.Add(30 * 24 * time.Hour)
		if i >= so.sessions-so.expired {
			r.SessionExpiresAt = now.Add(-time.Minute)
		}
		return r
	})
	if err != nil {
		return nil, err
	}
	res.WriteSeconds = round3(took.Seconds())
	res.WriteRowsPerSec = math.Round(float64(so.sessions) / took.Seconds())
	h.logf("scale: wrote %d rows in %.1f s (%.0f rows/s)", so.sessions, took.Seconds(), res.WriteRowsPerSec)
	if err := h.db.exec(ctx, "VACUUM ANALYZE upstream_tokens"); err != nil {
		return nil, err
	}
	if res.Sizes, err = h.db.sizes(ctx); err != nil {
		return nil, err
	}

	jwts, data, err := h.scaleData(ctx, sg, so.active)
	if err != nil {
		return nil, err
	}
	run := func(p *process, requests int) func(context.Context) (loadFigures, error) {
		return h.ghz(data, requests, p.addr, h.reportPath("scale", 1, false)).run
	}

	// Floor: one process, idle between its runs, measured next to the
	// misses and the hits.
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	floor, err := startProcess(ctx, addr, filepath.Join(h.logs, "scale-floor.log"), h.noop, "-listen", addr)
	if err != nil {
		return nil, err
	}
	defer floor.stop()
	if _, err := run(floor, min(so.active, h.o.requests))(ctx); err != nil {
		return nil, err
	}
	measureFloor := func(into *loadFigures, when string) error {
		h.logf("scale: floor (%s)", when)
		fr, err := h.measure(ctx, measured{server: floor, load: run(floor, h.o.requests)})
		if err != nil {
			return err
		}
		*into = fr.loadFigures
		res.OtherCores = max(res.OtherCores, fr.interference())
		return nil
	}
	if err := measureFloor(&res.Floor, "before the misses"); err != nil {
		return nil, err
	}

	// Misses: a fresh process, each active session checked once.
	if addr, err = freeAddr(); err != nil {
		return nil, err
	}
	metricsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cfg, err := h.serveConfigWith("scale", 1, addr, "", serveExtras{metrics: metricsAddr, cache: so.active + so.active/10})
	if err != nil {
		return nil, err
	}
	p, err := h.serve(ctx, "scale", 1, addr, cfg)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	rss0, err := currentRSS(p.pid())
	if err != nil {
		return nil, err
	}
	h.logf("scale: misses (%d sessions, each checked once by a fresh process)", so.active)
	pg0 := h.db.cpuSeconds()
	mr, err := h.measure(ctx, measured{server: p, load: run(p, so.active)})
	if err != nil {
		return nil, err
	}
	pg1 := h.db.cpuSeconds()
	res.Miss, res.MissCPUPer1k = mr.loadFigures, mr.CPUPer1k
	res.OtherCores = max(res.OtherCores, mr.interference())
	if pg0 >= 0 && pg1 >= 0 {
		res.MissPGCPUPer1k = round3((pg1 - pg0) / float64(so.active) * 1000)
	}
	rss1, err := currentRSS(p.pid())
	if err != nil {
		return nil, err
	}
	res.RSSStartMiB, res.RSSCachedMiB = mib(rss0), mib(rss1)
	res.RSSPerSessionKiB = math.Round(float64(rss1-rss0)/float64(so.active)/1024*100) / 100
	if err := verifyAllowed(ctx, p.addr, h.sample(so.active), jwts, func(i int) string {
		return fmt.Sprintf("at.%s.%d.0", sessionID(i), epoch)
	}); err != nil {
		return nil, fmt.Errorf("scale verification: %w", err)
	}

	if err := measureFloor(&res.FloorMid, "between the misses and the hits"); err != nil {
		return nil, err
	}

	// Hits: the same process, every session cached.
	h.logf("scale: hits (%d requests over %d cached sessions)", h.o.requests, so.active)
	hr, err := h.measure(ctx, measured{server: p, load: run(p, h.o.requests)})
	if err != nil {
		return nil, err
	}
	res.Hot, res.HotCPUPer1k = hr.loadFigures, hr.CPUPer1k
	res.PeakRSSMiB = max(hr.PeakRSSMiB, res.RSSCachedMiB) // VmHWM may lag VmRSS a little
	res.OtherCores = max(res.OtherCores, hr.interference())
	if err := measureFloor(&res.FloorEnd, "after the hits"); err != nil {
		return nil, err
	}
	if err := floor.stop(); err != nil {
		return nil, err
	}

	// Garbage collection under the hot load.
	if err := h.scaleGC(ctx, res, run(p, h.o.requests)); err != nil {
		return nil, err
	}

	// Refresh ahead.
	if err := h.scaleAhead(ctx, res, p, metricsAddr, run(p, h.o.requests)); err != nil {
		return nil, err
	}
	return res, p.stop()
}

// benchRow is session i's row in epoch: the tokens the token endpoint
// accepts in that epoch, and the binding of the session's JWT.
func benchRow(i, epoch int, expiresAt time.Time) store.Row {
	sid := sessionID(i)
	return store.Row{
		SessionID: sid,
		Provider:  benchProvider,
		Tokens: store.Tokens{
			AccessToken:  fmt.Sprintf("at.%s.%d.0", sid, epoch),
			RefreshToken: fmt.Sprintf("rt.%s.%d.0", sid, epoch),
			TokenType:    "Bearer",
			ExpiresAt:    expiresAt,
		},
		Subject:  subject(i),
		ClientID: benchClientID,
	}
}

// writeBatches writes rows 0..n-1, built by row, through store/encrypted
// over store/postgres with PutBatch, o.scale.writers batches in flight, and
// returns how long it took.
func (h *harness) writeBatches(ctx context.Context, n int, row func(i int) store.Row) (time.Duration, error) {
	so := h.o.scale
	pg, err := postgres.New(ctx, h.db.dsn, postgres.WithPoolConfig(func(c *pgxpool.Config) { c.MaxConns = int32(so.writers) }))
	if err != nil {
		return 0, err
	}
	defer pg.Close()
	st := encrypted.New(pg, h.seeder.keys)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	starts := make(chan int)
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	began := time.Now()
	for range so.writers {
		wg.Go(func() {
			rows := make([]store.Row, 0, so.batch)
			for start := range starts {
				rows = rows[:0]
				for i := start; i < min(start+so.batch, n); i++ {
					rows = append(rows, row(i))
				}
				if err := st.PutBatch(ctx, rows); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("write rows %d to %d: %w", start, start+len(rows)-1, err)
					}
					mu.Unlock()
					cancel()
					return
				}
			}
		})
	}
feed:
	for start := 0; start < n; start += so.batch {
		select {
		case starts <- start:
		case <-ctx.Done():
			break feed
		}
	}
	close(starts)
	wg.Wait()
	if first != nil {
		return 0, first
	}
	return time.Since(began), ctx.Err()
}

// scaleGC runs `extauthz gc` (one pass, as an operator or a replica runs
// it) while load runs again and again, and records the pass and the load
// runs that overlapped it.
func (h *harness) scaleGC(ctx context.Context, res *scaleResult, load func(context.Context) (loadFigures, error)) error {
	h.logf("scale: garbage collection of %d expired sessions under the hot load", res.Expired)
	type outcome struct {
		out  string
		took time.Duration
		err  error
	}
	done := make(chan outcome, 1)
	go func() {
		cmd := exec.CommandContext(ctx, h.extauthz, "gc", "--database-url", h.db.dsn)
		cmd.Env = serverEnv()
		began := time.Now()
		out, err := cmd.CombinedOutput()
		done <- outcome{string(out), time.Since(began), err}
	}()
	var gc outcome
	for ran := false; !ran; {
		lf, err := load(ctx)
		if err != nil {
			<-done
			return err
		}
		res.GCLoad = append(res.GCLoad, lf)
		res.GCWorstP99 = max(res.GCWorstP99, lf.P99ms)
		select {
		case gc = <-done:
			ran = true
		default:
		}
	}
	if gc.err != nil {
		return fmt.Errorf("extauthz gc: %w: %s", gc.err, gc.out)
	}
	m := regexp.MustCompile(`deleted (\d+) `).FindStringSubmatch(gc.out)
	if m == nil {
		return fmt.Errorf("extauthz gc said %q", strings.TrimSpace(gc.out))
	}
	res.GCDeleted, _ = strconv.Atoi(m[1])
	res.GCSeconds = round3(gc.took.Seconds())
	var left, total int
	if err := h.db.queryRow(ctx, "SELECT count(*) FILTER (WHERE session_expires_at <= now()), count(*) FROM upstream_tokens", &left, &total); err != nil {
		return err
	}
	res.GCLeft, res.GCTotalRows = left, total
	h.logf("scale: gc deleted %d rows in %.1f s; %d expired rows left; worst p99 of the %d load runs meanwhile %.2f ms",
		res.GCDeleted, res.GCSeconds, left, len(res.GCLoad), res.GCWorstP99)
	return nil
}

// scaleAhead rewrites the active sessions' tokens to expire spread evenly
// over o.scale.spread, starting after the refresh-ahead margin, in session
// order, and runs load (the first -requests sessions, which hold the tokens
// that come due first) again and again for o.scale.observe while refresh
// ahead redeems the tokens that come due. It then reads the token
// endpoint's counts and the server's metrics.
func (h *harness) scaleAhead(ctx context.Context, res *scaleResult, p *process, metricsAddr string, load func(context.Context) (loadFigures, error)) error {
	so := h.o.scale
	a := &res.Ahead
	a.SpreadSeconds, a.Concurrency = so.spread.Seconds(), aheadConcurrency
	a.TokenLatencyMs = float64(h.o.latency.Microseconds()) / 1000
	a.ModelPerSec = round3(float64(so.active) / so.spread.Seconds())
	if h.o.latency > 0 {
		a.CapacityModelSec = math.Round(float64(aheadConcurrency) / h.o.latency.Seconds())
	}
	h.epoch++
	epoch := h.epoch
	h.idp.reset(epoch)
	base := time.Now().Add(aheadMargin + 15*time.Second)
	h.logf("scale: refresh ahead: %d tokens expiring over %v from %s, load for %v", so.active, so.spread, base.UTC().Format(time.TimeOnly), so.observe)
	if _, err := h.writeBatches(ctx, so.active, func(i int) store.Row {
		r := benchRow(i, epoch, base.Add(time.Duration(i)*so.spread/time.Duration(so.active)))
		r.SessionExpiresAt = base.Add(30 * 24 * time.Hour)
		return r
	}); err != nil {
		return err
	}
	began := time.Now()
	type sample struct {
		at    time.Time
		total int
	}
	var samples []sample
	total := func() int {
		red, _, _ := h.idp.counts()
		n := 0
		for _, v := range red {
			n += v
		}
		return n
	}
	for time.Since(began) < so.observe {
		lf, err := load(ctx)
		if err != nil {
			return err
		}
		a.Load = lf
		samples = append(samples, sample{time.Now(), total()})
	}
	end := samples[len(samples)-1]
	a.ObservedSeconds = round3(end.at.Sub(began).Seconds())
	a.Redeemed = end.total
	// The rate over about the last 30 s: refresh ahead's steady state, once
	// the first tokens have come within the margin.
	from := samples[0]
	for _, s := range samples {
		if end.at.Sub(s.at) >= 30*time.Second {
			from = s
		}
	}
	if d := end.at.Sub(from.at).Seconds(); d > 0 {
		a.TailPerSec = round3(float64(end.total-from.total) / d)
	}
	red, refused, _ := h.idp.counts()
	for _, v := range red {
		a.MaxPerSession = max(a.MaxPerSession, v)
	}
	a.Refused = refused
	m, err := scrape(ctx, metricsAddr)
	if err != nil {
		return err
	}
	a.ByTrigger[0] = metricSum(m, telemetry.MetricRefreshTriggers, `trigger="check"`)
	a.ByTrigger[1] = metricSum(m, telemetry.MetricRefreshTriggers, `trigger="ahead"`)
	a.CheckWaits = metricSum(m, telemetry.MetricCheckWaits, "")
	h.logf("scale: refresh ahead: %d redemptions in %.0f s (%.1f/s over the last 30 s; model %.1f/s), refreshes check %.0f ahead %.0f, Checks that waited %.0f",
		a.Redeemed, a.ObservedSeconds, a.TailPerSec, a.ModelPerSec, a.ByTrigger[0], a.ByTrigger[1], a.CheckWaits)
	return nil
}

// The refresh-ahead settings of the scale run: the defaults (the margin is
// the default 30 s skew plus config.DefaultAheadLead).
const (
	aheadConcurrency = config.DefaultAheadConcurrency
	aheadMargin      = 30*time.Second + config.DefaultAheadLead
)

// scrape returns the text of the metrics endpoint at addr.
func scrape(ctx context.Context, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("metrics: HTTP %d", resp.StatusCode)
	}
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// metricSum sums the samples of the metric name (Prometheus text format)
// whose labels contain label ("" for all).
func metricSum(text, name, label string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') || !strings.Contains(rest, label) {
			continue
		}
		f := strings.Fields(rest)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

func mib(b int64) float64 { return math.Round(float64(b)/(1<<20)*10) / 10 }

// exec runs one statement.
func (db *database) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, db.dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// queryRow runs one query and scans its row into dest.
func (db *database) queryRow(ctx context.Context, sql string, dest ...any) error {
	conn, err := pgx.Connect(ctx, db.dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.QueryRow(ctx, sql).Scan(dest...)
}

// sizes reads the sizes of the database and of upstream_tokens.
func (db *database) sizes(ctx context.Context) (pgSizes, error) {
	conn, err := pgx.Connect(ctx, db.dsn)
	if err != nil {
		return pgSizes{}, err
	}
	defer conn.Close(ctx)
	var s pgSizes
	err = conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM upstream_tokens),
		pg_database_size(current_database()),
		pg_relation_size('upstream_tokens'),
		coalesce(pg_total_relation_size(NULLIF(reltoastrelid, 0)), 0),
		pg_indexes_size('upstream_tokens'),
		pg_total_relation_size('upstream_tokens')
	FROM pg_class WHERE oid = 'upstream_tokens'::regclass`).Scan(&s.Rows, &s.Database, &s.Table, &s.Toast, &s.Indexes, &s.TotalTable)
	if err != nil {
		return pgSizes{}, err
	}
	rows, err := conn.Query(ctx, `SELECT indexrelid::regclass::text, pg_relation_size(indexrelid)
		FROM pg_index WHERE indrelid = 'upstream_tokens'::regclass`)
	if err != nil {
		return pgSizes{}, err
	}
	s.PerIndex = map[string]int64{}
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			return pgSizes{}, err
		}
		s.PerIndex[name] = n
	}
	return s, rows.Err()
}

// check validates the scale flags.
func (so scaleOptions) check() error {
	switch {
	case so.sessions < 1 || so.active < 1 || so.expired < 0 || so.batch < 1 || so.writers < 1:
		return errors.New("-scale-sessions, -scale-active, -scale-batch and -scale-writers must be positive, -scale-expired not negative")
	case so.active+so.expired > so.sessions:
		return fmt.Errorf("-scale-active (%d) plus -scale-expired (%d) exceed -scale-sessions (%d)", so.active, so.expired, so.sessions)
	case so.spread <= 0 || so.observe <= 0:
		return errors.New("-scale-spread and -scale-observe must be positive")
	}
	return nil
}

// printScale prints the scale scenario's table.
func printScale(w io.Writer, s *scaleResult) {
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	fmt.Fprintf(w, "\nscale: %d sessions in PostgreSQL, %d active, %d expired\n\n", s.Sessions, s.Active, s.Expired)
	fmt.Fprintln(w, "| measure | value |")
	fmt.Fprintln(w, "|---|---:|")
	fmt.Fprintf(w, "| write (store/encrypted over postgres PutBatch, %d rows per batch, %d writers) | %.0f rows/s (%.1f s) |\n", s.WriteBatch, s.WriteWriters, s.WriteRowsPerSec, s.WriteSeconds)
	z := s.Sizes
	fmt.Fprintf(w, "| PostgreSQL: database / table heap / TOAST / indexes (after VACUUM ANALYZE) | %.0f / %.0f / %.1f / %.0f MiB |\n", mibf(z.Database), mibf(z.Table), mibf(z.Toast), mibf(z.Indexes))
	for name, n := range z.PerIndex {
		fmt.Fprintf(w, "| index %s | %.0f MiB |\n", name, mibf(n))
	}
	if z.Rows > 0 {
		fmt.Fprintf(w, "| bytes per row (table, TOAST and indexes) | %.0f |\n", float64(z.TotalTable)/float64(z.Rows))
	}
	missFloor, hitFloor := s.floors()
	fmt.Fprintf(w, "| floor (no-op): req/s, p50 / p99 ms | %.0f, %.2f / %.2f |\n", s.Floor.RPS, s.Floor.P50ms, s.Floor.P99ms)
	if s.FloorMid.RPS > 0 {
		fmt.Fprintf(w, "| floor between the misses and the hits / after the hits: req/s, p99 ms | %.0f, %.2f / %.0f, %.2f |\n", s.FloorMid.RPS, s.FloorMid.P99ms, s.FloorEnd.RPS, s.FloorEnd.P99ms)
	}
	fmt.Fprintf(w, "| miss (JWT verify + indexed read + decrypt), %d sessions: req/s, p50 / p99 ms | %.0f, %.2f / %.2f (%.2f x floor) |\n", s.Miss.Requests, s.Miss.RPS, s.Miss.P50ms, s.Miss.P99ms, ratio(s.Miss.RPS, missFloor))
	fmt.Fprintf(w, "| miss: server / PostgreSQL CPU s per 1000 Checks | %.3f / %.3f |\n", s.MissCPUPer1k, s.MissPGCPUPer1k)
	fmt.Fprintf(w, "| hit, %d cached sessions: req/s, p50 / p99 ms | %.0f, %.2f / %.2f (%.2f x floor) |\n", s.Active, s.Hot.RPS, s.Hot.P50ms, s.Hot.P99ms, ratio(s.Hot.RPS, hitFloor))
	fmt.Fprintf(w, "| hit: server CPU s per 1000 Checks | %.3f |\n", s.HotCPUPer1k)
	fmt.Fprintf(w, "| server RSS: at start / %d cached / peak | %.1f / %.1f / %.1f MiB |\n", s.Active, s.RSSStartMiB, s.RSSCachedMiB, s.PeakRSSMiB)
	fmt.Fprintf(w, "| server RSS per cached session | %.2f KiB |\n", s.RSSPerSessionKiB)
	fmt.Fprintf(w, "| gc (extauthz gc, batches of 1000) under the hit load | %d rows in %.1f s (%.0f rows/s), %d expired left |\n", s.GCDeleted, s.GCSeconds, ratio(float64(s.GCDeleted), s.GCSeconds), s.GCLeft)
	fmt.Fprintf(w, "| hit load during gc: worst p99 of %d runs | %.2f ms (%.2f x the hit p99) |\n", len(s.GCLoad), s.GCWorstP99, ratio(s.GCWorstP99, s.Hot.P99ms))
	a := s.Ahead
	fmt.Fprintf(w, "| refresh ahead: %d tokens expiring over %.0f s (real time), observed %.0f s | %d redeemed, %.1f/s over the last 30 s (model %.1f/s; capacity model %.0f/s per replica and provider) |\n",
		s.Active, a.SpreadSeconds, a.ObservedSeconds, a.Redeemed, a.TailPerSec, a.ModelPerSec, a.CapacityModelSec)
	fmt.Fprintf(w, "| refresh ahead: refreshes by trigger check / ahead; Checks that waited; max redemptions per session | %.0f / %.0f; %.0f; %d |\n", a.ByTrigger[0], a.ByTrigger[1], a.CheckWaits, a.MaxPerSession)
	fmt.Fprintf(w, "| hit load meanwhile (last run): req/s, p99 ms | %.0f, %.2f |\n", a.Load.RPS, a.Load.P99ms)
}

func mibf(b int64) float64 { return float64(b) / (1 << 20) }

// floors returns the floor throughputs the misses and the hits are compared
// with: the mean of the floors measured right before and right after each,
// or, in a file without them, the one floor measured first.
func (s *scaleResult) floors() (miss, hit float64) {
	if s.FloorMid.RPS == 0 || s.FloorEnd.RPS == 0 {
		return s.Floor.RPS, s.Floor.RPS
	}
	return (s.Floor.RPS + s.FloorMid.RPS) / 2, (s.FloorMid.RPS + s.FloorEnd.RPS) / 2
}

// scaleTargets are the scale scenario's targets.
func scaleTargets(s *scaleResult) []target {
	missFloor, hitFloor := s.floors()
	hot, miss := s.Hot.RPS/hitFloor, s.Miss.RPS/missFloor
	rss := target{Name: "scale cached RSS", Want: fmt.Sprintf("<= %d MiB with %d cached", targetScaleRSSMiB, targetScaleCached),
		Got: fmt.Sprintf("%.1f MiB peak with %d", s.PeakRSSMiB, s.Active), Met: s.PeakRSSMiB <= targetScaleRSSMiB && s.Active >= targetScaleCached}
	if s.Active < targetScaleCached {
		rss.Remark = "fewer active sessions than the target assumes: not conclusive"
	}
	errs := s.Floor.Errors + s.FloorMid.Errors + s.FloorEnd.Errors + s.Miss.Errors + s.Hot.Errors + s.Ahead.Load.Errors
	for _, lf := range s.GCLoad {
		errs += lf.Errors
	}
	return []target{
		{Name: "scale errors", Want: "0 failed requests", Got: fmt.Sprint(errs), Met: errs == 0},
		{Name: "scale hit", Want: fmt.Sprintf(">= %.1f x floor", targetScaleHotRatio), Got: fmt.Sprintf("%.2f x", hot), Met: hot >= targetScaleHotRatio},
		{Name: "scale miss", Want: fmt.Sprintf(">= %.1f x floor", targetScaleMissRatio), Got: fmt.Sprintf("%.2f x", miss), Met: miss >= targetScaleMissRatio},
		rss,
		{Name: "scale check waits", Want: "0 Checks waiting on a provider", Got: fmt.Sprintf("%.0f", s.Ahead.CheckWaits), Met: s.Ahead.CheckWaits == 0},
		{Name: "scale gc", Want: "every expired row deleted", Got: fmt.Sprintf("%d of %d, %d left", s.GCDeleted, s.Expired, s.GCLeft), Met: s.GCLeft == 0 && s.GCDeleted >= s.Expired},
		{Name: "scale redemptions", Want: "at most 1 per session", Got: fmt.Sprintf("max %d, %d refused", s.Ahead.MaxPerSession, s.Ahead.Refused), Met: s.Ahead.MaxPerSession <= 1 && s.Ahead.Refused == 0},
	}
}
