//go:build unix

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/testutil"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/jwtauth/jwttest"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/encrypted"
	"github.com/extauthz/extauthz/store/postgres"
	"github.com/extauthz/extauthz/tokencrypt"
)

// serverBinary is the extauthz binary built by TestMain.
var serverBinary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// Without a database every test skips (pgtest); do not spend a build.
	if os.Getenv(pgtest.EnvVar) == "" && os.Getenv("CI") != "true" {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "extauthz-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	serverBinary = filepath.Join(dir, "extauthz")
	args := []string{"build", "-o", serverBinary}
	if os.Getenv("EXTAUTHZ_E2E_RACE") == "1" {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/extauthz")
	start := time.Now()
	build := exec.Command("go", args...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go %s: %v\n%s", strings.Join(args, " "), err, out)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: built the server in %v\n", time.Since(start).Round(time.Millisecond))
	return m.Run()
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the module")
	}
	return filepath.Dir(gomod), nil
}

const (
	issuer       = "https://as.e2e.test"
	audience     = "api"
	clientID     = "e2e-client"
	clientSecret = "e2eCS-0b3f9c1d7a5e"
	subject      = "alice"
	asClient     = "app"

	refreshTimeout = time.Second
	lockTimeout    = 7 * time.Second
	// takeoverBound bounds how long a Check may wait for a row whose lease
	// owner died or hangs: the lease plus a generous margin for a loaded
	// machine. Exceeding it means a hang, not slowness.
	takeoverBound = lockTimeout + 10*time.Second

	reauthDesc = `error_description="upstream authorization has expired; re-authentication required"`
)

// providerNames are the providers every process is configured with, all at
// the same fake token endpoint. Each has its own back-off state in a
// process, so tests of failures use one provider each.
var providerNames = []string{"idp", "grant", "client", "busy", "slow", "entra", "oidc"}

// syncBuffer collects output written concurrently.
type syncBuffer = testutil.SyncBuffer

// cluster is one test's world: a database, a JWKS, a token endpoint and any
// number of extauthz processes sharing them.
type cluster struct {
	t   *testing.T
	dsn string // the database, reached directly
	// url and directURL are the processes' database.url and
	// database.direct_url ("": its default, database.url); pgbouncer says
	// that url goes through PgBouncer (forEachDatabase).
	url, directURL string
	pgbouncer      bool
	key            string           // the token encryption key, base64
	store          *encrypted.Store // the service's view of the database
	signer         *jwttest.Signer
	jwksURL        string
	idp            *idp
	idpURL         string
	// oidcIssuer, when set before start, is the issuer of provider "oidc",
	// whose refreshed ID tokens the processes then verify.
	oidcIssuer string

	mu    sync.Mutex
	procs []*proc
}

// newCluster prepares a fresh database, JWKS and token endpoint. Processes
// are stopped, and their logs checked for secrets, when the test ends.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	return newClusterOn(t, pgtest.New(t))
}

// newClusterOn is newCluster on the migrated database at dsn.
func newClusterOn(t *testing.T, dsn string) *cluster {
	t.Helper()
	if serverBinary == "" {
		t.Fatal("the server binary was not built (TestMain)")
	}
	signer := jwttest.NewSigner(t)
	jwks := signer.Server(t)
	p := newIDP(clientID, clientSecret)
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	pg, err := postgres.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	key := tokencrypt.GenerateKey()
	secret, err := tokencrypt.ParseKey(key)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := tokencrypt.New([]tokencrypt.Key{{ID: "k1", Secret: secret}}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, dsn: dsn, url: dsn, key: key, store: encrypted.New(pg, ring), signer: signer, jwksURL: jwks.URL + "/jwks", idp: p, idpURL: srv.URL + "/token"}
	t.Cleanup(c.shutdown)
	return c
}

