"""The cache of one kind: the latest object per key, with secondary indexes.

A `Store` is fed by a bus subscription (`apply` every event of its kind) and read by everything
that must not call the API server per decision: the reconciler (`get`), the account resolver
(`get` of a Namespace), the dispatcher (`keys_by_index("by_namespace", ns)` when a namespace's
account changes).

Indexes are registered by name with a function from an object to the values it is filed under
(`by_namespace` returns `[namespace]`). For every key the store remembers the values it was
filed under, so an event costs O(number of values of that object) index work, independent of
how many objects the store holds: a store of 10,000+ objects stays cheap.

Stale events: the API server's resourceVersion is an etcd revision, monotonic per cluster. When
both the cached and the incoming object carry a resourceVersion that parses as an integer and
the incoming one is *lower*, the event is older than what the cache holds (an old watch stream
still draining while a re-list already delivered newer state) and is ignored. Equal versions
are applied: a reflector's synthetic DELETED after a re-list carries the last version it saw.
Kubernetes documents resourceVersion as opaque, so this is an optimisation, not a contract:
versions that do not parse are never compared, and `ignore_stale=False` turns the check off.
The store keeps no tombstones: an event for a deleted key is always applied.

Objects are the raw dicts from the watch stream, shared with every reader: treat them as
read-only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import anyio
import anyio.lowlevel

from carm.events import BusEvent, EventType, Kind, ObjectKey, RawObject, SyncedEvent

__all__ = ["Indexer", "Store", "by_namespace", "resource_version"]

Indexer = Callable[[RawObject], Iterable[str]]
"""The values an object is filed under in one index (often one, possibly none)."""


def by_namespace(obj: RawObject) -> list[str]:
    """Index function: an object's namespace ("" for cluster-scoped objects)."""
    return [ObjectKey.of(obj).namespace]


def resource_version(obj: RawObject) -> int | None:
    """metadata.resourceVersion as an integer, or None when missing or not a number."""
    value = (obj.get("metadata") or {}).get("resourceVersion")
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


class _Index:
    """One secondary index: value → keys, and key → the values it is filed under."""

    def __init__(self, indexer: Indexer) -> None:
        self.indexer = indexer
        # dict[ObjectKey, None] is an insertion-ordered set: lookups stay deterministic.
        self.keys_by_value: dict[str, dict[ObjectKey, None]] = {}
        self.values_by_key: dict[ObjectKey, frozenset[str]] = {}

    def update(self, key: ObjectKey, obj: RawObject | None) -> None:
        old = self.values_by_key.get(key, frozenset())
        new = frozenset() if obj is None else frozenset(self.indexer(obj))
        for value in old - new:
            keys = self.keys_by_value[value]
            del keys[key]
            if not keys:
                del self.keys_by_value[value]
        for value in new - old:
            self.keys_by_value.setdefault(value, {})[key] = None
        if new:
            self.values_by_key[key] = new
        else:
            self.values_by_key.pop(key, None)


class Store:
    """The latest state of every object of one kind, indexed."""

    def __init__(self, kind: Kind, *, ignore_stale: bool = True) -> None:
        self.kind = kind
        self._ignore_stale = ignore_stale
        self._objects: dict[ObjectKey, RawObject] = {}
        self._indexes: dict[str, _Index] = {}
        self._synced = False
        self._synced_event: anyio.Event | None = None  # lazily: needs a running event loop
        self.stale_ignored = 0
        """Events ignored because they were older than the cached object (for metrics)."""

    # -- writing ----------------------------------------------------------------------------

    def add_index(self, name: str, indexer: Indexer) -> None:
        """Register an index; existing objects are filed at once (O(n), once)."""
        if name in self._indexes:
            raise ValueError(f"the {self.kind} store already has an index named {name!r}")
        index = _Index(indexer)
        for key, obj in self._objects.items():
            index.update(key, obj)
        self._indexes[name] = index

    def apply(self, event: BusEvent) -> bool:
        """Apply one event of this store's kind; False when it was ignored.

        Ignored: a stale event (see the module docstring), or the deletion of an unknown object.
        A SyncedEvent marks the store synced.
        """
        if event.kind != self.kind:
            raise ValueError(f"a {event.kind} event cannot go into the {self.kind} store")
        if isinstance(event, SyncedEvent):
            self.mark_synced()
            return True
        key = event.key
        cached = self._objects.get(key)
        if cached is not None and self._is_stale(cached, event.obj):
            self.stale_ignored += 1
            return False
        if event.type is EventType.DELETED:
            if cached is None:
                return False
            del self._objects[key]
            self._reindex(key, None)
        else:
            self._objects[key] = event.obj
            self._reindex(key, event.obj)
        return True

    def mark_synced(self) -> None:
        """The reflector delivered its first full list: reads now see the whole collection."""
        self._synced = True
        if self._synced_event is not None:
            self._synced_event.set()

    def _is_stale(self, cached: RawObject, incoming: RawObject) -> bool:
        if not self._ignore_stale:
            return False
        old, new = resource_version(cached), resource_version(incoming)
        return old is not None and new is not None and new < old

    def _reindex(self, key: ObjectKey, obj: RawObject | None) -> None:
        for index in self._indexes.values():
            index.update(key, obj)

    # -- reading ----------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self._synced

    async def wait_synced(self) -> None:
        """Wait until the store holds the whole collection (after the first list)."""
        if self._synced:
            await anyio.lowlevel.checkpoint()
            return
        if self._synced_event is None:
            self._synced_event = anyio.Event()
        await self._synced_event.wait()

    def get(self, key: ObjectKey) -> RawObject | None:
        return self._objects.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._objects

    def __len__(self) -> int:
        return len(self._objects)

    def __iter__(self) -> Iterator[ObjectKey]:
        return iter(self._objects)

    def keys(self) -> list[ObjectKey]:
        return list(self._objects)

    def keys_by_index(self, name: str, value: str) -> list[ObjectKey]:
        """Keys of the objects filed under `value` in index `name` (in the order filed)."""
        return list(self._index(name).keys_by_value.get(value, ()))

    def by_index(self, name: str, value: str) -> list[RawObject]:
        """The objects filed under `value` in index `name`."""
        keys = self._index(name).keys_by_value.get(value, ())
        return [self._objects[key] for key in keys]

    def index_values(self, name: str) -> list[str]:
        """Every value that has at least one object in index `name`."""
        return list(self._index(name).keys_by_value)

    def _index(self, name: str) -> _Index:
        try:
            return self._indexes[name]
        except KeyError:
            raise KeyError(f"the {self.kind} store has no index named {name!r}") from None

    # Last, so that the annotations above still mean the builtin `list`.
    def list(self) -> list[RawObject]:
        """Every cached object (a new list; the objects themselves are shared)."""
        return list(self._objects.values())
