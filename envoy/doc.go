// Package envoy holds Envoy configuration that works with extauthz; it has no
// Go API. envoy-mtls.yaml is a complete bootstrap that calls extauthz over
// mutual TLS; envoy_test.go checks that it parses and validates against
// Envoy's v3 API (go-control-plane).
package envoy