// forEachDatabase runs body as two subtests, each with a cluster of its own:
// "direct", whose processes reach PostgreSQL directly, and "pgbouncer",
// whose processes reach it as docs/operations.md says to deploy behind
// PgBouncer in transaction mode: database.url through PgBouncer (with
// default_query_exec_mode=exec, see pgtest.PgBouncer) and
// database.direct_url, for LISTEN, directly. The test itself (seeding,
// reading rows) reaches the database directly either way.
func forEachDatabase(t *testing.T, body func(t *testing.T, c *cluster)) {
	pgtest.Routes(t, func(t *testing.T, pgbouncer bool) {
		c := newCluster(t)
		if pgbouncer {
			c.url, c.directURL, c.pgbouncer = pgtest.PgBouncer(t, c.dsn), c.dsn, true
		}
		body(t, c)
	})
}

type procOptions struct {
	refreshTimeout, lockTimeout time.Duration
	backoffMin, backoffMax      time.Duration
	metrics                     bool
}

// withMetrics turns the metrics listener on (proc.metric reads it).
func withMetrics(o *procOptions) { o.metrics = true }

// withRefreshTimeout sets refresh.timeout to d and refresh.lock_timeout to
// its minimum, d + 6s.
func withRefreshTimeout(d time.Duration) func(*procOptions) {
	return func(o *procOptions) { o.refreshTimeout, o.lockTimeout = d, d+6*time.Second }
}

// withBackoff sets refresh.backoff_min and refresh.backoff_max.
func withBackoff(lo, hi time.Duration) func(*procOptions) {
	return func(o *procOptions) { o.backoffMin, o.backoffMax = lo, hi }
}

