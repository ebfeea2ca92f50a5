#!/usr/bin/env bash
# Builds and starts Knative Eventing's own broker data plane (the multi-tenant channel-based broker on
# an InMemoryChannel) against a kube-apiserver, for benches/knative_side_by_side.rs:
#
#   scripts/knative-up.sh --build              only builds (a quick no-op when built); prints the bin dir
#   scripts/knative-up.sh DIR KUBECONFIG       builds if needed, applies Knative's CRDs and ConfigMaps
#                                              from the module's config/, starts the three programs
#
# The programs are `cmd/broker/ingress`, `cmd/broker/filter` and `cmd/in_memory/channel_dispatcher` of
# the Go module knative.dev/eventing@$KNATIVE_EVENTING_VERSION (default below), built with `go build`
# from the Go module proxy into $KNATIVE_DIR/<version>/bin; KNATIVE_DIR is
# ${KNACTOR_KNATIVE_DIR:-${CARGO_TARGET_DIR:-<repo>/target}/knative}, and the Go module and build caches
# live in $KNATIVE_DIR/go (a clean one takes minutes: see the README's Performance section). Nothing of
# Knative's source is kept in this repository; the CRDs and ConfigMaps are read from the module cache.
#
# Knative's controllers do not run: whoever uses the data plane writes what they would (Broker status
# with its channel address, the InMemoryChannel's subscribers and status, Trigger status with the
# subscriber URI). The ingress and the filter listen on free 127.0.0.1 ports; the channel dispatcher
# listens on :8080 and :8443 (fixed in its source: both must be free). The addresses in the statuses are
# loopback ports, so no cluster DNS name is ever resolved.
#
# KNATIVE_INGRESS_PORT and KNATIVE_FILTER_PORT choose the ingress's and the filter's ports (else free
# ones). Knative's resources are applied once per DIR (DIR/applied marks it).
#
# Writes DIR/ports (INGRESS_PORT=, FILTER_PORT=, DISPATCHER_PORT=8080), DIR/pids ("<program> PID"
# lines), DIR/<program>.log, and returns once the three serve HTTP (the ingress and filter only
# listen once their informers have synced). Stop them with scripts/knative-down.sh DIR.
set -euo pipefail
source "$(dirname "$0")/tools-lib.sh"

