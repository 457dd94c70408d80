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
Labels of a pod template that must not change with the chart or the agent's version
(node-cache: a changed pod template restarts it on every node). The labels above without
helm.sh/chart and app.kubernetes.io/version. Call as: (list . "node-cache")
*/}}
{{- define "nodelocaldns-agent.podLabels" -}}
{{- $ctx := index . 0 -}}
{{ include "nodelocaldns-agent.selectorLabels" . }}
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
{{- $_ := required "agent.image.repository is required: the registry and path of the nodelocaldns-agent image you built and pushed (e.g. --set agent.image.repository=registry.example.com/platform/nodelocaldns-agent); there is no public image, and a bare name would be pulled from docker.io/library" .Values.agent.image.repository }}
{{- include "nodelocaldns-agent.image" (list .Values.agent.image .Chart.AppVersion) }}
{{- end }}

{{/*
The metrics/probe server's HOST:PORT (metrics.bindAddress). hostIP and hostIPv6 expand
$(HOST_IP), the downward API's status.hostIP, so they belong in the pod's env after
HOST_IP, not in the ConfigMap (Kubernetes expands $(VAR) only in env values, command and
args). IPv6 goes in brackets (nodelocaldns_agent/metrics/server.py parse_address).
*/}}
{{- define "nodelocaldns-agent.metricsAddress" -}}
{{- $host := get (dict "any" "0.0.0.0" "anyIPv6" "[::]" "hostIP" "$(HOST_IP)" "hostIPv6" "[$(HOST_IP)]") .Values.metrics.bindAddress }}
{{- printf "%s:%v" $host .Values.metrics.port }}
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
"true" when node-cache keeps its interface and iptables rules at exit (-skipteardown).
nodeLocalDNS.skipTeardown null: ipvs yes (a surge update's old process would delete the
address its successor serves on: kubernetes/dns cmd/node-cache/app/cache_app.go
TeardownNetworking), iptables no (the interface holds the kube-dns ClusterIP; left behind
after an uninstall it would swallow the cluster's DNS on every node), and true is refused
there.
*/}}
{{- define "nodelocaldns-agent.skipTeardown" -}}
{{- $nld := .Values.nodeLocalDNS }}
{{- $ipvs := eq $nld.proxyMode "ipvs" }}
{{- if kindIs "invalid" $nld.skipTeardown }}
{{- if $ipvs }}true{{ end }}
{{- else if $nld.skipTeardown }}
{{- if not $ipvs }}
{{- fail "nodeLocalDNS.skipTeardown=true with proxyMode=iptables: node-cache's interface holds the kube-dns ClusterIP, and kept after node-cache is gone (uninstall) it would keep answering for that address locally with nothing listening: no cluster DNS on the node. Leave it null (false in iptables mode: while node-cache restarts, kube-proxy's rules for the ClusterIP take over)" }}
{{- end }}true
{{- end }}
{{- end }}

{{/*
Where node-cache finds the upstream Service's ClusterIP. node-cache reads it from
$<NAME>_SERVICE_HOST (-upstreamsvc; kubernetes/dns cmd/node-cache/app/cache_app.go
toSvcEnv), and kubelet injects such variables only for the Services of the pod's own
namespace (kubernetes pkg/kubelet/kubelet_pods.go getServiceEnvVarMap). So:
  upstream Service in the release namespace -> nothing to do (service links)
  elsewhere                                  -> the variable, set explicitly (a container
      env entry wins over a service link of the same name), from
      nodeLocalDNS.upstreamService.clusterIP, else from the Service this release already
      created there (upgrades); else the render fails, saying what to set.
Returns the container's `env:` (or nothing).
*/}}
{{- define "nodelocaldns-agent.upstreamServiceIP" -}}
{{- $us := .Values.nodeLocalDNS.upstreamService }}
{{- $ip := $us.clusterIP }}
{{- if not $ip }}
{{- $svc := lookup "v1" "Service" $us.namespace $us.name | default dict }}
{{- $owner := dig "metadata" "annotations" "meta.helm.sh/release-name" "" $svc }}
{{- $ownerNs := dig "metadata" "annotations" "meta.helm.sh/release-namespace" "" $svc }}
{{- if and (eq $owner .Release.Name) (eq $ownerNs .Release.Namespace) }}
{{- $ip = dig "spec" "clusterIP" "" $svc }}
{{- end }}
{{- end }}
{{- $ip }}
{{- end }}

