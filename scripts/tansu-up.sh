#!/usr/bin/env bash
# Starts a tansu Kafka-protocol broker on 127.0.0.1 for tests, its SQLite data in DIR:
#
#   scripts/tansu-up.sh DIR        (needs scripts/install-tools.sh --only tansu first)
#
# Writes DIR/bootstrap ("127.0.0.1:PORT", the Kafka bootstrap server), DIR/tansu.pid, DIR/tansu.db and
# logs to DIR/tansu.log; prints the bootstrap address. Stop it with scripts/tansu-down.sh DIR: the data
# stays, and tansu-up.sh on the same DIR starts it again on the same port when that port is still free
# (a broker restart as clients see it). Already running: prints the address and does nothing else.
set -euo pipefail
source "$(dirname "$0")/tools-lib.sh"

(($# == 1)) || die "usage: $0 DIR"
mkdir -p "$1"
dir=$(cd "$1" && pwd)
load_tools
tansu=${KNACTOR_TANSU:-$(tool tansu)}

if [[ -f $dir/tansu.pid ]] && alive "$(cat "$dir/tansu.pid")" tansu; then
    cat "$dir/bootstrap"
    exit 0
fi

port=
if [[ -f $dir/bootstrap ]]; then
    port=$(sed -n 's/^127\.0\.0\.1://p' "$dir/bootstrap")
    [[ -n $port ]] && port_free "$port" || port=
fi
[[ -n $port ]] || port=$(free_ports 1)

# Not memory:// (wrong high watermarks with librdkafka in 0.6.0). The sqlite path is joined to the
# working directory, even when absolute: start it in DIR.
url=tcp://127.0.0.1:$port
(cd "$dir" && exec "$tansu" broker --listener-url "$url" --advertised-listener-url "$url" \
    --storage-engine sqlite://tansu.db </dev/null >>tansu.log 2>&1) &
pid=$!
echo "$pid" >"$dir/tansu.pid"

for ((i = 0; i < 300; i++)); do  # 30 s
    port_open "$port" && break
    if ! alive "$pid" tansu; then i=300; break; fi
    sleep 0.1
done
if ((i == 300)); then
    tail -n 30 "$dir/tansu.log" >&2
    stop "$pid" tansu
    rm -f "$dir/tansu.pid"
    die "tansu did not start listening on 127.0.0.1:$port (log: $dir/tansu.log)"
fi

echo "127.0.0.1:$port" >"$dir/bootstrap"
echo "127.0.0.1:$port"
