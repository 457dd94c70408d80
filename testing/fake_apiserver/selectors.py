"""Label and field selectors, parsed like kube-apiserver does (a useful subset).

Label selectors support the full set-based grammar: ``a=b``, ``a==b``, ``a!=b``,
``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``, ``a>1``, ``a<1``, comma-separated (AND).
Field selectors support ``path=v``, ``path==v`` and ``path!=v`` on the fields the real server
allows for each resource; any other field label is a 400 like on a real cluster.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .resources import ResourceType
from .status import bad_request

Predicate = Callable[[Mapping[str, Any]], bool]

_KEY = r"[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_EXISTS = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")
_EQUALITY = re.compile(rf"^\s*({_KEY})\s*(==|=|!=)\s*({_VALUE})\s*$")
_SET = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s*\(([^()]*)\)\s*$")
_ORDER = re.compile(rf"^\s*({_KEY})\s*([<>])\s*(-?\d+)\s*$")
_SET_VALUE = re.compile(rf"^{_VALUE}$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``( )``."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _requirement(text: str) -> Callable[[Mapping[str, str]], bool]:
    if m := _EQUALITY.match(text):
        key, op, value = m.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: key in labels and labels[key] == value
    if m := _SET.match(text):
        key, op, raw = m.groups()
        values = {v.strip() for v in raw.split(",")}
        if not all(_SET_VALUE.match(v) for v in values):
            raise bad_request(f"unable to parse requirement: invalid value in {text!r}")
        if op == "in":
            return lambda labels: key in labels and labels[key] in values
        return lambda labels: key not in labels or labels[key] not in values
    if m := _ORDER.match(text):
        key, op, num = m.groups()
        bound = int(num)

        def ordered(labels: Mapping[str, str]) -> bool:
            try:
                actual = int(labels[key])
            except (KeyError, ValueError):
                return False
            return actual > bound if op == ">" else actual < bound

        return ordered
    if m := _EXISTS.match(text):
        negate, key = m.groups()
        if negate:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise bad_request(f"unable to parse requirement: {text!r}")


def parse_label_selector(selector: str | None) -> Callable[[Mapping[str, str]], bool]:
    """A predicate over a labels mapping; empty or None selects everything."""
    if not selector or not selector.strip():
        return lambda labels: True
    requirements = [_requirement(part) for part in _split_top_level(selector)]
    return lambda labels: all(req(labels) for req in requirements)


def match_labels_selector(match_labels: Mapping[str, str]) -> str:
    """``{"app": "x"}`` -> ``app=x`` (a ``matchLabels`` map as a selector string)."""
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


def label_selector_string(selector: Mapping[str, Any]) -> str:
    """A ``metav1.LabelSelector`` (matchLabels + matchExpressions) as a selector string."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise bad_request(f"{op!r} is not a valid label selector operator")
    return ",".join(parts)


def lookup(obj: Mapping[str, Any], path: str) -> str:
    """The value at a dotted path as a field selector sees it ("" when absent)."""
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return ""
        current = current[part]
    if isinstance(current, bool):
        return "true" if current else "false"
    if current is None:
        return ""
    return str(current)


def parse_field_selector(rt: ResourceType, selector: str | None) -> Predicate:
    """A predicate over whole objects; unsupported field labels raise a 400."""
    if not selector or not selector.strip():
        return lambda obj: True
    terms: list[tuple[str, bool, str]] = []
    for part in selector.split(","):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise bad_request(f"invalid selector: {selector!r}; can't understand {part!r}")
        label, op, value = m.groups()
        path = rt.field_path(label)
        if path is None:
            raise bad_request(f"field label not supported: {label}")
        terms.append((path, op != "!=", value))

    def predicate(obj: Mapping[str, Any]) -> bool:
        return all((lookup(obj, path) == value) == equal for path, equal, value in terms)

    return predicate


def object_predicate(
    rt: ResourceType, label_selector: str | None, field_selector: str | None
) -> Predicate:
    labels_ok = parse_label_selector(label_selector)
    fields_ok = parse_field_selector(rt, field_selector)

    def predicate(obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return labels_ok(labels) and fields_ok(obj)

    return predicate
