package deploy_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	stdflag "flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/deploy/grafana"
	"github.com/extauthz/extauthz/internal/cli"
	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/internal/testutil"
	"github.com/extauthz/extauthz/internal/tlsreload/tlstest"
	"github.com/extauthz/extauthz/jwtauth/jwttest"
	"github.com/extauthz/extauthz/store"
	"github.com/extauthz/extauthz/store/encrypted"
	"github.com/extauthz/extauthz/store/postgres"
	"github.com/extauthz/extauthz/telemetry"
	"github.com/extauthz/extauthz/tokencrypt"
)

var updateDashboard = stdflag.Bool("update-dashboard", false, "rewrite "+dashboardFile+" with what deploy/grafana generates now")

// dashboardFile is the committed dashboard.
var dashboardFile = filepath.Join("grafana", "extauthz.json")

// TestGrafanaDashboardUpToDate: the committed dashboard is what the
// generator writes; with -update-dashboard it is rewritten instead.
func TestGrafanaDashboardUpToDate(t *testing.T) {
	want, err := grafana.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if *updateDashboard {
		if err := os.WriteFile(dashboardFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got := readFile(t, dashboardFile); !bytes.Equal(got, want) {
		t.Errorf("%s differs from what deploy/grafana generates; run in deploy/:\n  go test -run TestGrafanaDashboardUpToDate -update-dashboard .", dashboardFile)
	}
}

// panelQuery is one query of a panel (or the series selector of a
// variable's label_values) of the committed dashboard.
type panelQuery struct {
	panel, expr string
}

// labelValues is Grafana's label_values(selector, label) query of a
// variable.
var labelValues = regexp.MustCompile(`^label_values\((.+), *([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// dashboardQueries returns every query of the committed dashboard's panels
// and variables; it fails when a panel other than a row has none, or when
// the file is not a dashboard whose queries read the ${datasource}
// variable.
func dashboardQueries(t *testing.T) []panelQuery {
	t.Helper()
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr       string `json:"expr"`
				Datasource struct {
					UID string `json:"uid"`
				} `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Type  string `json:"type"`
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(readFile(t, dashboardFile), &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID != grafana.UID {
		t.Errorf("uid %q, want %q", d.UID, grafana.UID)
	}
	var qs []panelQuery
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: %d queries, data source %q; want queries on ${datasource}", p.Title, len(p.Targets), p.Datasource.UID)
		}
		for _, q := range p.Targets {
			if q.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: a query reads data source %q", p.Title, q.Datasource.UID)
			}
			qs = append(qs, panelQuery{p.Title, q.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		m := labelValues.FindStringSubmatch(q)
		if m == nil || !slices.Contains(targetLabels, m[2]) {
			t.Errorf("variable %s: query %q, want label_values(<selector>, <%s>)", v.Name, q, strings.Join(targetLabels, "|"))
			continue
		}
		qs = append(qs, panelQuery{"variable " + v.Name, m[1]})
	}
	if len(qs) == 0 {
		t.Fatal("no queries")
	}
	return qs
}

// grafanaMacros stand in for the variables Grafana expands before a query
// reaches Prometheus.
var grafanaMacros = strings.NewReplacer(grafana.RateInterval, "5m")

// familyOf returns the metric family a series name belongs to: a
// histogram's _bucket, _count and _sum series belong to the histogram.
func familyOf(name string, families map[string]*dto.MetricFamily) string {
	for _, suffix := range []string{"_bucket", "_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			f, ok := families[base]
			histogram := ok && f.GetType() == dto.MetricType_HISTOGRAM
			summary := ok && f.GetType() == dto.MetricType_SUMMARY && suffix != "_bucket"
			if histogram || summary {
				return base
			}
		}
	}
	return name
}

// labelNames returns the label names of a family's series.
func labelNames(f *dto.MetricFamily) map[string]bool {
	names := map[string]bool{}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			names[l.GetName()] = true
		}
	}
	if f.GetType() == dto.MetricType_HISTOGRAM {
		names["le"] = true
	}
	return names
}

// targetLabels are added by Prometheus when it scrapes: the dashboard's
// variables select on them.
var targetLabels = []string{"job", "instance"}

// TestGrafanaDashboardMetrics parses every panel's query with Prometheus's
// PromQL parser and checks it against a live scrape of a running service:
// every metric it reads is exported, every label it matches or groups by is
// one of that metric's (or a target label). The service runs with every
// feature whose metrics the dashboard shows (token cache, TLS listeners) and
// has served a Check that refreshed a token, so that the histograms have
// series.
func TestGrafanaDashboardMetrics(t *testing.T) {
	families := liveScrape(t)
	read := map[string]bool{}
	for _, q := range dashboardQueries(t) {
		expr, err := promParser.ParseExpr(grafanaMacros.Replace(q.expr))
		if err != nil {
			t.Errorf("panel %q: %q: %v", q.panel, q.expr, err)
			continue
		}
		selectors := 0
		parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
			switch n := node.(type) {
			case *parser.VectorSelector:
				selectors++
				family := familyOf(n.Name, families)
				f, ok := families[family]
				if !ok {
					t.Errorf("panel %q reads %q, which the service does not export", q.panel, n.Name)
					return nil
				}
				read[family] = true
				labels := labelNames(f)
				for _, m := range n.LabelMatchers {
					if m.Name != model.MetricNameLabel && !labels[m.Name] && !slices.Contains(targetLabels, m.Name) {
						t.Errorf("panel %q matches label %q, which %s does not have", q.panel, m.Name, n.Name)
					}
				}
			case *parser.AggregateExpr:
				inner := map[string]bool{}
				parser.Inspect(n.Expr, func(node parser.Node, _ []parser.Node) error {
					if vs, ok := node.(*parser.VectorSelector); ok {
						if f, ok := families[familyOf(vs.Name, families)]; ok {
							for l := range labelNames(f) {
								inner[l] = true
							}
						}
					}
					return nil
				})
				for _, l := range n.Grouping {
					if !inner[l] && !slices.Contains(targetLabels, l) {
						t.Errorf("panel %q groups by %q, which none of the metrics it sums has", q.panel, l)
					}
				}
			}
			return nil
		})
		if selectors == 0 {
			t.Errorf("panel %q: %q reads no series", q.panel, q.expr)
		}
	}
	t.Logf("the dashboard reads %d metrics: %s", len(read), strings.Join(slices.Sorted(maps.Keys(read)), ", "))
}

