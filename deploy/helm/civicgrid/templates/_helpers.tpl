{{/* The services this release runs, in a fixed order: the four backends and, if enabled, the console. */}}
{{- define "civicgrid.services" -}}
{{- $names := list "intake" "grid" "matching" "audit" -}}
{{- if .Values.console.enabled }}{{ $names = append $names "console" }}{{ end -}}
{{- join "," $names -}}
{{- end -}}

{{- define "civicgrid.registry" -}}
{{- .Files.Get "registry.yaml" -}}
{{- end -}}

{{- define "civicgrid.fullname" -}}
{{- printf "%s-%s" .root.Release.Name .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "civicgrid.kafkaName" -}}
{{- default .Release.Name .Values.kafka.clusterName -}}
{{- end -}}

{{- define "civicgrid.mongoName" -}}
{{- default (printf "%s-mongodb" .Release.Name) .Values.mongodb.name -}}
{{- end -}}

{{- define "civicgrid.secretName" -}}
{{- default (printf "%s-secrets" .Release.Name) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* "true" when the services reach Kafka over TLS with SCRAM-SHA-512 (kafka.authentication: scram), "" when
     over the plain listener (none); any other value fails the render. */}}
{{- define "civicgrid.kafkaScram" -}}
{{- $auth := .Values.kafka.authentication -}}
{{- if not (has $auth (list "scram" "none")) }}{{ fail (printf "kafka.authentication: scram or none, not %q" $auth) }}{{ end -}}
{{- if eq $auth "scram" }}true{{ end -}}
{{- end -}}

{{/* The listener's port: 9093 (TLS + SCRAM) or 9092 (plain). */}}
{{- define "civicgrid.kafkaPort" -}}
{{- if include "civicgrid.kafkaScram" . }}9093{{ else }}9092{{ end -}}
{{- end -}}

{{- define "civicgrid.bootstrapServers" -}}
{{- printf "%s-kafka-bootstrap:%s" (include "civicgrid.kafkaName" .) (include "civicgrid.kafkaPort" .) -}}
{{- end -}}

{{/* The Secret holding the cluster CA's certificate (key ca.crt), which Strimzi makes per cluster. */}}
{{- define "civicgrid.kafkaCaSecret" -}}
{{- default (printf "%s-cluster-ca-cert" (include "civicgrid.kafkaName" .)) .Values.kafka.caSecret -}}
{{- end -}}

{{/* A service's SCRAM user: kafka.users.existing.<service>.name, or the KafkaUser the chart makes. */}}
{{- define "civicgrid.kafkaUser" -}}
{{- $existing := index .root.Values.kafka.users.existing .name | default dict -}}
{{- default (include "civicgrid.fullname" .) $existing.name -}}
{{- end -}}

{{/* The Secret with that user's password (key password): Strimzi names it after the user. */}}
{{- define "civicgrid.kafkaUserSecret" -}}
{{- $existing := index .root.Values.kafka.users.existing .name | default dict -}}
{{- default (include "civicgrid.kafkaUser" .) $existing.secret -}}
{{- end -}}

{{/* "true" for a service with a Kafka client (the registry lists what it reads); the console has none. */}}
{{- define "civicgrid.usesKafka" -}}
{{- $registry := include "civicgrid.registry" .root | fromYaml -}}
{{- if hasKey $registry.reads .name }}true{{ end -}}
{{- end -}}

{{- define "civicgrid.commonLabels" -}}
app.kubernetes.io/part-of: civicgrid
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one service's pods: (dict "root" $ "name" "intake") */}}
{{- define "civicgrid.selectorLabels" -}}
app.kubernetes.io/name: civicgrid-{{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "civicgrid.labels" -}}
{{ include "civicgrid.commonLabels" .root }}
app.kubernetes.io/name: civicgrid-{{ .name }}
app.kubernetes.io/component: {{ .name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{- end -}}

{{/* The image of one service: a digest wins over a tag; ":latest" or no pin at all fails the render. */}}
{{- define "civicgrid.image" -}}
{{- $svc := index .root.Values .name -}}
{{- $repo := $svc.image.repository -}}
{{- if .root.Values.image.registry }}{{ $repo = printf "%s/%s" .root.Values.image.registry $repo }}{{ end -}}
{{- if $svc.image.digest -}}
{{- printf "%s@%s" $repo $svc.image.digest -}}
{{- else -}}
{{- $tag := default .root.Values.image.tag $svc.image.tag -}}
{{- if or (not $tag) (eq $tag "latest") -}}
{{- fail (printf "%s: pin the image (a tag other than latest, or a digest)" .name) -}}
{{- end -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{/* The consumer group of a service, from the registry (empty for the console, which consumes nothing). */}}
{{- define "civicgrid.consumerGroup" -}}
{{- $registry := include "civicgrid.registry" .root | fromYaml -}}
{{- if has .name $registry.consumerGroups }}{{ .name }}{{ end -}}
{{- end -}}

{{/* The replica set's members, as the MongoDB Community operator names them (the driver finds the primary). */}}
{{- define "civicgrid.mongoHosts" -}}
{{- $name := include "civicgrid.mongoName" . -}}
{{- $hosts := list -}}
{{- range $i := until (int .Values.mongodb.members) -}}
{{- $hosts = append $hosts (printf "%s-%d.%s-svc.%s.svc.cluster.local:27017" $name $i $name $.Release.Namespace) -}}
{{- end -}}
{{- join "," $hosts -}}
{{- end -}}
