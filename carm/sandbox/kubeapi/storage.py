"""Objects, the cluster-wide resourceVersion, and the bounded history of changes.

Like etcd under the real apiserver, one counter orders every change of every kind: each write
takes the next integer as its `metadata.resourceVersion` and appends one `Change` to a history
ring. A watch resumes by replaying the ring after its version; once the ring has forgotten that
far back (it overflowed, or `compact()` was called) the resume answers 410 Expired.

Objects are stored per resource (group, plural), then namespace, then name. Stored dicts are
never mutated after `put`: writers build new dicts, so a reader may hand out a stored object
without copying, and a `Change` can serialise its object once for every watcher.

Everything here runs on the event loop thread with no awaits, so a write and its fan-out to
watchers are atomic with respect to any list or watch registration.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

ResourceKey = tuple[str, str]  # (group, plural): one storage for every version of a kind
ObjectKeyTuple = tuple[str, str]  # (namespace, name); namespace "" when cluster-scoped


@dataclass(slots=True)
class Change:
    """One write: what the watchers of its resource see as one event."""

    resource_version: int
    type: str  # ADDED, MODIFIED or DELETED
    resource: ResourceKey
    namespace: str
    obj: dict[str, Any]
    # The object before the write, so a selector watch can turn a change that moves the object
    # out of (into) its selection into DELETED (ADDED), as the apiserver's watch cache does.
    old: dict[str, Any] | None
    _lines: dict[str, bytes] = field(default_factory=dict)

    def line(self, api_version: str, event_type: str | None = None) -> bytes:
        """The newline-terminated watch event, serialised once per apiVersion and type."""
        event_type = event_type or self.type
        cache_key = f"{event_type} {api_version}"
        cached = self._lines.get(cache_key)
        if cached is None:
            obj = self.obj
            if obj.get("apiVersion") != api_version:
                obj = {**obj, "apiVersion": api_version}
            cached = orjson.dumps({"type": event_type, "object": obj}) + b"\n"
            self._lines[cache_key] = cached
        return cached


class ExpiredError(Exception):
    """The requested resourceVersion is older than the history still held."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


class Collection:
    """The objects of one resource, indexed by namespace and name, with a sorted key cache."""

    def __init__(self) -> None:
        self.by_namespace: dict[str, dict[str, dict[str, Any]]] = {}
        self.count = 0
        self._sorted: list[ObjectKeyTuple] | None = None

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        names = self.by_namespace.get(namespace)
        return names.get(name) if names else None

    def set(self, namespace: str, name: str, obj: dict[str, Any]) -> None:
        names = self.by_namespace.setdefault(namespace, {})
        if name not in names:
            self.count += 1
            self._sorted = None
        names[name] = obj

    def pop(self, namespace: str, name: str) -> dict[str, Any] | None:
        names = self.by_namespace.get(namespace)
        if not names or name not in names:
            return None
        self.count -= 1
        self._sorted = None
        obj = names.pop(name)
        if not names:
            del self.by_namespace[namespace]
        return obj

    def sorted_keys(self, namespace: str | None) -> list[ObjectKeyTuple]:
        """Keys in (namespace, name) order, as etcd returns a range; cached until keys change."""
        if self._sorted is None:
            self._sorted = sorted(
                (ns, name) for ns, names in self.by_namespace.items() for name in names
            )
        if namespace is None:
            return self._sorted
        start = bisect.bisect_left(self._sorted, (namespace, ""))
        end = bisect.bisect_left(self._sorted, (namespace + "\0", ""))
        return self._sorted[start:end]


ChangeListener = Callable[[Change], None]


