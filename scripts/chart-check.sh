#!/usr/bin/env bash
# Checks the Helm chart charts/knactor for real, and exits non-zero when anything fails:
#   - helm lint --strict and helm template, for the default values and each charts/knactor/examples/*.yaml,
#     rendered for Kubernetes 1.20 (autoscaling/v2beta2, policy/v1beta1) and for a current one (v2, v1);
#   - values.schema.json and the templates refuse bad values, each with the message expected;
#   - current renders against Kubernetes' JSON schemas (PyPI kubernetes-validate --strict), KEDA and
#     Prometheus Operator objects against schemas generated from their CRDs (npm @kubernetes-models/*);
#   - 1.20 renders and the example resources with `kubectl apply --dry-run=server` against a real
#     kube-apiserver v1.20.2 (scripts/kube-up.sh), the chart's CRDs applied first;
#   - what the admin token, the NetworkPolicy and the impersonation Roles render to;
#   - the admission webhook's objects as rendered (scope, Service, the generated CA as caBundle,
#     cert-manager's objects, none when off), dry-run with each render against the API server, and
#     the CA kept by helm upgrade (tests/admission.rs runs the configurations for real);
#   - every rendered Deployment's args are accepted by the knactor binary (`knactor run --dry-run`),
#     with the role that Deployment is for, and a node started with the rendered admin, drain and
#     budget flags and token locks its admin API and stops on SIGTERM within the grace period;
#   - helm install, upgrade and uninstall into that API server, and what knactor's ServiceAccount may
#     and may not do there (kubectl auth can-i), impersonation included; the admin token read as
#     NOTES.txt says and kept by helm upgrade;
#   - each checker first shows it can fail (a broken object must be refused).
# Whether crds/ matches the Rust types is a cargo test (adapters/kube), not repeated here.
#
#   scripts/chart-check.sh        (installs its tools: scripts/install-tools.sh --only helm,kube, a Python
#                                  venv and npm packages under the tools dir; honours KNACTOR_TOOLS_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools-lib.sh

CHART=charts/knactor
RELEASE=knactor
NAMESPACE=knactor-system
OLD_KUBE=1.20.2      # the API server scripts/kube-up.sh runs
NEW_KUBE=1.32.0      # helm's and kubectl's own version line; kubernetes-validate has its schemas
KUBERNETES_VALIDATE=kubernetes-validate==1.37.0
NPM_MODELS='{"@kubernetes-models/keda": "2.0.0", "@kubernetes-models/prometheus-operator": "6.0.0"}'

log() { echo "chart-check: $*" >&2; }

# ---- tools ----------------------------------------------------------------------------------------
log "tools (scripts/install-tools.sh --only helm,kube)"
tools_env=$(scripts/install-tools.sh --only helm,kube | tail -n 1 | sed 's/^source //')
# shellcheck disable=SC1090
source "$tools_env"
helm=$KNACTOR_HELM
kubectl=$KNACTOR_KUBECTL

# A venv with kubernetes-validate (and PyYAML, which it brings) under the tools dir.
venv=$KNACTOR_TOOLS_DIR/chart-venv
if [[ $(cat "$venv/.pins" 2>/dev/null) != "$KUBERNETES_VALIDATE" ]]; then
    log "python venv $venv ($KUBERNETES_VALIDATE)"
    rm -rf "$venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
        apt-get -qq update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q --disable-pip-version-check "$KUBERNETES_VALIDATE" >&2
    echo "$KUBERNETES_VALIDATE" >"$venv/.pins"
fi
py=$venv/bin/python

# The KEDA and Prometheus Operator models: JSON-schema validators generated from their CRDs.
npm_dir=$KNACTOR_TOOLS_DIR/chart-npm
if [[ $(cat "$npm_dir/.pins" 2>/dev/null) != "$NPM_MODELS" ]]; then
    log "npm packages in $npm_dir ($NPM_MODELS)"
    command -v npm >/dev/null || { apt-get -qq update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >&2; }
    rm -rf "$npm_dir"
    mkdir -p "$npm_dir"
    printf '{"name": "knactor-chart-check", "private": true, "type": "module", "dependencies": %s}\n' "$NPM_MODELS" >"$npm_dir/package.json"
    (cd "$npm_dir" && npm install --no-audit --no-fund --loglevel=error >npm.log 2>&1) || { cat "$npm_dir/npm.log" >&2; die "npm install failed"; }
    echo "$NPM_MODELS" >"$npm_dir/.pins"
fi
# validate.mjs FILE.json: each object (a JSON list) against the schema of its apiVersion and kind.
cat >"$npm_dir/validate.mjs" <<'EOF'
import { readFileSync } from "node:fs";
const packages = { "keda.sh": "@kubernetes-models/keda", "monitoring.coreos.com": "@kubernetes-models/prometheus-operator" };
let failed = 0;
for (const object of JSON.parse(readFileSync(process.argv[2], "utf8"))) {
  const what = `${object.kind}/${object.metadata?.name} (${object.apiVersion})`;
  const pkg = packages[object.apiVersion.split("/")[0]];
  if (!pkg) { console.log(`no schema for ${what}`); failed++; continue; }
  try {
    const module = await import(`${pkg}/${object.apiVersion}/${object.kind}`);
    new module[object.kind](object).validate();
    console.log(`valid ${what}`);
  } catch (error) { console.log(`invalid ${what}: ${error.message}`); failed++; }
}
process.exit(failed ? 1 : 0);
EOF

