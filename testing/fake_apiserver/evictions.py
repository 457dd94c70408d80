"""Deciding whether ``pods/eviction`` may delete a pod.

Two sources of budgets, both checked:

* ``policy/v1 PodDisruptionBudget`` objects in the pod's namespace, honoured the way the
  eviction subresource does: the pod's labels must match ``spec.selector``, and
  ``status.disruptionsAllowed`` (0 when absent: no disruption controller runs here, so tests
  set it) must be positive; it is then decremented. More than one matching budget is a 500.
* Rules registered by tests (:class:`EvictionPolicy`; Python or ``/_fake/evictions/block``):
  namespace + label selector + disruptions still allowed.

A refused eviction is a 429 TooManyRequests Status, like kube-apiserver's. Pods in a terminal
phase (Succeeded/Failed) are always evictable, as on a real cluster.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .resources import ResourceType
from .selectors import label_selector_string, match_labels_selector, parse_label_selector
from .status import ApiError
from .store import Store

_ids = itertools.count(1)


@dataclass
class EvictionRule:
    id: int
    namespace: str
    selector: str
    disruptions_allowed: int = 0
    name: str = ""


def _refused(budget: str) -> ApiError:
    return ApiError(
        429,
        "Cannot evict pod as it would violate the pod's disruption budget.",
        "TooManyRequests",
        {
            "causes": [
                {
                    "reason": "DisruptionBudget",
                    "message": f"The disruption budget {budget} needs more healthy pods and "
                    "has 0 disruptions allowed",
                }
            ]
        },
    )


def _terminal(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def admit_by_budgets(store: Store, pdb_type: ResourceType, pod: Mapping[str, Any]) -> None:
    """Check (and consume) the PodDisruptionBudget objects covering ``pod``."""
    if _terminal(pod):
        return
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    budgets = [
        pdb
        for pdb in store.list(pdb_type, meta.get("namespace"))[0]
        if (pdb.get("spec") or {}).get("selector") is not None
        and parse_label_selector(label_selector_string(pdb["spec"]["selector"]))(labels)
    ]
    if not budgets:
        return
    if len(budgets) > 1:
        raise ApiError(
            500,
            "This pod has more than one PodDisruptionBudget, which the eviction subresource "
            "does not support.",
        )
    budget = budgets[0]
    name = budget["metadata"]["name"]
    if int((budget.get("status") or {}).get("disruptionsAllowed") or 0) <= 0:
        raise _refused(name)

    def consume(current: dict[str, Any]) -> dict[str, Any]:
        status = current.setdefault("status", {})
        allowed = int(status.get("disruptionsAllowed") or 0)
        if allowed <= 0:
            raise _refused(name)
        status["disruptionsAllowed"] = allowed - 1
        return current

    store.update(pdb_type, meta.get("namespace"), name, consume, subresource="status")


class EvictionPolicy:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: dict[int, EvictionRule] = {}

    def block(
        self,
        namespace: str,
        selector: str | Mapping[str, str],
        disruptions_allowed: int = 0,
        name: str = "",
    ) -> int:
        """Add a budget over pods of ``namespace`` matching ``selector``; returns its id.

        ``selector`` is a label selector string or a ``matchLabels`` mapping.
        """
        if not isinstance(selector, str):
            selector = match_labels_selector(selector)
        parse_label_selector(selector)  # validate now
        rule = EvictionRule(next(_ids), namespace, selector, disruptions_allowed, "")
        rule.name = name or f"fake-pdb-{rule.id}"
        with self._lock:
            self._rules[rule.id] = rule
        return rule.id

    def remove(self, rule_id: int) -> None:
        with self._lock:
            self._rules.pop(rule_id, None)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(r) for r in self._rules.values()]

    def admit(self, pod: Mapping[str, Any]) -> None:
        """Consume one disruption from the matching rule, or raise the 429 Status."""
        if _terminal(pod):
            return
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        with self._lock:
            for rule in self._rules.values():
                if rule.namespace != meta.get("namespace"):
                    continue
                if not parse_label_selector(rule.selector)(labels):
                    continue
                if rule.disruptions_allowed <= 0:
                    raise _refused(rule.name)
                rule.disruptions_allowed -= 1
                return
