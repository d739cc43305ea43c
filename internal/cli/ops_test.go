package cli

// Operability: metrics, health and readiness, graceful shutdown, and
// serve --check-config.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/jwtauth/jwttest"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/encrypted"
	"github.com/extauthz/extauthz/store/postgres"
	"github.com/extauthz/extauthz/tokencrypt"
)

// opsConfig is the configuration of a server in these tests. Providers gh
// and gitlab write authorization, google x-google-token; all share one token
// endpoint.
type opsConfig struct {
	dsn, jwksURL, tokenURL string
	grpc, metrics          string // default 127.0.0.1:0 for both
	key                    string // base64 encryption key "k1"
	drainDelay, timeout    string // shutdown.*; default 0s and 15s
	refreshTimeout         string // default 5s
	aheadMargin            string // refresh.ahead.margin; default 2m
}

func (c opsConfig) text() string {
	def := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	return fmt.Sprintf(`
listen:
  grpc: %s
  metrics: %s
database:
  url: %s
jwt:
  issuer: %s
  audiences: [%s]
  jwks_url: %s
providers:
  gh: {token_url: %q, client_id: gh-client, client_secret: gh-secret, auth_style: params}
  gitlab: {token_url: %q, client_id: gl-client, auth_style: params}
  google: {token_url: %q, client_id: g-client, auth_style: header, header: x-google-token}
default_providers: [gh]
refresh:
  timeout: %s
  backoff_min: 5s
  ahead:
    margin: %s
shutdown:
  drain_delay: %s
  timeout: %s
log:
  level: debug
encryption:
  keys:
    - id: k1
      key: %s
`, def(c.grpc, "127.0.0.1:0"), def(c.metrics, "127.0.0.1:0"), c.dsn, e2eIssuer, e2eAudience, c.jwksURL,
		c.tokenURL, c.tokenURL, c.tokenURL, def(c.refreshTimeout, "5s"), def(c.aheadMargin, "2m"), def(c.drainDelay, "0s"), def(c.timeout, "15s"), c.key)
}

// opsServer is an in-process server with its metrics listener.
type opsServer struct {
	*e2e
	metricsURL string
}

// opsEnv is what several servers of one test share: a JWKS, a token
// endpoint, a database and an encryption key.
type opsEnv struct {
	signer *jwttest.Signer
	jwks   *httptest.Server
	tokens *tokenEndpoint
	idp    *httptest.Server
	hold   *holder
	dsn    string
	key    string
	store  *encrypted.Store
	raw    *postgres.Store
}

// holder makes the token endpoint hold requests for refresh tokens that
// start with "hold-" until released.
type holder struct {
	arrived chan string
	release chan struct{}
	once    sync.Once
}

func (h *holder) Release() { h.once.Do(func() { close(h.release) }) }

func newOpsEnv(t *testing.T, dsn string) *opsEnv {
	t.Helper()
	o := &opsEnv{signer: jwttest.NewSigner(t), tokens: &tokenEndpoint{calls: map[string]int{}}, dsn: dsn, key: tokencrypt.GenerateKey(),
		hold: &holder{arrived: make(chan string, 16), release: make(chan struct{})}}
	o.jwks = o.signer.Server(t)
	o.idp = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rt := r.PostFormValue("refresh_token"); strings.HasPrefix(rt, "hold-") {
			o.hold.arrived <- rt
			<-o.hold.release
		}
		o.tokens.ServeHTTP(w, r)
	}))
	t.Cleanup(o.idp.Close)
	t.Cleanup(o.hold.Release)
	cfg, err := config.Parse([]byte(o.config().text()), nil)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := postgres.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	o.raw, o.store = pg, encrypted.New(pg, cfg.Keyring())
	return o
}

func (o *opsEnv) config() opsConfig {
	return opsConfig{dsn: o.dsn, jwksURL: o.jwks.URL + "/jwks", tokenURL: o.idp.URL + "/token", key: o.key}
}

