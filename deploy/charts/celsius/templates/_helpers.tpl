{{/* Chart name, truncated to the 63 characters DNS names allow. */}}
{{- define "celsius.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart, unless the release name already holds it. */}}
{{- define "celsius.fullname" -}}
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

{{- define "celsius.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels shared by every object. */}}
{{- define "celsius.commonLabels" -}}
helm.sh/chart: {{ include "celsius.chart" . }}
app.kubernetes.io/name: {{ include "celsius.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: celsius
{{- end }}

{{/* The service (celsius-server). */}}
{{- define "celsius.labels" -}}
{{ include "celsius.commonLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "celsius.selectorLabels" -}}
app.kubernetes.io/name: {{ include "celsius.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{- define "celsius.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "celsius.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, the tag defaulting to the chart's appVersion. Call with (list image $). */}}
{{- define "celsius.image" -}}
{{- $image := index . 0 }}
{{- $root := index . 1 }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}

{{/* TensorFlow Serving. */}}
{{- define "celsius.tfServing.fullname" -}}
{{- printf "%s-tf-serving" (include "celsius.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "celsius.tfServing.labels" -}}
{{ include "celsius.commonLabels" . }}
app.kubernetes.io/component: tf-serving
{{- end }}

{{- define "celsius.tfServing.selectorLabels" -}}
app.kubernetes.io/name: {{ include "celsius.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: tf-serving
{{- end }}

{{/* TF Serving's image: an empty tag means 2.20.0 for tensorflow/serving (official image,
     also behind a registry prefix), the chart's appVersion for the project's images. */}}
{{- define "celsius.tfServing.image" -}}
{{- $image := .Values.tfServing.image }}
{{- $official := or (eq $image.repository "tensorflow/serving") (hasSuffix "/tensorflow/serving" $image.repository) }}
{{- printf "%s:%s" $image.repository (default (ternary "2.20.0" .Chart.AppVersion $official) $image.tag) }}
{{- end }}

{{/* The rolling update: a surge pod first, unless hard anti-affinity makes it unschedulable
     once every node holds a replica; then each pod is replaced in place. */}}
{{- define "celsius.rollingUpdate" -}}
{{- if .Values.rollingUpdate }}
{{- toYaml .Values.rollingUpdate }}
{{- else if eq .Values.podAntiAffinityPreset "hard" }}
maxSurge: 0
maxUnavailable: 1
{{- else }}
maxSurge: 1
maxUnavailable: 0
{{- end }}
{{- end }}

{{/* True when a CPU request is missing or zero ("0", "0m", 0, "0.0"). */}}
{{- define "celsius.noCpuRequest" -}}
{{- $cpu := toString (default "" .) }}
{{- if or (eq $cpu "") (eq $cpu "<nil>") (regexMatch "^0*(\\.0*)?m?$" $cpu) }}true{{ end }}
{{- end }}

{{/* The service's --model-server: this chart's TF Serving over gRPC by Service DNS. */}}
{{- define "celsius.modelServer" -}}
{{- if .Values.tfServing.enabled }}
{{- printf "grpc://%s.%s.svc:%d" (include "celsius.tfServing.fullname" .) .Release.Namespace (int .Values.tfServing.grpcPort) }}
{{- else }}
{{- .Values.tfServing.externalAddress }}
{{- end }}
{{- end }}

{{/* Rules the schema cannot express (they compare two values). */}}
{{- define "celsius.validate" -}}
{{- if lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas) }}
{{- fail "autoscaling.maxReplicas must be >= autoscaling.minReplicas" }}
{{- end }}
{{- if lt (int .Values.tfServing.autoscaling.maxReplicas) (int .Values.tfServing.autoscaling.minReplicas) }}
{{- fail "tfServing.autoscaling.maxReplicas must be >= tfServing.autoscaling.minReplicas" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (include "celsius.noCpuRequest" (dig "requests" "cpu" "" .Values.resources)) }}
{{- fail "autoscaling.enabled needs resources.requests.cpu > 0: the HPA computes CPU utilisation as usage / request, and without a request it can never scale" }}
{{- end }}
{{- if and .Values.tfServing.enabled .Values.tfServing.autoscaling.enabled (include "celsius.noCpuRequest" (dig "requests" "cpu" "" .Values.tfServing.resources)) }}
{{- fail "tfServing.autoscaling.enabled needs tfServing.resources.requests.cpu > 0: the HPA computes CPU utilisation as usage / request, and without a request it can never scale" }}
{{- end }}
{{- if and .Values.tfServing.enabled .Values.tfServing.externalAddress }}
{{- fail "tfServing.externalAddress is for a model server outside this chart: set tfServing.enabled=false with it" }}
{{- end }}
{{- end }}
