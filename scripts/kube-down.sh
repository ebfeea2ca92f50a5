#!/usr/bin/env bash
# Stops what scripts/kube-up.sh DIR started: kube-apiserver, then etcd (SIGTERM, SIGKILL after 10 s).
# Keeps DIR's data, certificates, token and logs; empties DIR/pids. Nothing running: does nothing.
#
#   scripts/kube-down.sh DIR
set -euo pipefail
source "$(dirname "$0")/tools-lib.sh"

(($# == 1)) || die "usage: $0 DIR"
[[ -f $1/pids ]] || exit 0
for name in kube-apiserver etcd; do
    stop "$(sed -n "s/^$name //p" "$1/pids")" "$name"
done
rm -f "$1/pids"
