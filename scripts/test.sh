#!/usr/bin/env bash
# The test command (README "Test"; .ci/run runs exactly this): formatting, lints with warnings as
# errors, then every test of the workspace: unit tests, the CESQL TCK, Knative's samples, the actor
# scenarios, and the end-to-end suite that drives the real binary over loopback sockets.
#
# Honours CARGO_TARGET_DIR (CI may keep the build cache outside the clone).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== rustfmt"
cargo fmt --all -- --check

echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
cargo test --workspace --locked
