// Package telemetry holds extauthz's Prometheus metrics and its
// OpenTelemetry tracing set-up.
//
// Metrics live in a registry of their own (not the client library's global
// one) served by Metrics.Handler. Every label value comes from a short fixed
// set or from the configuration (provider names): no label ever carries a
// token, a subject, a client ID or a session ID.
package telemetry

import (
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/httpfront"
	"github.com/extauthz/extauthz/upstreamtoken"
)

// Metric names.
const (
	MetricCheckDecisions  = "extauthz_check_decisions_total"
	MetricCheckDuration   = "extauthz_check_duration_seconds"
	MetricRefreshes       = "extauthz_refresh_total"
	MetricRefreshDuration = "extauthz_refresh_duration_seconds"
	MetricRefreshSkipped  = "extauthz_refresh_skipped_total"
	MetricRefreshTriggers = "extauthz_refresh_by_trigger_total"
	MetricCheckWaits      = "extauthz_check_refresh_waits_total"
	MetricStoreDuration   = "extauthz_store_operation_duration_seconds"
	MetricStoreErrors     = "extauthz_store_errors_total"
	MetricStoreUp         = "extauthz_store_up"
	MetricBuildInfo       = "extauthz_build_info"
	MetricHTTPRefused     = "extauthz_http_refused_total"
	MetricTLSCertExpiry   = "extauthz_tls_certificate_expiry_timestamp_seconds"
)

// TLSListeners lists the listeners that may serve TLS, the values of the
// listener label of MetricTLSCertExpiry: listen.grpc, listen.http,
// listen.admin and listen.connect.
var TLSListeners = []string{"grpc", "http", "admin", "connect"}

// Names of the metrics registered next to Metrics' own by the serve command,
// and only while the feature is on: the token cache's (cache.token_size not
// 0) and the count of reads of tokens sealed in the earlier format.
const (
	MetricTokenCacheReads      = "extauthz_token_cache_reads_total"
	MetricTokenCacheRows       = "extauthz_token_cache_rows"
	MetricTokenCacheListenerUp = "extauthz_token_cache_listener_up"
	MetricTokenLegacyReads     = "extauthz_token_legacy_format_reads_total"
)

// Transports lists the fronts whose decisions are counted: the gRPC
// ext_authz service and the HTTP authorization endpoint. Their decision
// counters and latency histograms start at zero.
var Transports = []string{"grpc", "http"}

// StoreOperations lists the store operations that are measured (see package
// store/observed). Another name is counted as "other".
var StoreOperations = []string{"get", "get_session", "put", "delete",
	"claim_refresh", "complete_refresh", "release_refresh", "delete_expired", "ping"}

// Metrics records what extauthz does. Its methods are safe for concurrent
// use. It implements authz.Observer (Decision), the functions
// upstreamtoken.WithRefreshObserver, WithTriggerObserver and WithWaitObserver
// take (Refresh, RefreshTrigger, CheckWaited) and
// observed.Recorder (StoreOperation and SetStoreUp).
type Metrics struct {
	reg       *prometheus.Registry
	providers []string

	decisions       *prometheus.CounterVec
	checkDuration   *prometheus.HistogramVec
	refreshes       *prometheus.CounterVec
	refreshDuration *prometheus.HistogramVec
	refreshSkipped  prometheus.Counter
	refreshTrigger  *prometheus.CounterVec
	checkWaits      *prometheus.CounterVec
	storeDuration   *prometheus.HistogramVec
	storeErrors     *prometheus.CounterVec
	storeUp         prometheus.Gauge
	httpRefused     *prometheus.CounterVec
}

var (
	_ authz.Observer     = (*Metrics)(nil)
	_ httpfront.Refusals = (*Metrics)(nil)
)

