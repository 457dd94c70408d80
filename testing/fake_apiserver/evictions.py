"""``pods/eviction``: deciding whether a pod may be evicted, and evicting it.

Mirrors ``EvictionREST.Create`` (``pkg/registry/core/pod/storage/eviction.go``):

1. A pod that is ``Pending``, ``Succeeded``, ``Failed`` or already terminating
   (``deletionTimestamp`` set) is evicted without looking at any budget (``canIgnorePDB``).
2. Otherwise the ``policy/v1 PodDisruptionBudget`` objects of the pod's namespace whose
   (non-empty) selector matches its labels decide: more than one is a 500; none lets it go.
3. An unready pod (no ``Ready=True`` condition) is evicted without spending a disruption when
   the budget's ``unhealthyPodEvictionPolicy`` is ``AlwaysAllow``, or (the default,
   ``IfHealthyBudget``) when ``status.currentHealthy >= status.desiredHealthy > 0``.
4. Otherwise the budget is checked and decremented (``checkAndDecrement``): a budget whose
   ``status.observedGeneration`` is behind ``metadata.generation`` is still being processed
   (429, ``Retry-After: 10``); a negative ``disruptionsAllowed`` or more than 2000
   ``disruptedPods`` is a 403; ``disruptionsAllowed == 0`` is a 429 without ``Retry-After``;
   else it is decremented and the pod recorded in ``status.disruptedPods``.
5. The pod gets a ``DisruptionTarget`` condition (``addConditionAndDeletePod``), then a normal
   DELETE: for a running pod that is a graceful deletion (``Store.delete``).

No disruption controller runs here: budgets' status is whatever a test puts there.

Test rules (:class:`EvictionPolicy`, Python or ``/_fake/evictions/block``) are a fake-only
shortcut standing for a budget with only ``disruptionsAllowed``: they are consulted after the
budget objects, for pods step 1 does not let through.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .resources import ResourceType
from .selectors import label_selector_string, match_labels_selector, parse_label_selector
from .status import ApiError, bad_request, too_many_requests
from .store import Store, now

JSON = dict[str, Any]
_ids = itertools.count(1)

#: pkg/registry/core/pod/storage/eviction.go
MAX_DISRUPTED_POD_SIZE = 2000
STILL_PROCESSING_RETRY_SECONDS = 10
_REFUSED = "Cannot evict pod as it would violate the pod's disruption budget."


@dataclass
class EvictionRule:
    id: int
    namespace: str
    selector: str
    disruptions_allowed: int = 0
    name: str = ""


def _budget_cause(message: str) -> list[JSON]:
    return [{"reason": "DisruptionBudget", "message": message}]


def _no_disruptions(budget: str, desired: int, current: int) -> ApiError:
    return too_many_requests(
        _REFUSED,
        0,
        _budget_cause(
            f"The disruption budget {budget} needs {desired} healthy pods and has {current} "
            "currently"
        ),
    )


def _still_processing(budget: str) -> ApiError:
    return too_many_requests(
        _REFUSED,
        STILL_PROCESSING_RETRY_SECONDS,
        _budget_cause(f"The disruption budget {budget} is still being processed by the server."),
    )


def _forbidden(budget: str, why: str) -> ApiError:
    return ApiError(
        403,
        f'poddisruptionbudget.policy "{budget}" is forbidden: {why}',
        "Forbidden",
        {"name": budget, "group": "policy", "kind": "poddisruptionbudget"},
    )


def can_ignore_budgets(pod: Mapping[str, Any]) -> bool:
    """canIgnorePDB: the pod is not running, or is already being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    deleting = bool((pod.get("metadata") or {}).get("deletionTimestamp"))
    return phase in ("Succeeded", "Failed", "Pending") or deleting


