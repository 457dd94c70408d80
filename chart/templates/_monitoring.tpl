{{/*
Scrape targets: the agent always, node-cache when this chart deploys it.
Each: component, job name (fixed, so that alerts can match `up{job=...}`), port name.
*/}}
{{- define "nodelocaldns-agent.scrapeTargets" -}}
- component: agent
  job: nodelocaldns-agent
{{- if .Values.nodeLocalDNS.enabled }}
- component: node-cache
  job: node-local-dns
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
