#!/usr/bin/env bash
# knactor in one command, on the embedded default (memory channel, no Kafka, no cluster): starts an
# event-display sink and a node with the YAML in this folder, sends one CloudEvent to the broker,
# shows it arriving, and traces where it went. Ctrl-C (or the end of the script) stops both.
#
#   KNACTOR_BIN=path/to/knactor   the binary to run (default: cargo build --release, then
#                                 target/release/knactor)
#   PORT=8080                     the node's port (its broker ingress and admin API)
#   SINK_PORT=8081                the event-display sink's port
#
# The NodeConfig of this folder names the sink at 127.0.0.1:8081; the script runs a copy of the
# folder whose NodeConfig names SINK_PORT instead.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
port="${PORT:-8080}"
sink_port="${SINK_PORT:-8081}"
for value in "$port" "$sink_port"; do
  if ! [[ "$value" =~ ^[0-9]+$ ]] || ((value < 1 || value > 65535)); then
    echo "PORT and SINK_PORT are port numbers (1-65535), not ${value@Q}" >&2
    exit 2
  fi
done

if [[ -n "${KNACTOR_BIN:-}" ]]; then
  bin="$KNACTOR_BIN"
  if [[ ! -x "$bin" ]]; then
    echo "KNACTOR_BIN=$bin is not an executable file" >&2
    exit 2
  fi
else
  echo "building knactor (cargo build --release; set KNACTOR_BIN to use a binary you have)..."
  root="$(cd "$here/../.." && pwd)"
  (cd "$root" && cargo build --release --quiet --bin knactor)
  target="${CARGO_TARGET_DIR:-target}"
  [[ "$target" == /* ]] || target="$root/$target"
  bin="$target/release/knactor"
fi

work="$(mktemp -d -t knactor-quickstart.XXXXXX)"
config="$work/config"
log="$work/node.log"
mkdir "$config"
cp "$here/broker.yaml" "$here/trigger.yaml" "$config/"
sed "s|http://127.0.0.1:8081|http://127.0.0.1:${sink_port}|" "$here/node.yaml" >"$config/node.yaml"
grep -q "http://127.0.0.1:${sink_port}\$" "$config/node.yaml" || {
  echo "$here/node.yaml no longer names the sink http://127.0.0.1:8081: update this script" >&2
  exit 1
}

display=""
node=""
cleanup() {
  for pid in $display $node; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

node_url="http://127.0.0.1:${port}"
"$bin" display --listen "127.0.0.1:${sink_port}" &
display=$!
"$bin" run --config "$config" --listen "127.0.0.1:${port}" >"$log" 2>&1 &
node=$!

ready=""
for _ in $(seq 1 100); do
  if ! kill -0 "$node" 2>/dev/null; then
    echo "the node stopped (is port ${port} free? PORT chooses another):" >&2
    cat "$log" >&2
    exit 1
  fi
  if ! kill -0 "$display" 2>/dev/null; then
    echo "the event-display sink stopped (is port ${sink_port} free? SINK_PORT chooses another)" >&2
    exit 1
  fi
  if "$bin" status --node "$node_url" -o json 2>/dev/null | grep -q '"ready": true'; then
    ready=yes
    break
  fi
  sleep 0.1
done
if [[ -z "$ready" ]]; then
  echo "the node is not ready after 10 s; its log:" >&2
  cat "$log" >&2
  exit 1
fi
"$bin" status --node "$node_url"

echo
echo "sending one event to ${node_url}/default/default ..."
"$bin" send "${node_url}/default/default" \
  --type dev.knactor.quickstart --source /quickstart --data '{"hello":"knactor"}' | tee "$work/sent"
sleep 1
id="$(sed -n 's/^id: //p' "$work/sent")"
echo
echo "where it went (knactor trace $id):"
"$bin" trace "$id" --node "$node_url"
echo
echo "(node log: $log)"
