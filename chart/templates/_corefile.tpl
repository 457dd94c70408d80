{{/*
The Corefile of node-cache.
ipvs:     bind localIP only (kube-ipvs0 holds the kube-dns ClusterIP, so node-cache can
          neither bind nor intercept it).
iptables: bind localIP and the kube-dns ClusterIP (node-cache intercepts it).
Both:     cluster zones forwarded to __PILLAR__CLUSTER__DNS__, which node-cache fills in
          at start from `-upstreamsvc kube-dns-upstream` (that Service's ClusterIP), so the
          IPVS form needs no kube-dns IP at install time.
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
