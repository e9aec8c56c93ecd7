"""The event bus: reflectors publish watch events, each subscriber reads them at its own pace.

Design
------
`publish` is synchronous: a reflector hands over an event and goes straight back to its watch
stream. It never waits for a subscriber and never drops an event, yet a slow subscriber must
neither lose information nor make memory grow with the event rate. Three usual designs fail one
of these: a bounded channel blocks the publisher (and with it every other subscriber), a
dropping channel loses updates, an unbounded channel grows without limit behind a subscriber
that cannot keep up with churn.

So every subscriber has its own *coalescing mailbox*: an insertion-ordered map from
(kind, ObjectKey) to the one pending event of that object. A newer event for an object that is
still waiting replaces the waiting one in place (the object keeps its turn), so a mailbox holds
at most one entry per distinct object, however fast objects change. Subscribers here are
level-based (a cache, a resolver, a dispatcher that enqueues keys): they need each object's
latest state, not every intermediate one, so nothing they need is lost.

The merged event's type says what changed relative to what the subscriber saw last, judged by
the *first* event that created the pending entry:

- the newest event is DELETED: DELETED (whatever came before);
- the entry began with ADDED (the subscriber has not seen the object): ADDED, newest object;
- otherwise (the subscriber knew the object): MODIFIED, newest object.

Hence ADDED+MODIFIED is ADDED, anything+DELETED is DELETED, DELETED+ADDED is MODIFIED. One
deliberate imprecision: ADDED+DELETED stays DELETED of an object the subscriber never saw, so
subscribers must treat the deletion of an unknown object as a no-op (caches do anyway).

`SyncedEvent`s are barriers: they get an entry of their own that nothing replaces, in publish
order, so every event published before a Synced is delivered before it. An object event
published *after* a Synced may be merged into an entry ahead of it; the subscriber then sees
newer state before the barrier, which is harmless for "the cache now holds at least the full
list". Memory is bounded by distinct objects plus pending barriers (one per (re)list).

Subscribe before the reflectors start: a subscription sees only events published after it.
`close()` ends every subscription once its mailbox is drained; events published after that go
nowhere (there is nobody left to read them).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable

import anyio
import anyio.lowlevel

from carm.events import BusEvent, EventType, Kind, ObjectKey, SyncedEvent, WatchEvent

__all__ = ["EventBus", "Subscription", "coalesce"]

_ObjectSlot = tuple[Kind, ObjectKey]
_BarrierSlot = int
_Entry = tuple[EventType | None, BusEvent]  # (type of the first merged event, event to deliver)


def coalesce(first: EventType, newest: WatchEvent) -> WatchEvent:
    """The one event that stands for a pending entry that began with `first`, then `newest`."""
    if newest.type is EventType.DELETED:
        merged = EventType.DELETED
    elif first is EventType.ADDED:
        merged = EventType.ADDED
    else:
        merged = EventType.MODIFIED
    return newest if merged is newest.type else WatchEvent(newest.kind, merged, newest.obj)


class Subscription:
    """One subscriber's coalescing mailbox: an async iterator of `BusEvent`s."""

    def __init__(self, bus: EventBus, name: str, kinds: frozenset[Kind] | None) -> None:
        self.name = name
        self.kinds = kinds
        self._bus = bus
        self._mailbox: OrderedDict[_ObjectSlot | _BarrierSlot, _Entry] = OrderedDict()
        self._barriers = itertools.count()
        self._closed = False
        # Created lazily: an anyio.Event needs a running event loop; publish() may come first.
        self._wakeup: anyio.Event | None = None
        self.delivered = 0
        """Events handed to the subscriber so far (merged ones count once)."""
        self.coalesced = 0
        """Events merged into an entry that was already waiting (for metrics)."""

    @property
    def pending(self) -> int:
        """Entries waiting in the mailbox (at most one per object, plus barriers)."""
        return len(self._mailbox)

    @property
    def closed(self) -> bool:
        return self._closed

    def wants(self, kind: Kind) -> bool:
        return self.kinds is None or kind in self.kinds

    def offer(self, event: BusEvent) -> None:
        """Put `event` into the mailbox, merging it with the object's waiting event if any."""
        if self._closed:
            return
        if isinstance(event, SyncedEvent):
            self._mailbox[next(self._barriers)] = (None, event)
        else:
            slot = (event.kind, event.key)
            waiting = self._mailbox.get(slot)
            if waiting is None:
                self._mailbox[slot] = (event.type, event)
            else:
                first = waiting[0]
                assert first is not None  # object slots always record their first type
                # Assigning to an existing key keeps its position in the OrderedDict.
                self._mailbox[slot] = (first, coalesce(first, event))
                self.coalesced += 1
        self._wake()

    def get_nowait(self) -> BusEvent:
        """The oldest waiting event; `anyio.WouldBlock` if none, `anyio.EndOfStream` if closed."""
        if self._mailbox:
            _, (_, event) = self._mailbox.popitem(last=False)
            self.delivered += 1
            return event
        if self._closed:
            raise anyio.EndOfStream
        raise anyio.WouldBlock

    async def get(self) -> BusEvent:
        """Wait for the oldest event; `anyio.EndOfStream` once closed and drained."""
        await anyio.lowlevel.checkpoint()
        while True:
            try:
                return self.get_nowait()
            except anyio.WouldBlock:
                if self._wakeup is None:
                    self._wakeup = anyio.Event()
                await self._wakeup.wait()

    def close(self) -> None:
        """Stop receiving events; iteration ends after what is already waiting."""
        if not self._closed:
            self._closed = True
            self._bus._forget(self)
            self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    def __aiter__(self) -> AsyncIterator[BusEvent]:
        return self

    async def __anext__(self) -> BusEvent:
        try:
            return await self.get()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def __repr__(self) -> str:
        return f"<Subscription {self.name!r} pending={self.pending} closed={self._closed}>"


class EventBus:
    """Fans events out to subscriptions (implements `carm.events.EventSink`)."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self._closed = False
        self.published = 0
        """Events published so far (for metrics)."""

    def subscribe(self, name: str, kinds: Iterable[Kind] | None = None) -> Subscription:
        """A new mailbox for the events of `kinds` (all kinds when None) published from now on."""
        if self._closed:
            raise RuntimeError(f"cannot subscribe {name!r}: the event bus is closed")
        subscription = Subscription(self, name, None if kinds is None else frozenset(kinds))
        self._subscriptions.append(subscription)
        return subscription

    def publish(self, event: BusEvent) -> None:
        """Hand `event` to every interested subscription. Never blocks, never drops."""
        self.published += 1
        for subscription in self._subscriptions:
            if subscription.wants(event.kind):
                subscription.offer(event)

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._subscriptions)

    def close(self) -> None:
        """End every subscription (each after draining what is already in its mailbox)."""
        self._closed = True
        for subscription in list(self._subscriptions):
            subscription.close()

    def _forget(self, subscription: Subscription) -> None:
        self._subscriptions.remove(subscription)
