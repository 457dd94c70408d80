{{/*
The Corefile of node-cache.
ipvs:     bind localIP only; cluster zones forwarded to the kube-dns ClusterIP (IPVS
          load-balances it; node-cache cannot and need not bind it).
iptables: bind localIP and the kube-dns ClusterIP (node-cache intercepts it); cluster
          zones forwarded to __PILLAR__CLUSTER__DNS__ (the kube-dns-upstream ClusterIP).
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
{{- $bind := include "nodelocaldns-agent.bindAddresses" . }}
{{- $cluster := "__PILLAR__CLUSTER__DNS__" }}
{{- if ne $nld.proxyMode "iptables" }}
{{- $cluster = include "nodelocaldns-agent.kubeDNSServiceIP" . }}
{{- end }}
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
    prometheus :{{ $nld.metricsPort }}
    {{- if eq $zone $nld.clusterDomain }}
    health {{ $nld.localIP }}:{{ $nld.healthPort }}
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
    prometheus :{{ $nld.metricsPort }}
}
{{- with $nld.extraCorefile }}
{{ . }}
{{- end }}
{{- end }}
