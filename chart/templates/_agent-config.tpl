{{/*
The agent's settings as NODELOCALDNS_AGENT_* variables (each flag of `run` reads one).
Boolean flags are only set when true, so that no string is ever read as a boolean.
The mode is not here: it is set in the pod's env (see agent-daemonset.yaml).
*/}}
{{- define "nodelocaldns-agent.agentConfig" -}}
{{- $a := .Values.agent -}}
NODELOCALDNS_AGENT_HOST_ROOT: /host
NODELOCALDNS_AGENT_LOCAL_DNS: {{ .Values.nodeLocalDNS.localIP | quote }}
{{- with include "nodelocaldns-agent.localIPv6" . }}
NODELOCALDNS_AGENT_LOCAL_DNS_IPV6: {{ . | quote }}
{{- end }}
{{- /* the probe asks node-cache for a name of the cluster's own domain */}}
NODELOCALDNS_AGENT_PROBE_NAME: {{ printf "kubernetes.default.svc.%s" .Values.nodeLocalDNS.clusterDomain | quote }}
NODELOCALDNS_AGENT_MAX_CONCURRENT_RESTARTS: {{ $a.maxConcurrentRestarts | quote }}
NODELOCALDNS_AGENT_FAILSAFE_AFTER: {{ $a.failsafe.afterSeconds | quote }}
NODELOCALDNS_AGENT_RECOVER_AFTER: {{ $a.failsafe.recoverAfterSeconds | quote }}
NODELOCALDNS_AGENT_FAILSAFE_MAX_FLIPS_PER_HOUR: {{ $a.failsafe.maxFlipsPerHour | quote }}
{{- if not $a.failsafe.enabled }}
NODELOCALDNS_AGENT_NO_FAILSAFE: "true"
{{- end }}
{{- if $a.fallbackNameserver }}
NODELOCALDNS_AGENT_FALLBACK_NAMESERVER: "true"
{{- end }}
NODELOCALDNS_AGENT_OPT_OUT_LABEL: {{ $a.optOutLabel | quote }}
{{- if $a.restartStalePods }}
NODELOCALDNS_AGENT_RESTART_STALE_PODS: "true"
{{- end }}
NODELOCALDNS_AGENT_RESYNC_INTERVAL: {{ $a.resyncIntervalSeconds | quote }}
NODELOCALDNS_AGENT_VERIFY_TIMEOUT: {{ $a.verifyTimeoutSeconds | quote }}
{{- if not (hasPrefix "host" .Values.metrics.bindAddress) }}
NODELOCALDNS_AGENT_METRICS_ADDRESS: {{ include "nodelocaldns-agent.metricsAddress" . | quote }}
{{- end }}
{{- /* the read-write host mounts, so that the agent and the pod spec cannot disagree */}}
NODELOCALDNS_AGENT_WRITABLE_DIRS: {{ include "nodelocaldns-agent.writableDirs" . | quote }}
{{- /* `check` asks node-cache's /health on the local address (report only) */}}
NODELOCALDNS_AGENT_NODE_CACHE_HEALTH_PORT: {{ .Values.nodeLocalDNS.healthPort | quote }}
NODELOCALDNS_AGENT_LOG_FORMAT: {{ $a.logFormat | quote }}
NODELOCALDNS_AGENT_LOG_LEVEL: {{ $a.logLevel | quote }}
{{- with $a.restartCommand }}
NODELOCALDNS_AGENT_RESTART_COMMAND: {{ . | quote }}
{{- end }}
{{- with $a.systemctlCommand }}
NODELOCALDNS_AGENT_SYSTEMCTL_COMMAND: {{ . | quote }}
{{- end }}
{{- end }}
