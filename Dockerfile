# syntax=docker/dockerfile:1
#
# The extauthz image: a static binary (CGO off) on distroless "static", run as
# an unprivileged user. Build it with a version stamp:
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse HEAD) -t extauthz .
#
# deploy/dockerfile_test.go runs the same `go build` as the build stage and
# checks that the result is static and reports the stamped version.

# The builder runs on the build machine's platform and cross-compiles for the
# target (docker buildx build --platform linux/amd64,linux/arm64 ...).
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath \
      -ldflags "-s -w -X github.com/extauthz/extauthz/internal/cli.Version=${VERSION}" \
      -o /out/extauthz ./cmd/extauthz

# distroless/static: CA certificates, /etc/passwd with "nonroot" (65532),
# tzdata; no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="extauthz" \
      org.opencontainers.image.description="Envoy/Istio ext_authz service that swaps the caller's JWT for upstream tokens" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/extauthz /extauthz
# Numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
# 9001: ext_authz gRPC (and grpc.health.v1). 9090: /metrics, /healthz, /readyz.
EXPOSE 9001 9090
ENTRYPOINT ["/extauthz"]
CMD ["serve", "--config", "/etc/extauthz/config.yaml"]
