// Package envoy holds Envoy and Istio configuration that works with extauthz;
// it has no Go API. envoy.yaml is a complete bootstrap (the one
// docker-compose.yaml runs) and envoy-mtls.yaml the same with mutual TLS to
// extauthz; envoy-http.yaml asks extauthz over HTTP (http_service) with the
// filter and cluster that "extauthz proxy-config envoy-http" prints for
// testdata/extauthz-http.yaml. envoy_test.go validates every Envoy file here
// against Envoy's v3 API (go-control-plane), typed configs included, checks
// that envoy.yaml and envoy-mtls.yaml agree, and envoyhttp_test.go that
// envoy-http.yaml is what the command prints. istio/ holds the mesh's
// extension provider and the AuthorizationPolicies, checked by the tests in
// ../deploy.
package envoy
