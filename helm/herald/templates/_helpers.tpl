{{/* Names ------------------------------------------------------------- */}}

{{- define "herald.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release-wide prefix; components append "-edge" and such, so keep
room for the longest suffix ("-control-plane-migrate", 22 characters). */}}
{{- define "herald.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 41 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 41 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 41 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "herald.edge.fullname" -}}
{{- printf "%s-edge" (include "herald.fullname" .) }}
{{- end }}

{{- define "herald.cp.fullname" -}}
{{- printf "%s-control-plane" (include "herald.fullname" .) }}
{{- end }}

{{- define "herald.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels: call with (dict "ctx" $ "component" "edge"). */}}
{{- define "herald.selectorLabels" -}}
app.kubernetes.io/name: {{ include "herald.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "herald.labels" -}}
helm.sh/chart: {{ include "herald.chart" .ctx }}
{{ include "herald.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: herald
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Image and accounts ------------------------------------------------- */}}

{{- define "herald.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "herald.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "herald.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "herald.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else }}
{{- printf "%s-secrets" (include "herald.fullname" .) }}
{{- end }}
{{- end }}

{{/* Configuration ------------------------------------------------------- */}}

{{/* A config value as environment text. Helm reads YAML numbers as floats,
which print as 1e+06; the schema only lets whole numbers through, so print
them as integers. */}}
{{- define "herald.envValue" -}}
{{- if kindIs "float64" . }}
{{- int64 . | toString }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{- define "herald.listen" -}}
{{- $host := .host }}
{{- if contains ":" $host }}
{{- if not (hasPrefix "[" $host) }}{{ $host = printf "[%s]" $host }}{{ end }}
{{- end }}
{{- printf "%s:%d" $host (int .port) }}
{{- end }}

{{/* NATS URL and log settings, shared by both components.
Call with (dict "ctx" $ "prefix" "HERALD_EDGE_"). */}}
{{- define "herald.commonEnv" -}}
{{- $ := .ctx }}
{{- $prefix := .prefix -}}
- name: HERALD_LOG
  value: {{ $.Values.log.level | quote }}
- name: HERALD_LOG_FORMAT
  value: {{ $.Values.log.format | quote }}
- name: {{ printf "%sNATS_URL" $prefix }}
{{- if $.Values.nats.existingSecret }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.nats.existingSecret }}
      key: {{ $.Values.nats.existingSecretKey }}
{{- else }}
  value: {{ $.Values.nats.url | quote }}
{{- end }}
{{- with $.Values.nats.subjectPrefix }}
- name: {{ printf "%sSUBJECT_PREFIX" $prefix }}
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/* The token issuer both sides must agree on: the control plane's when
set, else the edge's; empty means the binary default on both. */}}
{{- define "herald.issuer" -}}
{{- $cp := get .Values.controlPlane.config "issuer" | default "" }}
{{- $edge := get .Values.edge.config "issuer" | default "" }}
{{- default $edge $cp }}
{{- end }}

{{- define "herald.jwksUrl" -}}
{{- if .Values.edge.jwksUrl }}
{{- .Values.edge.jwksUrl }}
{{- else }}
{{- printf "http://%s.%s.svc:%d/.well-known/jwks.json" (include "herald.cp.fullname" .) .Release.Namespace (int .Values.controlPlane.service.port) }}
{{- end }}
{{- end }}

{{/* Pod lifecycle ------------------------------------------------------- */}}

{{- define "herald.edge.terminationGracePeriodSeconds" -}}
{{- $floor := add (int .Values.edge.preStopSleepSeconds) (int .Values.edge.drainTimeoutSeconds) }}
{{- if kindIs "invalid" .Values.edge.terminationGracePeriodSeconds }}
{{- add $floor 15 }}
{{- else }}
{{- int .Values.edge.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* Restart pods when the Secret the chart owns changes. */}}
{{- define "herald.secretChecksum" -}}
{{- if not .Values.secrets.existingSecret }}
checksum/secrets: {{ printf "%s\n%s" (include "herald.adminToken" .) .Values.secrets.databaseUrl | sha256sum }}
{{- end }}
{{- end }}

{{/*
The admin token of the chart's Secret: secrets.adminToken when given; else
the one the release's Secret already holds (kept across upgrades, read with
lookup); else 48 random letters and digits, drawn once per render (kept in
.Values for the other templates of the same render).
*/}}
{{- define "herald.adminToken" -}}
{{- $s := .Values.secrets }}
{{- if $s.adminToken }}
{{- $s.adminToken }}
{{- else }}
{{- if not (hasKey $s "generatedAdminToken") }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "herald.secretName" .) }}
{{- $kept := dig "data" $s.adminTokenKey "" ($existing | default dict) }}
{{- $_ := set $s "generatedAdminToken" (ternary (b64dec $kept) (randAlphaNum 48) (ne $kept "")) }}
{{- end }}
{{- $s.generatedAdminToken }}
{{- end }}
{{- end }}

{{/*
gRPC probe: (dict "port" 8080 "probe" .Values.controlPlane.readinessProbe).
The kubelet calls grpc.health.v1.Health/Check (plaintext, service ""),
which answers from the same state as /readyz.
*/}}
{{- define "herald.grpcProbe" -}}
grpc:
  port: {{ int .port }}
{{- range $k, $v := .probe }}
{{- if not (kindIs "invalid" $v) }}
{{ $k }}: {{ int $v }}
{{- end }}
{{- end }}
{{- end }}

{{/* HTTP probe: (dict "path" "/readyz" "scheme" "HTTP" "probe" .Values.edge.readinessProbe). */}}
{{- define "herald.httpProbe" -}}
httpGet:
  path: {{ .path }}
  port: http
  scheme: {{ .scheme }}
{{- range $k, $v := .probe }}
{{- if not (kindIs "invalid" $v) }}
{{ $k }}: {{ int $v }}
{{- end }}
{{- end }}
{{- end }}
