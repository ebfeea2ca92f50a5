#!/usr/bin/env bash
# The test command (README "Test"; .ci/run runs exactly this). It installs what the tests run
# against (Debian packages for librdkafka's build and chromium for the console's browser tests,
# Apache Kafka from Maven Central, etcd and kube-apiserver for the Kubernetes tests, helm and
# kubectl for the chart), checks formatting and
# lints, runs every test of the workspace on the embedded memory channel, then runs the end-to-end
# scenario suite again with every broker on Kafka. Tests start the Kafka brokers they need
# (scripts/kafka-up.sh, one shared per test process).
#
# Honours CARGO_TARGET_DIR (CI may keep the build cache outside the clone; the tools live in it
# too) and KNACTOR_TOOLS_CACHE (prebuilt tool binaries, default ../shared/tools).
set -euo pipefail
cd "$(dirname "$0")/.."

# A run from a clean clone gains nothing from incremental compilation, whose state about doubles
# the build's size on disk (one CI run ran out of disk while linking a test binary). A developer who
# wants it sets CARGO_INCREMENTAL=1.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
build_dir=${CARGO_TARGET_DIR:-target}
[ -d "$build_dir" ] || build_dir=.
echo "== disk: $(df -h --output=avail "$build_dir" | tail -n 1 | tr -d ' ') free for the build (a cold build needs about 15 GB)"

echo "== tools"
tools_env=$(scripts/install-tools.sh --only debs,kafka,kube,helm | tail -n 1 | sed 's/^source //')
# shellcheck disable=SC1090
source "$tools_env"

echo "== rustfmt"
cargo fmt --all -- --check

echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== rustdoc (links resolve; the doc comments read as docs)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

echo "== tests (memory channel)"
# Every test binary runs even after one fails, so one run names every failing test.
cargo test --workspace --locked --no-fail-fast

echo "== end-to-end scenarios on Kafka (Apache Kafka 4, KRaft)"
KNACTOR_E2E_CHANNEL=kafka cargo test --locked --no-fail-fast -p knactor \
    --test ingress --test filters --test delivery --test supervision --test reload \
    --test sources --test kube_sources --test tracing --test contract

echo "== Helm chart (lint, render, schemas, dry-run, install/upgrade/uninstall against kube-apiserver 1.20)"
scripts/chart-check.sh

echo "== fuzzing: every cargo-fuzz target for 30 s, on the stable toolchain a fresh machine has"
KNACTOR_FUZZ_TOOLCHAIN=stable scripts/fuzz.sh 30

echo "== bench smoke: every bench briefly (numbers not asserted; each checks every accepted event delivered)"
scripts/bench-smoke.sh
