"""The event bus: per-subscriber coalescing mailboxes that never block or drop."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carm.bus import EventBus, Subscription
from carm.clock import FakeClock
from carm.events import BusEvent, EventType, Kind, ObjectKey, SyncedEvent, WatchEvent

BUCKET = Kind("Bucket")
"""A resource kind (the wiring names it after its descriptor: no constant in carm.events)."""

ADDED, MODIFIED, DELETED = EventType.ADDED, EventType.MODIFIED, EventType.DELETED


def bucket(name: str, version: int, namespace: str = "team-a") -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name, "resourceVersion": str(version)},
        "spec": {"name": name},
    }


def event(type_: EventType, name: str, version: int, kind: Kind = BUCKET) -> WatchEvent:
    return WatchEvent(kind, type_, bucket(name, version))


def drain(subscription: Subscription) -> list[BusEvent]:
    events: list[BusEvent] = []
    while True:
        try:
            events.append(subscription.get_nowait())
        except anyio.WouldBlock:
            return events


def summary(events: list[BusEvent]) -> list[tuple[str, str, str]]:
    """(type, name, resourceVersion) per watch event, ("SYNCED", kind, "") per barrier."""
    out: list[tuple[str, str, str]] = []
    for item in events:
        if isinstance(item, SyncedEvent):
            out.append(("SYNCED", str(item.kind), ""))
        else:
            meta = item.obj["metadata"]
            out.append((str(item.type), meta["name"], meta["resourceVersion"]))
    return out


@pytest.mark.parametrize(
    ("sequence", "delivered"),
    [
        ([ADDED, MODIFIED], ADDED),
        ([ADDED, MODIFIED, MODIFIED], ADDED),
        ([MODIFIED, MODIFIED], MODIFIED),
        ([ADDED, DELETED], DELETED),
        ([MODIFIED, DELETED], DELETED),
        ([DELETED, ADDED], MODIFIED),
        ([DELETED, ADDED, MODIFIED], MODIFIED),
        # The subscriber never saw the object: it is new to it, whatever happened in between.
        ([ADDED, DELETED, ADDED], ADDED),
        ([MODIFIED, DELETED, ADDED, DELETED], DELETED),
    ],
)
def test_waiting_events_of_one_object_merge_into_one(
    sequence: list[EventType], delivered: EventType
) -> None:
    bus = EventBus()
    subscription = bus.subscribe("cache")
    for version, type_ in enumerate(sequence, start=1):
        bus.publish(event(type_, "logs", version))

    assert subscription.pending == 1
    assert summary(drain(subscription)) == [(delivered, "logs", str(len(sequence)))]


def test_a_merged_object_keeps_its_place_in_line() -> None:
    bus = EventBus()
    subscription = bus.subscribe("dispatcher")
    bus.publish(event(ADDED, "first", 1))
    bus.publish(event(ADDED, "second", 2))
    bus.publish(event(MODIFIED, "first", 3))

    assert summary(drain(subscription)) == [("ADDED", "first", "3"), ("ADDED", "second", "2")]
    assert subscription.coalesced == 1


def test_the_same_name_in_two_kinds_or_namespaces_is_two_objects() -> None:
    bus = EventBus()
    subscription = bus.subscribe("all")
    bus.publish(WatchEvent(BUCKET, ADDED, bucket("x", 1, namespace="a")))
    bus.publish(WatchEvent(BUCKET, ADDED, bucket("x", 2, namespace="b")))
    bus.publish(WatchEvent(Kind.CONFIG_MAP, ADDED, bucket("x", 3, namespace="a")))

    assert [e.key for e in drain(subscription) if isinstance(e, WatchEvent)] == [
        ObjectKey("a", "x"),
        ObjectKey("b", "x"),
        ObjectKey("a", "x"),
    ]


def test_synced_comes_after_every_event_published_before_it() -> None:
    bus = EventBus()
    subscription = bus.subscribe("cache")
    bus.publish(event(ADDED, "before", 1))
    bus.publish(SyncedEvent(BUCKET))
    bus.publish(event(ADDED, "after", 2))
    # A newer version of an object still waiting ahead of the barrier joins it there: the
    # subscriber sees newer state before Synced, never older.
    bus.publish(event(MODIFIED, "before", 3))

    assert summary(drain(subscription)) == [
        ("ADDED", "before", "3"),
        ("SYNCED", "Bucket", ""),
        ("ADDED", "after", "2"),
    ]


def test_synced_events_are_never_merged() -> None:
    bus = EventBus()
    subscription = bus.subscribe("cache")
    for _ in range(3):
        bus.publish(SyncedEvent(Kind.NAMESPACE))

    assert summary(drain(subscription)) == [("SYNCED", "Namespace", "")] * 3


def test_a_subscription_gets_only_its_kinds() -> None:
    bus = EventBus()
    namespaces = bus.subscribe("resolver", kinds={Kind.NAMESPACE, Kind.CONFIG_MAP})
    buckets = bus.subscribe("dispatcher", kinds={BUCKET})
    bus.publish(WatchEvent(Kind.NAMESPACE, ADDED, {"metadata": {"name": "team-a"}}))
    bus.publish(SyncedEvent(Kind.NAMESPACE))
    bus.publish(event(ADDED, "logs", 1))
    bus.publish(SyncedEvent(BUCKET))

    assert [e.kind for e in drain(namespaces)] == [Kind.NAMESPACE, Kind.NAMESPACE]
    assert [e.kind for e in drain(buckets)] == [BUCKET, BUCKET]


async def test_a_slow_subscriber_neither_delays_others_nor_grows_with_churn() -> None:
    clock = FakeClock()
    bus = EventBus()
    slow = bus.subscribe("slow")
    fast = bus.subscribe("fast")
    fast_seen: dict[ObjectKey, str] = {}
    slow_seen: list[BusEvent] = []
    objects, rounds = 100, 50

    async def consume_slowly() -> None:
        async for item in slow:
            slow_seen.append(item)
            await clock.sleep(3600)  # stuck far longer than the test lets time run

    async def consume_fast() -> None:
        async for item in fast:
            assert isinstance(item, WatchEvent)
            fast_seen[item.key] = item.obj["metadata"]["resourceVersion"]

    async with anyio.create_task_group() as group:
        group.start_soon(consume_slowly)
        group.start_soon(consume_fast)
        await clock.settle()
        for version in range(rounds):
            for index in range(objects):
                bus.publish(event(ADDED if version == 0 else MODIFIED, f"b{index}", version))
            await clock.settle(3)  # publishers never wait; consumers run between bursts

        with anyio.fail_after(5):  # real seconds, a safety net only: no real time passes
            while fast.pending:
                await anyio.lowlevel.checkpoint()
        # The fast subscriber has the final state of every object, in no virtual time...
        assert fast_seen == {ObjectKey("team-a", f"b{i}"): str(rounds - 1) for i in range(objects)}
        assert clock.monotonic() == 1_000.0
        # ...while the slow one, stuck on its first event, holds one entry per object.
        assert len(slow_seen) == 1
        assert slow.pending <= objects

        await clock.advance(3600)
        await clock.settle()
        group.cancel_scope.cancel()

    latest = {
        item.key: item.obj["metadata"]["resourceVersion"]
        for item in [*slow_seen, *drain(slow)]
        if isinstance(item, WatchEvent)
    }
    assert latest == {ObjectKey("team-a", f"b{i}"): str(rounds - 1) for i in range(objects)}


async def test_close_ends_iteration_after_the_waiting_events() -> None:
    bus = EventBus()
    subscription = bus.subscribe("cache")
    received: list[BusEvent] = []

    async def consume() -> None:
        async for item in subscription:
            received.append(item)

    async with anyio.create_task_group() as group:
        group.start_soon(consume)
        await anyio.lowlevel.checkpoint()
        bus.publish(event(ADDED, "logs", 1))
        bus.close()  # the consumer loop ends: the task group exits without being cancelled

    assert summary(received) == [("ADDED", "logs", "1")]
    bus.publish(event(MODIFIED, "logs", 2))  # nobody listens any more; no error either
    with pytest.raises(anyio.EndOfStream):
        subscription.get_nowait()
    with pytest.raises(RuntimeError, match="closed"):
        bus.subscribe("late")


def test_a_closed_subscription_leaves_the_bus() -> None:
    bus = EventBus()
    gone = bus.subscribe("gone")
    kept = bus.subscribe("kept")
    gone.close()
    bus.publish(event(ADDED, "logs", 1))

    assert bus.subscriptions == (kept,)
    assert gone.pending == 0
    assert kept.pending == 1


# -- properties ---------------------------------------------------------------------------

NAMES = ["a", "b", "c", "d"]
steps = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(NAMES), st.sampled_from(list(EventType))),
        st.just(("SYNCED", None)),
        st.just(("READ", None)),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_a_subscriber_ends_with_the_true_state_whatever_the_interleaving(
    script: list[tuple[str, EventType | None]],
) -> None:
    """Any event sequence, read at any moments: the subscriber's final view is the truth, and
    at every Synced it has seen at least everything published before that Synced."""
    bus = EventBus()
    subscription = bus.subscribe("cache")
    truth: dict[str, int] = {}  # name → version, for objects that exist
    seen: dict[str, int] = {}
    seen_version: dict[str, int] = {}  # name → newest version applied, deletions included
    published_before: dict[int, dict[str, int]] = {}  # id(SyncedEvent) → versions before it
    last_published: dict[str, int] = {}
    barriers: list[SyncedEvent] = []

    def read_all() -> None:
        for item in drain(subscription):
            if isinstance(item, SyncedEvent):
                for name, version in published_before[id(item)].items():
                    assert seen_version.get(name, -1) >= version
                assert item is barriers.pop(0)  # barriers come in publish order, every one
                continue
            name, version = (
                item.obj["metadata"]["name"],
                int(item.obj["metadata"]["resourceVersion"]),
            )
            seen_version[name] = version
            if item.type is EventType.DELETED:
                seen.pop(name, None)
            else:
                seen[name] = version

    for version, (what, type_) in enumerate(script):
        if what == "READ":
            read_all()
        elif what == "SYNCED":
            synced = SyncedEvent(BUCKET)
            published_before[id(synced)] = dict(last_published)
            barriers.append(synced)
            bus.publish(synced)
        else:
            assert type_ is not None
            bus.publish(event(type_, what, version))
            last_published[what] = version
            if type_ is EventType.DELETED:
                truth.pop(what, None)
            else:
                truth[what] = version
        assert subscription.pending <= len(NAMES) + len(barriers)

    read_all()
    assert seen == truth
    assert barriers == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(NAMES), st.booleans()), max_size=80), st.data())
def test_merged_types_stay_truthful_for_a_well_formed_stream(
    script: list[tuple[str, bool]], data: st.DataObject
) -> None:
    """Fed a consistent stream (ADDED for new objects, MODIFIED/DELETED for existing ones), a
    subscriber only ever gets ADDED for objects it does not know and MODIFIED for ones it does.
    DELETED may name an object it never saw (ADDED then DELETED while it was not reading)."""
    bus = EventBus()
    subscription = bus.subscribe("cache")
    exists: set[str] = set()
    known: set[str] = set()

    def read_some() -> None:
        for item in drain(subscription):
            assert isinstance(item, WatchEvent)
            name = item.obj["metadata"]["name"]
            if item.type is EventType.ADDED:
                assert name not in known
                known.add(name)
            elif item.type is EventType.MODIFIED:
                assert name in known
            else:
                known.discard(name)

    for version, (name, change) in enumerate(script):
        if name not in exists:
            type_ = EventType.ADDED
            exists.add(name)
        elif change:
            type_ = EventType.MODIFIED
        else:
            type_ = EventType.DELETED
            exists.discard(name)
        bus.publish(event(type_, name, version))
        if data.draw(st.booleans()):
            read_some()
    read_some()
    assert known == exists
