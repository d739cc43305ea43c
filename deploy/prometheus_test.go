package deploy_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"

	"github.com/extauthz/extauthz/telemetry"
)

// rulesFile holds the Prometheus rules; each alert's runbook is a section of
// operationsDoc.
var (
	rulesFile     = filepath.Join("prometheus", "extauthz-rules.yaml")
	operationsDoc = filepath.Join(root, "docs", "operations.md")
)

// promParser parses PromQL as a Prometheus server does by default.
var promParser = parser.NewParser(parser.Options{})

func loadRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	groups, errs := rulefmt.Parse(readFile(t, rulesFile), false, model.UTF8Validation, promParser, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("%s: %v", rulesFile, err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	return groups
}

// exportedSeries returns the names of the series the service exports: those
// of a live telemetry registry (histograms as their _bucket, _count and _sum
// series) and those of the metrics serve registers only while a feature is on
// (the token cache, legacy reads, TLS).
func exportedSeries(t *testing.T) map[string]bool {
	t.Helper()
	m := telemetry.NewMetrics("test", []string{"provider"})
	// The store latency histogram has a series only once an operation was
	// measured.
	m.StoreOperation("get", time.Millisecond, false)
	// The certificate expiry gauge exists for the listeners that serve TLS.
	if err := m.WatchCertificate("grpc", time.Now); err != nil {
		t.Fatal(err)
	}
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{
		telemetry.MetricTokenCacheReads:      true,
		telemetry.MetricTokenCacheRows:       true,
		telemetry.MetricTokenCacheListenerUp: true,
		telemetry.MetricTokenLegacyReads:     true,
	}
	for _, f := range families {
		names[f.GetName()] = true
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			for _, s := range []string{"_bucket", "_count", "_sum"} {
				names[f.GetName()+s] = true
			}
		case dto.MetricType_SUMMARY:
			for _, s := range []string{"_count", "_sum"} {
				names[f.GetName()+s] = true
			}
		}
	}
	return names
}

// docAnchors returns the anchors GitHub gives the headings of a Markdown
// document.
func docAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	punct := regexp.MustCompile(`[^a-z0-9 _-]`)
	anchors := map[string]bool{}
	for line := range strings.Lines(string(readFile(t, path))) {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		heading := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		anchors[strings.ReplaceAll(punct.ReplaceAllString(heading, ""), " ", "-")] = true
	}
	return anchors
}

// TestPrometheusRules checks the rules as a Prometheus server loading them
// would, and that they read only series the service exports, or series the
// file itself records.
func TestPrometheusRules(t *testing.T) {
	groups := loadRules(t)
	exported := exportedSeries(t)
	anchors := docAnchors(t, operationsDoc)
	const runbookPrefix = "https://github.com/extauthz/extauthz/blob/main/docs/operations.md#"
	severities := []string{"critical", "warning"}

	recorded := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
		}
	}
	alerts := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			name := r.Record + r.Alert
			expr, err := promParser.ParseExpr(r.Expr)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			selectors := 0
			parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
				vs, ok := node.(*parser.VectorSelector)
				if !ok {
					return nil
				}
				selectors++
				if !exported[vs.Name] && !recorded[vs.Name] {
					t.Errorf("%s reads %q, which the service does not export", name, vs.Name)
				}
				return nil
			})
			if selectors == 0 {
				t.Errorf("%s reads no series", name)
			}
			if r.Alert == "" {
				continue
			}
			alerts++
			if !slices.Contains(severities, r.Labels["severity"]) {
				t.Errorf("%s: severity %q, want one of %v", name, r.Labels["severity"], severities)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: no %s annotation", name, a)
				}
			}
			anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], runbookPrefix)
			if !ok || !anchors[anchor] {
				t.Errorf("%s: runbook_url %q is no section of %s", name, r.Annotations["runbook_url"], operationsDoc)
			}
		}
	}
	if alerts == 0 {
		t.Error("no alerts")
	}
}

