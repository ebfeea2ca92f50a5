#!/usr/bin/env bash
# Stops the Knative data plane that scripts/knative-up.sh DIR started (SIGTERM, then SIGKILL after 10 s).
#
#   scripts/knative-down.sh DIR
set -euo pipefail
source "$(dirname "$0")/tools-lib.sh"

(($# == 1)) || die "usage: $0 DIR"
[[ -f $1/pids ]] || exit 0
while read -r name pid; do
    stop "$pid" "$name"
done <"$1/pids"
: >"$1/pids"
