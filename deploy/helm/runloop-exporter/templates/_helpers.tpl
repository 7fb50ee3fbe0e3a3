{{/* Chart name, or nameOverride. */}}
{{- define "runloop-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the objects: fullnameOverride, else "<release>-<name>", or the release name alone when it
already contains the name. Truncated to 63 characters (DNS label).
*/}}
{{- define "runloop-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "name-version" for the helm.sh/chart label. */}}
{{- define "runloop-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "runloop-exporter.labels" -}}
helm.sh/chart: {{ include "runloop-exporter.chart" . }}
{{ include "runloop-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the pod: the Deployment's selector, the Service's selector, the ServiceMonitor's. */}}
{{- define "runloop-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "runloop-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "runloop-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "runloop-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the API key: the existing one, or the one the chart makes. */}}
{{- define "runloop-exporter.secretName" -}}
{{- if .Values.config.existingSecret.name }}
{{- .Values.config.existingSecret.name }}
{{- else }}
{{- include "runloop-exporter.fullname" . }}
{{- end }}
{{- end }}

{{- define "runloop-exporter.secretKey" -}}
{{- if .Values.config.existingSecret.name }}
{{- .Values.config.existingSecret.key }}
{{- else -}}
api-key
{{- end }}
{{- end }}

{{- define "runloop-exporter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* HTTP or HTTPS, as the exporter serves it. */}}
{{- define "runloop-exporter.scheme" -}}
{{- if .Values.webConfig.tls }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{/* A probe from values, with the scheme set to what the exporter serves. */}}
{{- define "runloop-exporter.probe" -}}
{{- $probe := deepCopy .probe }}
{{- if $probe.httpGet }}
{{- $_ := set $probe.httpGet "scheme" (include "runloop-exporter.scheme" .root) }}
{{- end }}
{{- toYaml $probe }}
{{- end }}

{{/* The alert rules shipped with the chart, parsed. */}}
{{- define "runloop-exporter.rules" -}}
{{- .Files.Get "files/alerts.yaml" }}
{{- end }}

{{/*
Values that contradict each other fail the render with one clear message each, rather than making a pod
that crash-loops.
*/}}
{{- define "runloop-exporter.validate" -}}
{{- $c := .Values.config }}
{{- if and $c.apiKey $c.existingSecret.name }}
{{- fail "config.apiKey and config.existingSecret.name are both set: give the key one way only (prefer config.existingSecret.name, which keeps it out of the release history)" }}
{{- end }}
{{- if and $c.demo (or $c.apiKey $c.existingSecret.name) }}
{{- fail "config.demo is true but an API key is given too: demo mode serves a simulated account and ignores the key; unset one of them" }}
{{- end }}
{{- if not (or $c.demo $c.apiKey $c.existingSecret.name) }}
{{- fail "no Runloop API key: set config.existingSecret.name to a Secret holding the key (see config.existingSecret.key), or config.apiKey, or config.demo=true to try the chart without an account" }}
{{- end }}
{{- if and .Values.webConfig.tls (not .Values.webConfig.existingSecret) }}
{{- fail "webConfig.tls is true but webConfig.existingSecret is empty: TLS needs a web config file from a Secret" }}
{{- end }}
{{- if and .Values.persistence.existingClaim (not .Values.persistence.enabled) }}
{{- fail "persistence.existingClaim is set but persistence.enabled is false: enable persistence to keep the checkpoint on that claim" }}
{{- end }}
{{- if and .Values.networkPolicy.egress.enabled (not .Values.networkPolicy.enabled) }}
{{- fail "networkPolicy.egress.enabled is true but networkPolicy.enabled is false: enable networkPolicy to restrict egress" }}
{{- end }}
{{- $limit := int64 (.Values.serviceMonitor.sampleLimit | default 0) }}
{{- $series := int64 (.Values.config.maxSeries | default 100000) }}
{{- if and .Values.serviceMonitor.enabled (gt $limit 0) (lt $limit (add $series 1000)) }}
{{- fail (printf "serviceMonitor.sampleLimit is %d, below config.maxSeries (%d) + 1000 for the exporter's own series: a full scrape would fail whole; raise it or lower config.maxSeries" $limit $series) }}
{{- end }}
{{- if .Values.prometheusRule.disabledAlerts }}
{{- $known := list }}
{{- range $group := (include "runloop-exporter.rules" . | fromYaml).groups }}
{{- range $rule := $group.rules }}
{{- if $rule.alert }}
{{- $known = append $known $rule.alert }}
{{- end }}
{{- end }}
{{- end }}
{{- range $name := .Values.prometheusRule.disabledAlerts }}
{{- if not (has $name $known) }}
{{- fail (printf "prometheusRule.disabledAlerts names %q, which is not one of the chart's alerts: %s" $name (join ", " $known)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
