{{/*
The Corefile of node-cache.
ipvs:     bind localIP only (kube-ipvs0 holds the kube-dns ClusterIP, so node-cache can
          neither bind nor intercept it).
iptables: bind localIP and the kube-dns ClusterIP (node-cache intercepts it).
Both:     cluster zones forwarded to __PILLAR__CLUSTER__DNS__, which node-cache fills in
          at start from `-upstreamsvc kube-dns-upstream` (that Service's ClusterIP), so the
          IPVS form needs no kube-dns IP at install time.
localIPv6 (dual-stack): a second Corefile for a second node-cache process that binds
          localIPv6 only, in either form: upstream node-cache takes one IP family per
          process (cmd/node-cache/main.go refuses -localip of mixed families). Its health
          endpoint is [localIPv6]:healthPort, its metrics ipv6MetricsPort (the IPv4
          process's `prometheus :metricsPort` holds that port on every address).
          extraCorefile goes into the IPv4 Corefile only (its server blocks bind what
          they name).
*/}}
{{- define "nodelocaldns-agent.bindAddresses" -}}
{{- if eq .Values.nodeLocalDNS.proxyMode "iptables" }}
{{- printf "%s %s" .Values.nodeLocalDNS.localIP (include "nodelocaldns-agent.kubeDNSServiceIP" .) }}
{{- else }}
{{- .Values.nodeLocalDNS.localIP }}
{{- end }}
{{- end }}

{{- define "nodelocaldns-agent.corefile" -}}
{{- $nld := .Values.nodeLocalDNS }}
{{- include "nodelocaldns-agent.corefileFor" (list . (include "nodelocaldns-agent.bindAddresses" .) (printf "%s:%v" $nld.localIP $nld.healthPort) $nld.metricsPort) }}
{{- with $nld.extraCorefile }}
{{ . }}
{{- end }}
{{- end }}

{{- define "nodelocaldns-agent.corefileIPv6" -}}
{{- $nld := .Values.nodeLocalDNS }}
{{- include "nodelocaldns-agent.corefileFor" (list . $nld.localIPv6 (printf "[%s]:%v" $nld.localIPv6 $nld.healthPort) $nld.ipv6MetricsPort) }}
{{- end }}

{{/* One Corefile. Args: root, bind addresses, health address, metrics port. */}}
{{- define "nodelocaldns-agent.corefileFor" -}}
{{- $root := index . 0 }}
{{- $bind := index . 1 }}
{{- $health := index . 2 }}
{{- $metricsPort := index . 3 }}
{{- $nld := $root.Values.nodeLocalDNS }}
{{- $cluster := "__PILLAR__CLUSTER__DNS__" }}
{{- $upstream := "__PILLAR__UPSTREAM__SERVERS__" }}
{{- with $nld.upstreamServers }}
{{- $upstream = join " " . }}
{{- end }}
{{- range $zone := list $nld.clusterDomain "in-addr.arpa" "ip6.arpa" }}
{{ $zone }}:53 {
    errors
    {{- if eq $zone $nld.clusterDomain }}
    cache {
        success 9984 30
        denial 9984 5
    }
    {{- else }}
    cache 30
    {{- end }}
    reload
    loop
    bind {{ $bind }}
    forward . {{ $cluster }} {
        force_tcp
    }
    prometheus :{{ $metricsPort }}
    {{- if eq $zone $nld.clusterDomain }}
    health {{ $health }}
    {{- end }}
}
{{- end }}
.:53 {
    errors
    cache 30
    reload
    loop
    bind {{ $bind }}
    forward . {{ $upstream }}
    prometheus :{{ $metricsPort }}
}
{{- end }}

{{/* nodeLocalDNS.localIPv6, checked (the agent refuses a link-local one at start too). */}}
{{- define "nodelocaldns-agent.localIPv6" -}}
{{- $v := .Values.nodeLocalDNS.localIPv6 }}
{{- if regexMatch "^(?i)fe[89ab][0-9a-f]:" $v }}
{{- fail (printf "nodeLocalDNS.localIPv6=%s is link-local (fe80::/10): pods cannot reach it without an interface; use a unique local address (fd00::/8), e.g. fd00::a" $v) }}
{{- end }}
{{- $v }}
{{- end }}
