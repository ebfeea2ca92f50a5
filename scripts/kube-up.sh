#!/usr/bin/env bash
# Starts a Kubernetes API server for tests (etcd + kube-apiserver v1.20.2 on free 127.0.0.1 ports; no
# controller-manager, scheduler or kubelet), with all its state in DIR:
#
#   scripts/kube-up.sh DIR         (needs scripts/install-tools.sh --only kube first)
#
# KNACTOR_KUBE_APISERVER_ARGS adds flags to kube-apiserver's (split on spaces), e.g. a short
# --etcd-compaction-interval for a test of what a watch does when its position is gone.
#
# Writes DIR/kubeconfig (server https://127.0.0.1:PORT, the CA inline, a bearer token in
# system:masters), DIR/pids ("etcd PID" and "kube-apiserver PID" lines), DIR/ports (ETCD_PORT=,
# ETCD_PEER_PORT=, APISERVER_PORT= lines), DIR/token, DIR/pki/ (ca.crt...), DIR/etcd/ (data) and the logs
# DIR/etcd.log, DIR/kube-apiserver.log; prints the kubeconfig path once /readyz answers and the
# "default" namespace exists (about 4 minutes at most).
# Stop it with scripts/kube-down.sh DIR; kube-up.sh on the same DIR starts it again with the same data,
# certificates and token (and the same ports when they are free). Already running: does nothing.
set -euo pipefail
source "$(dirname "$0")/tools-lib.sh"

