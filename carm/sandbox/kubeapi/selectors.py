"""Label and field selectors, parsed once per request into a predicate over raw objects.

Label selector grammar (as `k8s.io/apimachinery/pkg/labels`): comma-separated requirements,
each `key=value`, `key==value`, `key!=value`, `key in (a,b)`, `key notin (a,b)`, `key` (exists)
or `!key` (does not exist). Field selectors support `=`, `==` and `!=` on `metadata.name`,
`metadata.namespace` and whatever extra fields a kind declares.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any

from carm.sandbox.kubeapi.errors import bad_request

Predicate = Callable[[dict[str, Any]], bool]

_SET_REQUIREMENT = re.compile(r"^\s*(\S+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses (`a in (x,y),b` has two parts)."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def _label_requirement(text: str) -> Predicate:
    match = _SET_REQUIREMENT.match(text)
    if match:
        key, operator, raw_values = match.groups()
        values = frozenset(value.strip() for value in raw_values.split(","))
        if operator == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    for operator in ("!=", "==", "="):
        if operator in text:
            key, _, value = (piece.strip() for piece in text.partition(operator))
            if not key:
                raise bad_request(f"unable to parse requirement: {text!r}")
            if operator == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: labels.get(key) == value
    if text.startswith("!"):
        key = text[1:].strip()
        return lambda labels: key not in labels
    if re.search(r"\s", text):
        raise bad_request(f"unable to parse requirement: {text!r}")
    return lambda labels: text in labels


def label_predicate(selector: str | None) -> Predicate | None:
    """A predicate over objects for a `labelSelector`, or None when it selects everything."""
    if not selector or not selector.strip():
        return None
    requirements = [_label_requirement(part) for part in _split_top_level(selector)]

    def matches(obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(requirement(labels) for requirement in requirements)

    return matches


def _field_value(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def field_predicate(selector: str | None, extra_fields: Collection[str] = ()) -> Predicate | None:
    """A predicate for a `fieldSelector`; unknown fields are refused with 400 as upstream."""
    if not selector or not selector.strip():
        return None
    known = {"metadata.name", "metadata.namespace", *extra_fields}
    requirements: list[tuple[str, bool, str]] = []
    for part in _split_top_level(selector):
        for operator in ("!=", "==", "="):
            if operator in part:
                path, _, value = (piece.strip() for piece in part.partition(operator))
                break
        else:
            raise bad_request(f'invalid selector: {selector!r}; can\'t understand "{part}"')
        if path not in known:
            raise bad_request(f"field label not supported: {path}")
        requirements.append((path, operator == "!=", value))

    def matches(obj: dict[str, Any]) -> bool:
        for path, negated, value in requirements:
            if (_field_value(obj, path) == value) == negated:
                return False
        return True

    return matches


def combine(*predicates: Predicate | None) -> Predicate | None:
    active = [predicate for predicate in predicates if predicate is not None]
    if not active:
        return None
    if len(active) == 1:
        return active[0]
    return lambda obj: all(predicate(obj) for predicate in active)
