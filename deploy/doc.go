// Package deploy holds the files that deploy extauthz, and no Go API:
// compose/ is the configuration docker-compose.yaml (at the repository root)
// mounts, kubernetes/ the Kubernetes manifests. Its tests check those files,
// the Dockerfile, .dockerignore and the Istio manifests in envoy/istio/
// against the types and the configuration loader that consume them.
package deploy
