"""The indexed cache of one kind."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carm.events import EventType, Kind, ObjectKey, RawObject, SyncedEvent, WatchEvent
from carm.store import Store, by_namespace, resource_version

BUCKET = Kind("Bucket")
"""A resource kind (the wiring names it after its descriptor: no constant in carm.events)."""

ADDED, MODIFIED, DELETED = EventType.ADDED, EventType.MODIFIED, EventType.DELETED


def bucket(namespace: str, name: str, version: int | str = 1, **labels: str) -> RawObject:
    meta: dict[str, Any] = {"namespace": namespace, "name": name, "resourceVersion": str(version)}
    if labels:
        meta["labels"] = labels
    return {"metadata": meta, "spec": {"name": name}}


def apply(store: Store, type_: EventType, obj: RawObject) -> bool:
    return store.apply(WatchEvent(BUCKET, type_, obj))


def by_team(obj: RawObject) -> list[str]:
    team = (obj["metadata"].get("labels") or {}).get("team")
    return [team] if team else []


def test_the_store_holds_the_latest_object_per_key() -> None:
    store = Store(BUCKET)
    apply(store, ADDED, bucket("team-a", "logs", 1))
    apply(store, ADDED, bucket("team-b", "logs", 2))
    apply(store, MODIFIED, bucket("team-a", "logs", 3))

    logs_a = store.get(ObjectKey("team-a", "logs"))
    assert logs_a is not None
    assert logs_a["metadata"]["resourceVersion"] == "3"
    assert len(store) == 2
    assert ObjectKey("team-b", "logs") in store
    assert sorted(store.keys()) == [ObjectKey("team-a", "logs"), ObjectKey("team-b", "logs")]

    assert apply(store, DELETED, bucket("team-a", "logs", 4))
    assert store.get(ObjectKey("team-a", "logs")) is None
    assert [o["metadata"]["namespace"] for o in store.list()] == ["team-b"]
    assert not apply(store, DELETED, bucket("team-a", "logs", 5))  # unknown: ignored


def test_indexes_follow_every_change() -> None:
    store = Store(BUCKET)
    store.add_index("by_namespace", by_namespace)
    store.add_index("by_team", by_team)
    apply(store, ADDED, bucket("team-a", "logs", 1, team="red"))
    apply(store, ADDED, bucket("team-a", "media", 2))
    apply(store, ADDED, bucket("team-b", "logs", 3, team="red"))

    assert store.keys_by_index("by_namespace", "team-a") == [
        ObjectKey("team-a", "logs"),
        ObjectKey("team-a", "media"),
    ]
    assert [o["metadata"]["namespace"] for o in store.by_index("by_team", "red")] == [
        "team-a",
        "team-b",
    ]

    apply(store, MODIFIED, bucket("team-a", "logs", 4, team="blue"))  # moves between values
    apply(store, DELETED, bucket("team-b", "logs", 5, team="red"))

    assert store.keys_by_index("by_team", "red") == []
    assert store.keys_by_index("by_team", "blue") == [ObjectKey("team-a", "logs")]
    assert sorted(store.index_values("by_team")) == ["blue"]  # empty values vanish
    assert store.index_values("by_namespace") == ["team-a"]
    assert store.by_index("by_namespace", "nowhere") == []


def test_an_index_added_later_files_the_objects_already_there() -> None:
    store = Store(BUCKET)
    apply(store, ADDED, bucket("team-a", "logs"))
    store.add_index("by_namespace", by_namespace)

    assert store.keys_by_index("by_namespace", "team-a") == [ObjectKey("team-a", "logs")]
    with pytest.raises(ValueError, match="by_namespace"):
        store.add_index("by_namespace", by_namespace)
    with pytest.raises(KeyError, match="by_owner"):
        store.by_index("by_owner", "x")


def test_an_update_costs_one_index_call_however_big_the_store() -> None:
    calls = 0

    def counting(obj: RawObject) -> list[str]:
        nonlocal calls
        calls += 1
        return by_namespace(obj)

    store = Store(BUCKET)
    store.add_index("by_namespace", counting)
    for index in range(12_000):
        apply(store, ADDED, bucket(f"ns-{index % 100}", f"b{index}", index))
    calls = 0
    apply(store, MODIFIED, bucket("ns-7", "b7", 20_000))
    apply(store, DELETED, bucket("ns-8", "b8", 20_001))

    assert calls == 1  # the deletion reuses the values remembered for the key
    assert len(store) == 11_999
    assert len(store.keys_by_index("by_namespace", "ns-8")) == 119


def test_stale_events_are_ignored() -> None:
    store = Store(BUCKET)
    apply(store, ADDED, bucket("team-a", "logs", 10))

    assert not apply(store, MODIFIED, bucket("team-a", "logs", 9))
    assert not apply(store, DELETED, bucket("team-a", "logs", 9))
    assert store.stale_ignored == 2
    # Equal versions apply: a reflector's synthetic DELETED carries the last version it saw.
    assert apply(store, DELETED, bucket("team-a", "logs", 10))
    # No tombstones: after a deletion any version is accepted.
    assert apply(store, ADDED, bucket("team-a", "logs", 3))


@pytest.mark.parametrize("version", ["", "abc", "²", "-5"])
def test_versions_that_are_not_numbers_are_never_compared(version: str) -> None:
    store = Store(BUCKET)
    apply(store, ADDED, bucket("team-a", "logs", 10))

    assert resource_version(bucket("team-a", "logs", version)) is None
    assert apply(store, MODIFIED, bucket("team-a", "logs", version))


def test_the_staleness_check_can_be_turned_off() -> None:
    store = Store(BUCKET, ignore_stale=False)
    apply(store, ADDED, bucket("team-a", "logs", 10))

    assert apply(store, MODIFIED, bucket("team-a", "logs", 9))


def test_events_of_another_kind_are_refused() -> None:
    store = Store(Kind.NAMESPACE)
    with pytest.raises(ValueError, match="Bucket event cannot go into the Namespace store"):
        apply(store, ADDED, bucket("team-a", "logs"))


async def test_readers_can_wait_for_the_first_full_list() -> None:
    store = Store(Kind.NAMESPACE)
    ready: list[int] = []

    async def reader() -> None:
        await store.wait_synced()
        ready.append(len(store))

    async with anyio.create_task_group() as group:
        group.start_soon(reader)
        group.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        store.apply(WatchEvent(Kind.NAMESPACE, ADDED, {"metadata": {"name": "team-a"}}))
        await anyio.wait_all_tasks_blocked()
        assert ready == [] and not store.synced
        store.apply(SyncedEvent(Kind.NAMESPACE))

    assert ready == [1, 1]
    assert store.synced
    await store.wait_synced()  # returns at once from now on


NAMESPACES = ["a", "b", "c"]
NAMES = ["x", "y", "z"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(EventType)),
            st.sampled_from(NAMESPACES),
            st.sampled_from(NAMES),
            st.sampled_from(["red", "blue", None]),
        ),
        max_size=60,
    )
)
def test_indexes_always_match_a_full_recomputation(
    script: list[tuple[EventType, str, str, str | None]],
) -> None:
    store = Store(BUCKET)
    store.add_index("by_namespace", by_namespace)
    store.add_index("by_team", by_team)
    truth: dict[ObjectKey, RawObject] = {}
    for version, (type_, namespace, name, team) in enumerate(script):
        obj = bucket(namespace, name, version, **({"team": team} if team else {}))
        apply(store, type_, obj)
        if type_ is DELETED:
            truth.pop(ObjectKey(namespace, name), None)
        else:
            truth[ObjectKey(namespace, name)] = obj

    assert {key: store.get(key) for key in store} == truth
    for name, indexer in [("by_namespace", by_namespace), ("by_team", by_team)]:
        expected: dict[str, set[ObjectKey]] = {}
        for key, obj in truth.items():
            for value in indexer(obj):
                expected.setdefault(value, set()).add(key)
        assert {v: set(store.keys_by_index(name, v)) for v in store.index_values(name)} == expected