VERSION=${KNATIVE_EVENTING_VERSION:-v0.49.2}
KNATIVE_DIR=${KNACTOR_KNATIVE_DIR:-${CARGO_TARGET_DIR:-$KNACTOR_REPO/target}/knative}
[[ $KNATIVE_DIR == /* ]] || KNATIVE_DIR=$KNACTOR_REPO/$KNATIVE_DIR
BIN=$KNATIVE_DIR/$VERSION/bin
PROGRAMS=(ingress filter channel_dispatcher)
PACKAGES=(cmd/broker/ingress cmd/broker/filter cmd/in_memory/channel_dispatcher)

log() { echo "knative-up: $*" >&2; }

# The Go environment of every go command here: caches of our own, the installed toolchain only.
go_env() {
    env GOPATH="$KNATIVE_DIR/go" GOMODCACHE="$KNATIVE_DIR/go/mod" GOCACHE="$KNATIVE_DIR/go/cache" \
        GOFLAGS="-modcacherw -buildvcs=false -mod=mod" GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 "$@"
}

# module_dir: where the module's files are in the module cache (downloads it when missing).
module_dir() {
    go_env go mod download -json "knative.dev/eventing@$VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p'
}

build() {
    local stamp=$BIN/.built
    if [[ -f $stamp && $(cat "$stamp") == "$VERSION $(go env GOVERSION)" ]]; then
        local p missing=
        for p in "${PROGRAMS[@]}"; do [[ -x $BIN/$p ]] || missing=1; done
        [[ -z $missing ]] && return 0
    fi
    command -v go >/dev/null || die "go not found: Knative's data plane is built with Go ($VERSION needs the go version its go.mod names)"
    local started=$SECONDS mod work=$KNATIVE_DIR/$VERSION/build
    log "building knative.dev/eventing@$VERSION (${PACKAGES[*]}) with $(go env GOVERSION)"
    mod=$(module_dir)
    [[ -n $mod && -f $mod/go.mod ]] || die "knative.dev/eventing@$VERSION: not in the Go module proxy"
    # `go install pkg@version` would need the module's version list (for deprecation notices), which
    # the proxy may refuse: build from a module of our own that requires the pinned version instead.
    mkdir -p "$work" "$BIN"
    printf 'module knactor.bench/knative\n\n%s\n\nrequire knative.dev/eventing %s\n' \
        "$(grep -m1 '^go ' "$mod/go.mod")" "$VERSION" >"$work/go.mod"
    # The pinned module's own go.sum pins every dependency's checksum, as its release did.
    cp "$mod/go.sum" "$work/go.sum"
    chmod u+w "$work/go.sum"
    (cd "$work" && go_env go build -trimpath -o "$BIN/" "${PACKAGES[@]/#/knative.dev/eventing/}") ||
        die "go build of knative.dev/eventing@$VERSION failed"
    echo "$VERSION $(go env GOVERSION)" >"$stamp"
    log "built in $((SECONDS - started)) s: $BIN"
}

if [[ ${1:-} == --build ]]; then
    build
    echo "$BIN"
    exit 0
fi
(($# == 2)) || die "usage: $0 DIR KUBECONFIG | $0 --build"
mkdir -p "$1"
dir=$(cd "$1" && pwd)
kubeconfig=$2
build
config=$(module_dir)/config

load_tools
kubectl=${KNACTOR_KUBECTL:-$(tool kubectl)}
kc=(--kubeconfig "$kubeconfig" --cache-dir "$dir/kubectl-cache" --request-timeout 30s)

pid_of() { sed -n "s/^$1 //p" "$dir/pids" 2>/dev/null; }
# exited PID: the process is gone (or a zombie). One that has not exec'd its program yet (a loaded
# machine can take longer than start's 20 s) has not exited: the wait below goes on for it.
exited() { [[ -z $1 || ! -e /proc/$1 ]] || grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
for p in "${PROGRAMS[@]}"; do
    alive "$(pid_of "$p")" "$BIN/$p" && die "already running in $dir (scripts/knative-down.sh $dir)"
done
for port in 8080 8443; do
    port_free "$port" || die "port $port is taken: Knative's channel dispatcher listens on :8080 and :8443 (fixed in its source)"
done

# Knative's resources, as its release installs them: the namespace, the CRDs the three programs
# watch, and the default ConfigMaps (config-features, config-logging, config-observability, ...).
# Server-side apply: the CRDs are too large for client-side apply's annotation. --validate=false: the
# CRDs carry fields newer than this API server knows (it drops them, as it should).
files=("$config/core/100-namespace.yaml")
for crd in broker trigger subscription eventtype eventpolicy; do files+=("$config/core/resources/$crd.yaml"); done
files+=("$config/channels/in-memory-channel/resources/in-memory-channel.yaml")
files+=("$config"/core/configmaps/*.yaml "$config/channels/in-memory-channel/configmaps/event-dispatcher.yaml")
[[ -f $dir/applied ]] || for f in "${files[@]}"; do
    "$kubectl" "${kc[@]}" apply --server-side --force-conflicts --validate=false -f "$f" >>"$dir/apply.log" 2>&1 ||
        { tail -n 20 "$dir/apply.log" >&2; die "kubectl apply -f $f failed"; }
done
"$kubectl" "${kc[@]}" wait --for condition=established --timeout 60s \
    crd/brokers.eventing.knative.dev crd/triggers.eventing.knative.dev crd/subscriptions.messaging.knative.dev \
    crd/eventtypes.eventing.knative.dev crd/eventpolicies.eventing.knative.dev \
    crd/inmemorychannels.messaging.knative.dev >>"$dir/apply.log" 2>&1 ||
    { tail -n 20 "$dir/apply.log" >&2; die "Knative's CRDs are not established"; }
touch "$dir/applied"

read -r -d '' ingress_port INGRESS_HTTPS filter_port FILTER_HTTPS PROF_INGRESS PROF_FILTER PROF_DISPATCHER < <(free_ports 7) || true
INGRESS_PORT=${KNATIVE_INGRESS_PORT:-$ingress_port}
FILTER_PORT=${KNATIVE_FILTER_PORT:-$filter_port}
for port in "$INGRESS_PORT" "$FILTER_PORT"; do
    port_free "$port" || die "port $port is taken"
done
printf 'INGRESS_PORT=%s\nFILTER_PORT=%s\nDISPATCHER_PORT=8080\n' "$INGRESS_PORT" "$FILTER_PORT" >"$dir/ports"

# start NAME ENV...: run $BIN/NAME with the environment of its Deployment in Knative's config/ (the
# values the downward API would give it: namespace, pod name), logging to DIR/NAME.log.
# KUBERNETES_MIN_VERSION: this release refuses API servers older than its minimum (checked by the
# dispatcher's sharedmain); the tests' API server is v1.20.2.
common=(SYSTEM_NAMESPACE=knative-eventing KUBECONFIG="$kubeconfig"
    CONFIG_LOGGING_NAME=config-logging CONFIG_OBSERVABILITY_NAME=config-observability
    KUBERNETES_MIN_VERSION=v1.20.0)
: >"$dir/pids"
start() {
    local name=$1
    shift
    env "${common[@]}" "$@" "$BIN/$name" </dev/null >>"$dir/$name.log" 2>&1 &
    local pid=$! i
    echo "$name $pid" >>"$dir/pids"
    # Until the child has exec'd, its command line is this script's (20 s: a cold page cache and
    # a loaded machine make the first exec of a 90 MB binary slow).
    for ((i = 0; i < 400; i++)); do
        alive "$pid" "$BIN/$name" && return 0
        sleep 0.05
    done
}
# NAMESPACE: the ingress's and filter's Deployments set it; the dispatcher's does not (with it, the
# dispatcher would only serve channels in that namespace).
start ingress NAMESPACE=knative-eventing POD_NAME=mt-broker-ingress-0 CONTAINER_NAME=ingress METRICS_DOMAIN=knative.dev/internal/eventing \
    INGRESS_PORT="$INGRESS_PORT" INGRESS_PORT_HTTPS="$INGRESS_HTTPS" PROFILING_PORT="$PROF_INGRESS"
start filter NAMESPACE=knative-eventing POD_NAME=mt-broker-filter-0 CONTAINER_NAME=filter METRICS_DOMAIN=knative.dev/internal/eventing \
    FILTER_PORT="$FILTER_PORT" FILTER_PORT_HTTPS="$FILTER_HTTPS" PROFILING_PORT="$PROF_FILTER"
start channel_dispatcher POD_NAME=imc-dispatcher-0 CONTAINER_NAME=dispatcher \
    METRICS_DOMAIN=knative.dev/inmemorychannel-dispatcher MAX_IDLE_CONNS=1000 MAX_IDLE_CONNS_PER_HOST=1000 \
    PROFILING_PORT="$PROF_DISPATCHER"

for ((i = 0; i < 1200; i++)); do  # 120 s
    up=0
    for p in "${PROGRAMS[@]}"; do
        if exited "$(pid_of "$p")"; then
            echo "---- $dir/$p.log (tail)" >&2
            tail -n 30 "$dir/$p.log" >&2
            "$(dirname "$0")/knative-down.sh" "$dir"
            die "$p exited"
        fi
    done
    port_open "$INGRESS_PORT" && ((up += 1))
    port_open "$FILTER_PORT" && ((up += 1))
    port_open 8080 && ((up += 1))
    ((up == 3)) && break
    sleep 0.1
done
if ((up < 3)); then
    for p in "${PROGRAMS[@]}"; do echo "---- $dir/$p.log (tail)" >&2; tail -n 20 "$dir/$p.log" >&2; done
    "$(dirname "$0")/knative-down.sh" "$dir"
    die "Knative's data plane did not listen within 120 s"
fi
cat "$dir/ports"