# ---- the checks -----------------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/knactor-chart-check.XXXXXX")
kube_dir=$work/kube
cleanup() {
    if [[ -d $kube_dir ]]; then scripts/kube-down.sh "$kube_dir" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
failures=()
# check NAME CMD...: run CMD (with `set -e`), its output kept; one line per check, the output on failure.
check() {
    local name=$1 out=$work/check.log
    shift
    ("$@") >"$out" 2>&1 &
    if wait $!; then
        passed=$((passed + 1))
        echo "ok      $name"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "FAILED  $name"
        sed 's/^/        | /' "$out" | tail -n 40
    fi
}

# fails MESSAGE CMD...: CMD must fail, and say MESSAGE.
fails() {
    local expected=$1 output
    shift
    if output=$("$@" 2>&1); then
        echo "succeeded, but should have failed with: $expected"
        return 1
    fi
    grep -qF -- "$expected" <<<"$output" || { echo "failed without saying \"$expected\":"; echo "$output"; return 1; }
}

# split FILE DIR: the rendered documents of FILE as DIR/builtin.yaml (Kubernetes' own kinds) and
# DIR/third-party.json (KEDA, Prometheus Operator), and DIR/kinds ("apiVersion kind name" lines).
split() {
    mkdir -p "$2"
    "$py" - "$1" "$2" <<'EOF'
import json, sys, yaml
source, out = sys.argv[1], sys.argv[2]
builtin, third = [], []
with open(f"{out}/kinds", "w") as kinds:
    for doc in yaml.safe_load_all(open(source)):
        if not doc:
            continue
        kinds.write(f"{doc['apiVersion']} {doc['kind']} {doc['metadata']['name']}\n")
        group = doc["apiVersion"].rpartition("/")[0]
        (third if group.endswith((".sh", "coreos.com")) else builtin).append(doc)
yaml.safe_dump_all(builtin, open(f"{out}/builtin.yaml", "w"), sort_keys=False)
json.dump(third, open(f"{out}/third-party.json", "w"))
EOF
}

# expect_kinds DIR "Kind=N ..." HPA_VERSION PDB_VERSION: DIR/kinds has N objects of each Kind listed,
# and every HorizontalPodAutoscaler and PodDisruptionBudget has the version given.
expect_kinds() {
    local dir=$1 counts=$2 hpa=$3 pdb=$4 pair kind n got bad=0
    for pair in $counts; do
        kind=${pair%=*} n=${pair#*=}
        got=$(awk -v k="$kind" '$2 == k' "$dir/kinds" | wc -l)
        [[ $got == "$n" ]] || { echo "$kind: $got, expected $n"; bad=1; }
    done
    if awk '$2 == "HorizontalPodAutoscaler" && $1 != "'"$hpa"'"' "$dir/kinds" | grep .; then
        echo "HorizontalPodAutoscaler: expected $hpa"
        bad=1
    fi
    if awk '$2 == "PodDisruptionBudget" && $1 != "'"$pdb"'"' "$dir/kinds" | grep .; then
        echo "PodDisruptionBudget: expected $pdb"
        bad=1
    fi
    return $bad
}

render() {  # render OUT KUBE_VERSION [helm args...]
    local out=$1 version=$2
    shift 2
    "$helm" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --kube-version "$version" "$@" >"$out"
}

# Values sets: name, helm arguments, and the objects each must render.
sets=(default kafka-sasl split-roles keda restricted)
declare -A args=(
    [default]=""
    [kafka-sasl]="-f $CHART/examples/kafka-sasl.yaml"
    [split-roles]="-f $CHART/examples/split-roles.yaml"
    [keda]="-f $CHART/examples/keda.yaml"
    [restricted]="-f $CHART/examples/restricted.yaml"
)
# Every set: knactor's account, the NetworkPolicy; the generated admin-token Secret unless
# admin.existingSecret names one (restricted).
# The admission webhook in every set: its two configurations, its Service and the Secret of its
# generated certificate (both counted below).
common="ServiceAccount=1 ClusterRole=1 ClusterRoleBinding=1 NetworkPolicy=1 MutatingWebhookConfiguration=1 ValidatingWebhookConfiguration=1"
declare -A kinds=(
    [default]="$common Secret=2 Deployment=1 Service=2 PodDisruptionBudget=1 HorizontalPodAutoscaler=0 Role=1 RoleBinding=1 ScaledObject=0 ServiceMonitor=0 ConfigMap=0"
    [kafka-sasl]="$common Secret=2 Deployment=1 Service=2 PodDisruptionBudget=1 HorizontalPodAutoscaler=1 Role=2 RoleBinding=2 ScaledObject=0"
    [split-roles]="$common Secret=2 Deployment=2 Service=3 PodDisruptionBudget=2 HorizontalPodAutoscaler=2 Role=1 ServiceMonitor=1 ScaledObject=0 ConfigMap=1"
    [keda]="$common Secret=2 Deployment=2 Service=2 PodDisruptionBudget=2 HorizontalPodAutoscaler=1 ScaledObject=1 TriggerAuthentication=1"
    [restricted]="$common Secret=1 Deployment=1 Service=2 PodDisruptionBudget=1 Role=2 RoleBinding=2"
)
examples=("$CHART"/examples/*.yaml)
((${#examples[@]} == ${#sets[@]} - 1)) || die "a file in $CHART/examples/ has no entry in sets= here"

echo "== the checkers can fail"
printf '%s\n' 'apiVersion: v1' 'kind: Service' 'metadata: {name: x}' 'spec: {ports: [{port: 80}], portz: 1}' >"$work/broken.yaml"
check "kubernetes-validate --strict refuses an unknown field" \
    fails "'portz' was unexpected" "$venv/bin/kubernetes-validate" -k "$NEW_KUBE" --strict --quiet "$work/broken.yaml"
echo '[{"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "x"}, "spec": {"scaleTargetRef": {"name": "x"}, "minReplicaCount": "one", "triggers": []}}]' >"$work/broken.json"
check "the KEDA schema refuses a string replica count" fails "minReplicaCount must be integer" node "$npm_dir/validate.mjs" "$work/broken.json"

echo "== lint and render ($CHART)"
for set in "${sets[@]}"; do
    # shellcheck disable=SC2086
    check "$set: helm lint --strict" "$helm" lint --strict "$CHART" --namespace "$NAMESPACE" ${args[$set]}
    # shellcheck disable=SC2086
    check "$set: helm template, Kubernetes $OLD_KUBE" render "$work/$set-old.yaml" "$OLD_KUBE" ${args[$set]}
    # shellcheck disable=SC2086
    check "$set: helm template, Kubernetes $NEW_KUBE" render "$work/$set-new.yaml" "$NEW_KUBE" ${args[$set]}
    split "$work/$set-old.yaml" "$work/$set-old"
    split "$work/$set-new.yaml" "$work/$set-new"
    check "$set: $OLD_KUBE objects (autoscaling/v2beta2, policy/v1beta1)" \
        expect_kinds "$work/$set-old" "${kinds[$set]}" autoscaling/v2beta2 policy/v1beta1
    check "$set: $NEW_KUBE objects (autoscaling/v2, policy/v1)" \
        expect_kinds "$work/$set-new" "${kinds[$set]}" autoscaling/v2 policy/v1
    check "$set: kubernetes-validate --strict -k $NEW_KUBE" \
        "$venv/bin/kubernetes-validate" -k "$NEW_KUBE" --strict --quiet "$work/$set-new/builtin.yaml"
    if [[ $(cat "$work/$set-new/third-party.json") != "[]" ]]; then
        check "$set: KEDA / Prometheus Operator objects against their schemas" \
            node "$npm_dir/validate.mjs" "$work/$set-new/third-party.json"
    fi
done

echo "== values documented field by field"
documented() {
    "$py" - "$CHART" <<'EOF'
import json, re, sys, yaml
chart = sys.argv[1]
values = yaml.safe_load(open(f"{chart}/values.yaml"))
schema = json.load(open(f"{chart}/values.schema.json"))
readme = open(f"{chart}/README.md").read()
# Maps whose keys are the user's (resources, annotations, securityContext...): documented as a whole.
whole = {"resources", "podSecurityContext", "securityContext", "livenessProbe", "readinessProbe",
         "annotations", "labels", "podAnnotations", "podLabels", "nodeSelector", "affinity", "defaultDelivery"}
missing = []
def walk(value, node, path):
    name = re.sub(r"^roles\.(all|ingress|dispatch)\.", "roles.<role>.", ".".join(path))
    if node is None:
        missing.append(f"{name}: not in values.schema.json")
        return
    if not node.get("description"):
        missing.append(f"{name}: no description in values.schema.json")
    if isinstance(value, dict) and value and path[-1] not in whole:
        for key, child in value.items():
            walk(child, node.get("properties", {}).get(key), path + [key])
        return
    if f"`{name}`" not in readme:
        missing.append(f"{name}: not in README.md's Values table")
for key, child in values.items():
    walk(child, schema["properties"].get(key), [key])
for line in sorted(set(missing)):
    print(line)
sys.exit(1 if missing else 0)
EOF
}
check "every value is in values.schema.json (with a description) and in README.md" documented

echo "== what the Deployment runs (the knactor run contract)"
contract() {
    local f=$work/default-new.yaml arg
    # shellcheck disable=SC2016 # $(POD_NAME) is literal: the kubelet expands it
    for arg in run --kubernetes --lease-namespace=$NAMESPACE --lease-name=knactor-controller --listen=0.0.0.0:8080 \
        --advertise=http://knactor-gateway.$NAMESPACE.svc.cluster.local --role=all '--node-id=$(POD_NAME)' \
        --default-broker-selector=knative-eventing-injection=enabled --log=info --state-dir=/var/lib/knactor \
        '--default-delivery={"backoffDelay":"PT0.2S","backoffPolicy":"exponential","retry":10}' \
        --admin-listen=127.0.0.1:9090 --admin-token-file=/etc/knactor/admin/token --drain-delay=5s \
        --drain-timeout=40s --memory-max-bytes=268435456 --trace-journal-bytes=67108864 --max-connections=1024 \
        --max-connections-per-client=256 --max-body-bytes=4194304 --body-buffer-bytes=67108864; do
        "$py" -c 'import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "Deployment"]
args = docs[0]["spec"]["template"]["spec"]["containers"][0]["args"]
sys.exit(0 if sys.argv[2] in args else f"{sys.argv[2]} not in {args}")' "$f" "$arg"
    done
    grep -q 'name: knactor-gateway$' "$f"
    f=$work/kafka-sasl-new.yaml
    for arg in --channel=kafka --kafka-partitions=12 --kafka-replication-factor=3 --kafka-auth-dir=/etc/knactor/kafka-auth \
        --otlp-endpoint=http://jaeger-collector.observability.svc.cluster.local:4317 --otlp-protocol=grpc; do
        grep -qF -- "- \"$arg\"" "$f" || grep -qF -- "- $arg" "$f" || { echo "$arg missing"; return 1; }
    done
    grep -qF 'secretName: kafka-auth' "$f"
    grep -qF 'value: "parentbased_traceidratio"' "$f"
    grep -qF -- '--role=dispatch' "$work/split-roles-new.yaml"
    grep -qF -- '--role=ingress' "$work/split-roles-new.yaml"
}
check "default and kafka-sasl: flags, env, gateway Service name" contract

# locked: what the admin token, the NetworkPolicy and the impersonation Roles render to, per set.
# The pods mount the token Secret's key read-only as --admin-token-file; the generated token is 48
# letters and digits; no Service exposes 9090; the NetworkPolicy opens 8080 (to everyone, or to the
# peers named plus the release's own pods) and 9090 only to networkPolicy.adminFrom;
# apiServerSource.serviceAccounts becomes a Role per namespace naming exactly those accounts, and
# the ClusterRole impersonates nothing.
locked() {
    "$py" - "$work" <<'EOF'
import base64, sys, yaml
work = sys.argv[1]
own = {"app.kubernetes.io/name": "knactor", "app.kubernetes.io/instance": "knactor"}
problems = []
def expect(cond, what):
    if not cond:
        problems.append(what)
# set, admin Secret and key, networkPolicy.adminFrom, how many ingressFrom peers, impersonated accounts
cases = [
    ("default", "knactor-admin-token", "token", None, None, {}),
    ("split-roles", "knactor-admin-token", "token", None, None, {}),
    ("restricted", "knactor-admin", "token",
     [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}},
       "podSelector": {"matchLabels": {"app": "knactor-console"}}}],
     2, {"demo": ["events-sa"]}),
]
for name, secret, key, admin_from, ingress_from, accounts in cases:
    docs = [d for d in yaml.safe_load_all(open(f"{work}/{name}-new.yaml")) if d]
    o = {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")): d for d in docs}
    kind = lambda k: [d for (dk, _, _), d in o.items() if dk == k]
    generated = [d for d in kind("Secret") if d["metadata"]["name"] == "knactor-admin-token"]
    expect(bool(generated) == (secret == "knactor-admin-token"), f"{name}: the admin-token Secret rendered: {bool(generated)}")
    for d in generated:
        token = base64.b64decode(d["data"]["token"]).decode()
        expect(len(token) == 48 and token.isalnum(), f"{name}: the generated token is not 48 letters and digits")
    for d in kind("Service"):
        expect(all(p.get("targetPort") != "admin" and p.get("port") != 9090 for p in d["spec"]["ports"]),
               f"{name}: Service {d['metadata']['name']} exposes the admin port")
    for d in kind("Deployment"):
        pod = d["spec"]["template"]["spec"]
        c = pod["containers"][0]
        volume = next(v for v in pod["volumes"] if v["name"] == "admin-token")
        expect(volume["secret"]["secretName"] == secret and volume["secret"]["items"] == [{"key": key, "path": "token"}],
               f"{name}: admin-token volume {volume}")
        expect({"name": "admin-token", "mountPath": "/etc/knactor/admin", "readOnly": True} in c["volumeMounts"],
               f"{name}: the token is not mounted read-only at /etc/knactor/admin")
        expect("--admin-token-file=/etc/knactor/admin/token" in c["args"], f"{name}: no --admin-token-file")
        annotations = d["spec"]["template"]["metadata"].get("annotations", {})
        expect(("checksum/admin-token" in annotations) == bool(generated), f"{name}: the token checksum annotation")
    policy = kind("NetworkPolicy")[0]["spec"]
    expect(policy["podSelector"] == {"matchLabels": own} and policy["policyTypes"] == ["Ingress"], f"{name}: policy {policy}")
    rules = {r["ports"][0]["port"]: r for r in policy["ingress"]}
    expect(set(rules) == ({"http", "admin", "webhook"} if admin_from else {"http", "webhook"}), f"{name}: policy ports {set(rules)}")
    expect("from" not in rules["webhook"], f"{name}: the webhook port is not open to the API server (everyone)")
    if ingress_from is None:
        expect("from" not in rules["http"], f"{name}: port 8080 is not open to everyone")
    else:
        peers = rules["http"].get("from", [])
        expect(len(peers) == ingress_from + 1 and {"podSelector": {"matchLabels": own}} in peers, f"{name}: port 8080 peers {peers}")
    if admin_from:
        expect(rules["admin"]["from"] == admin_from, f"{name}: port 9090 peers {rules['admin']['from']}")
    roles = {d["metadata"]["namespace"]: d["rules"][0]["resourceNames"] for d in kind("Role")
             if d["metadata"]["name"] == "knactor-impersonate"}
    expect(roles == accounts, f"{name}: impersonation Roles {roles}, expected {accounts}")
    for d in kind("ClusterRole"):
        expect(not any("impersonate" in r["verbs"] for r in d["rules"]), f"{name}: the ClusterRole impersonates")
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
EOF
}
check "admin token, NetworkPolicy and impersonation as rendered (default, split-roles, restricted)" locked

# webhook_rendered: the admission webhook as rendered: both configurations scoped to the four
# Knative kinds (CREATE and UPDATE, never DELETE), calling the Service's /mutate and /validate with
# the Secret's CA as caBundle, failurePolicy Fail, sideEffects None; the Service selects every
# knactor pod; each Deployment serves it from the mounted Secret. With webhook.certManager.enabled:
# cert-manager's objects and the CA injector's annotation instead of a caBundle and a Secret; with
# webhook.enabled false: none of it.
webhook_rendered() {
    "$helm" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --set webhook.certManager.enabled=true >"$work/cert-manager.yaml"
    "$helm" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --set webhook.certManager.enabled=true \
        --set webhook.certManager.issuerRef.kind=ClusterIssuer --set webhook.certManager.issuerRef.name=corp-ca >"$work/cert-manager-issuer.yaml"
    "$helm" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --set webhook.enabled=false >"$work/no-webhook.yaml"
    "$py" - "$work" <<'EOF'
import base64, sys, yaml
work = sys.argv[1]
problems = []
def expect(cond, what):
    if not cond:
        problems.append(what)
rules = [{"apiGroups": ["eventing.knative.dev"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
          "resources": ["brokers", "triggers"], "scope": "Namespaced"},
         {"apiGroups": ["sources.knative.dev"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
          "resources": ["apiserversources", "pingsources"], "scope": "Namespaced"}]
def load(name):
    return [d for d in yaml.safe_load_all(open(f"{work}/{name}.yaml")) if d]
for name in ["default-new", "split-roles-new", "restricted-new", "cert-manager", "cert-manager-issuer"]:
    docs = load(name)
    kind = lambda k: [d for d in docs if d["kind"] == k]
    manager = name.startswith("cert-manager")
    secrets = [d for d in kind("Secret") if d["metadata"]["name"] == "knactor-webhook-cert"]
    expect(len(secrets) == (0 if manager else 1), f"{name}: webhook Secrets {len(secrets)}")
    ca = secrets[0]["data"]["ca.crt"] if secrets else None
    if ca:
        expect(base64.b64decode(ca).startswith(b"-----BEGIN CERTIFICATE-----"), f"{name}: ca.crt is not a PEM certificate")
    for k, path in [("MutatingWebhookConfiguration", "/mutate"), ("ValidatingWebhookConfiguration", "/validate")]:
        (config,) = kind(k)
        (hook,) = config["webhooks"]
        expect(hook["rules"] == rules, f"{name}: {k} rules {hook['rules']}")
        expect(hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None" and hook["admissionReviewVersions"] == ["v1"],
               f"{name}: {k} policy {hook}")
        client = hook["clientConfig"]
        expect(client["service"] == {"name": "knactor-webhook", "namespace": "knactor-system", "path": path, "port": 443},
               f"{name}: {k} service {client['service']}")
        injected = config["metadata"].get("annotations", {}).get("cert-manager.io/inject-ca-from")
        expect(injected == ("knactor-system/knactor-webhook" if manager else None), f"{name}: {k} inject-ca-from {injected}")
        expect(client.get("caBundle") == ca, f"{name}: {k} caBundle is not the Secret's ca.crt")
    (service,) = [d for d in kind("Service") if d["metadata"]["name"] == "knactor-webhook"]
    expect(service["spec"]["selector"] == {"app.kubernetes.io/name": "knactor", "app.kubernetes.io/instance": "knactor"},
           f"{name}: the webhook Service selects {service['spec']['selector']}")
    expect(service["spec"]["ports"] == [{"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}],
           f"{name}: webhook Service ports {service['spec']['ports']}")
    for d in kind("Deployment"):
        pod = d["spec"]["template"]["spec"]
        c = pod["containers"][0]
        for arg in ["--admission-listen=0.0.0.0:8443", "--admission-cert=/etc/knactor/webhook/tls.crt",
                    "--admission-key=/etc/knactor/webhook/tls.key"]:
            expect(arg in c["args"], f"{name}: {d['metadata']['name']} lacks {arg}")
        expect({"name": "webhook", "containerPort": 8443, "protocol": "TCP"} in c["ports"], f"{name}: no webhook port")
        volume = next((v for v in pod["volumes"] if v["name"] == "webhook-cert"), None)
        expect(volume is not None and volume["secret"]["secretName"] == "knactor-webhook-cert", f"{name}: webhook-cert volume {volume}")
        expect({"name": "webhook-cert", "mountPath": "/etc/knactor/webhook", "readOnly": True} in c["volumeMounts"],
               f"{name}: the certificate is not mounted (read-only, no subPath) at /etc/knactor/webhook")
    if manager:
        (cert,) = [d for d in kind("Certificate") if d["metadata"]["name"] == "knactor-webhook"]
        expect(cert["spec"]["secretName"] == "knactor-webhook-cert", f"{name}: Certificate secret {cert['spec']}")
        expect("knactor-webhook.knactor-system.svc" in cert["spec"]["dnsNames"], f"{name}: dnsNames {cert['spec']['dnsNames']}")
        issuer = cert["spec"]["issuerRef"]
        if name == "cert-manager":
            expect(issuer == {"kind": "Issuer", "name": "knactor-webhook-ca"}, f"{name}: issuer {issuer}")
            expect(len(kind("Issuer")) == 2 and len(kind("Certificate")) == 2, f"{name}: the chart's own CA")
        else:
            expect(issuer == {"kind": "ClusterIssuer", "name": "corp-ca"}, f"{name}: issuer {issuer}")
            expect(not kind("Issuer") and len(kind("Certificate")) == 1, f"{name}: an own CA beside issuerRef")
docs = load("no-webhook")
expect(not [d for d in docs if "Webhook" in d["kind"] or d["metadata"]["name"].startswith("knactor-webhook")],
       "webhook.enabled false still renders webhook objects")
expect(not any("--admission-listen" in a for d in docs if d["kind"] == "Deployment" for a in d["spec"]["template"]["spec"]["containers"][0]["args"]),
       "webhook.enabled false still passes --admission-listen")
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
EOF
}

# dashboard: the Grafana dashboard ConfigMap (split-roles enables it) carries the label Grafana's
# sidecar looks for and valid dashboard JSON, whose every query reads a metric knactor exports
# (named in actors/src/metrics.rs).
dashboard() {
    "$py" - "$work/split-roles-new.yaml" actors/src/metrics.rs <<'EOF'
import json, re, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ConfigMap"]
exported = open(sys.argv[2]).read()
problems = []
if len(docs) != 1 or docs[0]["metadata"]["labels"].get("grafana_dashboard") != "1":
    problems.append(f"expected one ConfigMap labelled grafana_dashboard: \"1\", got {[d['metadata'] for d in docs]}")
else:
    board = json.loads(docs[0]["data"]["knactor.json"])
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in board["templating"]["list"] if isinstance(v.get("query"), dict)]
    if len(exprs) < 10:
        problems.append(f"only {len(exprs)} queries")
    for expr in exprs:
        for name in re.findall(r"\b(knactor_[a-z_]+|kn_eventing_[a-z_]+|event_count)\b", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name) if name != "event_count" else name
            if f'"{base}' not in exported:
                problems.append(f"{name} (in {expr}) is not a metric of actors/src/metrics.rs")
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
EOF
}
check "admission webhook as rendered: scope, Service, caBundle of the generated Secret, cert-manager, off" webhook_rendered
check "the Grafana dashboard ConfigMap: label, JSON, and only metrics knactor exports" dashboard

# runs BIN SET: `knactor run` accepts what each Deployment of SET's render passes it (--dry-run
# parses and checks every flag, then exits), with the role that Deployment is for.
runs() {
    "$py" - "$1" "$work/$2-new.yaml" <<'EOF'
import os, subprocess, sys, yaml
binary, path = sys.argv[1], sys.argv[2]
deployments = [d for d in yaml.safe_load_all(open(path)) if d and d["kind"] == "Deployment"]
assert deployments, f"no Deployment in {path}"
bad = 0
for deployment in deployments:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    # The kubelet expands $(VAR) from the container's env; the pod name is all the args use. It
    # also mounts the admin token's Secret, which `knactor run` reads even with --dry-run: a file
    # of the same shape stands in for it here.
    token = os.path.join(os.path.dirname(path), "admin-token-stand-in")
    with open(token, "w") as stand_in:
        stand_in.write("x" * 48 + "\n")
    args = [a.replace("$(POD_NAME)", "knactor-0") for a in container["args"]]
    args = [f"--admin-token-file={token}" if a.startswith("--admin-token-file=") else a for a in args]
    role = next((a.split("=", 1)[1] for a in args if a.startswith("--role=")), "all")
    run = subprocess.run([binary, *args, "--dry-run"], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    name = deployment["metadata"]["name"]
    if run.returncode != 0 or f"role: {role}\n" not in run.stdout:
        print(f"{name}: knactor {' '.join(args)} --dry-run exited {run.returncode}:\n{run.stdout}{run.stderr}")
        bad = 1
    else:
        print(f"{name}: accepted, role {role}")
sys.exit(bad)
EOF
}
echo "== knactor run accepts every rendered Deployment's flags"
log "cargo build --bin knactor (the binary the Dockerfile ships)"
cargo build --locked --quiet --bin knactor >&2
knactor_bin=${CARGO_TARGET_DIR:-target}/debug/knactor
check "knactor run refuses a flag it does not know (the check can fail)" \
    fails "unexpected argument '--no-such-flag'" "$knactor_bin" run --kubernetes --no-such-flag --dry-run
for set in "${sets[@]}"; do
    check "$set: every Deployment's args pass knactor run --dry-run" runs "$knactor_bin" "$set"
done

# admin_api BIN SET: a node started (for real, on an empty --config) with the admin, drain and
# budget flags SET's Deployment passes and the token its admin Secret would mount: it starts, its
# admin API answers 401 without the token and `knactor status` with KNACTOR_ADMIN_TOKEN (as NOTES.txt
# says), and SIGTERM stops it after the drain delay, within the pod's grace period.
admin_api() {
    "$py" - "$1" "$work/$2-new.yaml" "$work/admin-$2" <<'EOF'
import base64, os, re, secrets, signal, subprocess, sys, time, yaml
binary, path, scratch = sys.argv[1:4]
os.makedirs(f"{scratch}/config", exist_ok=True)
docs = [d for d in yaml.safe_load_all(open(path)) if d]
deployment = next(d for d in docs if d["kind"] == "Deployment")
pod = deployment["spec"]["template"]["spec"]
secret = next((d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "knactor-admin-token"), None)
# The chart's generated token, or one of the user's own (admin.existingSecret), as the README makes it.
token = base64.b64decode(secret["data"]["token"]) if secret else secrets.token_hex(32).encode()
open(f"{scratch}/token", "wb").write(token)
args, host, delay = [], None, 0
for arg in pod["containers"][0]["args"]:
    if arg.startswith("--admin-listen="):
        host = arg.split("=", 1)[1].rsplit(":", 1)[0]
        arg = f"--admin-listen={host}:0"        # the rendered address, any free port
    elif arg.startswith("--admin-token-file="):
        arg = f"--admin-token-file={scratch}/token"
    elif arg.startswith("--drain-delay="):
        delay = int(arg.split("=", 1)[1].rstrip("s"))
    elif not arg.startswith(("--drain-timeout=", "--memory-max-bytes=", "--trace-journal-bytes=")):
        continue
    args.append(arg)
grace = pod["terminationGracePeriodSeconds"]
command = [binary, "run", "--config", f"{scratch}/config", "--listen", "127.0.0.1:0", "--state-dir", f"{scratch}/state", *args]
print("knactor", " ".join(command[1:]))
env = {"PATH": "/usr/bin:/bin"}
node = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=open(f"{scratch}/node.log", "w"), text=True, env=env)
try:
    admin = None
    deadline = time.monotonic() + 30
    while admin is None and time.monotonic() < deadline:
        line = node.stdout.readline()
        if not line:
            break
        found = re.search(r"admin API on (http://\S+)", line)
        if found:
            admin = found.group(1)
    if admin is None:
        sys.exit(f"the node did not start its admin API:\n{open(f'{scratch}/node.log').read()}")
    if not admin.startswith(f"http://{host}:"):
        sys.exit(f"admin API on {admin}, rendered {host}")
    url = admin.replace("0.0.0.0", "127.0.0.1")
    status = lambda extra: subprocess.run([binary, "status", "--node", url], capture_output=True, text=True, env={**env, **extra})
    without = status({})
    if without.returncode == 0 or "401" not in without.stderr:
        sys.exit(f"knactor status without the token: exit {without.returncode}\n{without.stdout}{without.stderr}")
    print("without the token:", without.stderr.strip())
    wrong = status({"KNACTOR_ADMIN_TOKEN": "not-the-token-of-this-node"})
    if wrong.returncode == 0 or "401" not in wrong.stderr:
        sys.exit(f"knactor status with a wrong token: exit {wrong.returncode}\n{wrong.stdout}{wrong.stderr}")
    with_token = status({"KNACTOR_ADMIN_TOKEN": token.decode()})
    if with_token.returncode != 0 or "role: all" not in with_token.stdout:
        sys.exit(f"knactor status with the token: exit {with_token.returncode}\n{with_token.stdout}{with_token.stderr}")
    print("with KNACTOR_ADMIN_TOKEN:", with_token.stdout.splitlines()[0])
    started = time.monotonic()
    node.send_signal(signal.SIGTERM)
    code = node.wait(timeout=grace)
    took = time.monotonic() - started
    print(f"SIGTERM: exit {code} after {took:.1f} s (drain delay {delay} s, grace period {grace} s)")
    if code != 0 or took < delay - 0.5:
        sys.exit(f"SIGTERM: exit {code} after {took:.1f} s\n{open(f'{scratch}/node.log').read()}")
finally:
    if node.poll() is None:
        node.kill()
EOF
}
echo "== the admin API with the chart's token (knactor run, not in a cluster)"
mkdir -p "$work/no-resources"
check "knactor refuses a reachable admin API without a token (the check can fail)" \
    fails "is reachable from other machines" "$knactor_bin" run --config "$work/no-resources" --listen 127.0.0.1:0 \
    --admin-listen=0.0.0.0:0 --state-dir "$work/no-resources/state"
for set in default restricted; do
    check "$set: the node starts with the rendered admin flags and token; 401 without it, knactor status with it; SIGTERM within the grace period" \
        admin_api "$knactor_bin" "$set"
done

echo "== bad values are refused"
bad() { check "refused: $1" fails "$2" "$helm" template "$RELEASE" "$CHART" "${@:3}"; }
bad "negative replicas" "roles.all.replicas: Must be greater than or equal to 0" --set roles.all.replicas=-1
bad "unknown channel" "channel must be one of the following" --set channel=nats
bad "a misspelt field" "Additional property partitons is not allowed" --set kafka.partitons=3
bad "a delivery delay not in ISO-8601" "defaultDelivery.backoffDelay: Does not match pattern" --set defaultDelivery.backoffDelay=200ms
bad "an unknown backoff policy" "backoffPolicy must be one of the following" --set defaultDelivery.backoffPolicy=fibonacci
bad "an empty default-broker selector" "defaultBrokerSelector: String length must be greater than or equal to 1" --set defaultBrokerSelector=
bad "an unknown OTLP protocol" "tracing.protocol must be one of the following" --set tracing.protocol=udp
bad "a sample ratio above 1" "tracing.sampleRatio: Must be less than or equal to 1" --set tracing.sampleRatio=2
bad "replication factor 0" "kafka.replicationFactor" --set kafka.replicationFactor=0
bad "bootstrap servers without ports" "kafka.bootstrapServers: Does not match pattern" --set kafka.bootstrapServers=kafka
bad "Kafka without bootstrap servers" "kafka.bootstrapServers: channel kafka needs the Kafka bootstrap servers" --set channel=kafka
bad "split roles on the memory channel" "roles.split: separate ingress and dispatch Deployments need channel: kafka" --set roles.split=true
bad "KEDA on the memory channel" "keda.enabled: KEDA scales on Kafka consumer lag" --set keda.enabled=true
bad "KEDA without brokers" "keda.brokers: list the brokers" --set keda.enabled=true,channel=kafka,kafka.bootstrapServers=k:9092
bad "KEDA scaling the gateway to zero" "keda.minReplicas: 0 would stop the gateway too" \
    --set keda.enabled=true,channel=kafka,kafka.bootstrapServers=k:9092,keda.brokers[0].namespace=a,keda.brokers[0].name=b,keda.minReplicas=0
bad "KEDA SASL without the auth Secret" "keda.sasl: KEDA reads the SASL user and password" \
    --set keda.enabled=true,channel=kafka,kafka.bootstrapServers=k:9092,keda.brokers[0].namespace=a,keda.brokers[0].name=b,keda.sasl=plaintext
bad "autoscaling minReplicas above maxReplicas" "roles.all.autoscaling: minReplicas (5) is greater than maxReplicas (2)" \
    --set roles.all.autoscaling.enabled=true,roles.all.autoscaling.minReplicas=5,roles.all.autoscaling.maxReplicas=2
bad "a drain that does not fit the grace period" "raise terminationGracePeriodSeconds to 70" --set drain.timeoutSeconds=50
bad "a grace period that leaves no time to drain" "terminationGracePeriodSeconds (20) leaves the node no time to drain" \
    --set terminationGracePeriodSeconds=20
bad "a memory limit below the byte budgets" "roles.all.resources.limits.memory (256Mi) is below the node's budgets, 448 MiB: memory.maxBytes (256 MiB) + ingressLimits.bodyBufferBytes (64 MiB) + traceJournal.maxBytes (64 MiB)" \
    --set roles.all.resources.limits.memory=256Mi
bad "an ingress pod's memory limit below its bodies' budget" "roles.ingress.resources.limits.memory (256Mi) is below the node's budgets, 320 MiB: ingressLimits.bodyBufferBytes (192 MiB) + traceJournal.maxBytes (64 MiB)" \
    --set roles.split=true,channel=kafka,kafka.bootstrapServers=k:9092,ingressLimits.bodyBufferBytes=201326592
bad "admin peers while the admin API is on the loopback" "networkPolicy.adminFrom: the admin API listens on the pods' loopback" \
    --set 'networkPolicy.adminFrom[0].podSelector.matchLabels.app=console'
bad "an admin address other than the loopback or all" "admin.listenAddress must be one of the following" --set admin.listenAddress=10.0.0.1
bad "an ApiServerSource account without a name" "apiServerSource.serviceAccounts.0: name is required" \
    --set 'apiServerSource.serviceAccounts[0].namespace=demo'
bad "a misspelt NetworkPolicy peer" "Additional property podSelecter is not allowed" \
    --set 'networkPolicy.ingressFrom[0].podSelecter.matchLabels.app=x'

echo "== against kube-apiserver v$OLD_KUBE (scripts/kube-up.sh)"
kubeconfig=$(scripts/kube-up.sh "$kube_dir")
k() { "$kubectl" --kubeconfig "$kubeconfig" --cache-dir "$kube_dir/kubectl-cache" --request-timeout 30s "$@"; }
h() { "$helm" --kubeconfig "$kubeconfig" "$@"; }
crds() {
    k apply -f $CHART/crds/
    k wait --for condition=established --timeout=60s -f $CHART/crds/
}
check "the chart's CRDs apply and are established" crds
for ns in "$NAMESPACE" knative-eventing demo; do k create namespace "$ns" >/dev/null; done
check "kubectl apply --dry-run=server refuses an unknown field" \
    fails 'unknown field "portz"' k apply --dry-run=server --validate=strict -n "$NAMESPACE" -f "$work/broken.yaml"
for set in "${sets[@]}"; do
    check "$set: kubectl apply --dry-run=server (Kubernetes $OLD_KUBE render)" \
        k apply --dry-run=server --validate=strict -f "$work/$set-old/builtin.yaml"
done
check "example resources: kubectl apply --dry-run=server (custom resources against the chart's CRDs)" \
    k apply --dry-run=server --validate=strict -f $CHART/examples/resources/
# Unknown spec fields are kept by the CRDs for knactor's webhook to refuse naming them
# (tests/admission.rs); the API server checks the types of the known ones.
echo '{"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": {"name": "x", "namespace": "demo"}, "spec": {"delivery": {"retry": "many"}}}' >"$work/broken-broker.json"
check "a Broker with a field of the wrong type is refused" \
    fails 'spec.delivery.retry in body must be of type integer' k apply --dry-run=server --validate=strict -f "$work/broken-broker.json"

echo "== helm install, upgrade, uninstall (the README's commands)"
install() {
    # The example ApiServerSource's account (examples/resources/) may be impersonated.
    h install $RELEASE $CHART --namespace $NAMESPACE --set roles.all.autoscaling.enabled=true \
        --set 'apiServerSource.serviceAccounts[0].namespace=demo,apiServerSource.serviceAccounts[0].name=events-sa' >"$work/notes"
    h get manifest $RELEASE --namespace $NAMESPACE >"$work/installed.yaml"
    grep -qx 'apiVersion: autoscaling/v2beta2' "$work/installed.yaml"
    grep -qx 'apiVersion: policy/v1beta1' "$work/installed.yaml"
    k get -n $NAMESPACE deployment/knactor service/knactor-gateway hpa/knactor pdb/knactor serviceaccount/knactor role/knactor
    k get -n demo role/knactor-impersonate rolebinding/knactor-impersonate
    k get clusterrole/knactor clusterrolebinding/knactor
    # The admin API (re-drive, event trails) is on the pods' loopback port 9090, behind the token
    # of the admin Secret, and the gateway Service every workload reaches does not expose it.
    k get -n $NAMESPACE deployment/knactor -o jsonpath='{.spec.template.spec.containers[0].args}' | grep -qF -- '--admin-listen=127.0.0.1:9090'
    [[ $(k get -n $NAMESPACE service/knactor-gateway -o jsonpath='{.spec.ports[*].targetPort}') == http ]] ||
        { echo "the gateway Service exposes more than the ingress port"; return 1; }
    k get -n $NAMESPACE networkpolicy/knactor
    # The admission webhook: both configurations trust the CA of the generated Secret (kept by the
    # upgrade below).
    k get mutatingwebhookconfiguration/knactor validatingwebhookconfiguration/knactor
    k get -n $NAMESPACE service/knactor-webhook secret/knactor-webhook-cert
    k get -n $NAMESPACE secret/knactor-webhook-cert -o jsonpath='{.data.ca\.crt}' >"$work/webhook-ca"
    [[ -s $work/webhook-ca ]] || { echo "the webhook Secret has no ca.crt"; return 1; }
    local kind
    for kind in mutatingwebhookconfiguration validatingwebhookconfiguration; do
        [[ $(k get $kind/knactor -o jsonpath='{.webhooks[0].clientConfig.caBundle}') == "$(cat "$work/webhook-ca")" ]] ||
            { echo "$kind/knactor does not trust the Secret's CA"; return 1; }
    done
    # The token, read with the command NOTES.txt prints, and the pods' checksum of it, kept for the
    # upgrade below.
    local read_token
    read_token=$(sed -n 's/^ *KNACTOR_ADMIN_TOKEN=\$(kubectl \(.*\)) \\$/\1/p' "$work/notes")
    [[ $read_token == *"get secret knactor-admin-token"* ]] || { echo "NOTES.txt does not say how to read the token:"; cat "$work/notes"; return 1; }
    eval "k $read_token" >"$work/token-installed"
    [[ $(wc -c <"$work/token-installed") == 48 ]] || { echo "the admin token is not 48 characters"; return 1; }
    k get -n $NAMESPACE deployment/knactor -o jsonpath='{.spec.template.metadata.annotations.checksum/admin-token}' >"$work/token-checksum"
    [[ -s $work/token-checksum ]]
}
check "helm install (HPA on): the API server's own versions picked (v2beta2, v1beta1); admin API on the loopback, off the Service, behind a 48-character token; NetworkPolicy" install

# rbac yes|no VERB RESOURCE [kubectl auth can-i args]: the API server's answer for knactor's account.
sa=system:serviceaccount:$NAMESPACE:knactor
rbac() {
    local answer want=$1
    shift
    answer=$(k auth can-i --as "$sa" "$@" 2>/dev/null) || true
    [[ $answer == "$want" ]] || { echo "can-i $*: $answer, expected $want"; return 1; }
}
# rbac_group yes|no VERB GROUP RESOURCE: the same for a group the API server does not serve (kubectl
# auth can-i cannot name those), as a SubjectAccessReview over every namespace.
rbac_group() {
    local answer
    answer=$(k create -o jsonpath='{.status.allowed}' -f - <<<"{\"apiVersion\": \"authorization.k8s.io/v1\",
        \"kind\": \"SubjectAccessReview\", \"spec\": {\"user\": \"$sa\", \"groups\": [\"system:serviceaccounts\"],
        \"resourceAttributes\": {\"verb\": \"$2\", \"group\": \"$3\", \"resource\": \"$4\"}}}")
    [[ $answer == true && $1 == yes || $answer != true && $1 == no ]] || { echo "$2 $4.$3: allowed=$answer, expected $1"; return 1; }
}
rbac_all() {
    local bad=0
    # What knactor needs (the knactor run contract).
    rbac yes list brokers.eventing.knative.dev -A || bad=1
    rbac yes watch triggers.eventing.knative.dev -A || bad=1
    rbac yes create brokers.eventing.knative.dev -n demo || bad=1
    rbac yes patch brokers.eventing.knative.dev -n demo || bad=1
    rbac yes patch brokers.eventing.knative.dev --subresource=status -n demo || bad=1
    rbac yes patch triggers.eventing.knative.dev --subresource=status -n demo || bad=1
    rbac yes watch apiserversources.sources.knative.dev -A || bad=1
    rbac yes patch pingsources.sources.knative.dev --subresource=status -n demo || bad=1
    rbac yes create leases.coordination.k8s.io -n "$NAMESPACE" || bad=1
    rbac yes update leases.coordination.k8s.io/knactor-controller -n "$NAMESPACE" || bad=1
    rbac yes create configmaps -n "$NAMESPACE" || bad=1
    rbac yes patch configmaps -n "$NAMESPACE" || bad=1
    rbac yes watch services -A || bad=1
    rbac_group yes watch serving.knative.dev services || bad=1
    rbac_group no create serving.knative.dev services || bad=1
    rbac yes list namespaces || bad=1
    # Impersonation: the ServiceAccount apiServerSource.serviceAccounts lists, and no other.
    rbac yes impersonate serviceaccounts/events-sa -n demo || bad=1
    rbac no impersonate serviceaccounts/default -n demo || bad=1
    rbac no impersonate serviceaccounts -n demo || bad=1
    rbac no impersonate serviceaccounts/events-sa -n default || bad=1
    rbac no impersonate serviceaccounts/default -n kube-system || bad=1
    rbac no impersonate serviceaccounts/namespace-controller -n kube-system || bad=1
    rbac no impersonate serviceaccounts -A || bad=1
    # What it must not do: nothing beyond what the code calls (tests/kube_cluster.rs runs a node
    # under exactly these rules).
    rbac no update brokers.eventing.knative.dev -n demo || bad=1
    rbac no patch triggers.eventing.knative.dev -n demo || bad=1
    rbac no patch apiserversources.sources.knative.dev -n demo || bad=1
    rbac no list configmaps -n "$NAMESPACE" || bad=1
    rbac no watch events -A || bad=1
    rbac no create events -n demo || bad=1
    rbac no delete brokers.eventing.knative.dev -n demo || bad=1
    rbac no create apiserversources.sources.knative.dev -n demo || bad=1
    rbac no get secrets -n demo || bad=1
    rbac no get secrets -n "$NAMESPACE" || bad=1
    rbac no get configmaps -n demo || bad=1
    rbac no create leases.coordination.k8s.io -n demo || bad=1
    rbac no create configmaps -n demo || bad=1
    rbac no impersonate users || bad=1
    rbac no impersonate groups || bad=1
    rbac no create deployments.apps -n "$NAMESPACE" || bad=1
    rbac no create pods -n demo || bad=1
    rbac no delete events -n demo || bad=1
    return $bad
}
check "knactor's account: what it may do, and no more (kubectl auth can-i)" rbac_all

upgrade() {
    h upgrade $RELEASE $CHART --namespace $NAMESPACE -f $CHART/examples/split-roles.yaml \
        --set metrics.serviceMonitor.enabled=false --set logLevel=debug --set 'rbac.brokerConfigNamespaces={knative-eventing}' \
        --set rbac.impersonateAnyServiceAccount=true
    k get -n $NAMESPACE deployment/knactor-ingress deployment/knactor-dispatch hpa/knactor-ingress hpa/knactor-dispatch
    ! k get -n $NAMESPACE deployment/knactor 2>/dev/null || { echo "deployment/knactor is still there"; return 1; }
    k get -n $NAMESPACE deployment/knactor-dispatch -o jsonpath='{.spec.template.spec.containers[0].args}' | grep -F -- '--log=debug'
    k get -n $NAMESPACE service/knactor-gateway -o jsonpath='{.spec.selector}' | grep -F '"ingress"'
    # rbac.brokerConfigNamespaces: Kafka broker configs readable in knative-eventing, still not elsewhere.
    rbac yes get secrets -n knative-eventing
    rbac yes get configmaps -n knative-eventing
    rbac no list secrets -n knative-eventing
    rbac no get secrets -n demo
    # rbac.impersonateAnyServiceAccount: every ServiceAccount, kube-system's included (what the
    # README says it grants); the per-namespace Role is gone.
    rbac yes impersonate serviceaccounts/namespace-controller -n kube-system
    rbac yes impersonate serviceaccounts -A
    ! k get -n demo role/knactor-impersonate 2>/dev/null || { echo "role/knactor-impersonate is still there"; return 1; }
    # The webhook's CA survives the upgrade (lookup), and the configurations still trust it.
    [[ $(k get -n $NAMESPACE secret/knactor-webhook-cert -o jsonpath='{.data.ca\.crt}') == "$(cat "$work/webhook-ca")" ]] ||
        { echo "helm upgrade changed the webhook's CA"; return 1; }
    [[ $(k get validatingwebhookconfiguration/knactor -o jsonpath='{.webhooks[0].clientConfig.caBundle}') == "$(cat "$work/webhook-ca")" ]] ||
        { echo "helm upgrade changed the webhook's caBundle"; return 1; }
    # The admin token survives the upgrade (lookup), so the new pods carry the same checksum.
    k get -n $NAMESPACE secret/knactor-admin-token -o jsonpath='{.data.token}' | base64 -d | cmp - "$work/token-installed" ||
        { echo "helm upgrade changed the admin token"; return 1; }
    for role in ingress dispatch; do
        [[ $(k get -n $NAMESPACE deployment/knactor-$role -o jsonpath='{.spec.template.metadata.annotations.checksum/admin-token}') == \
            "$(cat "$work/token-checksum")" ]] || { echo "knactor-$role: another token checksum"; return 1; }
    done
}
check "helm upgrade to split roles: Deployments replaced, flags changed, broker-config access, impersonate any account, the admin token unchanged" upgrade

uninstall() {
    h uninstall $RELEASE --namespace $NAMESPACE
    ! k get -n $NAMESPACE deployment/knactor-ingress 2>/dev/null || { echo "deployment/knactor-ingress is still there"; return 1; }
    ! k get clusterrole/knactor 2>/dev/null || { echo "clusterrole/knactor is still there"; return 1; }
    ! k get -n $NAMESPACE secret/knactor-admin-token 2>/dev/null || { echo "the admin token Secret is still there"; return 1; }
    ! k get -n $NAMESPACE networkpolicy/knactor 2>/dev/null || { echo "networkpolicy/knactor is still there"; return 1; }
    ! k get validatingwebhookconfiguration/knactor 2>/dev/null || { echo "the webhook configuration is still there"; return 1; }
    k get crd brokers.eventing.knative.dev triggers.eventing.knative.dev apiserversources.sources.knative.dev pingsources.sources.knative.dev
}
check "helm uninstall: the release's objects go, the CRDs stay" uninstall

echo "== the image"
image() {
    local repo app cargo
    repo=$("$py" -c 'import yaml; print(yaml.safe_load(open("charts/knactor/values.yaml"))["image"]["repository"])')
    app=$("$py" -c 'import yaml; print(yaml.safe_load(open("charts/knactor/Chart.yaml"))["appVersion"])')
    cargo=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
    [[ $app == "$cargo" ]] || { echo "Chart.yaml appVersion $app is not the workspace version $cargo"; return 1; }
    grep -qF "docker build -t $repo:$app ." Dockerfile || { echo "Dockerfile does not document the chart's image $repo:$app"; return 1; }
    grep -q '^USER 65532:65532' Dockerfile
    grep -qx 'target/' .dockerignore
}
check "the chart's image is the Dockerfile's (name, version), non-root" image

echo
if ((failed)); then
    printf 'chart-check: failed: %s\n' "${failures[@]}" >&2
fi
echo "chart-check: $passed passed, $failed failed"
((failed == 0))