{{- define "nodelocaldns-agent.upstreamEnv" -}}
{{- $us := .Values.nodeLocalDNS.upstreamService }}
{{- if ne $us.namespace .Release.Namespace }}
{{- $ip := include "nodelocaldns-agent.upstreamServiceIP" . }}
{{- if not $ip }}
{{- fail (printf "nodeLocalDNS.upstreamService.clusterIP is required: the release namespace is %s but the cluster DNS pods (and so the %s Service) are in %s, and node-cache finds the Service's address only in %s_SERVICE_HOST, which Kubernetes sets for Services of the pod's own namespace alone. Either install into %s (helm install -n %s), or set nodeLocalDNS.upstreamService.clusterIP to a free address of the Service CIDR (it becomes the Service's spec.clusterIP; on upgrades the existing Service's address is looked up)" .Release.Namespace $us.name $us.namespace ($us.name | upper | replace "-" "_") $us.namespace $us.namespace) }}
{{- end }}
env:
  # the upstream Service is in {{ $us.namespace }}: no service link for it in this namespace
  - name: {{ printf "%s_SERVICE_HOST" ($us.name | upper | replace "-" "_") }}
    value: {{ $ip | quote }}
{{- end }}
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

{{/*
"true" when the ValidatingAdmissionPolicies (own Node, restart-slot Leases, uninstall
hook) are rendered; fails the render when agent.nodeAdmissionPolicy cannot be honoured.

They need admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy (GA in 1.30) and the
token's authentication.kubernetes.io/node-name claim (ServiceAccountTokenPodNodeInfo:
alpha and off in 1.29, beta and on in 1.30, GA in 1.32; kubernetes/kubernetes
pkg/features/versioned_kube_features.go), i.e. Kubernetes >= 1.30.

What Helm knows: with a cluster (install, upgrade, --dry-run=server) .Capabilities come from
discovery and APIVersions lists group/version/Kind entries (helm pkg/action/action.go
GetVersionSet). Without one (helm template, --dry-run=client, helm lint) they are Helm's
defaults (pkg/chart/common/capabilities.go): group/versions only, no Kinds, and a
KubeVersion derived from Helm's client-go (v1.35.0 for Helm 4.1) unless --kube-version
says otherwise; --api-versions adds entries. So:
  the VAP Kind is listed          -> served (needs >= 1.30, else the input contradicts itself)
  a Kind is listed, but not VAP   -> a real cluster without it: no policies
  KubeVersion < 1.30              -> no policies (VAP v1 and the claim do not exist there)
  otherwise                       -> cannot tell: fail, saying how to decide
*/}}
{{- define "nodelocaldns-agent.admissionPolicyEnabled" -}}
{{- $mode := .Values.agent.nodeAdmissionPolicy }}
{{- $version := .Capabilities.KubeVersion.Version }}
{{- $recent := semverCompare ">=1.30.0-0" $version }}
{{- $served := .Capabilities.APIVersions.Has "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy" }}
{{- $discovered := .Capabilities.APIVersions.Has "apps/v1/DaemonSet" }}
{{- $why := "the admission policies need admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy and the token's authentication.kubernetes.io/node-name claim (ServiceAccountTokenPodNodeInfo, on by default from 1.30), i.e. Kubernetes >= 1.30" }}
{{- if eq $mode "always" }}
{{- if not $recent }}
{{- fail (printf "agent.nodeAdmissionPolicy=always, but the Kubernetes version is %s: %s. Set agent.nodeAdmissionPolicy=never on older clusters (the agent may then patch every Node; see docs/security.md)" $version $why) }}
{{- end }}true
{{- else if eq $mode "auto" }}
{{- if $served }}
{{- if not $recent }}
{{- fail (printf "agent.nodeAdmissionPolicy=auto: admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy is listed but the Kubernetes version is %s: %s. Pass a consistent --kube-version, or set agent.nodeAdmissionPolicy to always or never" $version $why) }}
{{- end }}true
{{- else if and $recent (not $discovered) }}
{{- fail (printf "agent.nodeAdmissionPolicy=auto cannot tell whether the cluster serves admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy: this render has no cluster to ask (helm template, --dry-run=client, helm lint) and Kubernetes %s is only Helm's assumption. For a cluster >= 1.30 pass --api-versions admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy (and --kube-version) or set agent.nodeAdmissionPolicy=always; for an older one set agent.nodeAdmissionPolicy=never (the agent may then patch every Node)" $version) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "nodelocaldns-agent.monitorsCheck" -}}
{{- if and .Values.metrics.serviceMonitor.enabled .Values.metrics.podMonitor.enabled }}
{{- fail "metrics.serviceMonitor.enabled and metrics.podMonitor.enabled are both true: every target would be scraped twice; enable one of them" }}
{{- end }}
{{- end }}

