{{/* The chart's name. */}}
{{- define "extauthz.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The name of the release's objects. */}}
{{- define "extauthz.fullname" -}}
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

{{/* The labels that select the pods; they never change on upgrade. */}}
{{- define "extauthz.selectorLabels" -}}
app.kubernetes.io/name: {{ include "extauthz.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The labels of every object. */}}
{{- define "extauthz.labels" -}}
{{ include "extauthz.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The image, by digest when one is given. */}}
{{- define "extauthz.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- define "extauthz.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "extauthz.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret a reference without a name points to. */}}
{{- define "extauthz.secretName" -}}
{{- default (include "extauthz.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{/*
A secretKeyRef from a reference {name?, key}; the argument is
(list $ REF WHAT).
*/}}
{{- define "extauthz.secretKeyRef" -}}
{{- $root := index . 0 -}}{{- $ref := index . 1 -}}{{- $what := index . 2 -}}
{{- if not (and (kindIs "map" $ref) $ref.key) -}}
{{- fail (printf "%s must be {key: KEY} or {name: SECRET, key: KEY}, a reference to an existing Secret" $what) -}}
{{- end -}}
secretKeyRef:
  name: {{ default (include "extauthz.secretName" $root) $ref.name }}
  key: {{ $ref.key }}
{{- end -}}

{{/* The seconds the kubelet gives a pod to stop. */}}
{{- define "extauthz.gracePeriod" -}}
{{- $s := .Values.shutdown -}}
{{- add $s.preStopSleepSeconds $s.drainDelaySeconds $s.timeoutSeconds $s.graceMarginSeconds -}}
{{- end -}}

{{/*
config.yaml: .Values.config with listen.grpc, listen.metrics and shutdown
from .Values.ports and .Values.shutdown. It fails on a secret written into
the values, and on a ${VAR} that no env entry sets.
*/}}
{{- define "extauthz.config" -}}
{{- $c := deepCopy .Values.config -}}
{{- if hasKey $c "shutdown" -}}
{{- fail "config.shutdown: set shutdown.drainDelaySeconds and shutdown.timeoutSeconds instead (the pod's grace period follows them)" -}}
{{- end -}}
{{- $listen := default dict $c.listen -}}
{{- if or (hasKey $listen "grpc") (hasKey $listen "metrics") -}}
{{- fail "config.listen.grpc and config.listen.metrics: set ports.grpc and ports.metrics instead (the container ports and probes follow them)" -}}
{{- end -}}
{{- $_ := set $listen "grpc" (printf ":%d" (int .Values.ports.grpc)) -}}
{{- $_ := set $listen "metrics" (printf ":%d" (int .Values.ports.metrics)) -}}
{{- $_ := set $c "listen" $listen -}}
{{- $_ := set $c "shutdown" (dict "drain_delay" (printf "%ds" (int .Values.shutdown.drainDelaySeconds)) "timeout" (printf "%ds" (int .Values.shutdown.timeoutSeconds))) -}}
{{- $ref := "^\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}$" -}}
{{- $secrets := list -}}
{{- with $c.database -}}{{- with .url -}}{{- $secrets = append $secrets (list "config.database.url" .) -}}{{- end -}}{{- end -}}
{{- range $name, $p := $c.providers -}}
{{- with $p.client_secret -}}{{- $secrets = append $secrets (list (printf "config.providers.%s.client_secret" $name) .) -}}{{- end -}}
{{- end -}}
{{- with $c.connect -}}{{- with .login -}}{{- with .client_secret -}}{{- $secrets = append $secrets (list "config.connect.login.client_secret" .) -}}{{- end -}}{{- end -}}{{- end -}}
{{- with $c.encryption -}}
{{- range $i, $k := .keys -}}
{{- with $k.key -}}{{- $secrets = append $secrets (list (printf "config.encryption.keys[%d].key" $i) .) -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- range $secrets -}}
{{- if not (regexMatch $ref (toString (index . 1))) -}}
{{- fail (printf "%s must be a ${VAR} reference to secretEnv (or a *_file): secrets are never written into the ConfigMap" (index . 0)) -}}
{{- end -}}
{{- end -}}
{{- $yaml := toYaml $c -}}
{{- $env := keys .Values.secretEnv -}}
{{- range .Values.extraEnv -}}{{- $env = append $env .name -}}{{- end -}}
{{- range regexFindAll "\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}" $yaml -1 -}}
{{- $var := trimSuffix "}" (trimPrefix "${" .) -}}
{{- if not (has $var $env) -}}
{{- fail (printf "config refers to ${%s}, which neither secretEnv nor extraEnv sets" $var) -}}
{{- end -}}
{{- end -}}
{{- $yaml -}}
{{- end -}}
