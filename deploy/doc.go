// Package deploy holds the files that deploy extauthz, and no Go API:
// compose/ is the configuration docker-compose.yaml (at the repository root)
// mounts, kubernetes/ the Kubernetes manifests, helm/extauthz the Helm
// chart, prometheus/ the alert rules, nginx/, caddy/ and traefik/ the proxy
// examples. Its tests check those files, the Dockerfile, .dockerignore and
// the Istio manifests in envoy/istio/ against the types and the
// configuration loader that consume them (the chart rendered and linted
// with Helm's own packages).
//
// It is a module of its own, github.com/extauthz/extauthz/deploy, which
// uses the main module's packages through a replace directive: the
// Kubernetes, Helm, Istio and Compose types its tests need are none of the
// library's dependencies. scripts/test runs it with the main module.
package deploy
