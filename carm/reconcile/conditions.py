"""ACK's condition types and the rules for writing them into a resource's status.

A condition keeps its lastTransitionTime while its status stays the same, as Kubernetes
conventions ask: only a change of status is a transition.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


class ConditionType(enum.StrEnum):
    READY = "Ready"
    RESOURCE_SYNCED = "ACK.ResourceSynced"
    TERMINAL = "ACK.Terminal"
    RECOVERABLE = "ACK.Recoverable"
    ADVISORY = "ACK.Advisory"
    LATE_INITIALIZED = "ACK.LateInitialized"
    REFERENCES_RESOLVED = "ACK.ReferencesResolved"
    IAM_ROLE_SELECTED = "ACK.IAMRoleSelected"


@dataclass(frozen=True, slots=True)
class Condition:
    type: ConditionType
    status: bool
    reason: str = ""
    message: str = ""


def rfc3339(wall_seconds: float) -> str:
    return datetime.fromtimestamp(wall_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    current: list[dict[str, Any]] | None,
    wanted: list[Condition],
    *,
    drop: frozenset[ConditionType] = frozenset(),
    now: float,
) -> list[dict[str, Any]]:
    """The condition list after setting `wanted` and removing the types in `drop`.

    Conditions neither wanted nor dropped are kept as they are (another writer may own them).
    """
    by_type = {c.get("type"): c for c in (current or []) if isinstance(c, dict)}
    result: list[dict[str, Any]] = []
    wanted_types = {c.type.value for c in wanted}
    for existing in current or []:
        kind = existing.get("type") if isinstance(existing, dict) else None
        if kind in wanted_types or kind in drop:
            continue
        result.append(existing)
    for condition in wanted:
        status = "True" if condition.status else "False"
        previous = by_type.get(condition.type.value)
        transition = (
            previous.get("lastTransitionTime")
            if previous is not None and previous.get("status") == status
            else None
        )
        entry: dict[str, Any] = {
            "type": condition.type.value,
            "status": status,
            "lastTransitionTime": transition or rfc3339(now),
        }
        if condition.reason:
            entry["reason"] = condition.reason
        if condition.message:
            entry["message"] = condition.message
        result.append(entry)
    return result


def condition_status(status: dict[str, Any] | None, kind: ConditionType) -> str | None:
    """ "True", "False", "Unknown" or None when the resource has no such condition."""
    for condition in (status or {}).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == kind.value:
            value = condition.get("status")
            return value if isinstance(value, str) else None
    return None
