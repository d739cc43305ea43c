// Package envoy holds Envoy and Istio configuration that works with extauthz;
// it has no Go API. envoy.yaml is a complete bootstrap (the one
// docker-compose.yaml runs) and envoy-mtls.yaml the same with mutual TLS to
// extauthz; envoy_test.go validates every Envoy file here against Envoy's v3
// API (go-control-plane), typed configs included, and checks that the two
// agree. istio/ holds the mesh's extension provider and the
// AuthorizationPolicies, checked by the tests in ../deploy.
package envoy