// start runs one `extauthz serve` process and waits until its health
// service answers SERVING.
func (c *cluster) start(name string, opts ...func(*procOptions)) *proc {
	t := c.t
	t.Helper()
	o := procOptions{refreshTimeout: refreshTimeout, lockTimeout: lockTimeout, backoffMin: 200 * time.Millisecond, backoffMax: 2 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	addr := freeAddr(t)
	metricsAddr := `"off"`
	if o.metrics {
		metricsAddr = freeAddr(t)
	}
	db := "database:\n  url: ${DATABASE_URL}\n"
	env := []string{"DATABASE_URL=" + c.url, "E2E_CLIENT_SECRET=" + clientSecret, "E2E_TOKEN_KEY=" + c.key}
	if c.directURL != "" {
		db += "  direct_url: ${DIRECT_DATABASE_URL}\n"
		env = append(env, "DIRECT_DATABASE_URL="+c.directURL)
	}
	var providers strings.Builder
	for _, n := range providerNames {
		fmt.Fprintf(&providers, "  %s:\n    token_url: %s\n    client_id: %s\n    client_secret: ${E2E_CLIENT_SECRET}\n    auth_style: params\n",
			n, c.idpURL, clientID)
		if n == "oidc" && c.oidcIssuer != "" {
			fmt.Fprintf(&providers, "    issuer: %s\n", c.oidcIssuer)
		}
	}
	cfg := fmt.Sprintf(`listen:
  grpc: %s
  metrics: %s
shutdown:
  drain_delay: 0s
%sjwt:
  issuer: %s
  audiences: [%s]
  jwks_url: %s
  leeway: 5s
providers:
%sdefault_providers: [idp]
refresh:
  skew: 30s
  timeout: %v
  lock_timeout: %v
  backoff_min: %v
  backoff_max: %v
deny:
  realm: api
log:
  level: debug
  format: json
encryption:
  keys:
    - id: k1
      key: ${E2E_TOKEN_KEY}
`, addr, metricsAddr, db, issuer, audience, c.jwksURL, providers.String(), o.refreshTimeout, o.lockTimeout, o.backoffMin, o.backoffMax)
	dir := t.TempDir()
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	p := &proc{name: name, addr: addr, logs: &syncBuffer{}, exited: make(chan struct{})}
	if o.metrics {
		p.metricsURL = "http://" + metricsAddr + "/metrics"
	}
	cmd := exec.Command(serverBinary, "serve", "--config", path)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = p.logs
	cmd.Stderr = p.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p.cmd = cmd
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	p.conn = conn
	p.client = authv3.NewAuthorizationClient(conn)
	health := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("%s exited before serving: %v\n%s", name, p.waitErr, p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not SERVING within 20s (last: %v, %v)\n%s", name, resp.GetStatus(), err, p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// outcomes counts the refresh outcomes and deny reasons in a process log.
func outcomes(logs string) map[string]int {
	re := regexp.MustCompile(`"(outcome|reason)":"([a-z_]+)"`)
	n := map[string]int{}
	for _, m := range re.FindAllStringSubmatch(logs, -1) {
		n[m[1]+"="+m[2]]++
	}
	return n
}

// freeAddr picks a free 127.0.0.1 port.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// shutdown stops every process (SIGCONT, SIGTERM, SIGKILL after 15s),
// reports the tail of their logs if the test failed, and checks that no
// log holds a token.
func (c *cluster) shutdown() {
	t := c.t
	c.mu.Lock()
	procs := append([]*proc(nil), c.procs...)
	c.mu.Unlock()
	for _, p := range procs {
		_ = p.conn.Close()
		p.signal(syscall.SIGCONT)
		p.signal(syscall.SIGTERM)
	}
	for _, p := range procs {
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			t.Errorf("%s did not exit within 15s of SIGTERM; killed", p.name)
			p.signal(syscall.SIGKILL)
			<-p.exited
		}
	}
	secrets := append(c.idp.allIssued(), clientSecret)
	anyCheckLogged := false
	for _, p := range procs {
		logs := p.logs.String()
		if strings.Contains(logs, `"msg":"check allowed"`) || strings.Contains(logs, `"msg":"check denied"`) {
			anyCheckLogged = true
		}
		if strings.Contains(logs, "WARNING: DATA RACE") {
			t.Errorf("%s (built with -race) reported a data race", p.name)
		}
		if strings.Contains(logs, c.key) {
			t.Errorf("%s's logs contain the token encryption key", p.name)
		}
		if leaks := findSecrets(logs, secrets); len(leaks) > 0 {
			t.Errorf("%s's logs contain %d secret(s), e.g. %q", p.name, len(leaks), leaks[0])
		}
		if t.Failed() {
			t.Logf("---- %s log (last 40 lines; whole log in %s) ----\n%s", p.name, keepLog(t, p.name, logs), tail(logs, 40))
		}
	}
	if len(procs) > 0 && !anyCheckLogged {
		t.Errorf("no process logged a Check (log.level debug): the secret check would be vacuous")
	}
}

// tokenLike matches what our secrets look like: a token's or the client
// secret's prefix, a 24-hex run that may be a token's body without its
// prefix, or a JWT (the client's bearer token).
var tokenLike = regexp.MustCompile(`e2e[AR]T|e2eCS|[0-9a-f]{24}|eyJ[A-Za-z0-9_-]*\.eyJ`)

// findSecrets returns the secrets (or their recognisable parts) found in
// logs: any token prefix (every token and the client secret start with one),
// any 24-hex run that is the body of one of secrets, and any JWT. This
// covers each secret without a substring search per secret, which the
// storm's thousands of tokens would make slow.
func findSecrets(logs string, secrets []string) []string {
	bodies := make(map[string]bool, len(secrets))
	for _, s := range secrets {
		if len(s) > 5 {
			bodies[s[5:]] = true
		}
	}
	var leaks []string
	for _, m := range tokenLike.FindAllString(logs, -1) {
		if strings.HasPrefix(m, "e2e") || strings.HasPrefix(m, "eyJ") || bodies[m] {
			leaks = append(leaks, m)
		}
	}
	return leaks
}

// keepLog saves a failed test's process log outside the test's temporary
// directories and returns its path.
func keepLog(t *testing.T, name, logs string) string {
	dir := filepath.Join(os.TempDir(), "extauthz-e2e-logs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "(not kept: " + err.Error() + ")"
	}
	path := filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())+"-"+name+".log")
	if err := os.WriteFile(path, []byte(logs), 0o600); err != nil {
		return "(not kept: " + err.Error() + ")"
	}
	return path
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// proc is one running extauthz process.
type proc struct {
	name    string
	addr    string
	cmd     *exec.Cmd
	logs    *syncBuffer
	conn    *grpc.ClientConn
	client  authv3.AuthorizationClient
	exited  chan struct{}
	waitErr error
	// metricsURL is the metrics endpoint, when started withMetrics.
	metricsURL string
}

// metric returns the value of the series named exactly series (name and
// labels as the exposition format writes them), 0 if absent.
func (p *proc) metric(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := http.Get(p.metricsURL)
	if err != nil {
		t.Fatalf("%s: scrape: %v", p.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: scrape: %v", p.name, err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return 0
}

// signal sends sig to the process's group.
func (p *proc) signal(sig syscall.Signal) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}

// stop SIGSTOPs the process and waits until every one of its threads is
// stopped: kill(2) returns before a thread running on another CPU has
// stopped, and a test that releases the provider's answer in that window
// would let the process read it.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.signal(syscall.SIGSTOP)
	deadline := time.Now().Add(10 * time.Second)
	for !p.allThreadsStopped() {
		if time.Now().After(deadline) {
			t.Fatalf("%s not stopped 10s after SIGSTOP", p.name)
		}
		time.Sleep(time.Millisecond)
	}
}

// allThreadsStopped reports whether /proc shows every thread of the
// process in state T (stopped).
func (p *proc) allThreadsStopped() bool {
	dir := fmt.Sprintf("/proc/%d/task", p.cmd.Process.Pid)
	tasks, err := os.ReadDir(dir)
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
		if err != nil {
			return false
		}
		// pid (comm) state ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+2 >= len(stat) || stat[i+2] != 'T' {
			return false
		}
	}
	return true
}

