package cli

import (
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/telemetry"
)

// legacyReadObserver returns the observer of reads of tokens sealed in the
// earlier format (v1, whose ciphertexts do not bind the row's subject,
// client ID and upstream subject): it counts them in
// extauthz_token_legacy_format_reads_total{provider} and logs a warning the
// first time, so that an operator who has not run 'extauthz keys rotate'
// since upgrading learns it. A provider not among providers (a row written
// for a provider the configuration does not name) is counted as "other". A
// registration failure is returned.
func legacyReadObserver(reg prometheus.Registerer, log *slog.Logger, providers []string) (func(provider string), error) {
	reads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: telemetry.MetricTokenLegacyReads,
		Help: "Reads of stored tokens sealed in the earlier format (v1), which does not bind the row's subject, client ID and upstream subject; 'extauthz keys rotate' seals them again.",
	}, []string{"provider"})
	if err := reg.Register(reads); err != nil {
		return nil, err
	}
	known := make(map[string]bool, len(providers))
	for _, p := range providers {
		known[p] = true
	}
	var once sync.Once
	return func(provider string) {
		if !known[provider] {
			provider = "other"
		}
		reads.WithLabelValues(provider).Inc()
		once.Do(func() {
			log.Warn("tokens sealed in the earlier format (v1, binding not sealed) were read; run 'extauthz keys rotate' to seal them again",
				"provider", provider)
		})
	}, nil
}
