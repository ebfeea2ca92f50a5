{{/*
Names, labels and the small decisions every template shares. Start here: "knactor.roles" says which
Deployments exist, "knactor.validate" refuses value combinations that would deploy something broken.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "knactor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's base name: fullnameOverride, else the release name when it already contains the chart
name (release "knactor" gives "knactor", not "knactor-knactor"), else "<release>-<chart>". Every
resource name starts with it; suffixes are kept short enough that the whole stays within 63 characters.
*/}}
{{- define "knactor.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The broker ingress Service: every Broker's status.address.url points at it. */}}
{{- define "knactor.gatewayName" -}}
{{- printf "%s-gateway" (include "knactor.fullname" .) }}
{{- end }}

{{/*
The gateway base URL knactor advertises (--advertise): a Broker's status.address.url is
"<this>/<namespace>/<broker>". The Service's cluster DNS name; the port only when it is not 80. No
trailing slash: knactor appends "/<namespace>/<broker>".
*/}}
{{- define "knactor.advertiseURL" -}}
{{- $host := printf "%s.%s.svc.%s" (include "knactor.gatewayName" .) .Release.Namespace .Values.clusterDomain }}
{{- if eq (int .Values.gateway.service.port) 80 }}
{{- printf "http://%s" $host }}
{{- else }}
{{- printf "http://%s:%d" $host (int .Values.gateway.service.port) }}
{{- end }}
{{- end }}

{{- define "knactor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "knactor.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Lease the replicas compete for; the one holding it runs the controller and the sources. */}}
{{- define "knactor.leaseName" -}}
{{- default (printf "%s-controller" (include "knactor.fullname" .)) .Values.leaseName }}
{{- end }}

{{- define "knactor.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "knactor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "knactor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "knactor.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "knactor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: knactor
{{- end }}

{{/*
The roles deployed, one Deployment each: "all" (gateway and actors in every pod), or "ingress" and
"dispatch" when roles.split is on. Returns a JSON list: fromJsonArray (include "knactor.roles" .)
*/}}
{{- define "knactor.roles" -}}
{{- if .Values.roles.split }}["ingress","dispatch"]{{ else }}["all"]{{ end }}
{{- end }}

{{/*
Per-role names and labels. Called with (dict "root" $ "role" "all"|"ingress"|"dispatch").
The "all" role's Deployment is the release's base name; the others get the role as a suffix.
app.kubernetes.io/component is "node" for "all" (the node runs everything), else the role.
*/}}
{{- define "knactor.roleName" -}}
{{- if eq .role "all" }}
{{- include "knactor.fullname" .root }}
{{- else }}
{{- printf "%s-%s" (include "knactor.fullname" .root) .role }}
{{- end }}
{{- end }}

{{- define "knactor.component" -}}
{{- if eq .role "all" }}node{{ else }}{{ .role }}{{ end }}
{{- end }}

{{- define "knactor.roleSelectorLabels" -}}
{{ include "knactor.selectorLabels" .root }}
app.kubernetes.io/component: {{ include "knactor.component" . }}
{{- end }}

{{- define "knactor.roleLabels" -}}
{{ include "knactor.labels" .root }}
app.kubernetes.io/component: {{ include "knactor.component" . }}
{{- end }}

{{/* The role KEDA scales on consumer lag: the one that reads the channels. */}}
{{- define "knactor.kedaRole" -}}
{{- if .Values.roles.split }}dispatch{{ else }}all{{ end }}
{{- end }}

{{/*
Who sets a role's replica count: "keda", "hpa" or "" (the Deployment's replicas value). A
ScaledObject makes its own HPA, so with KEDA on, the role it scales has no HPA from the chart (two
autoscalers on one Deployment fight).
*/}}
{{- define "knactor.scaler" -}}
{{- $values := index .root.Values.roles .role }}
{{- if and .root.Values.keda.enabled (eq .role (include "knactor.kedaRole" .root)) }}keda
{{- else if $values.autoscaling.enabled }}hpa
{{- end }}
{{- end }}

{{/*
Newest API version of a kind the cluster serves. `helm install`, `helm upgrade` and
`helm template --validate` ask the cluster which versions it serves. Plain `helm template` assumes
every version exists, so the Kubernetes version (--kube-version) decides there too: autoscaling/v2
is served from 1.23, policy/v1 from 1.21, and no real cluster older than that serves them.
*/}}
{{- define "knactor.hpaApiVersion" -}}
{{- if and (.Capabilities.APIVersions.Has "autoscaling/v2") (semverCompare ">=1.23.0-0" .Capabilities.KubeVersion.Version) }}autoscaling/v2{{ else }}autoscaling/v2beta2{{ end }}
{{- end }}

{{- define "knactor.pdbApiVersion" -}}
{{- if and (.Capabilities.APIVersions.Has "policy/v1") (semverCompare ">=1.21.0-0" .Capabilities.KubeVersion.Version) }}policy/v1{{ else }}policy/v1beta1{{ end }}
{{- end }}

{{/*
The admin API's token: the Secret holding it and its key, and where the pods read it
(--admin-token-file). The chart's own Secret is "<base name>-admin-token", key "token";
admin.existingSecret replaces it.
*/}}
{{- define "knactor.adminSecretName" -}}
{{- default (printf "%s-admin-token" (include "knactor.fullname" .)) .Values.admin.existingSecret }}
{{- end }}

{{- define "knactor.adminSecretKey" -}}
{{- if .Values.admin.existingSecret }}{{ .Values.admin.existingSecretKey }}{{ else }}token{{ end }}
{{- end }}

{{- define "knactor.adminTokenPath" -}}/etc/knactor/admin/token{{- end }}

{{/*
The generated token, base64 as in the Secret's data: the one the release's Secret already holds
(lookup, so `helm upgrade` keeps it), else a new random one (48 letters and digits). `helm template`
and a client-side `--dry-run` cannot look up, so they render a fresh token each time. The Secret and
the pods' checksum annotation both call this in one render: the first call keeps its answer in
.Values (rendering only; never stored in the release) so both see the same token.
*/}}
{{- define "knactor.adminToken" -}}
{{- if not (hasKey .Values "knactorGeneratedAdminToken") }}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "knactor.adminSecretName" .) }}
{{- $token := "" }}
{{- if $secret }}
{{- $token = index (default dict $secret.data) "token" | default "" }}
{{- end }}
{{- if not $token }}
{{- $token = randAlphaNum 48 | b64enc }}
{{- end }}
{{- $_ := set .Values "knactorGeneratedAdminToken" $token }}
{{- end }}
{{- .Values.knactorGeneratedAdminToken }}
{{- end }}

{{/*
The stop, after SIGTERM, within terminationGracePeriodSeconds (the kubelet kills the container at
its end; there is no preStop hook: the delay is the node's own, so the whole period is known here):

  SIGTERM ─ delaySeconds ─┬─ Lease handed over ─┬─ drain: timeoutSeconds ─┬─ listeners close, spans flushed ─ exit
  not ready, still takes  │ (the holder; ≤ 5 s) │ 503 to new events,      │ (≤ 5 s + ≤ 5 s)
  events (endpoints go)   │                     │ finish what it accepted │

"knactor.drainMarginSeconds" is what the node may spend outside the delay and the drain (15 s);
"knactor.drainTimeout" is drain.timeoutSeconds, or when 0 what the grace period leaves.
*/}}
{{- define "knactor.drainMarginSeconds" -}}15{{- end }}

{{- define "knactor.drainTimeout" -}}
{{- if .Values.drain.timeoutSeconds }}
{{- int .Values.drain.timeoutSeconds }}
{{- else }}
{{- sub (int .Values.terminationGracePeriodSeconds) (add (int .Values.drain.delaySeconds) (int (include "knactor.drainMarginSeconds" .))) }}
{{- end }}
{{- end }}

{{/*
A Kubernetes memory quantity ("512Mi", "1Gi", "1.5G", 536870912) in bytes, for comparing a memory
limit with the byte budgets. Called with the quantity.
*/}}
{{- define "knactor.bytes" -}}
{{- $q := toString . }}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?(e[+-]?[0-9]+)?" $q }}
{{- $unit := trimPrefix $number $q }}
{{- $units := dict "" 1 "m" 0.001 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 "Ei" 1152921504606846976 }}
{{- mulf (float64 $number) (index $units $unit) | int64 }}
{{- end }}

{{/*
What a node may hold beyond its base: the memory channel's budget (role all only: split roles run
Kafka brokers alone), the request bodies' (the roles that take events: all and ingress), the
journal's, and 64 MiB for the process itself (README "Memory"). Called with
(dict "root" $ "role" ROLE); bytes.
*/}}
{{- define "knactor.memoryNeed" -}}
{{- $need := add (int64 .root.Values.traceJournal.maxBytes) 67108864 }}
{{- if eq .role "all" }}
{{- $need = add $need (int64 .root.Values.memory.maxBytes) }}
{{- end }}
{{- if ne .role "dispatch" }}
{{- $need = add $need (int64 .root.Values.ingressLimits.bodyBufferBytes) }}
{{- end }}
{{- $need }}
{{- end }}

{{/*
Value combinations the schema cannot express. Included by every Deployment, so rendering fails with
one of these messages before anything is installed.
*/}}
{{- define "knactor.validate" -}}
{{- if and (eq .Values.channel "kafka") (not .Values.kafka.bootstrapServers) }}
{{- fail "kafka.bootstrapServers: channel kafka needs the Kafka bootstrap servers (host:port[,host:port...])" }}
{{- end }}
{{- if and .Values.roles.split (ne .Values.channel "kafka") }}
{{- fail "roles.split: separate ingress and dispatch Deployments need channel: kafka (the memory channel lives inside one process, so dispatch pods would never see what ingress pods accepted)" }}
{{- end }}
{{- if and .Values.keda.enabled (ne .Values.channel "kafka") }}
{{- fail "keda.enabled: KEDA scales on Kafka consumer lag and needs channel: kafka (without Kafka use roles.<role>.autoscaling, on CPU)" }}
{{- end }}
{{- if and .Values.keda.enabled (not .Values.keda.brokers) }}
{{- fail "keda.brokers: list the brokers whose consumer lag KEDA scales on ({namespace, name} each)" }}
{{- end }}
{{- if and .Values.keda.enabled (not .Values.roles.split) (lt (int .Values.keda.minReplicas) 1) }}
{{- fail "keda.minReplicas: 0 would stop the gateway too; scale to zero only with roles.split (the dispatch role)" }}
{{- end }}
{{- if and .Values.keda.enabled (ne .Values.keda.sasl "none") (not .Values.kafka.auth.secretName) }}
{{- fail "keda.sasl: KEDA reads the SASL user and password from kafka.auth.secretName; set it" }}
{{- end }}
{{- range $role := fromJsonArray (include "knactor.roles" .) }}
{{- $a := (index $.Values.roles $role).autoscaling }}
{{- if and $a.enabled (gt (int $a.minReplicas) (int $a.maxReplicas)) }}
{{- fail (printf "roles.%s.autoscaling: minReplicas (%d) is greater than maxReplicas (%d)" $role (int $a.minReplicas) (int $a.maxReplicas)) }}
{{- end }}
{{- end }}
{{- range $role := fromJsonArray (include "knactor.roles" .) }}
{{- $limit := dig "limits" "memory" "" (index $.Values.roles $role).resources }}
{{- if $limit }}
{{- $need := int64 (include "knactor.memoryNeed" (dict "root" $ "role" $role)) }}
{{- if lt (int64 (include "knactor.bytes" $limit)) $need }}
{{- $channel := ternary (printf "memory.maxBytes (%d MiB) + " (div (int64 $.Values.memory.maxBytes) 1048576)) "" (eq $role "all") }}
{{- $bodies := ternary "" (printf "ingressLimits.bodyBufferBytes (%d MiB) + " (div (int64 $.Values.ingressLimits.bodyBufferBytes) 1048576)) (eq $role "dispatch") }}
{{- fail (printf "roles.%s.resources.limits.memory (%v) is below the node's budgets, %d MiB: %s%straceJournal.maxBytes (%d MiB) + 64 MiB for the process. The kernel would kill the pod before the budgets answer 503: raise the limit or lower the budgets" $role $limit (div $need 1048576) $channel $bodies (div (int64 $.Values.traceJournal.maxBytes) 1048576)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.networkPolicy.adminFrom (eq .Values.admin.listenAddress "127.0.0.1") }}
{{- fail "networkPolicy.adminFrom: the admin API listens on the pods' loopback (admin.listenAddress 127.0.0.1), which no other pod can reach whatever the policy allows; set admin.listenAddress: 0.0.0.0 for the peers to reach it" }}
{{- end }}
{{- $grace := int .Values.terminationGracePeriodSeconds }}
{{- $delay := int .Values.drain.delaySeconds }}
{{- $margin := int (include "knactor.drainMarginSeconds" .) }}
{{- if .Values.drain.timeoutSeconds }}
{{- $need := add $delay (int .Values.drain.timeoutSeconds) $margin }}
{{- if gt $need $grace }}
{{- fail (printf "drain: drain.delaySeconds (%d) + drain.timeoutSeconds (%d) + %d s (Lease hand-over, listeners closing, spans flushed) is %d s, more than terminationGracePeriodSeconds (%d): the kubelet would kill the node in the middle of its drain; raise terminationGracePeriodSeconds to %d or shorten the drain" $delay (int .Values.drain.timeoutSeconds) $margin $need $grace $need) }}
{{- end }}
{{- else if lt (int (include "knactor.drainTimeout" .)) 1 }}
{{- fail (printf "terminationGracePeriodSeconds (%d) leaves the node no time to drain: it needs drain.delaySeconds (%d) + %d s (Lease hand-over, listeners closing, spans flushed) + the drain itself; give it at least %d" $grace $delay $margin (add $delay $margin 1)) }}
{{- end }}
{{- if and .Values.keda.enabled (gt (int .Values.keda.minReplicas) (int .Values.keda.maxReplicas)) }}
{{- fail (printf "keda: minReplicas (%d) is greater than maxReplicas (%d)" (int .Values.keda.minReplicas) (int .Values.keda.maxReplicas)) }}
{{- end }}
{{- end }}

{{/*
The admission webhook: its Service, the Secret holding its certificate (tls.crt, tls.key, ca.crt;
the chart's or cert-manager's), and where the pods mount it.
*/}}
{{- define "knactor.webhookName" -}}
{{- printf "%s-webhook" (include "knactor.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "knactor.webhookSecretName" -}}
{{- printf "%s-webhook-cert" (include "knactor.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "knactor.webhookCertDir" -}}/etc/knactor/webhook{{- end }}
