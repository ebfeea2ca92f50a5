# Helpers shared by scripts/install-tools.sh, kafka-up/down.sh, tansu-up/down.sh and kube-up/down.sh
# (sourced, not run).
#
# Sets KNACTOR_REPO and TOOLS_DIR (${KNACTOR_TOOLS_DIR:-${CARGO_TARGET_DIR:-<repo>/target}/knactor-tools};
# a relative CARGO_TARGET_DIR is taken from the repo root, where cargo runs) and loads $TOOLS_DIR/tools.env
# unless KNACTOR_TOOLS_BIN is already set.

KNACTOR_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS_DIR=${KNACTOR_TOOLS_DIR:-${CARGO_TARGET_DIR:-$KNACTOR_REPO/target}/knactor-tools}
[[ $TOOLS_DIR == /* ]] || TOOLS_DIR=$KNACTOR_REPO/$TOOLS_DIR

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# load_tools: make KNACTOR_TOOLS_BIN, KNACTOR_ETCD... available (from tools.env when not in the environment).
load_tools() {
    if [[ -z ${KNACTOR_TOOLS_BIN:-} && -f $TOOLS_DIR/tools.env ]]; then
        # shellcheck source=/dev/null
        source "$TOOLS_DIR/tools.env"
    fi
}

# tool NAME: path of an installed tool, or a hint to install it.
tool() {
    local path
    case $1 in
        etcd) path=${KNACTOR_ETCD:-$(command -v etcd || true)} ;;
        *) path=${KNACTOR_TOOLS_BIN:-$TOOLS_DIR/bin}/$1 ;;
    esac
    [[ -x $path ]] || die "$1 not found ($path): run scripts/install-tools.sh --only $1"
    echo "$path"
}

# free_ports N: N distinct free TCP ports on 127.0.0.1, one per line.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# port_open PORT: something accepts connections on 127.0.0.1:PORT. port_free PORT: a server could
# listen there (SO_REUSEADDR, as servers bind: a port left in TIME_WAIT by a stopped server is free).
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_free() {
    python3 -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}

# alive PID NAME: PID runs and its command line mentions NAME (guards against a recycled pid).
alive() { [[ -n $1 ]] && grep -qa -- "$2" "/proc/$1/cmdline" 2>/dev/null; }

# stop PID NAME: SIGTERM, up to 10 s, then SIGKILL; returns once it is gone (what it held, such as
# etcd's lock on its data directory, is free for the next start).
stop() {
    local pid=$1 name=$2 i
    alive "$pid" "$name" || return 0
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        alive "$pid" "$name" || return 0
        sleep 0.1
    done
    echo "$name (pid $pid) ignored SIGTERM for 10 s: SIGKILL" >&2
    kill -9 "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        alive "$pid" "$name" || return 0
        sleep 0.1
    done
}
