"""Watch fan-out: each open watch is a `Watcher` with a bounded queue of changes.

The store calls `WatchHub.publish` synchronously on every write; the hub hands the change to
the watchers of that resource, each of which filters it (namespace, label and field selectors)
and puts it on its own queue without waiting. A watcher whose queue is full is a client too
slow to keep up: it is closed (its stream ends) rather than let it hold memory or stall the
writer, and the client re-lists, exactly what it must do on any dropped watch.

The HTTP side (`stream_watch`) drains a watcher's queue in batches, writes one chunk per batch
(lines were serialised once per change for all watchers), and sends BOOKMARK events when asked
to, at an interval, only while its queue is empty, so the bookmark's resourceVersion never gets
ahead of an event not yet delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from carm.sandbox.kubeapi.selectors import Predicate
from carm.sandbox.kubeapi.storage import Change, ResourceKey


class Watcher:
    """One open watch: its filter and its queue of pending change lines."""

    def __init__(
        self,
        resource: ResourceKey,
        namespace: str | None,
        predicate: Predicate | None,
        api_version: str,
        max_queue: int,
        render: Callable[[str, dict[str, Any]], bytes] | None = None,
    ) -> None:
        self.resource = resource
        # A watcher that wants events in another shape (kubectl's Tables) renders its own lines
        # instead of sharing the serialised ones.
        self.render = render
        self.namespace = namespace
        self.predicate = predicate
        self.api_version = api_version
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=max(1, max_queue))
        self._wake = asyncio.Event()
        self.closed = False
        self.overflowed = False
        # Called on overflow: a client that stopped reading leaves its handler blocked in a
        # write, which only dropping the connection releases.
        self.on_overflow: Callable[[], None] = lambda: None

    def line_for(self, change: Change) -> bytes | None:
        """The event line this watcher should see for `change`, or None if filtered out."""
        if self.namespace is not None and change.namespace != self.namespace:
            return None
        event_type: str | None = change.type
        if self.predicate is not None:
            now = self.predicate(change.obj)
            if change.type != "MODIFIED":
                event_type = change.type if now else None
            else:
                before = change.old is not None and self.predicate(change.old)
                event_type = (
                    ("MODIFIED" if before else "ADDED") if now else ("DELETED" if before else None)
                )
        if event_type is None:
            return None
        if self.render is not None:
            return self.render(event_type, change.obj)
        return change.line(self.api_version, event_type)

    def offer(self, change: Change) -> None:
        if self.closed:
            return
        line = self.line_for(change)
        if line is None:
            return
        try:
            self._queue.put_nowait(line)
        except asyncio.QueueFull:
            self.overflowed = True
            self.close()
            self.on_overflow()
            return
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def drain(self) -> list[bytes]:
        lines: list[bytes] = []
        while True:
            try:
                lines.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                return lines

    async def wait(self, seconds: float | None) -> None:
        """Until something is queued, the watcher is closed, or `seconds` pass."""
        if not self._queue.empty() or self.closed:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)


class WatchHub:
    """The open watches, by resource, fed from the store's change listener."""

    def __init__(self) -> None:
        self._by_resource: dict[ResourceKey, set[Watcher]] = {}

    def publish(self, change: Change) -> None:
        for watcher in list(self._by_resource.get(change.resource, ())):
            watcher.offer(change)
            if watcher.closed:
                self.remove(watcher)

    def add(self, watcher: Watcher) -> None:
        self._by_resource.setdefault(watcher.resource, set()).add(watcher)

    def remove(self, watcher: Watcher) -> None:
        watchers = self._by_resource.get(watcher.resource)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._by_resource[watcher.resource]

    def close_all(self, resource: ResourceKey | None = None) -> None:
        for key, watchers in list(self._by_resource.items()):
            if resource is None or key == resource:
                for watcher in list(watchers):
                    watcher.close()

    def count(self) -> int:
        return sum(len(watchers) for watchers in self._by_resource.values())


Writer = Callable[[bytes], Awaitable[Any]]


def bookmark_line(api_version: str, kind: str, resource_version: int) -> bytes:
    return (
        b'{"type":"BOOKMARK","object":{"kind":"'
        + kind.encode()
        + b'","apiVersion":"'
        + api_version.encode()
        + b'","metadata":{"resourceVersion":"'
        + str(resource_version).encode()
        + b'"}}}\n'
    )


async def pump(
    watcher: Watcher,
    write: Writer,
    *,
    duration: float | None,
    bookmark_interval: float | None,
    bookmark: Callable[[], bytes],
) -> None:
    """Write the watcher's events until it closes or `duration` (timeoutSeconds) passes.

    With `bookmark_interval`, a bookmark (made by `bookmark`, at the store's current version)
    goes out whenever that long passed since the last one and nothing is pending.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration if duration else None
    last_bookmark = loop.time()
    while not watcher.closed:
        now = loop.time()
        waits = []
        if deadline is not None:
            if now >= deadline:
                return
            waits.append(deadline - now)
        if bookmark_interval is not None:
            waits.append(max(0.0, last_bookmark + bookmark_interval - now))
        await watcher.wait(min(waits) if waits else None)
        lines = watcher.drain()
        if lines:
            # Changes queued before a close still go out (the DELETED events of a CRD's
            # objects precede the end of their watch).
            await write(b"".join(lines))
        if watcher.closed:
            return
        if (
            bookmark_interval is not None
            and loop.time() - last_bookmark >= bookmark_interval
            and watcher.pending == 0
        ):
            # Nothing is pending, so every change up to the current version was written.
            await write(bookmark())
            last_bookmark = loop.time()