// healthy is a service at rest, one sample a minute for 400 minutes: 10
// Checks per second, all fast and allowed; 0.1 refreshes per second, all
// redeemed; the store and the cache listener up; one garbage-collection
// statement a minute, none failing; no HTTP refusals; the gRPC listener's
// certificate valid for 90 days from the start. Cases replace series.
var healthy = map[string]string{
	`extauthz_check_decisions_total{result="ok",reason="ok",transport="grpc"}`:                   "0+600x400",
	`extauthz_check_decisions_total{result="error",reason="store_unavailable",transport="grpc"}`: "0x400",
	`extauthz_check_duration_seconds_bucket{transport="grpc",le="0.1"}`:                          "0+600x400",
	`extauthz_check_duration_seconds_bucket{transport="grpc",le="+Inf"}`:                         "0+600x400",
	`extauthz_check_duration_seconds_count{transport="grpc"}`:                                    "0+600x400",
	`extauthz_refresh_total{provider="github",outcome="ok"}`:                                     "0+6x400",
	`extauthz_refresh_total{provider="github",outcome="unavailable"}`:                            "0x400",
	`extauthz_refresh_total{provider="github",outcome="misconfigured"}`:                          "0x400",
	`extauthz_refresh_total{provider="github",outcome="backing_off"}`:                            "0x400",
	`extauthz_store_up{instance="a"}`:                                                            "1x400",
	`extauthz_token_cache_listener_up{instance="a"}`:                                             "1x400",
	`extauthz_store_errors_total{op="delete_expired"}`:                                           "0x400",
	`extauthz_store_operation_duration_seconds_count{op="delete_expired"}`:                       "0+1x400",
	`extauthz_http_refused_total{shape="forward_auth"}`:                                          "0x400",
	`extauthz_tls_certificate_expiry_timestamp_seconds{instance="a",listener="grpc"}`:            "7776000x400",
}