// NewMetrics returns the metrics of a process running version, in a new
// registry that also holds the Go runtime and process collectors. providers
// are the configured provider names: the refresh metrics start at zero for
// each, and any other name is counted as "other". extauthz_store_up is 0
// until the store first answers an operation or a ping.
func NewMetrics(version string, providers []string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), providers: slices.Sorted(slices.Values(providers))}
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricCheckDecisions,
		Help: "Check decisions by result (ok, denied, error), reason and transport (grpc, http).",
	}, []string{"result", "reason", "transport"})
	m.checkDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    MetricCheckDuration,
		Help:    "Time to decide a Check, refreshes included, by transport (grpc, http).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .2, .5, 1, 2.5, 5, 10, 30},
	}, []string{"transport"})
	m.refreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricRefreshes,
		Help: "Refreshes of upstream access tokens coordinated by this process, by provider and outcome.",
	}, []string{"provider", "outcome"})
	m.refreshDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    MetricRefreshDuration,
		Help:    "Time from the start of a refresh (waiting for another replica's lease included) to its outcome.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"provider", "outcome"})
	m.refreshSkipped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: MetricRefreshSkipped,
		Help: "Refresh-token redemptions skipped because another replica (or an earlier refresh) had already refreshed the row.",
	})
	m.storeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    MetricStoreDuration,
		Help:    "Latency of token store operations, by operation.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"op"})
	m.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricStoreErrors,
		Help: "Token store operations that failed, by operation (not found, lease lost and conflict are answers, not failures).",
	}, []string{"op"})
	m.storeUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: MetricStoreUp,
		Help: "1 when the token store answered the last operation or ping, 0 when it could not be reached.",
	})
	m.httpRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricHTTPRefused,
		Help: "HTTP authorization requests refused with 400 before any decision (the proxy's request is unusable: see docs/http.md), by shape (forward_auth, envoy).",
	}, []string{"shape"})
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: MetricBuildInfo,
		Help: "Always 1; the labels name the build.",
	}, []string{"version", "goversion"})

	m.refreshTrigger = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricRefreshTriggers,
		Help: "Refreshes coordinated by this process, by provider, trigger (check: a Check found the token expired; ahead: refreshed in the background) and outcome.",
	}, []string{"provider", "trigger", "outcome"})
	m.checkWaits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricCheckWaits,
		Help: "Token lookups of Checks that found a token expired and so waited on a refresh at the provider (their own or one in flight), by provider.",
	}, []string{"provider"})

	m.reg.MustRegister(m.decisions, m.checkDuration, m.refreshes, m.refreshDuration, m.refreshSkipped,
		m.refreshTrigger, m.checkWaits,
		m.storeDuration, m.storeErrors, m.storeUp, m.httpRefused, buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	buildInfo.WithLabelValues(version, runtime.Version()).Set(1)
	// Every (result, reason, transport) and every refresh outcome starts at
	// zero, so that rates exist before the first such event; another value
	// is counted as "other".
	for _, transport := range Transports {
		m.checkDuration.WithLabelValues(transport)
		for result, reasons := range authz.Reasons {
			for _, reason := range reasons {
				m.decisions.WithLabelValues(result, reason, transport)
			}
		}
	}
	for _, p := range m.providers {
		for _, o := range upstreamtoken.RefreshOutcomes {
			m.refreshes.WithLabelValues(p, o)
			for _, tr := range upstreamtoken.Triggers {
				m.refreshTrigger.WithLabelValues(p, tr, o)
			}
		}
		m.checkWaits.WithLabelValues(p)
	}
	for _, op := range StoreOperations {
		m.storeErrors.WithLabelValues(op)
	}
	for _, shape := range httpfront.Shapes {
		m.httpRefused.WithLabelValues(shape)
	}
	return m
}

// Registry returns the registry holding the metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Decision implements authz.Observer for the gRPC front: it counts the
// decision by result and reason with transport "grpc" and observes its
// latency. Transport returns the observer of another front.
func (m *Metrics) Decision(resp authz.Response, elapsed time.Duration) {
	m.decision("grpc", resp, elapsed)
}

// Transport returns an authz.Observer that records decisions as Decision
// does, with the given transport label (one of Transports; another name is
// counted as "other").
func (m *Metrics) Transport(name string) authz.Observer {
	if !slices.Contains(Transports, name) {
		name = "other"
	}
	return transportObserver{m: m, transport: name}
}

type transportObserver struct {
	m         *Metrics
	transport string
}

func (o transportObserver) Decision(resp authz.Response, elapsed time.Duration) {
	o.m.decision(o.transport, resp, elapsed)
}

