"""Typed events that flow from the watch streams through the bus to their subscribers.

Objects stay the raw dicts decoded by orjson: no client model objects are built per event.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

RawObject = dict[str, Any]


class EventType(enum.StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


class Kind(enum.StrEnum):
    """The kinds the controller watches, one reflector each."""

    NAMESPACE = "Namespace"
    CONFIG_MAP = "ConfigMap"
    BUCKET = "Bucket"
    IAM_ROLE_SELECTOR = "IAMRoleSelector"


@dataclass(frozen=True, slots=True, order=True)
class ObjectKey:
    """Namespace ("" for cluster-scoped objects) and name."""

    namespace: str
    name: str

    @classmethod
    def of(cls, obj: RawObject) -> ObjectKey:
        meta = obj.get("metadata") or {}
        return cls(meta.get("namespace") or "", meta.get("name") or "")

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change of one object, as seen by a reflector (after a re-list, possibly synthetic)."""

    kind: Kind
    type: EventType
    obj: RawObject

    @property
    def key(self) -> ObjectKey:
        return ObjectKey.of(self.obj)


@dataclass(frozen=True, slots=True)
class SyncedEvent:
    """A reflector finished its first list: its cache now holds the whole collection."""

    kind: Kind


BusEvent = WatchEvent | SyncedEvent


class EventSink(Protocol):
    """Where reflectors put events: the bus. `publish` never blocks and never drops."""

    def publish(self, event: BusEvent) -> None: ...