class Store:
    """All objects, the resourceVersion counter and the change history."""

    def __init__(self, history_size: int = 10_000) -> None:
        self.resource_version = 0
        self._collections: dict[ResourceKey, Collection] = {}
        self._history: deque[Change] = deque(maxlen=max(1, history_size))
        # Every change at or below this version has been forgotten.
        self.compacted_version = 0
        # Versions below this were compacted on purpose (`compact()`), which also expires
        # list continue tokens; overflow of the ring alone does not (see `continue_expired`).
        self.compacted_on_request = 0
        self._listeners: list[ChangeListener] = []

    # -- reads --------------------------------------------------------------------------------

    def collection(self, resource: ResourceKey) -> Collection:
        found = self._collections.get(resource)
        if found is None:
            found = self._collections[resource] = Collection()
        return found

    def get(self, resource: ResourceKey, namespace: str, name: str) -> dict[str, Any] | None:
        found = self._collections.get(resource)
        return found.get(namespace, name) if found else None

    def iter_objects(
        self, resource: ResourceKey, namespace: str | None
    ) -> Iterator[dict[str, Any]]:
        """Objects in key order, optionally of one namespace."""
        found = self._collections.get(resource)
        if not found:
            return
        for ns, name in found.sorted_keys(namespace):
            obj = found.get(ns, name)
            if obj is not None:
                yield obj

    def namespace_is_empty(self, namespace: str) -> bool:
        return not any(namespace in found.by_namespace for found in self._collections.values())

    def resources_in_namespace(self, namespace: str) -> list[ResourceKey]:
        return [key for key, found in self._collections.items() if namespace in found.by_namespace]

    # -- writes -------------------------------------------------------------------------------

    def next_version(self) -> int:
        self.resource_version += 1
        return self.resource_version

    def put(
        self,
        resource: ResourceKey,
        obj: dict[str, Any],
        event_type: str,
        old: dict[str, Any] | None,
    ) -> Change:
        """Store `obj` (its resourceVersion already set from `next_version`) and record it."""
        meta = obj["metadata"]
        namespace = meta.get("namespace") or ""
        self.collection(resource).set(namespace, meta["name"], obj)
        return self._record(resource, namespace, obj, event_type, old)

    def remove(self, resource: ResourceKey, obj: dict[str, Any]) -> Change:
        """Forget `obj` (with its final resourceVersion set) and record its deletion."""
        meta = obj["metadata"]
        namespace = meta.get("namespace") or ""
        old = self.collection(resource).pop(namespace, meta["name"])
        return self._record(resource, namespace, obj, "DELETED", old)

    def _record(
        self,
        resource: ResourceKey,
        namespace: str,
        obj: dict[str, Any],
        event_type: str,
        old: dict[str, Any] | None,
    ) -> Change:
        change = Change(
            int(obj["metadata"]["resourceVersion"]), event_type, resource, namespace, obj, old
        )
        if len(self._history) == self._history.maxlen:
            self.compacted_version = self._history[0].resource_version
        self._history.append(change)
        for listener in self._listeners:
            listener(change)
        return change

    def drop_collection(self, resource: ResourceKey) -> None:
        self._collections.pop(resource, None)

    def subscribe(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    # -- history ------------------------------------------------------------------------------

    def changes_since(self, resource: ResourceKey, version: int) -> list[Change]:
        """Changes of `resource` after `version`, oldest first; ExpiredError if forgotten."""
        if version < self.compacted_version:
            raise ExpiredError(version, self.compacted_version)
        if self._history and version >= self._history[-1].resource_version:
            return []
        return [
            change
            for change in self._history
            if change.resource_version > version and change.resource == resource
        ]

    def changed_since(
        self, resource: ResourceKey, version: int
    ) -> dict[ObjectKeyTuple, dict[str, Any] | None] | None:
        """How to roll `resource` back to `version`: each key changed since, mapped to its
        object as it was then (None: it did not exist). None when the history is too short."""
        if version < self.compacted_version:
            return None
        then: dict[ObjectKeyTuple, dict[str, Any] | None] = {}
        for change in self._history:
            if change.resource_version > version and change.resource == resource:
                key = (change.namespace, change.obj["metadata"]["name"])
                then.setdefault(key, change.old)
        return then

    def compact(self) -> None:
        """Forget the whole history, as an etcd compaction at the current version."""
        self._history.clear()
        self.compacted_version = self.resource_version
        self.compacted_on_request = self.resource_version

    def continue_expired(self, version: int) -> bool:
        return version < self.compacted_on_request
