{{/* "<release>" unless nameOverride is set: the prefix of every name. */}}
{{- define "trainforge.base" -}}
{{- default .Release.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "trainforge.controller" -}}{{ include "trainforge.base" . }}-controller{{- end -}}
{{- define "trainforge.instances" -}}{{ include "trainforge.base" . }}-instances{{- end -}}
{{- define "trainforge.minio" -}}{{ include "trainforge.base" . }}-minio{{- end -}}

{{- define "trainforge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: trainforge
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "trainforge.controller.selector" -}}
app.kubernetes.io/name: trainforge-controller
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "trainforge.minio.selector" -}}
app.kubernetes.io/name: minio
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "trainforge.image" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .root.Chart.AppVersion) -}}
{{- end -}}

{{/* The MinIO root password: from values, else the existing Secret's, else new. */}}
{{- define "trainforge.minio.password" -}}
{{- if .Values.minio.rootPassword -}}
{{- .Values.minio.rootPassword -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "trainforge.minio" .) -}}
{{- if and $existing $existing.data (index $existing.data "MINIO_ROOT_PASSWORD") -}}
{{- index $existing.data "MINIO_ROOT_PASSWORD" | b64dec -}}
{{- else -}}
{{- randAlphaNum 32 -}}
{{- end -}}
{{- end -}}
{{- end -}}
