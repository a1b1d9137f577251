{{/*
The chart's name: weir, or nameOverride.
*/}}
{{- define "weir.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of the release's objects: fullnameOverride; else the release name
when it contains the chart's name (`helm install weir` → weir); else
<release>-<name>. Truncated to 63 characters (DNS label).
*/}}
{{- define "weir.fullname" -}}
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

{{/*
The helm.sh/chart label: name-version.
*/}}
{{- define "weir.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "weir.labels" -}}
helm.sh/chart: {{ include "weir.chart" . }}
{{ include "weir.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels: the Deployment's selector, the Service's and the
ServiceMonitor's. Never change them in an upgrade (a selector is immutable).
*/}}
{{- define "weir.selectorLabels" -}}
app.kubernetes.io/name: {{ include "weir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount Weir runs as.
*/}}
{{- define "weir.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "weir.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image: repository:tag, the tag defaulting to the chart's appVersion.
*/}}
{{- define "weir.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/*
"true" when the store is PostgreSQL (database.url or database.existingSecret),
"" for the embedded SQLite store.
*/}}
{{- define "weir.postgres" -}}
{{- if or .Values.database.url .Values.database.existingSecret }}true{{ end }}
{{- end }}

{{/*
The Secret holding the PostgreSQL URL: the chart's own or database.existingSecret.
*/}}
{{- define "weir.databaseSecretName" -}}
{{- if .Values.database.url }}
{{- printf "%s-database" (include "weir.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- .Values.database.existingSecret }}
{{- end }}
{{- end }}

{{/*
The claim of the data directory: persistence.existingClaim or the chart's own.
*/}}
{{- define "weir.claimName" -}}
{{- default (printf "%s-data" (include "weir.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/*
What jobs get in WEIR_API_URL: apiUrl, else this release's Service.
*/}}
{{- define "weir.apiUrl" -}}
{{- if .Values.apiUrl }}
{{- .Values.apiUrl }}
{{- else }}
{{- printf "http://%s.%s.svc:%v" (include "weir.fullname" .) .Release.Namespace .Values.service.port }}
{{- end }}
{{- end }}

{{/*
auth.mode as on, off or auto (an unquoted YAML on/off is a boolean in YAML 1.1).
*/}}
{{- define "weir.authMode" -}}
{{- if kindIs "bool" .Values.auth.mode }}
{{- ternary "on" "off" .Values.auth.mode }}
{{- else }}
{{- .Values.auth.mode | toString }}
{{- end }}
{{- end }}

{{/*
The Deployment's strategy: strategy if set, else Recreate unless the store is
PostgreSQL and the data directory is no ReadWriteOnce claim.
*/}}
{{- define "weir.strategy" -}}
{{- if .Values.strategy -}}
{{ toYaml .Values.strategy }}
{{- else if and (include "weir.postgres" .) (not .Values.persistence.enabled) -}}
type: RollingUpdate
{{- else -}}
type: Recreate
{{- end -}}
{{- end }}

{{/*
Refuses values that cannot work, each with a message naming the value.
*/}}
{{- define "weir.validate" -}}
{{- $replicas := int .Values.replicaCount }}
{{- if lt $replicas 1 }}
{{- fail (printf "replicaCount is %v: Weir needs at least one replica" .Values.replicaCount) }}
{{- end }}
{{- if and .Values.database.url .Values.database.existingSecret }}
{{- fail "database.url and database.existingSecret are both set: set one (the URL, or the Secret holding it)" }}
{{- end }}
{{- if and (include "weir.postgres" .) (not .Values.database.secretKey) }}
{{- fail "database.secretKey is empty: it names the Secret's key holding the PostgreSQL URL" }}
{{- end }}
{{- if and (gt $replicas 1) (not (include "weir.postgres" .)) }}
{{- fail (printf "replicaCount is %d, but more than one replica needs PostgreSQL (set database.url or database.existingSecret): the embedded SQLite store has a single writer" $replicas) }}
{{- end }}
{{- if and (gt $replicas 1) .Values.persistence.enabled }}
{{- fail (printf "replicaCount is %d with persistence.enabled: the replicas would share one ReadWriteOnce claim; set persistence.enabled=false (with PostgreSQL each replica's data directory is then an emptyDir holding only its plugin cache and process-run logs)" $replicas) }}
{{- end }}
{{- if and (not (include "weir.postgres" .)) (eq (toString (dig "type" "" .Values.strategy)) "RollingUpdate") }}
{{- fail "strategy.type is RollingUpdate, but the embedded SQLite store has a single writer: the old pod must stop before the new one starts (Recreate); RollingUpdate needs PostgreSQL" }}
{{- end }}
{{- if not (has (include "weir.authMode" .) (list "on" "off" "auto")) }}
{{- fail (printf "auth.mode is %q: use on, off or auto" (include "weir.authMode" .)) }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled .Values.metrics.serviceMonitor.bearerTokenSecret.name (not .Values.metrics.serviceMonitor.bearerTokenSecret.key) }}
{{- fail "metrics.serviceMonitor.bearerTokenSecret.key is empty: it names the Secret's key holding the token" }}
{{- end }}
{{- end }}

{{/*
A string as a ConfigMap value at indent 2: a literal block scalar (| or |-)
when it can be one exactly, else a JSON string (leading whitespace, CRs or
several trailing newlines have no plain block spelling after re-indenting).
*/}}
{{- define "weir.fileContent" -}}
{{- if and . (not (regexMatch "^[ \t\r\n]" .)) (not (contains "\r" .)) (not (hasSuffix "\n\n" .)) -}}
{{ ternary "|" "|-" (hasSuffix "\n" .) }}
{{ regexReplaceAll "(?m)^    $" (. | trimSuffix "\n" | indent 4) "" }}
{{- else -}}
{{ toJson . }}
{{- end -}}
{{- end }}
