// Package grafana generates extauthz's Grafana dashboard, extauthz.json in
// this directory, with the Grafana Foundation SDK. The queries name the
// metrics by the constants of package telemetry, so the dashboard follows
// a renamed metric; the deployment tests (deploy/grafana_test.go) check that
// the committed file is what JSON returns and that every metric a query
// reads is one a running service exports. docs/operations.md#dashboard
// describes the rows.
package grafana

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/extauthz/extauthz/telemetry"
)

// UID is the dashboard's uid: importing a newer file replaces the older.
const UID = "extauthz"

// RateInterval is the range of every rate and increase: Grafana's
// $__rate_interval, at least four scrape intervals.
const RateInterval = "$__rate_interval"

// sloSeconds is the latency objective of the alert rules
// (deploy/prometheus/extauthz-rules.yaml): 99 % of Checks within 100 ms.
const sloSeconds = 0.1

// query is one PromQL expression of a panel and its legend.
type query struct {
	expr, legend string
}

// panel is one graph (or, with stat, one big-number panel) of a row.
type panel struct {
	title, description, unit string
	queries                  []query
	stacked                  bool
	stat                     bool
	thresholds               []dashboard.Threshold // stat panels: colour steps
	width                    uint32                // grid columns out of 24; 0 means 8
}

// row is a titled group of panels.
type row struct {
	title  string
	panels []panel
}

// sel is the selector of metric on the chosen job and instances, with
// more label matchers (such as `result="error"`) appended.
func sel(metric string, matchers ...string) string {
	return metric + "{" + strings.Join(append([]string{`job=~"$job"`, `instance=~"$instance"`}, matchers...), ", ") + "}"
}

// rate is the per-second rate of the counter metric over RateInterval.
func rate(metric string, matchers ...string) string {
	return "rate(" + sel(metric, matchers...) + "[" + RateInterval + "])"
}

// increase is the counter metric's increase over RateInterval.
func increase(metric string, matchers ...string) string {
	return "increase(" + sel(metric, matchers...) + "[" + RateInterval + "])"
}

// quantile is the q-quantile of the histogram metric by the labels by.
func quantile(q float64, metric, by string) string {
	return fmt.Sprintf("histogram_quantile(%g, sum by (le, %s) (%s))", q, by, rate(metric+"_bucket"))
}

// step is a threshold: from (nil: from minus infinity) on, colour.
func step(from *float64, colour string) dashboard.Threshold {
	return dashboard.Threshold{Value: from, Color: colour}
}

