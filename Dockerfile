# syntax=docker/dockerfile:1
# The knactor image: the `knactor` binary on a small Debian runtime, run as a non-root user.
# The Helm chart's default image is ghcr.io/knactor/knactor:<appVersion>:
#
#   docker build -t ghcr.io/knactor/knactor:0.1.0 .
#
# Stage 1 builds the workspace's binary with the toolchain the workspace is tested on; stage 2 keeps
# only the binary and the shared libraries it links (glibc, OpenSSL and zlib: see `ldd knactor`).

FROM rust:1.95-bookworm AS build
# rdkafka's cmake-build compiles librdkafka from source: the same build packages as
# scripts/install-tools.sh installs for the workspace (cmake, libcurl4-openssl-dev), plus OpenSSL
# (rdkafka's `ssl` feature: SASL_SSL, SCRAM), zlib and pkg-config, which rust:bookworm already has.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev libssl-dev zlib1g-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The cache mounts keep the crate registry and the build across image builds (BuildKit); the
# binary is copied out of the cached target directory, which the final stage cannot see.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin knactor \
 && install -D -m 0755 target/release/knactor /out/knactor

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 knactor \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin knactor \
 && install -d -o 65532 -g 65532 /var/lib/knactor
COPY --from=build /out/knactor /usr/local/bin/knactor
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
# The broker ingress, /healthz, /readyz and /metrics (`knactor run --listen`), and the admin API
# when the node is given `--admin-listen=0.0.0.0:9090` with `--admin-token-file` (the Helm chart
# keeps it on 127.0.0.1:9090, reached with kubectl port-forward).
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/knactor"]
CMD ["run", "--listen=0.0.0.0:8080"]
LABEL org.opencontainers.image.title="knactor" \
      org.opencontainers.image.description="An eventing mesh that speaks Knative Eventing" \
      org.opencontainers.image.source="https://github.com/knactor/knactor" \
      org.opencontainers.image.licenses="Apache-2.0"