// evalAlerts loads series (the healthy service with changes), evaluates the
// rule groups once a minute from 0 to at, as `promtool test rules` does, and
// returns the alerts firing at at, each as its name and its labels other
// than severity.
func evalAlerts(t *testing.T, groups *rulefmt.RuleGroups, changes map[string]string, at time.Duration) []string {
	t.Helper()
	series := maps.Clone(healthy)
	maps.Copy(series, changes)
	var load strings.Builder
	load.WriteString("load 1m\n")
	for _, name := range slices.Sorted(maps.Keys(series)) {
		fmt.Fprintf(&load, "  %s %s\n", name, series[name])
	}
	suite, err := promqltest.NewLazyLoader(load.String(), promqltest.LazyLoaderOpts{
		EnableAtModifier: true, EnableNegativeOffset: true, Parser: promParser,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := suite.Close(); err != nil {
			t.Error(err)
		}
	}()
	m := rules.NewManager(&rules.ManagerOptions{
		QueryFunc:    rules.EngineQueryFunc(suite.QueryEngine(), suite.Storage()),
		AppendableV2: suite.Storage(),
		Context:      context.Background(),
		NotifyFunc:   func(context.Context, string, ...*rules.Alert) {},
		Logger:       slog.New(slog.DiscardHandler),
		Parser:       promParser,
	})
	loaded, errs := m.LoadGroups(time.Minute, labels.EmptyLabels(), "", nil, false, rulesFile)
	for _, err := range errs {
		t.Fatal(err)
	}
	// Evaluate in the file's order, recording rules first, as a server
	// would within one group.
	var ordered []*rules.Group
	for _, g := range groups.Groups {
		ordered = append(ordered, loaded[rules.GroupKey(rulesFile, g.Name)])
		for _, r := range ordered[len(ordered)-1].Rules() {
			if a, ok := r.(*rules.AlertingRule); ok {
				a.SetRestored(true)
			}
		}
	}
	start := time.Unix(0, 0).UTC()
	for ts := start; !ts.After(start.Add(at)); ts = ts.Add(time.Minute) {
		suite.WithSamplesTill(ts, func(err error) {
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range ordered {
				g.Eval(suite.Context(), ts)
				for _, r := range g.Rules() {
					if err := r.LastError(); err != nil {
						t.Fatalf("%s at %v: %v", r.Name(), ts.Sub(start), err)
					}
				}
			}
		})
	}
	var firing []string
	for _, g := range ordered {
		for _, r := range g.Rules() {
			a, ok := r.(*rules.AlertingRule)
			if !ok {
				continue
			}
			for _, alert := range a.ActiveAlerts() {
				if alert.State == rules.StateFiring {
					l := labels.NewBuilder(alert.Labels).Del(labels.AlertName, "severity").Labels()
					firing = append(firing, a.Name()+l.String())
				}
			}
		}
	}
	slices.Sort(firing)
	return firing
}

// TestPrometheusAlerts feeds series to the rules and asserts which alerts
// fire, as `promtool test rules` would; together the cases make every alert
// fire.
func TestPrometheusAlerts(t *testing.T) {
	groups := loadRules(t)
	tests := []struct {
		name    string
		changes map[string]string
		at      time.Duration
		want    []string
	}{
		{"healthy", nil, 400 * time.Minute, nil},
		{"errors 9 %", map[string]string{
			`extauthz_check_decisions_total{result="error",reason="store_unavailable",transport="grpc"}`: "0+60x400",
		}, 30 * time.Minute, []string{"ExtauthzCheckErrorRatioHigh{}"}},
		{"errors 2 %", map[string]string{
			`extauthz_check_decisions_total{result="error",reason="store_unavailable",transport="grpc"}`: "0+12x400",
		}, 30 * time.Minute, nil},
		{"10 % slow Checks", map[string]string{
			`extauthz_check_duration_seconds_bucket{transport="grpc",le="0.1"}`: "0+540x400",
		}, 400 * time.Minute, []string{"ExtauthzLatencySLOBurnSlow{}"}},
		{"50 % slow Checks", map[string]string{
			`extauthz_check_duration_seconds_bucket{transport="grpc",le="0.1"}`: "0+300x400",
		}, 400 * time.Minute, []string{"ExtauthzLatencySLOBurnFast{}", "ExtauthzLatencySLOBurnSlow{}"}},
		{"50 % slow Checks for 20 minutes", map[string]string{
			`extauthz_check_duration_seconds_bucket{transport="grpc",le="0.1"}`: "0+600x200 120300+300x20 126300+600x179",
		}, 220 * time.Minute, []string{"ExtauthzLatencySLOBurnFast{}"}},
		{"client rejected", map[string]string{
			`extauthz_refresh_total{provider="github",outcome="misconfigured"}`: "0x100 1x300",
		}, 105 * time.Minute, []string{`ExtauthzProviderMisconfigured{provider="github"}`}},
		{"client rejected an hour ago", map[string]string{
			`extauthz_refresh_total{provider="github",outcome="misconfigured"}`: "0x100 1x300",
		}, 170 * time.Minute, nil},
		{"provider failing", map[string]string{
			`extauthz_refresh_total{provider="github",outcome="unavailable"}`: "0+12x400",
		}, 30 * time.Minute, []string{`ExtauthzProviderUnavailable{provider="github"}`}},
		{"provider failing now and then", map[string]string{
			`extauthz_refresh_total{provider="github",outcome="unavailable"}`: "0+1x400",
		}, 30 * time.Minute, nil},
		{"store down", map[string]string{
			`extauthz_store_up{instance="a"}`: "1x100 0x300",
		}, 110 * time.Minute, []string{`ExtauthzStoreUnavailable{instance="a"}`}},
		{"store blip", map[string]string{
			`extauthz_store_up{instance="a"}`: "1x100 0 1x300",
		}, 102 * time.Minute, nil},
		{"refresh storm", map[string]string{
			`extauthz_refresh_total{provider="github",outcome="ok"}`: "0+6x200 1800+600x199",
		}, 215 * time.Minute, []string{`ExtauthzRefreshStorm{provider="github"}`}},
		{"refresh rate high for hours", map[string]string{
			`extauthz_refresh_total{provider="github",outcome="ok"}`: "0+6x200 1800+600x199",
		}, 400 * time.Minute, nil},
		{"cache listener down", map[string]string{
			`extauthz_token_cache_listener_up{instance="a"}`: "1x100 0x300",
		}, 110 * time.Minute, []string{`ExtauthzTokenCacheListenerDown{instance="a"}`}},
		{"garbage collection failing", map[string]string{
			`extauthz_store_errors_total{op="delete_expired"}`: "0x100 1+1x300",
		}, 230 * time.Minute, []string{"ExtauthzGCBehind{}"}},
		{"garbage collection failing for an hour", map[string]string{
			`extauthz_store_errors_total{op="delete_expired"}`: "0x100 1+1x300",
		}, 160 * time.Minute, nil},
		{"HTTP refusals", map[string]string{
			`extauthz_http_refused_total{shape="forward_auth"}`: "0x100 1x300",
		}, 105 * time.Minute, []string{`ExtauthzHTTPRefusals{shape="forward_auth"}`}},
		{"certificate expires in 13 days", map[string]string{
			`extauthz_tls_certificate_expiry_timestamp_seconds{instance="a",listener="grpc"}`: "1123200x400",
		}, 30 * time.Minute, []string{`ExtauthzTLSCertificateExpiring{instance="a", listener="grpc"}`}},
		{"certificate expires in a day", map[string]string{
			`extauthz_tls_certificate_expiry_timestamp_seconds{instance="a",listener="grpc"}`: "86400x400",
		}, 30 * time.Minute, []string{`ExtauthzTLSCertificateExpiring{instance="a", listener="grpc"}`, `ExtauthzTLSCertificateExpiryImminent{instance="a", listener="grpc"}`}},
		{"certificate renewed 13 days before expiry", map[string]string{
			`extauthz_tls_certificate_expiry_timestamp_seconds{instance="a",listener="grpc"}`: "1123200x10 7776000x390",
		}, 30 * time.Minute, nil},
	}
	fired := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := evalAlerts(t, groups, tt.changes, tt.at)
			if !slices.Equal(got, tt.want) {
				t.Errorf("firing at %v: %q, want %q", tt.at, got, tt.want)
			}
			for _, a := range got {
				fired[a[:strings.IndexByte(a, '{')]] = true
			}
		})
	}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" && !fired[r.Alert] {
				t.Errorf("no case makes %s fire", r.Alert)
			}
		}
	}
}
