"""The table of every metric in docs/metrics.md, generated from a registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from nodelocaldns_agent.metrics.labels import BUILD_LABELS


def describe(registry: CollectorRegistry) -> str:
    """A markdown table of every metric family in ``registry``: the exposed name, type,
    labels with the values they take (every series exists up front, so the values present
    are the allowed ones) and help. docs/metrics.md embeds it; a test keeps it current."""
    rows = ["| Metric | Type | Labels | Help |", "| --- | --- | --- | --- |"]
    for family in registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        labels: dict[str, list[str]] = {}
        for sample in family.samples:
            for key, value in sample.labels.items():
                if key == "le":
                    continue
                seen = labels.setdefault(key, [])
                if value not in seen:
                    seen.append(value)
        cells = []
        for key, values in labels.items():
            if key in BUILD_LABELS:
                cells.append(f"`{key}` ({BUILD_LABELS[key]})")
            else:
                cells.append(f"`{key}`: " + ", ".join(f"`{v}`" for v in values))
        kind = family.type
        if family.type == "histogram":
            buckets = [s.labels["le"] for s in family.samples if s.name.endswith("_bucket")]
            kind += f" (buckets {', '.join(buckets[:-1])} s)"
        rows.append(f"| `{name}` | {kind} | {'<br>'.join(cells) or '-'} | {family.documentation} |")
    return "\n".join(rows) + "\n"
