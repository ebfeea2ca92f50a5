#!/usr/bin/env bash
# A short run of every bench (CI): each one builds, starts what it measures, moves a few hundred
# events and prints its tables, so a bench that breaks fails here instead of on the day someone
# measures. Timings are not asserted (the machine is shared); what the benches assert themselves
# is: every event accepted and every accepted event delivered. Debug build, the test build's
# dependencies; results go to target/bench-smoke/, never over target/bench-results/.
#
#   scripts/bench-smoke.sh
#
# Needs Apache Kafka and valgrind (scripts/install-tools.sh --only debs,kafka, done here; cached), and Go for Knative's
# broker next to knactor's (scripts/knative-up.sh builds it on first use: about 5 minutes cold, cached
# in target/knative).
set -euo pipefail
cd "$(dirname "$0")/.."

tools_env=$(scripts/install-tools.sh --only debs,kafka,kube | tail -n 1 | sed 's/^source //')
# shellcheck disable=SC1090
source "$tools_env"
export KNACTOR_BENCH_RESULTS=${CARGO_TARGET_DIR:-target}/bench-smoke

smoke() {
    local bench=$1
    shift
    echo "== bench smoke: $bench $*"
    local began=$SECONDS
    cargo test --locked --bench "$bench" -- "$@"
    echo "== bench smoke: $bench passed in $((SECONDS - began)) s"
}

smoke filter_matching --bench --warm-up-time 0.05 --measurement-time 0.1 --sample-size 10
smoke e2e_load --events 300 --rounds 1 --concurrency 8
smoke instructions --events 100 --warm-up 100
smoke kafka_load --events 300 --warm-up 50 --rounds 1 --concurrency 8 --bytes-events 100 \
    --cluster-brokers 1
smoke knative_side_by_side --smoke
