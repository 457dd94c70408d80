{{/*
Scrape targets: the agent always, node-cache when this chart deploys it.
Each: component, job name (fixed, so that alerts can match `up{job=...}`), and for pods
that declare no ports (node-cache: a surge pod must not hold host ports) the container
and port number a PodMonitor scrapes (Prometheus makes a port-free target per container
of such pods; the relabelings set the address).
*/}}
{{- define "nodelocaldns-agent.scrapeTargets" -}}
- component: agent
  job: nodelocaldns-agent
{{- if .Values.nodeLocalDNS.enabled }}
- component: node-cache
  job: node-local-dns
  container: node-cache
  portNumber: {{ .Values.nodeLocalDNS.metricsPort }}
{{- end }}
{{- end }}

{{/*
Relabelings shared by the ServiceMonitor and the PodMonitor: `node` comes from the pod's
node here (the agent does not export it), and `job` is fixed. Arg: a scrape target.
*/}}
{{- define "nodelocaldns-agent.relabelings" -}}
- action: replace
  sourceLabels: [__meta_kubernetes_pod_node_name]
  targetLabel: node
- action: replace
  targetLabel: job
  replacement: {{ .job }}
{{- end }}
