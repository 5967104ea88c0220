{{/* Checks values.schema.json cannot express; every failure says what to
set. Included once, from the edge Deployment. */}}
{{- define "herald.validate" -}}
{{- $v := .Values }}

{{- if $v.secrets.existingSecret }}
{{- if or $v.secrets.databaseUrl $v.secrets.adminToken }}
{{- fail "secrets.existingSecret is set: leave secrets.databaseUrl and secrets.adminToken empty (they would be ignored)" }}
{{- end }}
{{- else }}
{{- if not $v.secrets.databaseUrl }}
{{- fail "secrets.databaseUrl is required (postgres://user:password@host:5432/herald), or set secrets.existingSecret to a Secret holding it" }}
{{- end }}
{{- end }}

{{- if and (not $v.nats.url) (not $v.nats.existingSecret) }}
{{- fail "nats.url is required (a NATS with JetStream, e.g. nats://nats:4222), or set nats.existingSecret" }}
{{- end }}

{{- $floor := add (int $v.edge.preStopSleepSeconds) (int $v.edge.drainTimeoutSeconds) }}
{{- if not (kindIs "invalid" $v.edge.terminationGracePeriodSeconds) }}
{{- if le (int $v.edge.terminationGracePeriodSeconds) $floor }}
{{- fail (printf "edge.terminationGracePeriodSeconds (%d) must be longer than edge.preStopSleepSeconds + edge.drainTimeoutSeconds (%d), or Kubernetes kills edges before their clients are drained" (int $v.edge.terminationGracePeriodSeconds) $floor) }}
{{- end }}
{{- end }}

{{- range $name, $pdb := dict "edge" $v.edge.podDisruptionBudget "controlPlane" $v.controlPlane.podDisruptionBudget }}
{{- if $pdb.enabled }}
{{- $min := not (kindIs "invalid" $pdb.minAvailable) }}
{{- $max := not (kindIs "invalid" $pdb.maxUnavailable) }}
{{- if not (or $min $max) }}
{{- fail (printf "%s.podDisruptionBudget: set minAvailable or maxUnavailable (or enabled: false)" $name) }}
{{- end }}
{{- end }}
{{- end }}

{{- with $v.edge.autoscaling }}
{{- if .enabled }}
{{- if gt (int .minReplicas) (int .maxReplicas) }}
{{- fail (printf "edge.autoscaling.minReplicas (%d) must not exceed maxReplicas (%d)" (int .minReplicas) (int .maxReplicas)) }}
{{- end }}
{{- if and (kindIs "invalid" .targetCPUUtilizationPercentage) (kindIs "invalid" .targetMemoryUtilizationPercentage) (kindIs "invalid" .targetConnectionsPerPod) }}
{{- fail "edge.autoscaling is enabled without a target: set targetCPUUtilizationPercentage, targetMemoryUtilizationPercentage or targetConnectionsPerPod" }}
{{- end }}
{{- $requests := default dict $v.edge.resources.requests }}
{{- if and (not (kindIs "invalid" .targetCPUUtilizationPercentage)) (not (hasKey $requests "cpu")) }}
{{- fail "edge.autoscaling.targetCPUUtilizationPercentage needs edge.resources.requests.cpu" }}
{{- end }}
{{- if and (not (kindIs "invalid" .targetMemoryUtilizationPercentage)) (not (hasKey $requests "memory")) }}
{{- fail "edge.autoscaling.targetMemoryUtilizationPercentage needs edge.resources.requests.memory" }}
{{- end }}
{{- end }}
{{- end }}

{{- if and $v.edge.tls.enabled (not $v.edge.tls.secretName) }}
{{- fail "edge.tls.enabled needs edge.tls.secretName (a kubernetes.io/tls Secret)" }}
{{- end }}

{{- /* Tokens minted by this release's control plane must verify on its
edges. An edge pointed at another control plane (edge.jwksUrl) may differ. */}}
{{- $cpIssuer := get $v.controlPlane.config "issuer" | default "herald" }}
{{- $edgeIssuer := get $v.edge.config "issuer" | default "" }}
{{- if and $edgeIssuer (not $v.edge.jwksUrl) (ne $cpIssuer $edgeIssuer) }}
{{- fail (printf "edge.config.issuer (%s) differs from the control plane's issuer (%s): edges would refuse every token; set it once, as controlPlane.config.issuer" $edgeIssuer $cpIssuer) }}
{{- end }}
{{- end }}
