{{/* Names and labels. */}}
{{- define "aifactory.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "aifactory.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "aifactory.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The site file, parsed: the chart takes the hub's ports from it. */}}
{{- define "aifactory.site" -}}
{{- $site := fromYaml .Values.site -}}
{{- if hasKey $site "Error" -}}
{{- fail (printf "site: not a YAML mapping: %s" $site.Error) -}}
{{- end -}}
{{- toYaml $site -}}
{{- end -}}

{{- define "aifactory.hubPort" -}}
{{- $site := include "aifactory.site" . | fromYaml -}}
{{- (($site.hub | default dict).hub_port | default 8081) -}}
{{- end -}}

{{- define "aifactory.proxyPort" -}}
{{- $site := include "aifactory.site" . | fromYaml -}}
{{- (($site.hub | default dict).port | default 8000) -}}
{{- end -}}

{{/* The domain whose subdomains serve users' servers (site `hub.subdomain_host`); empty: none. */}}
{{- define "aifactory.subdomainHost" -}}
{{- $site := include "aifactory.site" . | fromYaml -}}
{{- with ($site.hub | default dict).subdomain_host -}}
{{- $domain := (urlParse .).hostname -}}
{{- if and $.Values.ingress.enabled (ne $domain $.Values.ingress.host) -}}
{{- fail (printf "site: hub.subdomain_host %s is not on ingress.host %s: users' servers are served from *.%s" . $.Values.ingress.host $.Values.ingress.host) -}}
{{- end -}}
{{- $domain -}}
{{- end -}}
{{- end -}}

{{- define "aifactory.image" -}}
{{ printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- end -}}

{{- define "aifactory.sshSecret" -}}
{{- .Values.slurm.ssh.existingSecret | default (printf "%s-slurm-ssh" (include "aifactory.fullname" .)) -}}
{{- end -}}

{{- define "aifactory.dbSecret" -}}
{{- .Values.database.postgresql.existingSecret | default (printf "%s-database" (include "aifactory.fullname" .)) -}}
{{- end -}}

{{/* A secret value: given in values, else the one already in the cluster, else random. */}}
{{- define "aifactory.secretValue" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace (include "aifactory.fullname" .root) -}}
{{- $data := ($existing | default dict).data | default dict -}}
{{- .given | default (get $data .key | b64dec) | default (randAlphaNum 64 | sha256sum) -}}
{{- end -}}

{{- define "aifactory.urlForJobs" -}}
{{- .Values.hub.urlForJobs | default (printf "https://%s" .Values.ingress.host) -}}
{{- end -}}

{{- define "aifactory.podSecurity" -}}
runAsNonRoot: true
runAsUser: {{ .Values.hub.uid }}
runAsGroup: {{ .Values.hub.gid }}
fsGroup: {{ .Values.hub.gid }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "aifactory.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}