{{/*
The agent's host directories: the preset of agent.layout, with agent.hostPaths merged over it
(an entry of the same name changes fields of the preset's, a new name adds a directory).
Returned as YAML, volume name -> {path, readOnly, type, enabled, mountPropagation?}.

What the agent reads and writes (nodelocaldns_agent/detect/kubelet.py WELL_KNOWN_*,
kubeletconfig/unitfile.py UNIT_DIRS, detect/network.py CNI_DIR, the state dir):
  kubeadm  writes /var/lib/kubelet/config.yaml or kubeadm-flags.env, /etc/default/kubelet
           (Debian) or /etc/sysconfig/kubelet (RPM)
  eks      writes /etc/kubernetes/kubelet/ (kubelet-config.json, config.json.d)
  tke      writes /etc/kubernetes/kubelet, a file directly in /etc/kubernetes
  kubeadm, eks: also the agent's own kubelet.service drop-in in
           /etc/systemd/system/kubelet.service.d (--cluster-dns in a unit's Environment=
           or ExecStart=: ACK's 10-kubeadm.conf, EKS AL2's 30-kubelet-extra-args.conf)
  all      every one of the above
  k3s      writes /etc/rancher/k3s (config.yaml and config.yaml.d: a kubelet-arg
           cluster-dns= item) and /var/lib/rancher/k3s/agent/etc/kubelet.conf.d (its drop-in)
  rke2     the same under /etc/rancher/rke2 and /var/lib/rancher/rke2
  microk8s writes /var/snap/microk8s (args/kubelet through the `current` symlink; the agent
           never writes /var/snap/microk8s/common)
  The embedded layouts' directories are mounted only by their own layout (never created
  by `all`: a kubeadm node has no /etc/rancher).
Every layout mounts the others' directories read-only (the agent finds and reports a
kubelet configuration it is not allowed to change), the systemd unit directories,
/etc/cni/net.d and the file /etc/os-release (appliance OSes are refused:
detect/hostos.py) read-only, and its state directory read-write.
*/}}
{{- define "nodelocaldns-agent.hostPaths" -}}
{{- $writable := dict
      "kubeadm" (list "var-lib-kubelet" "etc-default" "etc-sysconfig" "kubelet-service-d")
      "eks" (list "etc-kubernetes-kubelet" "kubelet-service-d")
      "tke" (list "etc-kubernetes")
      "all" (list "etc-kubernetes" "var-lib-kubelet" "etc-default" "etc-sysconfig" "kubelet-service-d")
      "k3s" (list "etc-rancher-k3s" "k3s-kubelet-conf-d")
      "rke2" (list "etc-rancher-rke2" "rke2-kubelet-conf-d")
      "microk8s" (list "var-snap-microk8s") }}
{{- $layout := .Values.agent.layout }}
{{- $rw := get $writable $layout }}
{{- $preset := dict
      "etc-kubernetes" (dict "path" "/etc/kubernetes" "type" "DirectoryOrCreate")
      "var-lib-kubelet" (dict "path" "/var/lib/kubelet" "type" "DirectoryOrCreate" "mountPropagation" "None")
      "etc-default" (dict "path" "/etc/default" "type" "DirectoryOrCreate")
      "etc-sysconfig" (dict "path" "/etc/sysconfig" "type" "DirectoryOrCreate")
      "etc-systemd-system" (dict "path" "/etc/systemd/system" "type" "Directory")
      "kubelet-service-d" (dict "path" "/etc/systemd/system/kubelet.service.d" "type" "DirectoryOrCreate")
      "run-systemd-system" (dict "path" "/run/systemd/system" "type" "Directory")
      "usr-lib-systemd-system" (dict "path" "/usr/lib/systemd/system" "type" "Directory")
      "lib-systemd-system" (dict "path" "/lib/systemd/system" "type" "Directory")
      "usr-local-lib-systemd-system" (dict "path" "/usr/local/lib/systemd/system" "type" "DirectoryOrCreate")
      "etc-cni-net-d" (dict "path" "/etc/cni/net.d" "type" "DirectoryOrCreate")
      "os-release" (dict "path" "/etc/os-release" "type" "File")
      "agent-state" (dict "path" "/var/lib/nodelocaldns-agent" "type" "DirectoryOrCreate" "readOnly" false) }}
{{- if eq $layout "eks" }}
{{- /* under the read-only /etc/kubernetes; Directory: never created where it is missing
       (or is TKE's file of that name): such a node is not an EKS node */}}
{{- $_ := set $preset "etc-kubernetes-kubelet" (dict "path" "/etc/kubernetes/kubelet" "type" "Directory") }}
{{- end }}
{{- /* embedded kubelets (nodelocaldns_agent/detect/embedded.py): the distribution's own
       configuration directory must exist (Directory); kubelet.conf.d is created by k3s and
       RKE2 from v1.32, by the mount on older ones (the agent then refuses with a reason) */}}
{{- if eq $layout "k3s" "rke2" }}
{{- $_ := set $preset (printf "etc-rancher-%s" $layout) (dict "path" (printf "/etc/rancher/%s" $layout) "type" "Directory") }}
{{- $_ := set $preset (printf "%s-kubelet-conf-d" $layout) (dict "path" (printf "/var/lib/rancher/%s/agent/etc/kubelet.conf.d" $layout) "type" "DirectoryOrCreate") }}
{{- end }}
{{- if eq $layout "microk8s" }}
{{- $_ := set $preset "var-snap-microk8s" (dict "path" "/var/snap/microk8s" "type" "Directory") }}
{{- end }}
{{- $out := dict }}
{{- range $name, $entry := $preset }}
{{- $_ := set $entry "enabled" true }}
{{- if not (hasKey $entry "readOnly") }}
{{- $_ := set $entry "readOnly" (not (has $name $rw)) }}
{{- end }}
{{- $_ := set $out $name $entry }}
{{- end }}
{{- range $name, $override := .Values.agent.hostPaths }}
{{- if kindIs "invalid" $override }}
{{- $_ := unset $out $name }}
{{- else }}
{{- /* key by key: sprig's mergeOverwrite would not set false over true */}}
{{- $entry := deepCopy (get $out $name | default dict) }}
{{- range $key, $value := $override }}
{{- $_ := set $entry $key $value }}
{{- end }}
{{- if not (and $entry.path $entry.type) }}
{{- fail (printf "agent.hostPaths.%s: a directory of your own needs path and type (e.g. {\"path\": \"/opt/kubelet\", \"type\": \"Directory\", \"readOnly\": false})" $name) }}
{{- end }}
{{- range $key, $default := dict "enabled" true "readOnly" true }}
{{- if not (hasKey $entry $key) }}
{{- $_ := set $entry $key $default }}
{{- end }}
{{- end }}
{{- $_ := set $out $name $entry }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
NODELOCALDNS_AGENT_WRITABLE_DIRS: the host directories mounted read-write, but the agent's
state directory (always writable for its journal, never for kubelet files). Derived from
the same mounts as the volumes, so the two cannot disagree.
*/}}
{{- define "nodelocaldns-agent.writableDirs" -}}
{{- $paths := include "nodelocaldns-agent.hostPaths" . | fromYaml }}
{{- /* the layouts' directories in the agent's order (its default for `all` is
       /etc/kubernetes,/var/lib/kubelet,/etc/default,/etc/sysconfig,
       /etc/systemd/system/kubelet.service.d), then your own */}}
{{- $known := list "etc-kubernetes" "etc-kubernetes-kubelet" "var-lib-kubelet" "etc-default" "etc-sysconfig" "kubelet-service-d" "etc-rancher-k3s" "k3s-kubelet-conf-d" "etc-rancher-rke2" "rke2-kubelet-conf-d" "var-snap-microk8s" "agent-state" }}
{{- $names := $known }}
{{- range $name := keys $paths | sortAlpha }}
{{- if not (has $name $known) }}{{ $names = append $names $name }}{{ end }}
{{- end }}
{{- $dirs := list }}
{{- range $name := $names }}
{{- $hp := get $paths $name }}
{{- if and $hp $hp.enabled (not $hp.readOnly) (ne $hp.path "/var/lib/nodelocaldns-agent") }}
{{- $dirs = append $dirs $hp.path }}
{{- end }}
{{- end }}
{{- $dirs | join "," }}
{{- end }}