// rows is the dashboard's content, top to bottom.
func rows() []row {
	const day = 86400.0
	return []row{{
		title: "Checks",
		panels: []panel{{
			title:       "Checks per second by result",
			description: "ok: allowed; denied: the client's credentials do not pass (401/403); error: the service could not decide (5xx).",
			unit:        "reqps",
			stacked:     true,
			queries:     []query{{"sum by (result) (" + rate(telemetry.MetricCheckDecisions) + ")", "{{result}}"}},
		}, {
			title:       "Denies and errors by reason",
			description: "Decisions other than ok, by result and reason (see docs/operations.md#metrics for the reasons).",
			unit:        "reqps",
			stacked:     true,
			queries:     []query{{"sum by (result, reason) (" + rate(telemetry.MetricCheckDecisions, `result!="ok"`) + ") > 0", "{{result}} {{reason}}"}},
		}, {
			title:       "Error ratio",
			description: "Share of Checks ending in result=\"error\"; ExtauthzCheckErrorRatioHigh fires above 5 % for 10 minutes.",
			unit:        "percentunit",
			queries: []query{{"sum(" + rate(telemetry.MetricCheckDecisions, `result="error"`) + ")\n  / sum(" +
				rate(telemetry.MetricCheckDecisions) + ")", "errors"}},
		}, {
			title:       "Check latency",
			description: "Percentiles of the time to decide a Check, refreshes included, by transport (grpc, http).",
			unit:        "s",
			width:       12,
			queries: []query{
				{quantile(0.5, telemetry.MetricCheckDuration, "transport"), "p50 {{transport}}"},
				{quantile(0.9, telemetry.MetricCheckDuration, "transport"), "p90 {{transport}}"},
				{quantile(0.99, telemetry.MetricCheckDuration, "transport"), "p99 {{transport}}"},
			},
		}, {
			title:       "Checks slower than 100 ms",
			description: "Share of Checks over the latency objective (at most 1 %: the ExtauthzLatencySLOBurn alerts).",
			unit:        "percentunit",
			width:       12,
			queries: []query{{fmt.Sprintf("1 - sum(%s)\n  / sum(%s)",
				rate(telemetry.MetricCheckDuration+"_bucket", fmt.Sprintf(`le="%g"`, sloSeconds)),
				rate(telemetry.MetricCheckDuration+"_count")), "slower than 100 ms"}},
		}},
	}, {
		title: "Refreshes",
		panels: []panel{{
			title:       "Refreshes by outcome",
			description: "Refreshes of upstream access tokens this deployment coordinated, by outcome.",
			unit:        "ops",
			stacked:     true,
			queries:     []query{{"sum by (outcome) (" + rate(telemetry.MetricRefreshes) + ")", "{{outcome}}"}},
		}, {
			title:       "Refreshes by trigger",
			description: "check: a Check found the token expired and waited; ahead: refreshed in the background before it expired.",
			unit:        "ops",
			stacked:     true,
			queries:     []query{{"sum by (trigger) (" + rate(telemetry.MetricRefreshTriggers) + ")", "{{trigger}}"}},
		}, {
			title:       "Refresh latency p99 by provider",
			description: "From the start of a refresh (waiting for another replica's lease included) to its outcome.",
			unit:        "s",
			queries:     []query{{quantile(0.99, telemetry.MetricRefreshDuration, "provider"), "p99 {{provider}}"}},
		}, {
			title:       "Provider pauses",
			description: "Refreshes not attempted because the provider (or the session there) failed recently (backing_off), and the failures that start a pause: unavailable (5xx, 429, time-out, network), misconfigured (our client rejected), unknown_refusal.",
			unit:        "ops",
			width:       12,
			queries: []query{{"sum by (provider, outcome) (" +
				rate(telemetry.MetricRefreshes, `outcome=~"backing_off|unavailable|misconfigured|unknown_refusal"`) + ") > 0", "{{provider}} {{outcome}}"}},
		}, {
			title:       "Checks waiting on a refresh",
			description: "Token lookups of Checks that found a token expired and waited on the provider; with refresh ahead on this stays near 0.",
			unit:        "ops",
			width:       12,
			queries:     []query{{"sum by (provider) (" + rate(telemetry.MetricCheckWaits) + ")", "{{provider}}"}},
		}},
	}, {
		title: "Store",
		panels: []panel{{
			title:       "Store up",
			description: "1 when the token store (PostgreSQL) answered the replica's last operation or ping; ExtauthzStoreUnavailable fires after 2 minutes at 0.",
			queries:     []query{{"min by (instance) (" + sel(telemetry.MetricStoreUp) + ")", "{{instance}}"}},
		}, {
			title:       "Store errors by operation",
			description: "Store operations that failed (not found, lease lost and conflict are answers, not failures).",
			unit:        "ops",
			stacked:     true,
			queries:     []query{{"sum by (op) (" + rate(telemetry.MetricStoreErrors) + ") > 0", "{{op}}"}},
		}, {
			title:       "Store latency p99 by operation",
			description: "99th percentile of the token store's operations.",
			unit:        "s",
			queries:     []query{{quantile(0.99, telemetry.MetricStoreDuration, "op"), "p99 {{op}}"}},
		}},
	}, {
		title: "Token cache",
		panels: []panel{{
			title:       "Cache hit ratio",
			description: "Token reads answered from memory, out of all reads (hit, miss, bypass). Empty while cache.token_size is 0.",
			unit:        "percentunit",
			width:       6,
			queries: []query{{"sum(" + rate(telemetry.MetricTokenCacheReads, `result="hit"`) + ")\n  / sum(" +
				rate(telemetry.MetricTokenCacheReads) + ")", "hit ratio"}},
		}, {
			title:       "Cache reads by result",
			description: "hit: from memory; miss: read from the database and cached; bypass: read from the database because the cache was not trusted (its listener down or late).",
			unit:        "ops",
			stacked:     true,
			width:       6,
			queries:     []query{{"sum by (result) (" + rate(telemetry.MetricTokenCacheReads) + ")", "{{result}}"}},
		}, {
			title:       "Cached rows",
			description: "Rows held by each replica's token cache (at most cache.token_size).",
			width:       6,
			queries:     []query{{"sum by (instance) (" + sel(telemetry.MetricTokenCacheRows) + ")", "{{instance}}"}},
		}, {
			title:       "LISTEN connection",
			description: "1 while the token cache's LISTEN connection (database.direct_url) is up; at 0 the cache is bypassed (ExtauthzTokenCacheListenerDown).",
			width:       6,
			queries:     []query{{"min by (instance) (" + sel(telemetry.MetricTokenCacheListenerUp) + ")", "{{instance}}"}},
		}},
	}, {
		title: "Background work",
		panels: []panel{{
			title:       "Garbage collection",
			description: "Garbage-collection statements (store operation delete_expired) per interval, and those that failed (ExtauthzGCBehind).",
			unit:        "short",
			queries: []query{
				{"sum(" + increase(telemetry.MetricStoreDuration+"_count", `op="delete_expired"`) + ")", "statements"},
				{"sum(" + increase(telemetry.MetricStoreErrors, `op="delete_expired"`) + ")", "failed"},
			},
		}, {
			title:       "Pending writes",
			description: "Refreshed tokens the store did not take at once: deferred (kept in memory, served, written when the store answers) and not_stored (lost: the users refresh again).",
			unit:        "short",
			queries: []query{{"sum by (provider, outcome) (" +
				increase(telemetry.MetricRefreshes, `outcome=~"deferred|not_stored"`) + ")", "{{provider}} {{outcome}}"}},
		}, {
			title:       "HTTP front refusals",
			description: "HTTP authorization requests refused with 400 before any decision, by shape (forward_auth: /auth, envoy: /envoy/...): a proxy's configuration to look at (ExtauthzHTTPRefusals).",
			unit:        "short",
			queries:     []query{{"sum by (shape) (" + increase(telemetry.MetricHTTPRefused) + ")", "{{shape}}"}},
		}},
	}, {
		title: "TLS",
		panels: []panel{{
			title:       "Certificate expiry",
			description: "Time left until the certificate each TLS listener serves expires (ExtauthzTLSCertificateExpiring at 14 days, ExtauthzTLSCertificateExpiryImminent at 2 days). Empty when no listener serves TLS.",
			unit:        "s",
			stat:        true,
			width:       24,
			thresholds:  []dashboard.Threshold{step(nil, "red"), step(cog.ToPtr(2*day), "orange"), step(cog.ToPtr(14*day), "green")},
			queries:     []query{{sel(telemetry.MetricTLSCertExpiry) + " - time()", "{{instance}} {{listener}}"}},
		}},
	}}
}