def is_ready(pod: Mapping[str, Any]) -> bool:
    """podutil.IsPodReady: a ``Ready`` condition with status ``True``."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def _selects(budget: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    selector = (budget.get("spec") or {}).get("selector")
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return False  # a nil or empty selector matches nothing here
    try:
        return parse_label_selector(label_selector_string(selector))(labels)
    except ApiError:
        return False  # an invalid selector matches nothing


def _check_and_decrement(store: Store, pdb_type: ResourceType, budget: JSON, pod_name: str) -> None:
    meta = budget["metadata"]
    name = meta["name"]
    status = budget.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        raise _still_processing(name)
    allowed = int(status.get("disruptionsAllowed") or 0)
    if allowed < 0:
        raise _forbidden(name, "pdb disruptions allowed is negative")
    if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_POD_SIZE:
        raise _forbidden(
            name, "DisruptedPods map too big - too many evictions not confirmed by PDB controller"
        )
    if allowed == 0:
        raise _no_disruptions(
            name, int(status.get("desiredHealthy") or 0), int(status.get("currentHealthy") or 0)
        )

    def decrement(current: JSON) -> JSON:
        new_status = current.setdefault("status", {})
        new_status["disruptionsAllowed"] = allowed - 1
        new_status.setdefault("disruptedPods", {})[pod_name] = now()
        if allowed - 1 == 0:
            _set_condition(
                new_status, "DisruptionAllowed", "False", "InsufficientPods", ""
            )  # pdbhelper.UpdateDisruptionAllowedCondition
        return current

    store.update(pdb_type, meta.get("namespace"), name, decrement, subresource="status")


def _set_condition(status: JSON, kind: str, value: str, reason: str, message: str) -> None:
    conditions = status.setdefault("conditions", [])
    for condition in conditions:
        if condition.get("type") == kind:
            if condition.get("status") != value:
                condition["lastTransitionTime"] = now()
            condition.update(status=value, reason=reason, message=message)
            return
    conditions.append(
        {
            "type": kind,
            "status": value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now(),
        }
    )


def _with_rv_precondition(options: JSON, resource_version: str) -> JSON:
    options = copy.deepcopy(options)
    options.setdefault("preconditions", {})
    if options["preconditions"] is None:
        options["preconditions"] = {}
    options["preconditions"]["resourceVersion"] = resource_version
    return options


def _rv_precondition_set(options: JSON) -> bool:
    return (options.get("preconditions") or {}).get("resourceVersion") is not None


def _add_condition_and_delete(
    store: Store, pod_type: ResourceType, pod: JSON, options: JSON
) -> None:
    """addConditionAndDeletePod: a ``DisruptionTarget`` condition (through the status
    storage), then the DELETE (its resourceVersion precondition moved to the new version)."""
    meta = pod["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    preconditions = options.get("preconditions") or {}

    def add_condition(current: JSON) -> JSON:
        current_meta = current["metadata"]
        uid, rv = preconditions.get("uid"), preconditions.get("resourceVersion")
        if uid and uid != current_meta.get("uid"):
            store.check_preconditions(pod_type, name, current_meta, {"uid": uid})
        if rv and rv != current_meta.get("resourceVersion"):
            store.check_preconditions(pod_type, name, current_meta, {"resourceVersion": rv})
        _set_condition(
            current.setdefault("status", {}),
            "DisruptionTarget",
            "True",
            "EvictionByEvictionAPI",
            "Eviction API: evicting",
        )
        return current

    updated = store.update(pod_type, namespace, name, add_condition, subresource="status")
    if _rv_precondition_set(options):
        options = _with_rv_precondition(options, updated["metadata"]["resourceVersion"])
    store.delete(pod_type, namespace, name, options)


def evict(
    store: Store,
    rules: EvictionPolicy,
    pod_type: ResourceType,
    pdb_type: ResourceType,
    namespace: str,
    name: str,
    options: JSON,
) -> None:
    """Evict pod ``namespace/name`` or raise the Status that refuses it."""
    if not isinstance(options, dict):
        raise bad_request("deleteOptions must be a JSON object")
    with store.cond:  # one atomic decision (upstream retries on conflicts instead)
        pod = store.get(pod_type, namespace, name)
        if can_ignore_budgets(pod):
            deleting = bool(pod["metadata"].get("deletionTimestamp"))
            phase = (pod.get("status") or {}).get("phase")
            # shouldEnforceResourceVersion: a Pending pod must not have changed since.
            enforce = phase not in ("Succeeded", "Failed") and not deleting
            if enforce and not _rv_precondition_set(options):
                options = _with_rv_precondition(options, pod["metadata"]["resourceVersion"])
            _add_condition_and_delete(store, pod_type, pod, options)
            return
        labels = pod["metadata"].get("labels") or {}
        budgets = [b for b in store.list(pdb_type, namespace)[0] if _selects(b, labels)]
        if len(budgets) > 1:
            raise ApiError(
                500,
                "This pod has more than one PodDisruptionBudget, which the eviction subresource "
                "does not support.",
                "",
            )
        pin_version = False
        if budgets:
            budget = budgets[0]
            spec, status = budget.get("spec") or {}, budget.get("status") or {}
            if not is_ready(pod):
                policy = spec.get("unhealthyPodEvictionPolicy") or "IfHealthyBudget"
                desired = int(status.get("desiredHealthy") or 0)
                healthy = int(status.get("currentHealthy") or 0)
                pin_version = policy == "AlwaysAllow" or (desired > 0 and healthy >= desired)
            if not pin_version:
                _check_and_decrement(store, pdb_type, budget, name)
        rules.admit(pod)
        if pin_version and not _rv_precondition_set(options):
            # The pod must not have turned ready since it was judged unready.
            options = _with_rv_precondition(options, pod["metadata"]["resourceVersion"])
        _add_condition_and_delete(store, pod_type, pod, options)


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
        if can_ignore_budgets(pod):
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
                    raise _no_disruptions(rule.name, 0, 0)
                rule.disruptions_allowed -= 1
                return
