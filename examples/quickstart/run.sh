#!/usr/bin/env bash
# knactor in one command, on the embedded default (memory channel, no Kafka, no cluster):
# builds the binary, starts an event-display sink on :8081 and a node on :8080 with the YAML in
# this folder, sends one CloudEvent to the broker, and shows it arriving. Ctrl-C (or the end of the
# script) stops both.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."

echo "building knactor..."
cargo build --quiet --bin knactor
bin="${CARGO_TARGET_DIR:-target}/debug/knactor"
log="$(mktemp -t knactor-quickstart.XXXXXX)"

cleanup() { kill "$display" "$node" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$bin" display --listen 127.0.0.1:8081 &
display=$!
"$bin" run --config "$here" --listen 127.0.0.1:8080 >"$log" 2>&1 &
node=$!

for _ in $(seq 1 100); do
  if "$bin" status --node http://127.0.0.1:8080 2>/dev/null | grep -q "ready: true"; then break; fi
  sleep 0.1
done
"$bin" status --node http://127.0.0.1:8080

echo
echo "sending one event to http://127.0.0.1:8080/default/default ..."
"$bin" send http://127.0.0.1:8080/default/default \
  --type dev.knactor.quickstart --source /quickstart --data '{"hello":"knactor"}'
sleep 1
echo
echo "(node log: $log)"
