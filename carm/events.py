"""Typed events that flow from the watch streams through the bus to their subscribers.

Objects stay the raw dicts decoded by orjson: no client model objects are built per event.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

RawObject = dict[str, Any]


class EventType(enum.StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


class Kind(str):
    """A kind the controller watches (one reflector, or one per watched namespace, and one
    cache), by its Kubernetes `kind`: "Namespace", "Bucket".

    The kinds every controller watches, whatever it manages, are the constants below. A
    resource kind is `Kind(descriptor.kind)`, built by the wiring from its registration in
    `carm.resources.catalog`: adding a kind never edits this module. A plain `str` underneath,
    so hashing and comparing (the bus, the caches and the dispatcher do both per event) cost
    what a string's do; compare kinds with ==, since two equal kinds need not be one object.
    The value is also what reflectors write into list items' `kind`, so it is the Kubernetes
    kind exactly; the catalog refuses two registrations of one kind name.
    """

    __slots__ = ()

    NAMESPACE: ClassVar[Kind]
    CONFIG_MAP: ClassVar[Kind]
    IAM_ROLE_SELECTOR: ClassVar[Kind]


Kind.NAMESPACE = Kind("Namespace")
Kind.CONFIG_MAP = Kind("ConfigMap")
Kind.IAM_ROLE_SELECTOR = Kind("IAMRoleSelector")

INFRASTRUCTURE_KINDS: tuple[Kind, ...] = (Kind.NAMESPACE, Kind.CONFIG_MAP, Kind.IAM_ROLE_SELECTOR)
"""What every controller watches to resolve accounts: no resource kind may take these names."""


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
