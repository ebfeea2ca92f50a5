#!/usr/bin/env bash
# Stops the tansu broker that scripts/tansu-up.sh DIR started (SIGTERM, SIGKILL after 10 s). Keeps its
# data (DIR/tansu.db) and log; removes DIR/tansu.pid. Nothing running: does nothing.
#
#   scripts/tansu-down.sh DIR
set -euo pipefail
source "$(dirname "$0")/tools-lib.sh"

(($# == 1)) || die "usage: $0 DIR"
[[ -f $1/tansu.pid ]] || exit 0
stop "$(cat "$1/tansu.pid")" tansu
rm -f "$1/tansu.pid"
