{{/* The chart's name, for labels. */}}
{{- define "scopegate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's object name. */}}
{{- define "scopegate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "scopegate.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "scopegate.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels that select the pods. */}}
{{- define "scopegate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scopegate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "scopegate.labels" -}}
{{ include "scopegate.selectorLabels" . }}
app.kubernetes.io/version: {{ include "scopegate.tag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The image tag: image.tag, or the chart's appVersion. */}}
{{- define "scopegate.tag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{/* The ConfigMap holding the policy. */}}
{{- define "scopegate.policyConfigMap" -}}
{{- default (printf "%s-policy" (include "scopegate.fullname" .)) .Values.existingPolicyConfigMap -}}
{{- end -}}

{{/* The Secret holding key files, or "" for none. */}}
{{- define "scopegate.keysSecret" -}}
{{- if .Values.keys.existingSecret -}}
{{- .Values.keys.existingSecret -}}
{{- else if .Values.keys.files -}}
{{- printf "%s-keys" (include "scopegate.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* shutdownTimeout in whole seconds (accepts 20s, 1m, 1m30s). */}}
{{- define "scopegate.shutdownSeconds" -}}
{{- $d := .Values.shutdownTimeout | toString -}}
{{- $total := 0 -}}
{{- range $part := regexFindAll "[0-9]+[hms]" $d -1 -}}
{{- $n := trimSuffix "h" (trimSuffix "m" (trimSuffix "s" $part)) | int -}}
{{- if hasSuffix "h" $part }}{{ $total = add $total (mul $n 3600) }}{{ else if hasSuffix "m" $part }}{{ $total = add $total (mul $n 60) }}{{ else }}{{ $total = add $total $n }}{{ end -}}
{{- end -}}
{{- $total -}}
{{- end -}}
