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
          extraServerBlocks and extraCorefile go into the IPv4 Corefile only.
Options (values nodeLocalDNS.cache, clusterProtocol, upstreamProtocol, extraServerBlocks,
corefileOverride) follow the CoreDNS plugins cache (success/denial/prefetch/serve_stale)
and forward (force_tcp/prefer_udp). Every server block binds the listening addresses: a
block without `bind` would take port 53 on every address of the node.
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
{{- if $nld.corefileOverride }}
{{- $nld.corefileOverride }}
{{- else }}
{{- $bind := include "nodelocaldns-agent.bindAddresses" . }}
{{- include "nodelocaldns-agent.corefileFor" (list . $bind (printf "%s:%v" $nld.localIP $nld.healthPort) $nld.metricsPort) }}
{{- range $block := $nld.extraServerBlocks }}
{{ include "nodelocaldns-agent.serverBlock" (dict
      "zones" $block.zones
      "bind" (join " " ($block.bind | default (splitList " " $bind)))
      "forward" (join " " $block.forward)
      "protocol" ($block.protocol | default "")
      "cache" (include "nodelocaldns-agent.cache" (list $nld (hasKey $block "cacheTTL" | ternary $block.cacheTTL $nld.cache.ttl) false))
      "metricsPort" $nld.metricsPort) }}
{{- end }}
{{- with $nld.extraCorefile }}
{{ . }}
{{- end }}
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
{{- $isCluster := eq $zone $nld.clusterDomain }}
{{ include "nodelocaldns-agent.serverBlock" (dict
      "zones" (list $zone)
      "bind" $bind
      "forward" $cluster
      "protocol" $nld.clusterProtocol
      "cache" (include "nodelocaldns-agent.cache" (list $nld $nld.cache.ttl $isCluster))
      "metricsPort" $metricsPort
      "health" (ternary $health "" $isCluster)) }}
{{- end }}
{{ include "nodelocaldns-agent.serverBlock" (dict
      "zones" (list ".")
      "bind" $bind
      "forward" $upstream
      "protocol" $nld.upstreamProtocol
      "cache" (include "nodelocaldns-agent.cache" (list $nld $nld.cache.ttl false))
      "metricsPort" $metricsPort) }}
{{- end }}

{{/*
The `cache` directive. Args: nodeLocalDNS values, max TTL, cluster zone (bool: its
success/denial capacities and TTLs, as the upstream manifest has them).
*/}}
{{- define "nodelocaldns-agent.cache" -}}
{{- $nld := index . 0 }}
{{- $ttl := index . 1 }}
{{- $cluster := index . 2 }}
{{- $c := $nld.cache }}
{{- $lines := list }}
{{- if $cluster }}
{{- $lines = append $lines (printf "success 9984 %v" $c.clusterSuccessTTL) }}
{{- $lines = append $lines (printf "denial 9984 %v" $c.clusterDenialTTL) }}
{{- end }}
{{- if $c.prefetch.enabled }}
{{- $lines = append $lines (printf "prefetch %v %s %v%%" $c.prefetch.amount $c.prefetch.duration $c.prefetch.percentage) }}
{{- end }}
{{- if $c.serveStale.enabled }}
{{- $lines = append $lines (printf "serve_stale %s %s" $c.serveStale.duration $c.serveStale.refreshMode) }}
{{- end }}
{{- if not $lines }}cache {{ $ttl }}
{{- else }}{{ if $cluster }}cache{{ else }}cache {{ $ttl }}{{ end }} {
{{- range $lines }}
    {{ . }}
{{- end }}
}
{{- end }}
{{- end }}

{{/*
One server block. Arg: dict zones (list), bind, forward (servers), protocol (force_tcp,
prefer_udp or ""), cache (the rendered directive), metricsPort, health (optional).
*/}}
{{- define "nodelocaldns-agent.serverBlock" -}}
{{- $zones := list }}
{{- range .zones }}{{ $zones = append $zones (printf "%s:53" .) }}{{ end -}}
{{ join " " $zones }} {
    errors
    {{- .cache | nindent 4 }}
    reload
    loop
    bind {{ .bind }}
    forward . {{ .forward }}{{ if .protocol }} {
        {{ .protocol }}
    }{{ end }}
    prometheus :{{ .metricsPort }}
    {{- with .health }}
    health {{ . }}
    {{- end }}
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