// liveScrape runs `extauthz serve` in this process on a fresh database,
// with the token cache on and TLS on the gRPC and HTTP listeners; sends one
// HTTP authorization request whose token is expired, so that it is
// refreshed at a fake provider; and returns the metric families of one
// scrape of /metrics, by name, after checking that both listeners report
// their certificate's expiry. Without PostgreSQL it skips (or fails on CI),
// as pgtest does.
func liveScrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	dsn := pgtest.New(t)
	signer := jwttest.NewSigner(t)
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"access_token":"gho_refreshed","token_type":"Bearer","expires_in":3600}`)
	}))
	t.Cleanup(provider.Close)

	dir := t.TempDir()
	ca := tlstest.NewCA(t, "dashboard test CA")
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	leaf := ca.Server(t, "extauthz")
	leaf.WriteFiles(t, cert, key)
	text := fmt.Sprintf(`
listen:
  grpc: 127.0.0.1:0
  http: 127.0.0.1:0
  metrics: 127.0.0.1:0
  tls: {cert: %[1]s, key: %[2]s}
http:
  tls: {cert: %[1]s, key: %[2]s}
database:
  url: ${DASHBOARD_TEST_DATABASE_URL}
jwt:
  issuer: https://as.test
  audiences: [api]
  jwks_file: %[3]s
providers:
  gh: {token_url: "%[4]s/token", client_id: gh, client_secret: gh-secret, auth_style: params}
default_providers: [gh]
cache:
  token_size: 100
shutdown:
  drain_delay: 0s
log:
  format: json
encryption:
  keys:
    - id: k1
      key: ${DASHBOARD_TEST_TOKEN_KEY}
`, cert, key, signer.WriteJWKSFile(t), provider.URL)
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DASHBOARD_TEST_DATABASE_URL": dsn, "DASHBOARD_TEST_TOKEN_KEY": tokencrypt.GenerateKey()}
	getenv := func(k string) string { return env[k] }
	cfg, err := config.Load(path, getenv)
	if err != nil {
		t.Fatal(err)
	}

	// The session, its access token expired.
	pg, err := postgres.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	row := store.Row{SessionID: "s1", Provider: "gh", Subject: "alice", ClientID: "app",
		Tokens: store.Tokens{AccessToken: "gho_expired", RefreshToken: "ghr_1", ExpiresAt: time.Now().Add(-time.Hour)}}
	if err := encrypted.New(pg, cfg.Keyring()).Put(context.Background(), row); err != nil {
		t.Fatal(err)
	}

	logs := &testutil.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	var code int
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		code = cli.Run(ctx, []string{"serve", "--config", path}, cli.Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: logs, Getenv: getenv})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-exited:
			if code != cli.ExitOK {
				t.Errorf("serve exited %d:\n%s", code, logs)
			}
		case <-time.After(time.Minute):
			t.Error("serve did not stop within a minute")
		}
	})
	metricsAddr := logged(t, logs, exited, "serving metrics and health", "http")
	httpAddr := logged(t, logs, exited, "serving HTTP authorization", "http")

	now := time.Now()
	jwt := signer.Sign(t, map[string]any{"iss": "https://as.test", "aud": "api", "sub": "alice", "client_id": "app",
		"tsid": "s1", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}}
	req, err := http.NewRequest("GET", "https://"+httpAddr+"/auth", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Original-URI", "/repos")
	req.Header.Set("X-Forwarded-Host", "api.test")
	req.Header.Set("Authorization", "Bearer "+jwt)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Authorization") != "Bearer gho_refreshed" {
		t.Fatalf("the Check answered %d (refreshed token passed on: %t):\n%s", resp.StatusCode,
			resp.Header.Get("Authorization") == "Bearer gho_refreshed", logs)
	}

	mresp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer mresp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(mresp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	// Both TLS listeners report the certificate they serve.
	expiry := map[string]float64{}
	for _, m := range families[telemetry.MetricTLSCertExpiry].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "listener" {
				expiry[l.GetValue()] = m.GetGauge().GetValue()
			}
		}
	}
	notAfter := float64(leaf.Cert.NotAfter.Unix())
	if want := map[string]float64{"grpc": notAfter, "http": notAfter}; !maps.Equal(expiry, want) {
		t.Errorf("%s: %v, want %v", telemetry.MetricTLSCertExpiry, expiry, want)
	}
	return families
}

// logged waits until serve writes the JSON log line whose msg is msg and
// returns its attribute attr, failing if serve exits (exited is closed)
// first.
func logged(t *testing.T, logs *testutil.SyncBuffer, exited <-chan struct{}, msg, attr string) string {
	t.Helper()
	var value string
	testutil.Eventually(t, 2*time.Minute, "serve logs "+msg, func() bool {
		select {
		case <-exited:
			t.Fatalf("serve exited before logging %q:\n%s", msg, logs)
		default:
		}
		for line := range strings.Lines(logs.String()) {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
				value, _ = rec[attr].(string)
				return value != ""
			}
		}
		return false
	})
	return value
}