// kill SIGKILLs the process and waits for it to be gone.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	p.signal(syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s still running 10s after SIGKILL", p.name)
	}
}

// result is the outcome of one Check.
type result struct {
	status  int // HTTP status: 200 for OK, the deny's status otherwise; 0 on a gRPC error
	headers map[string]string
	err     error
	elapsed time.Duration
}

func (r result) String() string {
	if r.err != nil {
		return fmt.Sprintf("gRPC error %v (after %v)", r.err, r.elapsed)
	}
	return fmt.Sprintf("%d %v (after %v)", r.status, redactHeaders(r.headers), r.elapsed)
}

// redactHeaders keeps failure messages free of whole tokens.
func redactHeaders(h map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		if strings.Contains(v, "e2eAT") {
			i := strings.Index(v, "e2eAT")
			v = v[:min(len(v), i+9)] + "…"
		}
		out[k] = v
	}
	return out
}

// check sends one Check with jwt as the bearer token for the route's
// providers ("" for the default).
func (p *proc) check(ctx context.Context, jwt, providers string) result {
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/api", Host: "api.e2e.test",
			Headers: map[string]string{"authorization": "Bearer " + jwt},
		}},
	}}
	if providers != "" {
		req.Attributes.ContextExtensions = map[string]string{"upstream_providers": providers}
	}
	start := time.Now()
	resp, err := p.client.Check(ctx, req)
	r := result{err: err, elapsed: time.Since(start), headers: map[string]string{}}
	if err != nil {
		return r
	}
	if ok := resp.GetOkResponse(); ok != nil {
		r.status = 200
		for _, h := range ok.GetHeaders() {
			r.headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		return r
	}
	d := resp.GetDeniedResponse()
	r.status = int(d.GetStatus().GetCode())
	for _, h := range d.GetHeaders() {
		r.headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return r
}

// checkWithin is check with its own deadline.
func (p *proc) checkWithin(d time.Duration, jwt, providers string) result {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return p.check(ctx, jwt, providers)
}

// session is a seeded row and the JWT that reaches it.
type session struct {
	id, provider    string
	jwt             string
	access, refresh string // as seeded
}

// seed logs session id in at the provider, stores its row for provider
// with the access token expired (or fresh) and signs a JWT for it.
func (c *cluster) seed(t *testing.T, id, provider string, expired bool) session {
	t.Helper()
	s, err := c.seedRow(id, provider, expired)
	if err != nil {
		t.Fatal(err)
	}
	s.jwt = c.jwt(t, id)
	return s
}

// seedRow is seed without the JWT and without t (safe from goroutines).
func (c *cluster) seedRow(id, provider string, expired bool) (session, error) {
	access, refresh := c.idp.login(id)
	exp := time.Now().Add(time.Hour)
	if expired {
		exp = time.Now().Add(-time.Minute)
	}
	err := c.store.Put(context.Background(), store.Row{
		SessionID: id, Provider: provider,
		Tokens:  store.Tokens{AccessToken: access, RefreshToken: refresh, TokenType: "Bearer", ExpiresAt: exp},
		Subject: subject, ClientID: asClient,
	})
	return session{id: id, provider: provider, access: access, refresh: refresh}, err
}

func (c *cluster) jwt(t *testing.T, sessionID string) string {
	t.Helper()
	now := time.Now()
	return c.signer.Sign(t, map[string]any{
		"iss": issuer, "aud": audience, "sub": subject, "client_id": asClient, "tsid": sessionID,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
}

// row reads a session's stored row.
func (c *cluster) row(t *testing.T, s session) store.Row {
	t.Helper()
	r, err := c.store.Get(context.Background(), s.id, s.provider)
	if err != nil {
		t.Fatalf("read row %s/%s: %v", s.id, s.provider, err)
	}
	return r
}

// wantOK fails unless r is an OK carrying access as the upstream token.
func wantOK(t *testing.T, what string, r result, access string) {
	t.Helper()
	if r.err != nil || r.status != 200 || r.headers["authorization"] != "Bearer "+access {
		t.Errorf("%s: got %v, want OK with the rotated access token %.9s…", what, r, access)
	}
}

// wantReauth fails unless r is the documented 401: the upstream
// authorization expired, re-authentication required.
func wantReauth(t *testing.T, what string, r result) {
	t.Helper()
	www := r.headers["www-authenticate"]
	if r.err != nil || r.status != 401 || !strings.Contains(www, `error="invalid_token"`) || !strings.Contains(www, reauthDesc) {
		t.Errorf("%s: got %v, want 401 with WWW-Authenticate error=\"invalid_token\" (re-authentication required)", what, r)
	}
}

// want503 fails unless r is a 503 with Retry-After of at least a second,
// and returns the Retry-After seconds.
func want503(t *testing.T, what string, r result) int {
	t.Helper()
	var secs int
	if _, err := fmt.Sscan(r.headers["retry-after"], &secs); err != nil {
		secs = 0
	}
	if r.err != nil || r.status != 503 || secs < 1 {
		t.Errorf("%s: got %v, want 503 with Retry-After >= 1", what, r)
	}
	return secs
}

// wantRowUnchanged fails unless the row still holds the seeded tokens, not
// marked for re-authentication, at version.
func wantRowUnchanged(t *testing.T, c *cluster, s session, version int64) {
	t.Helper()
	r := c.row(t, s)
	if r.AccessToken != s.access || r.RefreshToken != s.refresh || r.NeedsReauth || r.Version != version {
		t.Errorf("row %s changed: seeded tokens kept %v/%v, needs_reauth %v, version %d (want %d)",
			s.id, r.AccessToken == s.access, r.RefreshToken == s.refresh, r.NeedsReauth, r.Version, version)
	}
}

// parallel runs n calls of f at once (all released together) and returns
// their results in order.
func parallel(n int, f func(i int) result) []result {
	out := make([]result, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			out[i] = f(i)
		}()
	}
	close(gate)
	wg.Wait()
	return out
}

// TestFindSecrets makes sure the log check used by every test can fail.
func TestFindSecrets(t *testing.T) {
	access, refresh := newAccessToken(), newRefreshToken()
	secrets := []string{access, refresh, clientSecret}
	clean := `{"level":"INFO","msg":"refresh","outcome":"ok","session":"0a1b2c3d4e5f","owner":"host:1:0123456789abcdef"}`
	if got := findSecrets(clean, secrets); len(got) != 0 {
		t.Errorf("clean log flagged: %q", got)
	}
	for _, leak := range []string{access, refresh, clientSecret, access[5:], "Bearer " + refresh[:12],
		"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"} {
		if got := findSecrets(clean+"\n"+`{"msg":"x","error":"`+leak+`"}`, secrets); len(got) == 0 {
			t.Errorf("leak %q not found", leak)
		}
	}
}