// datasource is the data source every panel and query reads: the
// dashboard's ${datasource} variable.
func datasource() common.DataSourceRef {
	typ, uid := "prometheus", "${datasource}"
	return common.DataSourceRef{Type: &typ, Uid: &uid}
}

// build returns the panel's builder, with the panel id id.
func (p panel) build(id uint32) cog.Builder[dashboard.Panel] {
	width := p.width
	if width == 0 {
		width = 8
	}
	var qs []*prometheus.DataqueryBuilder
	for i, q := range p.queries {
		qs = append(qs, prometheus.NewDataqueryBuilder().
			Datasource(datasource()).
			RefId(string(rune('A'+i))).
			Expr(q.expr).
			LegendFormat(q.legend))
	}
	if p.stat {
		b := stat.NewPanelBuilder().
			Id(id).Title(p.title).Description(p.description).Datasource(datasource()).
			Span(width).Height(6).Unit(p.unit).
			ColorMode(common.BigValueColorModeBackground).
			GraphMode(common.BigValueGraphModeNone).
			ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
			Thresholds(dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(p.thresholds))
		for _, q := range qs {
			b.WithTarget(q)
		}
		return b
	}
	b := timeseries.NewPanelBuilder().
		Id(id).Title(p.title).Description(p.description).Datasource(datasource()).
		Span(width).Height(8).Unit(p.unit).Min(0).
		Legend(common.NewVizLegendOptionsBuilder().ShowLegend(true).
			DisplayMode(common.LegendDisplayModeList).Placement(common.LegendPlacementBottom))
	if p.stacked {
		b.FillOpacity(30).Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal))
	}
	for _, q := range qs {
		b.WithTarget(q)
	}
	return b
}

// variable is a dashboard variable listing the values query (Grafana's
// label_values) returns, all of them selected at first.
func variable(name, label, query string) cog.Builder[dashboard.VariableModel] {
	all := dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}}
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(datasource()).
		Query(dashboard.StringOrMap{String: cog.ToPtr(query)}).
		Current(dashboard.VariableOption{Text: dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}}, Value: all}).
		Definition(query).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc).
		Multi(true).
		IncludeAll(true).
		AllValue(".*")
}

// Dashboard returns the dashboard in the classic JSON model, the one
// Grafana's dashboard import takes; the SDK's dashboardv2 is the resource of
// Grafana 12's new layouts, which older servers cannot import.
//
//lint:ignore SA1019 the classic model is deliberate (see above)
func Dashboard() (dashboard.Dashboard, error) {
	//lint:ignore SA1019 the classic model is deliberate (see Dashboard)
	b := dashboard.NewDashboardBuilder("extauthz").
		Uid(UID).
		Description("Checks, refreshes, the token store and cache, background work and TLS certificates of extauthz (docs/operations.md#dashboard). Generated by deploy/grafana; do not edit by hand.").
		Tags([]string{"extauthz", "ext_authz", "envoy"}).
		Editable().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Refresh("30s").
		Time("now-6h", "now").
		Timezone(common.TimeZoneBrowser).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Data source").Type("prometheus")).
		WithVariable(variable("job", "Job", "label_values("+telemetry.MetricBuildInfo+", job)")).
		WithVariable(variable("instance", "Instance", "label_values("+telemetry.MetricBuildInfo+`{job=~"$job"}, instance)`))
	// Panel ids, rows included, number the panels top to bottom from 1.
	id := uint32(0)
	for _, r := range rows() {
		id++
		b.WithRow(dashboard.NewRowBuilder(r.title).Id(id))
		for _, p := range r.panels {
			id++
			b.WithPanel(p.build(id))
		}
	}
	return b.Build()
}

// JSON returns the dashboard as the file extauthz.json holds it: indented
// JSON, as Grafana's import takes it, ending in a newline.
func JSON() ([]byte, error) {
	d, err := Dashboard()
	if err != nil {
		return nil, fmt.Errorf("grafana: build the dashboard: %w", err)
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("grafana: encode the dashboard: %w", err)
	}
	return append(b, '\n'), nil
}
