"""Kubernetes Events on the resources carm manages, where `kubectl describe` shows them.

`EventRecorder.record(obj, type, reason, message)` never blocks and never fails a reconcile:
it puts the event into a bounded buffer and `run()` (a task of the app's task group) writes
it. What client-go's recorder does, in small:

- **Aggregation.** The same (object, type, reason, message) again within
  `aggregate_seconds` (10 minutes) bumps `count` and `lastTimestamp` of the Event already
  written (a merge patch) instead of creating another object, so a terminal error retried
  with backoff for hours is one Event with a count, not thousands.
- **Rate limit per object.** A token bucket per object (burst 25, one more every 5 minutes,
  client-go's spam filter): a flapping resource cannot flood etcd. Events over the limit are
  dropped and counted in `dropped`.
- **Bounded buffer.** If the API server is slow, at most `buffer_size` events wait; further
  ones are dropped (and counted) rather than growing memory. Events are best-effort by design
  in Kubernetes too.

Event names are `<object name>.<16 hex digits>` as in client-go. Timestamps come from the
injected clock. Messages come from the reconcile loop; credentials never reach it (they are
not part of any error message, and `AwsCredentials` masks itself in reprs).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Protocol

import anyio

from carm.clock import Clock
from carm.events import ObjectKey, RawObject
from carm.kube.client import EVENTS, KubeError, ResourceRef
from carm.reconcile.conditions import rfc3339

log = logging.getLogger("carm.kube.events")

COMPONENT = "ack-s3-controller"
"""`source.component` / `reportingController` of carm's events (the ACK controller's name)."""

MAX_MESSAGE = 1024
"""The API server refuses longer event messages."""


class EventClient(Protocol):
    """The part of `KubeClient` the recorder uses."""

    async def create(
        self, ref: ResourceRef, body: RawObject, namespace: str | None = None
    ) -> RawObject: ...

    async def merge_patch(
        self,
        ref: ResourceRef,
        name: str,
        patch: RawObject,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> RawObject: ...


@dataclass(frozen=True, slots=True)
class _Pending:
    involved: RawObject
    type: str
    reason: str
    message: str
    at: float  # wall time


@dataclass(slots=True)
class _Written:
    name: str
    count: int
    first_timestamp: str
    last_seen: float  # wall


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float  # monotonic


class EventRecorder:
    def __init__(
        self,
        client: EventClient,
        *,
        clock: Clock,
        instance: str,
        burst: int = 25,
        refill_seconds: float = 300.0,
        aggregate_seconds: float = 600.0,
        buffer_size: int = 1000,
        remembered: int = 4096,
    ) -> None:
        self._client = client
        self._clock = clock
        self._instance = instance
        self._burst = burst
        self._refill_seconds = refill_seconds
        self._aggregate_seconds = aggregate_seconds
        self._buffer: deque[_Pending] = deque()
        self._buffer_size = buffer_size
        self._remembered = remembered
        self._written: OrderedDict[tuple[str, ...], _Written] = OrderedDict()
        self._buckets: OrderedDict[ObjectKey, _Bucket] = OrderedDict()
        self._wake: anyio.Event | None = None
        self._names = itertools.count()
        self.dropped = 0
        """Events not written: over an object's rate limit, or the buffer was full."""
        self.written = 0
        """Events created or aggregated into an existing one."""

    # -- recording (synchronous, from the reconcile loop) -----------------------------------

    def record(self, obj: RawObject, type_: str, reason: str, message: str) -> None:
        """Queue an Event on `obj` (`type_` "Normal" or "Warning"); never blocks or raises."""
        meta = obj.get("metadata") or {}
        if len(self._buffer) >= self._buffer_size or not self._take_token(ObjectKey.of(obj)):
            self.dropped += 1
            log.debug("event dropped (rate limit or full buffer): %s %s", reason, message)
            return
        involved = {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        }
        truncated = message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."
        self._buffer.append(_Pending(involved, type_, reason, truncated, self._clock.wall()))
        if self._wake is not None:
            self._wake.set()

    def _take_token(self, key: ObjectKey) -> bool:
        now = self._clock.monotonic()
        bucket = self._buckets.pop(key, None) or _Bucket(float(self._burst), now)
        refilled = (now - bucket.updated) / self._refill_seconds
        bucket.tokens, bucket.updated = min(float(self._burst), bucket.tokens + refilled), now
        allowed = bucket.tokens >= 1.0
        if allowed:
            bucket.tokens -= 1.0
        self._buckets[key] = bucket  # most recently used last
        while len(self._buckets) > self._remembered:
            self._buckets.popitem(last=False)
        return allowed

    # -- writing (the recorder's task) ------------------------------------------------------

    async def run(self) -> None:
        """Write queued events until cancelled."""
        while True:
            while self._buffer:
                await self._write(self._buffer.popleft())
            self._wake = anyio.Event()
            await self._wake.wait()
            self._wake = None

    async def flush(self) -> None:
        """Write what is queued now (at shutdown, under the caller's time bound)."""
        while self._buffer:
            await self._write(self._buffer.popleft())

    async def _write(self, event: _Pending) -> None:
        namespace = str(event.involved.get("namespace") or "default")
        key = (
            namespace,
            str(event.involved.get("uid") or event.involved.get("name")),
            event.type,
            event.reason,
            event.message,
        )
        now = rfc3339(event.at)
        seen = self._written.get(key)
        try:
            if seen is not None and event.at - seen.last_seen <= self._aggregate_seconds:
                seen.count += 1
                seen.last_seen = event.at
                patch = {"count": seen.count, "lastTimestamp": now}
                await self._client.merge_patch(EVENTS, seen.name, patch, namespace)
            else:
                name = self._new_name(event)
                await self._client.create(EVENTS, self._body(event, name, now), namespace)
                self._written[key] = _Written(name, 1, now, event.at)
                self._written.move_to_end(key)
                while len(self._written) > self._remembered:
                    self._written.popitem(last=False)
        except KubeError as error:
            # Best effort: a lost event must not cost a reconcile. A patch of an event that
            # expired server-side (404) starts a new one next time.
            self._written.pop(key, None)
            self.dropped += 1
            log.warning(
                "could not write an event: %s",
                error,
                extra={"carm": {"namespace": namespace, "reason": event.reason}},
            )
            return
        self.written += 1

    def _new_name(self, event: _Pending) -> str:
        # client-go: "<name>.<unix nanos in hex>"; the counter keeps names unique within one
        # nanosecond of fake or coarse clocks.
        nanos = math.floor(event.at * 1e9) + next(self._names)
        return f"{event.involved.get('name')}.{nanos:016x}"

    def _body(self, event: _Pending, name: str, now: str) -> RawObject:
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": event.involved.get("namespace")},
            "involvedObject": {k: v for k, v in event.involved.items() if v},
            "type": event.type,
            "reason": event.reason,
            "message": event.message,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
        }
