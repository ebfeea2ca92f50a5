#!/usr/bin/env bash
# Starts Apache Kafka (KRaft) on 127.0.0.1 for tests, one broker or a cluster, its data in DIR
# (needs scripts/install-tools.sh --only kafka first):
#
#   scripts/kafka-up.sh DIR [--brokers N] [--owner PID]    the cluster (N: 1, the default, or more)
#   scripts/kafka-up.sh DIR --broker I                      broker I (1..N) again, e.g. after a kill
#
# Broker i is a combined KRaft node (broker and controller; the N controllers are the quorum) on two
# free loopback ports, one JVM with -Xms256m -Xmx512m: DIR/broker-i/server.properties (written here,
# the only place that knows the brokers' settings), data in DIR/broker-i/data, its log in
# DIR/broker-i.log (what the JVM itself prints: DIR/broker-i.out), its pid in DIR/broker-i.pid.
# Topics and __consumer_offsets get min(N, 3) replicas, min.insync.replicas is 2 from 3 brokers on.
#
# Returns once the cluster is usable, not merely listening: every broker answers a metadata
# request naming all N brokers (the quorum elected a leader; each broker registered, is unfenced and
# caught up) and a group coordinator is found (scripts/kafka/ready.py). Then writes DIR/bootstrap
# and prints the bootstrap list, 127.0.0.1:P1,127.0.0.1:P2,..., as its last line.
#
# On a DIR that already holds a cluster it starts the brokers that are not running, on the same
# ports with the same data (a cluster restart, as clients see it); everything running: prints the
# bootstrap list and does nothing else. Stop it with scripts/kafka-down.sh DIR.
#
# --owner PID: the cluster lives no longer than process PID. A watcher (kafka-down.sh --after PID)
# kills the brokers and deletes DIR once PID is gone: what a test harness wants, since a test
# process may exit without dropping what it shares, or be killed. DIR/owner keeps PID.
set -euo pipefail
source "$(dirname "$0")/tools-lib.sh"

usage="usage: $0 DIR [--brokers N] [--owner PID] | $0 DIR --broker I"
(($# >= 1)) && [[ $1 != -* ]] || die "$usage"
mkdir -p "$1"
dir=$(cd "$1" && pwd)
shift
brokers= only= owner=
while (($#)); do
    case $1 in
        --brokers) brokers=${2:?--brokers needs N}; shift 2 ;;
        --broker) only=${2:?--broker needs I}; shift 2 ;;
        --owner) owner=${2:?--owner needs a PID}; shift 2 ;;
        *) die "unknown argument $1 ($usage)" ;;
    esac
done
[[ -z $brokers || $brokers =~ ^[1-9][0-9]*$ ]] || die "--brokers $brokers: a number from 1 on"
[[ -z $owner || -d /proc/$owner ]] || die "--owner $owner: no such process"

load_tools
# From the environment, else from tools.env (an environment loaded before Kafka was installed).
libs=${KNACTOR_KAFKA_LIBS:-$(sed -n "s/^export KNACTOR_KAFKA_LIBS='\(.*\)'$/\1/p" "$TOOLS_DIR/tools.env" 2>/dev/null || true)}
[[ -n $libs ]] && compgen -G "$libs/kafka_2.13-*.jar" >/dev/null ||
    die "Apache Kafka is not installed${libs:+ at $libs}: run scripts/install-tools.sh --only kafka"
java=${KNACTOR_JAVA:-$(command -v java || true)}
[[ -x $java ]] || die "no java: Apache Kafka needs a Java 17+ runtime (apt-get install openjdk-17-jre-headless)"

# ---- the cluster's shape: chosen once, kept in DIR --------------------------------------------------
if [[ -f $dir/brokers ]]; then
    n=$(cat "$dir/brokers")
    [[ -z $brokers || $brokers == "$n" ]] || die "$dir holds a cluster of $n brokers, not $brokers"
else
    [[ -z $only ]] || die "--broker $only: no cluster in $dir (start it first)"
    n=${brokers:-1}
fi
[[ -z $only || ($only =~ ^[0-9]+$ && $only -ge 1 && $only -le $n) ]] ||
    die "--broker $only: the cluster in $dir has brokers 1..$n"

properties() { echo "$dir/broker-$1/server.properties"; }
pid_of() { cat "$dir/broker-$1.pid" 2>/dev/null || true; }
running() { alive "$(pid_of "$1")" "$(properties "$1")"; }
# port_of I NAME: the port of broker I's listener NAME (PLAINTEXT or CONTROLLER).
port_of() { sed -n "s|^listeners=.*$2://127\.0\.0\.1:\([0-9]*\).*|\1|p" "$(properties "$1")"; }