(($# == 1)) || die "usage: $0 DIR"
mkdir -p "$1"
dir=$(cd "$1" && pwd)
load_tools
etcd=$(tool etcd)
apiserver=${KNACTOR_KUBE_APISERVER:-$(tool kube-apiserver)}
kubectl=${KNACTOR_KUBECTL:-$(tool kubectl)}
kc=(--kubeconfig "$dir/kubeconfig" --cache-dir "$dir/kubectl-cache" --request-timeout 5s)

pid_of() { sed -n "s/^$1 //p" "$dir/pids" 2>/dev/null; }
if alive "$(pid_of kube-apiserver)" kube-apiserver && "$kubectl" "${kc[@]}" get --raw /readyz >/dev/null 2>&1; then
    echo "$dir/kubeconfig"
    exit 0
fi
"$(dirname "$0")/kube-down.sh" "$dir"  # leftovers of a half-started or crashed one

# Ports: the previous ones when all are free, else new ones.
if [[ -f $dir/ports ]]; then
    source "$dir/ports"
    port_free "$ETCD_PORT" && port_free "$ETCD_PEER_PORT" && port_free "$APISERVER_PORT" || rm "$dir/ports"
fi
# new_ports: pick three free ports and record them in DIR/ports.
new_ports() {
    read -r -d '' ETCD_PORT ETCD_PEER_PORT APISERVER_PORT < <(free_ports 3) || true
    printf 'ETCD_PORT=%s\nETCD_PEER_PORT=%s\nAPISERVER_PORT=%s\n' "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" >"$dir/ports"
}
[[ -f $dir/ports ]] || new_ports

# Certificates and credentials, made once per DIR.
pki=$dir/pki
if [[ ! -f $pki/server.crt ]]; then
    mkdir -p "$pki"
    (
        cd "$pki"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj /CN=knactor-test-ca \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=kube-apiserver
        printf '%s\n' subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc \
            basicConstraints=CA:FALSE keyUsage=critical,digitalSignature,keyEncipherment extendedKeyUsage=serverAuth >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile server.ext -out server.crt
        openssl genrsa -out sa.key 2048
    ) 2>"$dir/openssl.log" || { cat "$dir/openssl.log" >&2; die "openssl failed"; }
fi
[[ -s $dir/token ]] || openssl rand -hex 24 >"$dir/token"
token=$(cat "$dir/token")
echo "$token,admin,admin,system:masters" >"$pki/tokens.csv"

cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: knactor-test
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: admin
  user:
    token: $token
contexts:
- name: knactor-test
  context: {cluster: knactor-test, user: admin, namespace: default}
current-context: knactor-test
EOF

# start NAME CMD...: run CMD in the background, logging to DIR/NAME.log, and record its pid.
start() {
    local name=$1
    shift
    "$@" </dev/null >>"$dir/$name.log" 2>&1 &
    echo "$name $!" >>"$dir/pids"
}
fail() {
    echo "---- $dir/$1.log (tail)" >&2
    tail -n 40 "$dir/$1.log" >&2
    if [[ $1 == kube-apiserver ]]; then
        etcd_serving && echo "---- etcd runs and serves 127.0.0.1:$ETCD_PORT; its log (tail):" >&2 ||
            echo "---- etcd (pid $(pid_of etcd)) is no longer serving 127.0.0.1:$ETCD_PORT; its log (tail):" >&2
        tail -n 20 "$dir/etcd.log" >&2
    fi
    "$(dirname "$0")/kube-down.sh" "$dir"
    die "$2"
}

: >"$dir/pids"
# etcd_serving: the etcd started last runs and has logged that it serves 127.0.0.1:$ETCD_PORT (its
# own word, read from the lines it logged: a connect to the port alone counts another server that
# took the port meanwhile, with this etcd gone, and kube-apiserver then gives up on it).
etcd_serving() {
    alive "$(pid_of etcd)" etcd &&
        tail -n +"$((etcd_log_lines + 1))" "$dir/etcd.log" 2>/dev/null |
        grep -q "serving insecure client requests on 127.0.0.1:$ETCD_PORT,"
}
# etcd, up to 3 tries: a port picked as free may be taken by another test's server meanwhile.
for _ in 1 2 3; do
    touch "$dir/etcd.log"
    etcd_log_lines=$(wc -l <"$dir/etcd.log")
    start etcd "$etcd" --name knactor-test --data-dir "$dir/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "knactor-test=http://127.0.0.1:$ETCD_PEER_PORT"
    for ((i = 0; i < 600; i++)); do  # 60 s (a loaded machine starts several at once)
        etcd_serving && break
        alive "$(pid_of etcd)" etcd || break
        sleep 0.1
    done
    etcd_serving && break
    stop "$(pid_of etcd)" etcd
    : >"$dir/pids"
    new_ports
    sed -i "s|server: https://127.0.0.1:[0-9]*|server: https://127.0.0.1:$APISERVER_PORT|" "$dir/kubeconfig"
done
etcd_serving || fail etcd "etcd did not start on 127.0.0.1:$ETCD_PORT (3 tries)"

read -ra extra_args <<<"${KNACTOR_KUBE_APISERVER_ARGS:-}"
# Up to 3 tries: on a loaded machine kube-apiserver may give up on etcd at start ("context
# deadline exceeded") and exit; a second start finds etcd answering.
for attempt in 1 2 3; do
    start kube-apiserver "$apiserver" \
        --etcd-servers="http://127.0.0.1:$ETCD_PORT" --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
        --secure-port="$APISERVER_PORT" --insecure-port=0 --cert-dir="$pki" \
        --tls-cert-file="$pki/server.crt" --tls-private-key-file="$pki/server.key" --client-ca-file="$pki/ca.crt" \
        --token-auth-file="$pki/tokens.csv" --authorization-mode=RBAC \
        --service-account-issuer=https://kubernetes.default.svc \
        --service-account-key-file="$pki/sa.key" --service-account-signing-key-file="$pki/sa.key" \
        --service-cluster-ip-range=10.96.0.0/24 --disable-admission-plugins=ServiceAccount --profiling=false \
        "${extra_args[@]}"
    exited=
    for ((i = 0; i < 240; i++)); do  # 120 s
        "$kubectl" "${kc[@]}" get --raw /readyz >/dev/null 2>&1 && break
        if ! alive "$(pid_of kube-apiserver)" kube-apiserver; then exited=1; break; fi
        sleep 0.5
    done
    [[ -z $exited ]] && break
    ((attempt < 3)) || fail kube-apiserver "kube-apiserver exited (3 tries)"
    echo "kube-up.sh: kube-apiserver exited at start (try $attempt of 3), starting it again" >&2
    sed -i '/^kube-apiserver /d' "$dir/pids"
    sleep 1
done
((i < 240)) || fail kube-apiserver "kube-apiserver not ready after 120 s"
# /readyz can answer before the bootstrap controller has created the "default" namespace (it does so
# in a goroutine of its own): wait for it too, since tests and the chart check create things there.
for ((i = 0; i < 120; i++)); do  # 60 s
    "$kubectl" "${kc[@]}" get namespace default >/dev/null 2>&1 && break
    alive "$(pid_of kube-apiserver)" kube-apiserver || fail kube-apiserver "kube-apiserver exited"
    sleep 0.5
done
((i < 120)) || fail kube-apiserver "namespace default not created within 60 s of /readyz"
echo "$dir/kubeconfig"
