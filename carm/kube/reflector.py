"""List+watch of one collection into the event bus, without missing a change.

The protocol (the same as client-go's reflector):

1. List every page. The list carries a resourceVersion: a point in the server's history.
2. Publish the list as events, then `SyncedEvent(kind)` the first time.
3. Watch from that resourceVersion: the server sends every change after that point. Each event
   (and each BOOKMARK, which carries nothing else) moves our resourceVersion forward.
4. When the stream breaks (connection lost, server restarting, a proxy's timeout), watch again
   from the last resourceVersion after a jittered exponential backoff; nothing is lost because
   the server replays the changes since then. A clean end of a healthy stream is the server's
   `timeoutSeconds` and is followed at once by a new watch.
5. When the server no longer has that point in its history it answers 410 Gone (as an HTTP
   status or as an ERROR event). Then we list again and publish the *difference* between the
   new list and what we published before: DELETED for objects that vanished, MODIFIED for
   those whose resourceVersion changed, ADDED for new ones and nothing for the rest. That is
   why the reflector keeps a map key -> resourceVersion of what it published (not the objects:
   the store downstream holds those); a DELETED for a vanished object carries a tombstone with
   only apiVersion, kind and metadata (name, namespace, last resourceVersion).

Every list step uses step 1-2 against that map: the first list is simply a diff against an
empty map. Failures of the list itself back off like a broken watch. Only KubeError is handled;
any other exception is a bug and propagates to the owning task group.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

import anyio

from carm.backoff import exponential_delay, proportional_jitter
from carm.clock import Clock, SystemClock
from carm.events import (
    EventSink,
    EventType,
    Kind,
    ObjectKey,
    RawObject,
    SyncedEvent,
    WatchEvent,
)
from carm.kube.client import KubeApiError, KubeError, ResourceRef

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Backoff


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """How long to wait before the next attempt after consecutive failures."""

    initial: float = 0.2
    """Delay after the first failure, in seconds."""

    maximum: float = 30.0
    """Upper bound of the delay, in seconds."""

    factor: float = 2.0
    """Growth of the delay per consecutive failure."""

    jitter: float = 0.5
    """Fraction of the delay that is random: the delay is drawn from [d * (1 - jitter), d], so
    that many reflectors (one per namespace) do not reconnect in lockstep after an outage."""


class Backoff:
    """Consecutive-failure counter turning a `BackoffPolicy` into delays."""

    def __init__(self, policy: BackoffPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        # Negative: the jitter shortens delays, so `maximum` stays a true upper bound.
        self._jitter = proportional_jitter(-policy.jitter, rng)
        self.failures = 0

    def next_delay(self) -> float:
        """Delay before the next attempt; counts one more failure."""
        self.failures += 1
        policy = self.policy
        exact = exponential_delay(
            self.failures, base=policy.initial, cap=policy.maximum, factor=policy.factor
        )
        return self._jitter(exact)

    def reset(self) -> None:
        self.failures = 0


# --------------------------------------------------------------------------------------------
# Re-list difference


def resource_version_of(obj: RawObject) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


@dataclass(slots=True)
class RelistDiff:
    """What changed between the objects published before and a fresh list."""

    added: list[RawObject] = field(default_factory=list)
    modified: list[RawObject] = field(default_factory=list)
    deleted: list[tuple[ObjectKey, str]] = field(default_factory=list)
    """Keys that vanished, with the last resourceVersion published for them."""
    unchanged: int = 0


def diff_relist(known: Mapping[ObjectKey, str], items: Iterable[RawObject]) -> RelistDiff:
    """Compare a fresh list with the key -> resourceVersion map of what was published.

    resourceVersions are opaque strings: only equality is meaningful, never order.
    """
    diff = RelistDiff()
    seen: set[ObjectKey] = set()
    for obj in items:
        key = ObjectKey.of(obj)
        seen.add(key)
        previous = known.get(key)
        if previous is None:
            diff.added.append(obj)
        elif previous != resource_version_of(obj):
            diff.modified.append(obj)
        else:
            diff.unchanged += 1
    diff.deleted = [(key, version) for key, version in known.items() if key not in seen]
    return diff


# --------------------------------------------------------------------------------------------
# The reflector


class ListWatchClient(Protocol):
    """The part of `KubeClient` a reflector uses (unit tests substitute a scripted fake)."""

    async def list_all(
        self,
        ref: ResourceRef,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> tuple[list[RawObject], str]: ...

    def watch(
        self,
        ref: ResourceRef,
        namespace: str | None = None,
        *,
        resource_version: str,
        allow_bookmarks: bool = True,
        timeout_seconds: int = 300,
        field_selector: str | None = None,
        label_selector: str | None = None,
    ) -> AbstractAsyncContextManager[AsyncIterator[tuple[str, RawObject]]]: ...


class _RelistNeeded(Exception):
    """Internal: the watch ended in 410 Gone."""

    def __init__(self, healthy: bool) -> None:
        super().__init__("410 Gone")
        self.healthy = healthy


class Reflector:
    """Keeps the bus in step with one collection (one kind, one namespace or all of them).

    `run()` runs until cancelled; it belongs to the application's task group. With
    `--watch-namespace a,b` the application runs one reflector per namespace.
    """

    def __init__(
        self,
        client: ListWatchClient,
        ref: ResourceRef,
        kind: Kind,
        sink: EventSink,
        *,
        namespace: str | None = None,
        field_selector: str | None = None,
        label_selector: str | None = None,
        clock: Clock | None = None,
        backoff: BackoffPolicy | None = None,
        rng: random.Random | None = None,
        watch_timeout_seconds: int = 300,
        healthy_after: float = 10.0,
        page_size: int = 500,
    ) -> None:
        """`healthy_after`: a watch that delivered an event or stayed open this many seconds
        counts as healthy and resets the backoff; a stream that ends sooner without events is
        a failure even if it ended cleanly (so a proxy closing at once cannot cause a hot
        loop)."""
        self._client = client
        self._ref = ref
        self.kind = kind
        self._sink = sink
        self.namespace = namespace
        self._field_selector = field_selector
        self._label_selector = label_selector
        self._clock = clock or SystemClock()
        self._backoff = Backoff(backoff or BackoffPolicy(), rng)
        self._watch_timeout_seconds = watch_timeout_seconds
        self._healthy_after = healthy_after
        self._page_size = page_size

        self.synced = anyio.Event()
        """Set once the first complete list has been published (then `SyncedEvent`)."""
        self.connected = False
        """Whether a watch stream is open right now (for readiness)."""
        self.resource_version = ""
        """The last resourceVersion seen: where the next watch resumes."""
        self.lists = 0
        """Completed lists (1 + the re-lists after 410): for tests and metrics."""
        self._known: dict[ObjectKey, str] = {}

    def __repr__(self) -> str:
        scope = self.namespace or "*"
        return f"<Reflector {self.kind} in {scope} at {self.resource_version or '-'}>"

    async def run(self) -> None:
        need_list = True
        while True:
            if need_list:
                try:
                    await self._list()
                except KubeError as exc:
                    await self._pause(exc, "list")
                    continue
                need_list = False
                just_listed = True
            try:
                healthy = await self._watch()
            except _RelistNeeded as gone:
                log.info("watch history expired (410): listing again", extra=self._log_context())
                if just_listed and not gone.healthy:
                    # Expired again right after a list: history is outpacing us. List again,
                    # but not in a tight loop.
                    await self._clock.sleep(self._backoff.next_delay())
                need_list = True
                continue
            except KubeError as exc:
                await self._pause(exc, "watch")
                continue
            finally:
                just_listed = False
            if not healthy:
                # Ended cleanly but at once and empty: treat like a failure to avoid a hot loop.
                await self._clock.sleep(self._backoff.next_delay())

    # ---- list

    async def _list(self) -> None:
        items, version = await self._client.list_all(
            self._ref,
            self.namespace,
            label_selector=self._label_selector,
            field_selector=self._field_selector,
            page_size=self._page_size,
        )
        diff = diff_relist(self._known, items)
        for key, last_version in diff.deleted:
            self._publish(EventType.DELETED, self._tombstone(key, last_version))
        for obj in diff.modified:
            self._publish(EventType.MODIFIED, self._complete(obj))
        for obj in diff.added:
            self._publish(EventType.ADDED, self._complete(obj))
        self._known = {ObjectKey.of(obj): resource_version_of(obj) for obj in items}
        self.resource_version = version
        self.lists += 1
        log.debug(
            "listed",
            extra=self._log_context(
                items=len(items),
                added=len(diff.added),
                modified=len(diff.modified),
                deleted=len(diff.deleted),
            ),
        )
        if not self.synced.is_set():
            self._sink.publish(SyncedEvent(self.kind))
            self.synced.set()

    def _complete(self, obj: RawObject) -> RawObject:
        # List items come without apiVersion and kind; watch events carry them. Make both alike.
        obj.setdefault("apiVersion", self._ref.api_version)
        obj.setdefault("kind", str(self.kind))
        return obj

    def _tombstone(self, key: ObjectKey, last_version: str) -> RawObject:
        metadata: RawObject = {"name": key.name, "resourceVersion": last_version}
        if key.namespace:
            metadata["namespace"] = key.namespace
        return {"apiVersion": self._ref.api_version, "kind": str(self.kind), "metadata": metadata}

    # ---- watch

    async def _watch(self) -> bool:
        """One watch stream until it ends cleanly; returns whether it was healthy."""
        started = self._clock.monotonic()
        events = 0
        try:
            async with self._client.watch(
                self._ref,
                self.namespace,
                resource_version=self.resource_version,
                allow_bookmarks=True,
                timeout_seconds=self._watch_timeout_seconds,
                field_selector=self._field_selector,
                label_selector=self._label_selector,
            ) as stream:
                self.connected = True
                async for type_, obj in stream:
                    events += 1
                    self._apply(type_, obj)
        except KubeApiError as exc:
            if exc.gone:
                raise _RelistNeeded(self._healthy(started, events)) from exc
            raise
        finally:
            self.connected = False
            if self._healthy(started, events):
                self._backoff.reset()
        return self._healthy(started, events)

    def _healthy(self, started: float, events: int) -> bool:
        return events > 0 or self._clock.monotonic() - started >= self._healthy_after

    def _apply(self, type_: str, obj: RawObject) -> None:
        version = resource_version_of(obj)
        if type_ == "BOOKMARK":
            self.resource_version = version or self.resource_version
            return
        try:
            event_type = EventType(type_)
        except ValueError:
            log.warning(
                "ignoring a watch event of unknown type", extra=self._log_context(type=type_)
            )
            return
        key = ObjectKey.of(obj)
        if event_type is EventType.DELETED:
            self._known.pop(key, None)
        elif self._known.get(key) == version:
            # Already published at this very version: a replay (never sent by a correct server
            # after the version we asked for). Nothing changed, and our position stays put.
            return
        else:
            self._known[key] = version
        self.resource_version = version or self.resource_version
        self._publish(event_type, obj)

    # ---- helpers

    def _publish(self, event_type: EventType, obj: RawObject) -> None:
        # A real apiserver sends managedFields with every object: often larger than the spec,
        # never read by carm (it writes with patches), so caches would hold them for nothing.
        (obj.get("metadata") or {}).pop("managedFields", None)
        self._sink.publish(WatchEvent(self.kind, event_type, obj))

    async def _pause(self, exc: KubeError, step: str) -> None:
        delay = self._backoff.next_delay()
        if isinstance(exc, KubeApiError) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        log.warning(
            "%s failed: %s; retrying in %.2fs",
            step,
            exc,
            delay,
            extra=self._log_context(failures=self._backoff.failures),
        )
        await self._clock.sleep(delay)

    def _log_context(self, **fields: object) -> dict[str, dict[str, object]]:
        context: dict[str, object] = {
            "kind": str(self.kind),
            "namespace": self.namespace or "*",
            "resource_version": self.resource_version,
        }
        context.update(fields)
        return {"carm": context}

    @property
    def known_keys(self) -> frozenset[ObjectKey]:
        """Keys of the objects currently published as present."""
        return frozenset(self._known)
