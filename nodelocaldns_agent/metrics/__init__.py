"""Every metric of the agent, on an injected registry; ``/metrics``, ``/healthz``, ``/readyz``.

Naming follows Prometheus conventions: one prefix (``nodelocaldns_agent_``), base units,
counters ending in ``_total`` with a failure counter next to each attempt counter,
enum-style gauges (one series per state, 1 for the current one), timestamps rather than
"time since", and label values from small fixed sets. Every series exists from the start,
so a query never sees one appear or go missing.

There is no ``node`` label: the node name is added at scrape time by the chart's
ServiceMonitor/PodMonitor (``__meta_kubernetes_pod_node_name`` -> ``node``), see
``docs/metrics.md``.

The package imports neither ``kubernetes`` nor any host probe: a scrape only renders the
registry, and the one-shot commands stay light.

- :mod:`.labels`: the bounded label values and the mappings of facts into them;
- :mod:`.registry`: :class:`Metrics`, the metric set the daemon records into;
- :mod:`.health`: :class:`Health`, liveness and readiness of the daemon loop;
- :mod:`.server`: the HTTP endpoints (:func:`serve`) and the exposition (:func:`render`);
- :mod:`.docs`: :func:`describe`, the table of every metric in docs/metrics.md.
"""

from nodelocaldns_agent.metrics.docs import describe
from nodelocaldns_agent.metrics.health import Health
from nodelocaldns_agent.metrics.registry import Metrics
from nodelocaldns_agent.metrics.server import MetricsServer, render, serve

__all__ = ["Health", "Metrics", "MetricsServer", "describe", "render", "serve"]