// start runs a server in this process until the test ends.
func (o *opsEnv) start(t *testing.T, c opsConfig) *opsServer {
	t.Helper()
	cfg, err := config.Parse([]byte(c.text()), nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	grpcc, metricsc := make(chan net.Addr, 1), make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, cfg, Env{Stdout: logs, Stderr: logs, Getenv: func(string) string { return "" }},
			serveHooks{grpc: func(a net.Addr) { grpcc <- a }, metrics: func(a net.Addr) { metricsc <- a }})
	}()
	var addr net.Addr
	select {
	case addr = <-grpcc:
	case err := <-done:
		t.Fatalf("serve: %v\n%s", err, logs.String())
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve returned %v", err)
		}
	})
	e := &e2e{signer: o.signer, tokens: o.tokens, logs: logs, store: o.store, raw: o.raw, dsn: o.dsn}
	e.client, e.conn = dialCheck(t, addr.String())
	return &opsServer{e2e: e, metricsURL: "http://" + (<-metricsc).String()}
}

// scrape reads the server's /metrics: series (name{labels}) to value.
func (s *opsServer) scrape(t *testing.T) metricsSnapshot {
	t.Helper()
	resp, err := http.Get(s.metricsURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	m := metricsSnapshot{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// metricsSnapshot maps a series, as exposed (labels sorted by name), to its
// value.
type metricsSnapshot map[string]float64

// series formats name with labels given as name, value pairs.
func series(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	type kv struct{ k, v string }
	var kvs []kv
	for i := 0; i+1 < len(labels); i += 2 {
		kvs = append(kvs, kv{labels[i], labels[i+1]})
	}
	slices.SortFunc(kvs, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	parts := make([]string, len(kvs))
	for i, p := range kvs {
		parts[i] = fmt.Sprintf("%s=%q", p.k, p.v)
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

// labelValues returns every label value in the snapshot.
func (m metricsSnapshot) labelValues() []string {
	var out []string
	for s := range m {
		_, labels, ok := strings.Cut(s, "{")
		if !ok {
			continue
		}
		for _, p := range strings.Split(strings.TrimSuffix(labels, "}"), ",") {
			if _, v, ok := strings.Cut(p, "="); ok {
				out = append(out, strings.Trim(v, `"`))
			}
		}
	}
	return out
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func bearer(jwt string) map[string]string { return map[string]string{"authorization": "Bearer " + jwt} }

func TestMetricsCountEveryOutcome(t *testing.T) {
	o := newOpsEnv(t, pgtest.New(t))
	a := o.start(t, o.config())
	fresh, expired := time.Now().Add(time.Hour), time.Now().Add(-time.Hour)
	rows := []store.Row{
		{SessionID: "sess-m-ok", Provider: "gh", Tokens: store.Tokens{AccessToken: "tok-m-fresh", ExpiresAt: fresh}},
		{SessionID: "sess-m-refresh", Provider: "gh", Tokens: store.Tokens{AccessToken: "tok-m-stale", RefreshToken: "rt-m-good", ExpiresAt: expired}},
		{SessionID: "sess-m-norefresh", Provider: "gh", Tokens: store.Tokens{AccessToken: "tok-m-old", ExpiresAt: expired}},
		{SessionID: "sess-m-refused", Provider: "gh", Tokens: store.Tokens{AccessToken: "tok-m-old", RefreshToken: "refused-m", ExpiresAt: expired}},
		{SessionID: "sess-m-busy", Provider: "gitlab", Tokens: store.Tokens{AccessToken: "tok-m-old", RefreshToken: "busy-m", ExpiresAt: expired}},
		{SessionID: "sess-m-misconf", Provider: "google", Tokens: store.Tokens{AccessToken: "tok-m-old", RefreshToken: "misconfigured-m", ExpiresAt: expired}},
	}
	for _, r := range rows {
		a.put(t, r)
	}
	// A row whose tokens cannot be decrypted: the store cannot serve it.
	if err := o.raw.Put(context.Background(), store.Row{SessionID: "sess-m-unreadable", Provider: "gh", Subject: "alice", ClientID: "app",
		Tokens: store.Tokens{AccessToken: "v1.k1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ExpiresAt: fresh}}); err != nil {
		t.Fatal(err)
	}

	before := a.scrape(t)
	checks := []struct {
		name, reason, result string
		headers              map[string]string
		providers            string
		status               int32 // 0 = allowed
		retry                bool
	}{
		{"fresh token", "ok", "ok", bearer(a.jwt(t, "sess-m-ok", nil)), "", 0, false},
		{"refreshed token", "ok", "ok", bearer(a.jwt(t, "sess-m-refresh", nil)), "", 0, false},
		{"no token", "no_token", "denied", map[string]string{}, "", 401, false},
		{"invalid token", "invalid_token", "denied", bearer("not.a.jwt"), "", 401, false},
		{"unknown session", "session_not_found", "denied", bearer(a.jwt(t, "sess-m-unknown", nil)), "", 401, false},
		{"binding mismatch", "binding_mismatch", "denied", bearer(a.jwt(t, "sess-m-ok", map[string]any{"sub": "mallory"})), "", 401, false},
		{"no refresh token", "no_refresh_token", "denied", bearer(a.jwt(t, "sess-m-norefresh", nil)), "", 401, false},
		{"refresh refused", "refresh_failed", "denied", bearer(a.jwt(t, "sess-m-refused", nil)), "", 401, false},
		{"provider 503", "provider_unavailable", "error", bearer(a.jwt(t, "sess-m-busy", nil)), "gitlab", 503, true},
		{"provider backing off", "provider_unavailable", "error", bearer(a.jwt(t, "sess-m-busy", nil)), "gitlab", 503, true},
		{"provider rejects our client", "provider_misconfigured", "error", bearer(a.jwt(t, "sess-m-misconf", nil)), "google", 503, true},
		{"row cannot be decrypted", "store_unavailable", "error", bearer(a.jwt(t, "sess-m-unreadable", nil)), "", 503, true},
	}
	want := map[string]float64{}
	for _, c := range checks {
		resp := a.check(t, c.headers, c.providers)
		switch d := resp.GetDeniedResponse(); {
		case c.status == 0 && d != nil:
			t.Errorf("%s: denied %d, want allowed", c.name, d.GetStatus().GetCode())
		case c.status != 0 && int32(d.GetStatus().GetCode()) != c.status:
			t.Errorf("%s: status %d, want %d", c.name, d.GetStatus().GetCode(), c.status)
		case c.retry && respHeaders(resp)["retry-after"] == "":
			t.Errorf("%s: no Retry-After", c.name)
		}
		want[series("extauthz_check_decisions_total", "result", c.result, "reason", c.reason, "transport", "grpc")]++
	}
	want[series("extauthz_check_duration_seconds_count", "transport", "grpc")] = float64(len(checks))
	for _, r := range []struct{ provider, outcome string }{
		{"gh", "ok"}, {"gh", "refused"}, {"gitlab", "unavailable"}, {"gitlab", "backing_off"}, {"google", "misconfigured"},
	} {
		want[series("extauthz_refresh_total", "provider", r.provider, "outcome", r.outcome)]++
		want[series("extauthz_refresh_duration_seconds_count", "provider", r.provider, "outcome", r.outcome)]++
	}
	after := a.scrape(t)
	assertDeltas(t, before, after, want, "extauthz_check_decisions_total", "extauthz_refresh_total", "extauthz_refresh_skipped_total")
	if after[series("extauthz_store_up")] != 1 {
		t.Errorf("extauthz_store_up = %v, want 1", after[series("extauthz_store_up")])
	}
	for _, op := range []string{"get", "claim_refresh", "complete_refresh", "release_refresh"} {
		k := series("extauthz_store_operation_duration_seconds_count", "op", op)
		if after[k] <= before[k] {
			t.Errorf("%s did not move (%v -> %v)", k, before[k], after[k])
		}
		if k := series("extauthz_store_errors_total", "op", op); after[k] != 0 {
			t.Errorf("%s = %v, want 0", k, after[k])
		}
	}
	if k := series("extauthz_build_info", "version", versionString(), "goversion", runtime.Version()); after[k] != 1 {
		t.Errorf("%s = %v, want 1", k, after[k])
	}

	// Two replicas, one expired row: one redeems, the other waits for its
	// lease and then serves the stored token without redeeming.
	b := o.start(t, o.config())
	a.put(t, store.Row{SessionID: "sess-m-shared", Provider: "gh", Tokens: store.Tokens{AccessToken: "tok-m-stale", RefreshToken: "hold-m", ExpiresAt: expired}})
	beforeA, beforeB := a.scrape(t), b.scrape(t)
	jwt := a.jwt(t, "sess-m-shared", nil)
	results := make(chan string, 2)
	go func() { results <- respHeaders(a.check(t, bearer(jwt), ""))["authorization"] }()
	select {
	case <-o.hold.arrived:
	case <-time.After(20 * time.Second):
		t.Fatal("replica a did not call the token endpoint")
	}
	go func() { results <- respHeaders(b.check(t, bearer(jwt), ""))["authorization"] }()
	// b has read the expired row and waits on a's lease: let a finish once b
	// has polled the lease at least once.
	testutil.Eventually(t, 20*time.Second, "replica b waiting on the lease", func() bool { return b.leasePolled(t, beforeB) })
	o.hold.Release()
	for range 2 {
		if got := <-results; got != "Bearer new-access-hold-m-1" {
			t.Errorf("replica Check got %q", got)
		}
	}
	if n := o.tokens.count("hold-m"); n != 1 {
		t.Errorf("the shared refresh token was redeemed %d times, want 1", n)
	}
	afterA, afterB := a.scrape(t), b.scrape(t)
	sum := func(before, after metricsSnapshot, k string) float64 { return after[k] - before[k] }
	both := func(k string) float64 { return sum(beforeA, afterA, k) + sum(beforeB, afterB, k) }
	for k, w := range map[string]float64{
		series("extauthz_refresh_total", "provider", "gh", "outcome", "ok"):                           1,
		series("extauthz_refresh_total", "provider", "gh", "outcome", "skipped"):                      1,
		series("extauthz_refresh_skipped_total"):                                                      1,
		series("extauthz_check_decisions_total", "result", "ok", "reason", "ok", "transport", "grpc"): 2,
	} {
		if got := both(k); got != w {
			t.Errorf("%s moved by %v across both replicas, want %v", k, got, w)
		}
	}
	if got := sum(beforeB, afterB, series("extauthz_refresh_skipped_total")); got != 1 {
		t.Errorf("replica b: extauthz_refresh_skipped_total moved by %v, want 1", got)
	}

	// No label value carries a token, a subject, a client ID or a session ID.
	secrets := []string{"sess-m-", "tok-m-", "rt-m-", "refused-m", "busy-m", "misconfigured-m", "hold-m", "alice", "mallory", "app", "new-access", "gh-secret"}
	for _, snap := range []metricsSnapshot{afterA, afterB} {
		for _, v := range snap.labelValues() {
			for _, s := range secrets {
				if strings.Contains(v, s) {
					t.Errorf("label value %q contains %q", v, s)
				}
			}
		}
	}
	for _, k := range []string{jwt, "v1.k1.", "v2.k1."} {
		for _, snap := range []metricsSnapshot{afterA, afterB} {
			for s := range snap {
				if strings.Contains(s, k) {
					t.Errorf("series %q contains a token", s)
				}
			}
		}
	}
}

// leasePolled reports whether the server has claimed a refresh lease since
// before (its claim_refresh count moved): it has read the expired row and
// found the lease held.
func (s *opsServer) leasePolled(t *testing.T, before metricsSnapshot) bool {
	k := series("extauthz_store_operation_duration_seconds_count", "op", "claim_refresh")
	return s.scrape(t)[k] > before[k]
}

// checkRequest is a Check of GET /api with headers on the default route.
func checkRequest(headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/api", Host: "api.test", Headers: headers,
		}},
	}}
}

// assertDeltas checks that every series in want moved by exactly its value
// between before and after, and that no other series of the named counters
// moved.
func assertDeltas(t *testing.T, before, after metricsSnapshot, want map[string]float64, counters ...string) {
	t.Helper()
	for k, w := range want {
		if _, ok := after[k]; !ok {
			t.Errorf("series %s missing", k)
			continue
		}
		if got := after[k] - before[k]; got != w {
			t.Errorf("%s moved by %v, want %v", k, got, w)
		}
	}
	for k, v := range after {
		name, _, _ := strings.Cut(k, "{")
		if _, expected := want[k]; expected || !slices.Contains(counters, name) {
			continue
		}
		if v != before[k] {
			t.Errorf("%s moved by %v, want no change", k, v-before[k])
		}
	}
}

func TestStoreOutageKeepsReadinessAndRecovers(t *testing.T) {
	cluster := pgtest.Stoppable(t)
	o := newOpsEnv(t, cluster.DSN())
	s := o.start(t, o.config())
	s.put(t, store.Row{SessionID: "sess-o", Provider: "gh", Tokens: store.Tokens{AccessToken: "tok-o", ExpiresAt: time.Now().Add(time.Hour)}})
	jwt := s.jwt(t, "sess-o", nil)
	if h := respHeaders(s.check(t, bearer(jwt), "")); h["authorization"] != "Bearer tok-o" {
		t.Fatalf("before the outage: %v", h)
	}
	storeUp := func() float64 { return s.scrape(t)[series("extauthz_store_up")] }
	testutil.Eventually(t, 10*time.Second, "store_up 1 before the outage", func() bool { return storeUp() == 1 })
	before := s.scrape(t)

	// A session not read before: a cached one would be answered from
	// memory during the outage (cache.stale_if_error).
	s.put(t, store.Row{SessionID: "sess-o2", Provider: "gh", Tokens: store.Tokens{AccessToken: "tok-o2", ExpiresAt: time.Now().Add(time.Hour)}})
	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	resp := s.check(t, bearer(s.jwt(t, "sess-o2", nil)), "")
	d := resp.GetDeniedResponse()
	if d.GetStatus().GetCode() != 503 || codes.Code(resp.GetStatus().GetCode()) != codes.Unavailable || respHeaders(resp)["retry-after"] == "" {
		t.Fatalf("Check during the outage: %v, want 503 with Retry-After", resp)
	}
	testutil.Eventually(t, 20*time.Second, "store_up 0 during the outage", func() bool { return storeUp() == 0 })
	// Readiness and health do not follow the store.
	if st := httpStatus(t, s.metricsURL+"/readyz"); st != 200 {
		t.Errorf("/readyz during the outage = %d, want 200", st)
	}
	if st := httpStatus(t, s.metricsURL+"/healthz"); st != 200 {
		t.Errorf("/healthz during the outage = %d, want 200", st)
	}
	hc, err := healthpb.NewHealthClient(s.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health during the outage = %v, %v; want SERVING", hc, err)
	}
	during := s.scrape(t)
	if k := series("extauthz_check_decisions_total", "result", "error", "reason", "store_unavailable", "transport", "grpc"); during[k]-before[k] != 1 {
		t.Errorf("%s moved by %v, want 1", k, during[k]-before[k])
	}
	if k := series("extauthz_store_errors_total", "op", "get"); during[k] <= before[k] {
		t.Errorf("%s did not move", k)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cluster.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "Checks succeed again", func() bool {
		return respHeaders(s.check(t, bearer(jwt), ""))["authorization"] == "Bearer tok-o"
	})
	testutil.Eventually(t, 20*time.Second, "store_up 1 after the outage", func() bool { return storeUp() == 1 })
}

// buildBinary builds cmd/extauthz into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "extauthz")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/extauthz/extauthz/cmd/extauthz")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeTCPAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestSIGTERMDrainsTheRealBinary(t *testing.T) {
	o := newOpsEnv(t, pgtest.New(t))
	bin := buildBinary(t)
	const drain, timeout = 2 * time.Second, 10 * time.Second
	c := o.config()
	c.grpc, c.metrics = freeTCPAddr(t), freeTCPAddr(t)
	c.drainDelay, c.timeout, c.refreshTimeout = drain.String(), timeout.String(), "8s"
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(c.text()), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cmd := exec.Command(bin, "serve", "--config", path)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	e := &e2e{signer: o.signer, store: o.store, logs: logs}
	e.client, e.conn = dialCheck(t, c.grpc)
	health := healthpb.NewHealthClient(e.conn)
	status := func() healthpb.HealthCheckResponse_ServingStatus {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
		if err != nil {
			return -1
		}
		return resp.GetStatus()
	}
	testutil.Eventually(t, 30*time.Second, "the binary serving", func() bool { return status() == healthpb.HealthCheckResponse_SERVING })
	if st := httpStatus(t, "http://"+c.metrics+"/readyz"); st != 200 {
		t.Fatalf("/readyz = %d before SIGTERM", st)
	}

	// A Check whose refresh the token endpoint holds.
	e.put(t, store.Row{SessionID: "sess-term", Provider: "gh", Tokens: store.Tokens{AccessToken: "tok-stale", RefreshToken: "hold-term", ExpiresAt: time.Now().Add(-time.Hour)}})
	result := make(chan string, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		resp, err := e.client.Check(ctx, checkRequest(bearer(e.jwt(t, "sess-term", nil))))
		if err != nil {
			result <- "error: " + err.Error()
			return
		}
		result <- respHeaders(resp)["authorization"]
	}()
	select {
	case <-o.hold.arrived:
	case <-time.After(20 * time.Second):
		t.Fatalf("the refresh did not reach the token endpoint\n%s", logs.String())
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	testutil.Eventually(t, 10*time.Second, "health NOT_SERVING after SIGTERM", func() bool {
		return status() == healthpb.HealthCheckResponse_NOT_SERVING
	})
	if st := httpStatus(t, "http://"+c.metrics+"/readyz"); st != 503 {
		t.Errorf("/readyz while draining = %d, want 503", st)
	}
	select {
	case r := <-result:
		t.Fatalf("the Check returned while its refresh was held: %q", r)
	default:
	}
	// Let the refresh finish only once the server has stopped accepting and
	// waits for the Checks in flight.
	testutil.Eventually(t, drain+10*time.Second, "the server waiting for Checks in flight", func() bool {
		return strings.Contains(logs.String(), "waiting for Checks in flight")
	})
	o.hold.Release()
	select {
	case r := <-result:
		if r != "Bearer new-access-hold-term-1" {
			t.Errorf("the Check in flight got %q, want the refreshed token\n%s", r, logs.String())
		}
	case <-time.After(timeout):
		t.Fatal("the Check in flight did not complete")
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("exit: %v, want 0\n%s", waitErr, logs.String())
		}
	case <-time.After(drain + timeout + 10*time.Second - time.Since(signalled)):
		t.Fatalf("the process did not exit within drain_delay + shutdown.timeout\n%s", logs.String())
	}
	row, err := o.store.Get(context.Background(), "sess-term", "gh")
	if err != nil || row.RefreshToken != "new-refresh-hold-term-1" {
		t.Errorf("the refresh's result was not stored before exit: %q, %v", row.RefreshToken, err)
	}
}

func TestServeCheckConfig(t *testing.T) {
	o := newOpsEnv(t, pgtest.New(t))
	// listen.grpc is taken: --check-config must not try to listen.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	closed := freeTCPAddr(t)
	good := o.config()
	good.grpc, good.metrics = taken.Addr().String(), taken.Addr().String()
	noDB := good
	noDB.dsn = "postgres://postgres@" + closed + "/postgres?sslmode=disable&connect_timeout=2"
	noJWKS := good
	noJWKS.jwksURL = "http://" + closed + "/jwks"
	empty := good
	empty.dsn = pgtest.NewEmpty(t)
	plainJWKS := good
	plainJWKS.jwksURL = "http://jwks.example.test/jwks"

	tests := []struct {
		name   string
		text   string
		env    map[string]string
		code   int
		output string
	}{
		{"all reachable", good.text(), nil, ExitOK, "configuration OK"},
		{"tracing settings serve would refuse", good.text(), map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, ExitUsage, "OTEL_TRACES_EXPORTER"},
		{"database unreachable", noDB.text(), nil, ExitFailure, "database:"},
		{"direct URL unreachable", strings.Replace(good.text(), "database:\n", "database:\n  direct_url: postgres://postgres@"+closed+"/postgres?sslmode=disable&connect_timeout=2\n", 1), nil, ExitFailure, "database.direct_url:"},
		{"JWKS unreachable", noJWKS.text(), nil, ExitFailure, "jwt.jwks_url:"},
		{"schema missing", empty.text(), nil, ExitFailure, "extauthz migrate"},
		{"invalid configuration", strings.Replace(good.text(), "default_providers: [gh]", "default_providers: [nope]", 1), nil, ExitUsage, `"nope" is not defined`},
		{"plain http to another host", plainJWKS.text(), nil, ExitUsage, "jwt.jwks_url must use https"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			var out syncBuffer
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			code := Run(ctx, []string{"serve", "--config", path, "--check-config"}, Env{Stdout: &out, Stderr: &out, Getenv: func(k string) string { return tc.env[k] }})
			if code != tc.code || !strings.Contains(out.String(), tc.output) {
				t.Errorf("exit %d, want %d with %q; output:\n%s", code, tc.code, tc.output, out.String())
			}
			if strings.Contains(out.String(), "serving") {
				t.Errorf("--check-config served:\n%s", out.String())
			}
		})
	}
}
