{{/*
Names, labels and shared fragments.
*/}}

{{- define "doable.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified name. With the release called "doable" the objects are named
doable-api, doable-reminders, ... i.e. the same as their Dapr app-ids.
*/}}
{{- define "doable.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "doable.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "doable.selectorLabels" -}}
app.kubernetes.io/name: {{ include "doable.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "doable.labels" -}}
helm.sh/chart: {{ include "doable.chart" . }}
{{ include "doable.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: doable
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The application names shared with doable/platform/topology.py (files/topology.yaml). */}}
{{- define "doable.topology" -}}
{{- .Files.Get "files/topology.yaml" -}}
{{- end -}}

{{- define "doable.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "doable.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "doable.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "doable.daprConfigName" -}}
{{- printf "%s-dapr" (include "doable.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "doable.redpandaName" -}}
{{- printf "%s-redpanda" (include "doable.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Kafka bootstrap servers: the in-cluster Redpanda unless brokers are given. */}}
{{- define "doable.kafkaBrokers" -}}
{{- if .Values.dapr.components.pubsub.brokers -}}
{{- .Values.dapr.components.pubsub.brokers -}}
{{- else if .Values.redpanda.enabled -}}
{{- printf "%s.%s.svc.cluster.local:9092" (include "doable.redpandaName" .) .Release.Namespace -}}
{{- else -}}
{{- fail "dapr.components.pubsub.brokers is required when redpanda.enabled is false (e.g. the Redpanda Cloud bootstrap server host:9092)" -}}
{{- end -}}
{{- end -}}

{{/*
The Doable processes, in a fixed order: one Deployment each.
Returns a YAML list of {key, appId, component, args, spec}.
*/}}
{{- define "doable.processes" -}}
{{- $topo := include "doable.topology" . | fromYaml -}}
- key: api
  appId: {{ $topo.apiAppId }}
  args: ["serve", "--host", "0.0.0.0", "--port", {{ $topo.appPort | quote }}]
{{- range $key := list "reminders" "notifications" "recurrence" "audit" }}
- key: {{ $key }}
  appId: {{ index $topo.workerAppIds $key }}
  args: ["worker", {{ $key | quote }}, "--host", "0.0.0.0", "--port", {{ $topo.appPort | quote }}]
{{- end }}
{{- end -}}

{{/* Spec values (replicas, resources, sidecar) of one process by key. */}}
{{- define "doable.processValues" -}}
{{- if eq .key "api" -}}
{{- toYaml .root.Values.api -}}
{{- else -}}
{{- toYaml (index .root.Values.workers .key) -}}
{{- end -}}
{{- end -}}

{{/* Every enabled Dapr app-id (for component scopes). */}}
{{- define "doable.enabledAppIds" -}}
{{- $root := . -}}
{{- range $p := include "doable.processes" . | fromYamlArray -}}
{{- $v := include "doable.processValues" (dict "root" $root "key" $p.key) | fromYaml -}}
{{- if $v.enabled }}
- {{ $p.appId }}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "doable.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "doable.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
The app's own Dapr client timeouts, in seconds, as a YAML map of environment variables: the
sidecar's worst case for the same call (timeout x attempts + retry intervals, from
dapr.resiliency) plus a margin, so the app never gives up on a call the sidecar may still finish.
*/}}
{{- define "doable.daprClientTimeouts" -}}
{{- $r := .Values.dapr.resiliency -}}
{{- $margin := int $r.clientMarginSeconds -}}
{{- $interval := int $r.retryIntervalSeconds -}}
{{- $state := add (int $r.stateTimeoutSeconds) $margin -}}
{{- $publish := add (mul (int $r.publishTimeoutSeconds) (add1 (int $r.publishRetries))) (mul $interval (int $r.publishRetries)) $margin -}}
{{- $invoke := add (mul (int $r.invokeTimeoutSeconds) (add1 (int $r.invokeRetries))) (mul $interval (int $r.invokeRetries)) $margin -}}
DOABLE_DAPR_TIMEOUT: {{ $state | quote }}
DOABLE_DAPR_PUBLISH_TIMEOUT: {{ $publish | quote }}
DOABLE_DAPR_INVOKE_TIMEOUT: {{ $invoke | quote }}
{{- end -}}
