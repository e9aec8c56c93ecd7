"""From cache changes to work: which objects to reconcile, in which account's lane.

The dispatcher is the controller's main bus subscriber and handles events strictly in order,
one stage after the other, so that no stage can run ahead of the one it depends on:

1. the event goes into its kind's cache (and indexes), so a worker that picks up a key always
   reads an object at least as new as the event that queued it;
2. Namespace and role-map events go to the account resolver, which says which namespaces now
   resolve differently; credentials of roles that are no longer mapped are dropped at once;
3. work is queued: a Bucket whose spec, metadata or deletion changed; every Bucket of a
   namespace whose resolution changed; nothing else. Status-only updates (carm's own status
   writes coming back through the watch) queue nothing, so a reconcile costs no echo.

Each key is queued in the lane of the account its namespace resolves to, which is what the
work queue schedules fairly.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Collection
from typing import Protocol

from carm.events import BusEvent, EventType, Kind, ObjectKey, RawObject, SyncedEvent, WatchEvent
from carm.store import Store

log = logging.getLogger("carm.dispatch")

BY_NAMESPACE = "by_namespace"


class RoleMapUpdate(Protocol):
    @property
    def namespaces(self) -> frozenset[str]: ...

    @property
    def retired_role_arns(self) -> frozenset[str]: ...


class AccountDirectory(Protocol):
    """The account resolver, as the dispatcher sees it."""

    def on_namespace(self, obj: RawObject | None, name: str) -> frozenset[str]: ...

    def on_role_map(self, configmap: RawObject | None) -> RoleMapUpdate: ...


class WorkSink(Protocol):
    def add(self, key: ObjectKey, lane: str | None = None) -> None: ...

    def remove(self, key: ObjectKey) -> None: ...


class Dispatcher:
    def __init__(
        self,
        *,
        stores: dict[Kind, Store],
        accounts: AccountDirectory,
        queue: WorkSink,
        lane_of: Callable[[str], str],
        role_map_name: str,
        retire_roles: Callable[[Collection[str]], None],
    ) -> None:
        self._stores = stores
        self._accounts = accounts
        self._queue = queue
        self._lane_of = lane_of
        self._role_map_name = role_map_name
        self._retire_roles = retire_roles
        self.queued = 0
        """Keys queued so far (for tests and metrics)."""

    async def consume(self, events: AsyncIterator[BusEvent]) -> None:
        async for event in events:
            self.handle(event)

    def handle(self, event: BusEvent) -> None:
        store = self._stores[event.kind]
        if isinstance(event, SyncedEvent):
            store.apply(event)
            return
        before = store.get(event.key)
        if not store.apply(event):
            return
        if event.kind is Kind.BUCKET:
            self._on_bucket(event, before)
        elif event.kind is Kind.NAMESPACE:
            obj = None if event.type is EventType.DELETED else event.obj
            self._requeue_namespaces(self._accounts.on_namespace(obj, event.key.name))
        elif event.kind is Kind.CONFIG_MAP and event.key.name == self._role_map_name:
            obj = None if event.type is EventType.DELETED else event.obj
            change = self._accounts.on_role_map(obj)
            if change.retired_role_arns:
                self._retire_roles(change.retired_role_arns)
            self._requeue_namespaces(change.namespaces)

    def _on_bucket(self, event: WatchEvent, before: RawObject | None) -> None:
        key = event.key
        if event.type is EventType.DELETED:
            self._queue.remove(key)
            return
        if before is not None and not _needs_reconcile(before, event.obj):
            return
        self._enqueue(key)

    def _requeue_namespaces(self, namespaces: frozenset[str]) -> None:
        buckets = self._stores[Kind.BUCKET]
        for namespace in namespaces:
            for key in buckets.keys_by_index(BY_NAMESPACE, namespace):
                self._enqueue(key)

    def _enqueue(self, key: ObjectKey) -> None:
        self._queue.add(key, lane=self._lane_of(key.namespace))
        self.queued += 1


def _needs_reconcile(before: RawObject, after: RawObject) -> bool:
    """False for changes only to status or resourceVersion (e.g. carm's own status writes)."""
    old, new = before.get("metadata") or {}, after.get("metadata") or {}
    return (
        before.get("spec") != after.get("spec")
        or old.get("generation") != new.get("generation")
        or old.get("deletionTimestamp") != new.get("deletionTimestamp")
        or old.get("finalizers") != new.get("finalizers")
        or old.get("annotations") != new.get("annotations")
        or old.get("labels") != new.get("labels")
        or old.get("uid") != new.get("uid")
    )