func (m *Metrics) decision(transport string, resp authz.Response, elapsed time.Duration) {
	result, reason := resp.Result(), resp.Reason
	if !slices.Contains(authz.Reasons[result], reason) {
		reason = "other"
	}
	m.decisions.WithLabelValues(result, reason, transport).Inc()
	m.checkDuration.WithLabelValues(transport).Observe(elapsed.Seconds())
}

// Refused implements httpfront.Refusals: it counts an HTTP authorization
// request refused before any decision. A shape not in httpfront.Shapes is
// counted as "other".
func (m *Metrics) Refused(shape string) {
	if !slices.Contains(httpfront.Shapes, shape) {
		shape = "other"
	}
	m.httpRefused.WithLabelValues(shape).Inc()
}

// Refresh records one refresh's outcome; it has the signature of the
// function upstreamtoken.WithRefreshObserver takes.
func (m *Metrics) Refresh(provider, outcome string, elapsed time.Duration) {
	provider = m.provider(provider)
	if !slices.Contains(upstreamtoken.RefreshOutcomes, outcome) {
		outcome = "other"
	}
	m.refreshes.WithLabelValues(provider, outcome).Inc()
	m.refreshDuration.WithLabelValues(provider, outcome).Observe(elapsed.Seconds())
	if outcome == upstreamtoken.OutcomeSkipped {
		m.refreshSkipped.Inc()
	}
}

// RefreshTrigger counts one refresh by trigger and outcome; it has the
// signature of the function upstreamtoken.WithTriggerObserver takes.
func (m *Metrics) RefreshTrigger(provider, trigger, outcome string) {
	if !slices.Contains(upstreamtoken.Triggers, trigger) {
		trigger = "other"
	}
	if !slices.Contains(upstreamtoken.RefreshOutcomes, outcome) {
		outcome = "other"
	}
	m.refreshTrigger.WithLabelValues(m.provider(provider), trigger, outcome).Inc()
}

// CheckWaited counts a Check's lookup that waited on a refresh at provider;
// it has the signature of the function upstreamtoken.WithWaitObserver
// takes.
func (m *Metrics) CheckWaited(provider string) {
	m.checkWaits.WithLabelValues(m.provider(provider)).Inc()
}

// provider returns the label of provider: its name if configured, else
// "other".
func (m *Metrics) provider(name string) string {
	if _, found := slices.BinarySearch(m.providers, name); !found {
		return "other"
	}
	return name
}

// StoreOperation records one store operation's latency and whether it
// failed.
func (m *Metrics) StoreOperation(op string, elapsed time.Duration, failed bool) {
	if !slices.Contains(StoreOperations, op) {
		op = "other"
	}
	m.storeDuration.WithLabelValues(op).Observe(elapsed.Seconds())
	if failed {
		m.storeErrors.WithLabelValues(op).Inc()
	}
}

// SetStoreUp sets extauthz_store_up.
func (m *Metrics) SetStoreUp(up bool) {
	if up {
		m.storeUp.Set(1)
	} else {
		m.storeUp.Set(0)
	}
}

// WatchCertificate exports MetricTLSCertExpiry for listener (one of
// TLSListeners, else an error): at each scrape, the end of the validity
// period notAfter reports for the listener's certificate, in seconds since
// the Unix epoch. notAfter is called during the scrape, so it must be cheap
// and safe for concurrent use; a reloading certificate shows as soon as it
// is loaded. A listener without TLS is not watched and has no series.
// Watching a listener twice is an error.
func (m *Metrics) WatchCertificate(listener string, notAfter func() time.Time) error {
	if !slices.Contains(TLSListeners, listener) {
		return fmt.Errorf("telemetry: unknown TLS listener %q", listener)
	}
	err := m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        MetricTLSCertExpiry,
		Help:        "End of the validity period (NotAfter) of the certificate a listener serves, in seconds since the Unix epoch, by listener (grpc, http, admin, connect); absent for a plaintext listener.",
		ConstLabels: prometheus.Labels{"listener": listener},
	}, func() float64 { return float64(notAfter().Unix()) }))
	if err != nil {
		return fmt.Errorf("telemetry: certificate expiry of %s: %w", listener, err)
	}
	return nil
}
