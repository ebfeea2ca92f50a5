#!/usr/bin/env bash
# Stops the Kafka cluster that scripts/kafka-up.sh DIR started: SIGTERM to every broker at once (a
# controlled shutdown), SIGKILL to any still running after 10 s. Keeps the data, the configuration
# and the logs (kafka-up.sh DIR starts the same cluster again); removes the pid files. Nothing
# running: does nothing.
#
#   scripts/kafka-down.sh DIR [--broker I] [--kill] [--remove] [--after PID]
#
#   --broker I   only broker I (the others keep running)
#   --kill       SIGKILL at once: a crash as the cluster sees it, and quick
#   --remove     delete DIR afterwards
#   --after PID  first wait until process PID exits (what kafka-up.sh --owner PID runs)
set -euo pipefail
source "$(dirname "$0")/tools-lib.sh"

usage="usage: $0 DIR [--broker I] [--kill] [--remove] [--after PID]"
(($# >= 1)) && [[ $1 != -* ]] || die "$usage"
dir=$1
shift
only= kill= remove= after=
while (($#)); do
    case $1 in
        --broker) only=${2:?--broker needs I}; shift 2 ;;
        --kill) kill=1; shift ;;
        --remove) remove=1; shift ;;
        --after) after=${2:?--after needs a PID}; shift 2 ;;
        *) die "unknown argument $1 ($usage)" ;;
    esac
done

# running PID: the process exists and is not a zombie (exited, not yet reaped by its parent).
running() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    [[ ${stat##*) } != Z* ]]
}

if [[ -n $after ]]; then
    # Waits come what may: a sleep killed from outside, or a SIGTERM to this watcher, ends the
    # wait (and the cluster), never the watcher alone.
    stop_now=
    trap 'stop_now=1' TERM
    trap '' INT HUP
    while [[ -z $stop_now ]] && running "$after"; do sleep 0.5 || true; done
fi
[[ -d $dir ]] || exit 0
dir=$(cd "$dir" && pwd)

# kill_now PID NAME: SIGKILL, and wait until it is gone (its files are no longer written).
kill_now() {
    alive "$1" "$2" || return 0
    kill -9 "$1" 2>/dev/null || true
    while alive "$1" "$2"; do sleep 0.05; done
}

for pidfile in "$dir"/broker-*.pid; do
    [[ -f $pidfile ]] || continue
    i=${pidfile##*/broker-}
    i=${i%.pid}
    [[ -z $only || $i == "$only" ]] || continue
    name=$dir/broker-$i/server.properties
    if [[ -n $kill ]]; then kill_now "$(cat "$pidfile")" "$name" & else stop "$(cat "$pidfile")" "$name" & fi
done
wait
for pidfile in "$dir"/broker-*.pid; do
    [[ -f $pidfile ]] || continue
    i=${pidfile##*/broker-}
    i=${i%.pid}
    if [[ -z $only || $i == "$only" ]]; then rm -f "$pidfile"; fi
done

# The whole cluster is down: its --owner watcher (unless this is it) has nothing left to do.
if [[ -z $only && -f $dir/owner-watch.pid ]]; then
    if [[ -z $after ]]; then kill_now "$(cat "$dir/owner-watch.pid")" kafka-down.sh; fi
    rm -f "$dir/owner-watch.pid"
fi
if [[ -n $remove ]]; then rm -rf "$dir"; fi