write_configuration() {
    local ports i voters=
    mapfile -t ports < <(free_ports $((2 * n)))
    for ((i = 1; i <= n; i++)); do voters+="${voters:+,}$i@127.0.0.1:${ports[n + i - 1]}"; done
    local replicas=$((n < 3 ? n : 3))
    local min_isr=$((replicas == 3 ? 2 : 1))
    for ((i = 1; i <= n; i++)); do
        mkdir -p "$dir/broker-$i"
        cat >"$(properties "$i")" <<EOF
# Written by scripts/kafka-up.sh: broker $i of a test cluster of $n. Change kafka-up.sh, not this.
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:${ports[i - 1]},CONTROLLER://127.0.0.1:${ports[n + i - 1]}
advertised.listeners=PLAINTEXT://127.0.0.1:${ports[i - 1]}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/broker-$i/data
default.replication.factor=$replicas
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$replicas
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$min_isr
# A group's first member gets its partitions at once, not after 3 s.
group.initial.rebalance.delay.ms=0
EOF
    done
    # Every broker's log4j2 output to its own file (the system property names it).
    cat >"$dir/log4j2.properties" <<'EOF'
# Written by scripts/kafka-up.sh.
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:knactor.kafka.log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
}

# A cluster id as StorageTool random-uuid makes one (16 random bytes, base64url, never starting with
# "-"), without starting a JVM for it.
cluster_id() {
    python3 -c 'import base64, uuid
while True:
    id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    if not id.startswith("-"):
        print(id)
        break'
}

format_storage() {  # format_storage I CLUSTER_ID: once, before broker I first starts
    "$java" -Xms32m -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$libs/*" \
        -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dknactor.kafka.log="$dir/broker-$1.log" \
        kafka.tools.StorageTool format -t "$2" -c "$(properties "$1")" \
        </dev/null >"$dir/broker-$1/format.log" 2>&1 ||
        { cat "$dir/broker-$1/format.log" >&2; die "formatting broker $1's storage failed"; }
}

start_broker() {
    local i=$1 port
    for port in $(port_of "$i" PLAINTEXT) $(port_of "$i" CONTROLLER); do
        port_free "$port" || die "broker $i's port $port is taken (by another process)"
    done
    (exec "$java" -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dknactor.kafka.log="$dir/broker-$i.log" \
        -cp "$libs/*" kafka.Kafka "$(properties "$i")" </dev/null >>"$dir/broker-$i.out" 2>&1) &
    echo $! >"$dir/broker-$i.pid"
}

# The watcher of --owner: one per cluster, kept across broker restarts.
watch_owner() {
    [[ -n $owner ]] || return 0
    echo "$owner" >"$dir/owner"  # for whoever cleans up after an owner whose watcher was killed
    alive "$(cat "$dir/owner-watch.pid" 2>/dev/null || true)" kafka-down.sh && return
    local detach=
    if command -v setsid >/dev/null; then detach=setsid; fi  # outlives a Ctrl-C of the owner's group
    $detach "$KNACTOR_REPO/scripts/kafka-down.sh" "$dir" --kill --remove --after "$owner" \
        </dev/null >/dev/null 2>&1 &
    echo $! >"$dir/owner-watch.pid"
}

bootstrap() {
    local i list=
    for ((i = 1; i <= n; i++)); do list+="${list:+,}127.0.0.1:$(port_of "$i" PLAINTEXT)"; done
    echo "$list"
}

# ---- start -------------------------------------------------------------------------------------------
if [[ ! -f $dir/brokers ]]; then
    rm -rf "$dir"/broker-*  # what a start that failed half-way left
    write_configuration
    id=$(cluster_id)
    for ((i = 1; i <= n; i++)); do format_storage "$i" "$id" & done
    for ((i = 1; i <= n; i++)); do wait -n || die "formatting the storage failed"; done
    echo "$n" >"$dir/brokers"
fi
watch_owner

started=()
for ((i = 1; i <= n; i++)); do
    [[ -z $only || $i == "$only" ]] || continue
    running "$i" && continue
    start_broker "$i"
    started+=("$i")
done

pids=() addresses=()
for ((i = 1; i <= n; i++)); do
    addresses+=("127.0.0.1:$(port_of "$i" PLAINTEXT)")
    if running "$i"; then pids+=(--pid "$(pid_of "$i")"); fi
done
if ! python3 "$KNACTOR_REPO/scripts/kafka/ready.py" --brokers "$n" --timeout 120 "${pids[@]}" \
    ${owner:+--owner "$owner"} "${addresses[@]}"; then
    for i in "${started[@]}"; do
        echo "---- $dir/broker-$i.log (tail)" >&2
        tail -n 20 "$dir/broker-$i.log" "$dir/broker-$i.out" >&2 2>/dev/null || true
        stop "$(pid_of "$i")" "$(properties "$i")"
        rm -f "$dir/broker-$i.pid"
    done
    die "the Kafka cluster in $dir is not usable (logs: $dir/broker-*.log)"
fi

bootstrap >"$dir/bootstrap"
cat "$dir/bootstrap"
