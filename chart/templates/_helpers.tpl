{{/*
Chart name, cut to 63 characters (a label value and a DNS label may not be longer).
*/}}
{{- define "nodelocaldns-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart>, or just <release> when it already contains the chart name.
Cut to 63 characters. Every resource name starts with it.
*/}}
{{- define "nodelocaldns-agent.fullname" -}}
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
<fullname>-<suffix>, with the full name cut so that the result fits in 63 characters.
Call as: include "nodelocaldns-agent.suffixed" (list . "node-cache")
*/}}
{{- define "nodelocaldns-agent.suffixed" -}}
{{- $ctx := index . 0 }}
{{- $suffix := index . 1 }}
{{- $base := include "nodelocaldns-agent.fullname" $ctx | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $base $suffix }}
{{- end }}

{{/* Names of the components. */}}
{{- define "nodelocaldns-agent.agentName" -}}
{{- include "nodelocaldns-agent.fullname" . }}
{{- end }}

{{- define "nodelocaldns-agent.nodeCacheName" -}}
{{- include "nodelocaldns-agent.suffixed" (list . "node-cache") }}
{{- end }}

{{- define "nodelocaldns-agent.revertName" -}}
{{- include "nodelocaldns-agent.suffixed" (list . "revert") }}
{{- end }}

{{- define "nodelocaldns-agent.eventsName" -}}
{{- include "nodelocaldns-agent.suffixed" (list . "events") }}
{{- end }}

{{- define "nodelocaldns-agent.serviceAccountName" -}}
{{- if .Values.agent.serviceAccount.create }}
{{- default (include "nodelocaldns-agent.agentName" .) .Values.agent.serviceAccount.name }}
{{- else }}
{{- required "agent.serviceAccount.name is required when agent.serviceAccount.create is false" .Values.agent.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "nodelocaldns-agent.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource. Call as: include "nodelocaldns-agent.labels" (list . "agent")
*/}}
{{- define "nodelocaldns-agent.labels" -}}
{{- $ctx := index . 0 -}}
helm.sh/chart: {{ include "nodelocaldns-agent.chart" $ctx }}
{{ include "nodelocaldns-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
app.kubernetes.io/part-of: {{ include "nodelocaldns-agent.name" $ctx }}
{{- with $ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels (immutable in a DaemonSet: never add to them).
Call as: include "nodelocaldns-agent.selectorLabels" (list . "agent")
*/}}
{{- define "nodelocaldns-agent.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "nodelocaldns-agent.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* image reference: repository:tag or repository@digest. Arg: an image values map and a default tag. */}}
{{- define "nodelocaldns-agent.image" -}}
{{- $image := index . 0 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default (index . 1) $image.tag) }}
{{- end }}
{{- end }}

{{- define "nodelocaldns-agent.agentImage" -}}
{{- include "nodelocaldns-agent.image" (list .Values.agent.image .Chart.AppVersion) }}
{{- end }}

{{/*
ClusterIP of kube-dns: the value, else looked up in the cluster. `helm template` and
`--dry-run=client` cannot look it up: fail, saying how to find it.
*/}}
{{- define "nodelocaldns-agent.kubeDNSServiceIP" -}}
{{- $ip := .Values.nodeLocalDNS.kubeDNSServiceIP }}
{{- if not $ip }}
{{- $svc := lookup "v1" "Service" "kube-system" "kube-dns" }}
{{- $ip = dig "spec" "clusterIP" "" ($svc | default dict) }}
{{- end }}
{{- if or (not $ip) (eq $ip "None") }}
{{- fail "nodeLocalDNS.kubeDNSServiceIP is required: the kube-dns Service could not be looked up (helm template and client dry-runs cannot read the cluster). Set it to the kube-dns ClusterIP: --set nodeLocalDNS.kubeDNSServiceIP=$(kubectl -n kube-system get svc kube-dns -o jsonpath='{.spec.clusterIP}')" }}
{{- end }}
{{- $ip }}
{{- end }}

{{/*
"true" when this upgrade turns node-cache off while the release's node-cache DaemonSet
still exists: nodes must be reverted before it goes (pre-upgrade hook), and the agent is
kept in revert mode for this revision.
*/}}
{{- define "nodelocaldns-agent.removingNodeCache" -}}
{{- if and .Release.IsUpgrade (not .Values.nodeLocalDNS.enabled) }}
{{- $ds := lookup "apps/v1" "DaemonSet" .Release.Namespace (include "nodelocaldns-agent.nodeCacheName" .) }}
{{- if eq (dig "metadata" "annotations" "meta.helm.sh/release-name" "" ($ds | default dict)) .Release.Name }}true{{ end }}
{{- end }}
{{- end }}

{{/* The agent's mode for this revision (see removingNodeCache). */}}
{{- define "nodelocaldns-agent.mode" -}}
{{- if include "nodelocaldns-agent.removingNodeCache" . }}revert{{ else }}{{ .Values.agent.mode }}{{ end }}
{{- end }}

{{/* Names of the kubelet-restart Leases the agent may hold. */}}
{{- define "nodelocaldns-agent.leaseNames" -}}
{{- range $i := until (int .Values.agent.maxConcurrentRestarts) }}
- nodelocaldns-agent-slot-{{ $i }}
{{- end }}
{{- end }}

{{/* Whether to render the ValidatingAdmissionPolicy. */}}
{{- define "nodelocaldns-agent.admissionPolicyEnabled" -}}
{{- $mode := .Values.agent.nodeAdmissionPolicy }}
{{- if or (eq $mode "always") (and (eq $mode "auto") (.Capabilities.APIVersions.Has "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy")) }}true{{ end }}
{{- end }}

{{- define "nodelocaldns-agent.monitorsCheck" -}}
{{- if and .Values.metrics.serviceMonitor.enabled .Values.metrics.podMonitor.enabled }}
{{- fail "metrics.serviceMonitor.enabled and metrics.podMonitor.enabled are both true: every target would be scraped twice; enable one of them" }}
{{- end }}
{{- end }}
