"""From cache changes to work: which objects to reconcile, in which account's lane.

The dispatcher is the controller's main bus subscriber and handles events strictly in order,
one stage after the other, so that no stage can run ahead of the one it depends on:

1. the event goes into its kind's cache (and indexes), so a worker that picks up a key always
   reads an object at least as new as the event that queued it;
2. Namespace, role-map (account and team) and IAMRoleSelector events go to the account
   resolver, which says which resources now resolve differently (candidate namespaces, then a
   per-resource test); credentials of roles that are no longer mapped are dropped at once;
3. work is queued, in the work queue of the resource's kind (one per kind, as ACK has one
   controller per kind): a resource whose spec, metadata or deletion changed; every resource,
   of every kind, whose resolution (or placement) the change can alter; nothing else.
   Status-only updates (carm's own status writes coming back through the watch) queue nothing,
   so a reconcile costs no echo.

Each key is queued in the lane of the account its namespace resolves to, which is what the
work queue schedules fairly. Keys are namespace/name: a Bucket and a Queue of the same name in
one namespace never meet, because each kind has its own cache and queue.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from typing import Protocol

from carm.events import BusEvent, EventType, Kind, ObjectKey, RawObject, SyncedEvent, WatchEvent
from carm.store import Store

log = logging.getLogger("carm.dispatch")

BY_NAMESPACE = "by_namespace"


class RoleMapUpdate(Protocol):
    """What a change of the resolver's inputs affects (`carm.accounts.ResolutionChange`)."""

    @property
    def namespaces(self) -> frozenset[str]: ...

    @property
    def retired_role_arns(self) -> frozenset[str]: ...

    @property
    def affects(self) -> Callable[[RawObject], bool] | None:
        """None: every resource of `namespaces`; else only those for which it is True."""
        ...


class AccountDirectory(Protocol):
    """The account resolver, as the dispatcher sees it."""

    def on_namespace(self, obj: RawObject | None, name: str) -> RoleMapUpdate: ...

    def on_role_map(self, configmap: RawObject | None) -> RoleMapUpdate: ...

    def on_team_map(self, configmap: RawObject | None) -> RoleMapUpdate: ...

    def on_selector(self, obj: RawObject | None, name: str) -> RoleMapUpdate: ...


class WorkSink(Protocol):
    def add(self, key: ObjectKey, lane: str | None = None) -> None: ...

    def remove(self, key: ObjectKey) -> None: ...


class Dispatcher:
    def __init__(
        self,
        *,
        stores: Mapping[Kind, Store],
        accounts: AccountDirectory,
        queues: Mapping[Kind, WorkSink],
        lane_of: Callable[[str], str],
        role_map_name: str,
        retire_roles: Callable[[Collection[str]], None],
        team_map_name: str | None = None,
    ) -> None:
        """`stores`: every watched kind's cache (resource kinds indexed BY_NAMESPACE);
        `queues`: the work queue of each resource kind."""
        self._stores = stores
        self._accounts = accounts
        self._queues = queues
        self._resources = [(stores[kind], queue) for kind, queue in queues.items()]
        self._lane_of = lane_of
        self._role_map_name = role_map_name
        self._team_map_name = team_map_name
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
        queue = self._queues.get(event.kind)
        if queue is not None:
            self._on_resource(queue, event, before)
            return
        obj = None if event.type is EventType.DELETED else event.obj
        kind = event.kind
        if kind == Kind.NAMESPACE:
            self._apply(self._accounts.on_namespace(obj, event.key.name))
        elif kind == Kind.CONFIG_MAP and event.key.name == self._role_map_name:
            self._apply(self._accounts.on_role_map(obj))
        elif kind == Kind.CONFIG_MAP and event.key.name == self._team_map_name:
            self._apply(self._accounts.on_team_map(obj))
        elif kind == Kind.IAM_ROLE_SELECTOR:
            self._apply(self._accounts.on_selector(obj, event.key.name))

    def _apply(self, change: RoleMapUpdate) -> None:
        if change.retired_role_arns:
            self._retire_roles(change.retired_role_arns)
        affects = change.affects
        # `affects` reads each object's own apiVersion and kind (IAMRoleSelectors may select
        # by resource type), so one test serves every kind.
        for store, queue in self._resources:
            for namespace in change.namespaces:
                for key in store.keys_by_index(BY_NAMESPACE, namespace):
                    obj = store.get(key)
                    if obj is not None and (affects is None or affects(obj)):
                        self._enqueue(queue, key)

    def _on_resource(self, queue: WorkSink, event: WatchEvent, before: RawObject | None) -> None:
        key = event.key
        if event.type is EventType.DELETED:
            queue.remove(key)
            return
        if before is not None and not _needs_reconcile(before, event.obj):
            return
        self._enqueue(queue, key)

    def _enqueue(self, queue: WorkSink, key: ObjectKey) -> None:
        queue.add(key, lane=self._lane_of(key.namespace))
        self.queued += 1


def _needs_reconcile(before: RawObject, after: RawObject) -> bool:
    """False for changes only to status or resourceVersion (e.g. carm's own status writes) or
    that only add finalizers (carm's own finalizer write: reconciling its echo again cost a
    second reconcile, an AWS read, per new resource); a removed finalizer may be carm's own,
    which a reconcile puts back."""
    old, new = before.get("metadata") or {}, after.get("metadata") or {}
    return (
        before.get("spec") != after.get("spec")
        or old.get("generation") != new.get("generation")
        or old.get("deletionTimestamp") != new.get("deletionTimestamp")
        or not set(old.get("finalizers") or ()) <= set(new.get("finalizers") or ())
        or old.get("annotations") != new.get("annotations")
        or old.get("labels") != new.get("labels")
        or old.get("uid") != new.get("uid")
    )
