"""The reflector's protocol, driven by a scripted client on a fake clock (no network, no sleeps).

The integration tests prove the same against the embedded API server; here each decision
(when to list, where to resume, how long to wait) is pinned down exactly.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import anyio
import pytest

from carm.clock import FakeClock
from carm.events import BusEvent, EventType, Kind, ObjectKey, RawObject, SyncedEvent, WatchEvent
from carm.kube.client import BUCKETS, KubeApiError, KubeConnectionError, ResourceRef
from carm.kube.reflector import BackoffPolicy, Reflector

BUCKET = Kind("Bucket")

END = object()


class NoJitter(random.Random):
    def random(self) -> float:
        return 0.0


def bucket(name: str, version: str, namespace: str = "team-a") -> RawObject:
    return {"metadata": {"name": name, "namespace": namespace, "resourceVersion": version}}


class LiveWatch:
    """One watch request; the test pushes events, errors or the end of the stream."""

    def __init__(self, resource_version: str) -> None:
        self.resource_version = resource_version
        self.items: deque[object] = deque()
        self.closed = False
        self._wake = anyio.Event()

    def push(self, type_: str, obj: RawObject) -> None:
        self._put((type_, obj))

    def fail(self, error: Exception) -> None:
        self._put(error)

    def end(self) -> None:
        self._put(END)

    def _put(self, item: object) -> None:
        self.items.append(item)
        self._wake.set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.closed = True

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> tuple[str, RawObject]:
        while not self.items:
            self._wake = anyio.Event()
            await self._wake.wait()
        item = self.items.popleft()
        if item is END:
            raise StopAsyncIteration
        if isinstance(item, Exception):
            raise item
        assert isinstance(item, tuple)
        return item


@dataclass
class FakeApi:
    """Lists return `objects` at `version`; each watch call opens a LiveWatch (or fails with
    the next of `open_errors`)."""

    objects: dict[str, RawObject] = field(default_factory=dict)
    version: str = "100"
    list_errors: deque[Exception] = field(default_factory=deque)
    open_errors: deque[Exception] = field(default_factory=deque)
    lists: int = 0
    watches: list[LiveWatch] = field(default_factory=list)
    watch_calls: list[str] = field(default_factory=list)

    def put(self, *objs: RawObject) -> None:
        for obj in objs:
            self.objects[obj["metadata"]["name"]] = obj

    async def list_all(
        self,
        ref: ResourceRef,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> tuple[list[RawObject], str]:
        await anyio.lowlevel.checkpoint()
        self.lists += 1
        if self.list_errors:
            raise self.list_errors.popleft()
        return [dict(o) for o in self.objects.values()], self.version

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
    ) -> LiveWatchOpener:
        assert allow_bookmarks
        self.watch_calls.append(resource_version)
        return LiveWatchOpener(self, resource_version)


class LiveWatchOpener:
    def __init__(self, api: FakeApi, resource_version: str) -> None:
        self.api = api
        self.resource_version = resource_version
        self.stream: LiveWatch | None = None

    async def __aenter__(self) -> LiveWatch:
        await anyio.lowlevel.checkpoint()
        if self.api.open_errors:
            raise self.api.open_errors.popleft()
        self.stream = LiveWatch(self.resource_version)
        self.api.watches.append(self.stream)
        return self.stream

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self.stream is not None
        self.stream.closed = True


@dataclass
class Recorder:
    events: list[BusEvent] = field(default_factory=list)

    def publish(self, event: BusEvent) -> None:
        self.events.append(event)

    def take(self) -> list[tuple[str, str]]:
        """(type, name) of the events since the last take; SYNCED for SyncedEvent."""
        out = [
            (e.type.value, e.key.name) if isinstance(e, WatchEvent) else ("SYNCED", "")
            for e in self.events
        ]
        self.events.clear()
        return out


@dataclass
class Rig:
    api: FakeApi
    sink: Recorder
    clock: FakeClock
    reflector: Reflector

    @property
    def watch(self) -> LiveWatch:
        return self.api.watches[-1]


POLICY = BackoffPolicy(initial=1.0, maximum=8.0, factor=2.0, jitter=0.5)


@asynccontextmanager
async def running(*objs: RawObject, version: str = "100") -> AsyncIterator[Rig]:
    api = FakeApi(version=version)
    api.put(*objs)
    sink = Recorder()
    clock = FakeClock()
    reflector = Reflector(
        api,
        BUCKETS,
        BUCKET,
        sink,
        clock=clock,
        backoff=POLICY,
        rng=NoJitter(),
        healthy_after=10.0,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(reflector.run)
        await clock.settle()
        yield Rig(api, sink, clock, reflector)
        tg.cancel_scope.cancel()
    assert not reflector.connected


async def test_first_list_is_published_then_synced_then_watch_from_its_version() -> None:
    async with running(bucket("a", "1"), bucket("b", "2"), version="7") as rig:
        assert rig.sink.events[0] == WatchEvent(
            BUCKET,
            EventType.ADDED,
            {
                "metadata": {"name": "a", "namespace": "team-a", "resourceVersion": "1"},
                "apiVersion": "s3.services.k8s.aws/v1alpha1",
                "kind": "Bucket",
            },
        )
        assert rig.sink.take() == [("ADDED", "a"), ("ADDED", "b"), ("SYNCED", "")]
        assert rig.reflector.synced.is_set()
        assert rig.api.watch_calls == ["7"]
        assert rig.reflector.connected


async def test_synced_waits_for_a_successful_list() -> None:
    api = FakeApi()
    api.list_errors.append(KubeApiError(503, "ServiceUnavailable", "etcd is down"))
    clock = FakeClock()
    sink = Recorder()
    reflector = Reflector(api, BUCKETS, BUCKET, sink, clock=clock, backoff=POLICY, rng=NoJitter())
    async with anyio.create_task_group() as tg:
        tg.start_soon(reflector.run)
        await clock.settle()
        assert not reflector.synced.is_set() and sink.take() == []
        await clock.advance(1.0)
        assert reflector.synced.is_set() and sink.take() == [("SYNCED", "")]
        tg.cancel_scope.cancel()


async def test_watch_events_are_published_and_move_the_resource_version() -> None:
    async with running(bucket("a", "1")) as rig:
        rig.sink.take()
        rig.watch.push("ADDED", bucket("b", "101"))
        rig.watch.push("MODIFIED", bucket("a", "102"))
        rig.watch.push("BOOKMARK", {"metadata": {"resourceVersion": "150"}})
        await rig.clock.settle()
        assert rig.reflector.resource_version == "150"
        rig.watch.push("DELETED", bucket("b", "151"))
        # A replay of a version already published changes nothing.
        rig.watch.push("MODIFIED", bucket("a", "102"))
        await rig.clock.settle()
        assert rig.sink.take() == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
        assert rig.reflector.resource_version == "151"
        assert rig.reflector.known_keys == {ObjectKey("team-a", "a")}


async def test_managed_fields_are_not_published_from_lists_or_watches() -> None:
    managed = [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}]
    listed = bucket("a", "1")
    listed["metadata"]["managedFields"] = managed
    async with running(listed) as rig:
        watched = bucket("b", "101")
        watched["metadata"]["managedFields"] = managed
        rig.watch.push("ADDED", watched)
        await rig.clock.settle()
        published = [e.obj for e in rig.sink.events if isinstance(e, WatchEvent)]
        assert [o["metadata"]["name"] for o in published] == ["a", "b"]
        assert all("managedFields" not in o["metadata"] for o in published)


async def test_a_broken_stream_resumes_after_the_last_event() -> None:
    async with running() as rig:
        rig.watch.push("ADDED", bucket("b", "101"))
        rig.watch.push("MODIFIED", bucket("b", "102"))
        rig.watch.fail(KubeConnectionError("reset"))
        await rig.clock.advance(1.0)
        rig.watch.push("DELETED", bucket("b", "103"))
        rig.watch.fail(KubeConnectionError("reset"))
        await rig.clock.advance(1.0)
        assert rig.api.watch_calls == ["100", "102", "103"]


async def test_clean_end_of_a_healthy_stream_reconnects_at_once_from_the_last_version() -> None:
    async with running() as rig:
        rig.watch.push("BOOKMARK", {"metadata": {"resourceVersion": "120"}})
        rig.watch.end()
        await rig.clock.settle()
        assert rig.api.watch_calls == ["100", "120"]
        assert rig.reflector.connected


async def test_a_long_quiet_stream_is_healthy_too() -> None:
    async with running() as rig:
        await rig.clock.advance(300)
        rig.watch.end()
        await rig.clock.settle()
        assert rig.api.watch_calls == ["100", "100"]


async def test_a_stream_that_ends_at_once_and_empty_backs_off() -> None:
    async with running() as rig:
        rig.watch.end()
        await rig.clock.settle()
        assert rig.api.watch_calls == ["100"] and not rig.reflector.connected
        await rig.clock.advance(1.0)
        assert rig.api.watch_calls == ["100", "100"]


async def test_broken_streams_resume_with_exponential_backoff() -> None:
    async with running() as rig:
        rig.api.open_errors.extend(KubeConnectionError("refused") for _ in range(2))
        rig.watch.push("BOOKMARK", {"metadata": {"resourceVersion": "130"}})
        rig.watch.fail(KubeConnectionError("reset by peer"))
        await rig.clock.settle()
        # The stream delivered a bookmark, so it was healthy: the first delay is the initial one.
        for delay in (1.0, 2.0, 4.0):
            calls = len(rig.api.watch_calls)
            await rig.clock.advance(delay - 0.01)
            assert len(rig.api.watch_calls) == calls, f"reconnected before {delay}s"
            await rig.clock.advance(0.01)
            assert len(rig.api.watch_calls) == calls + 1
        # Two refused, then the third attempt opens; every one resumed from the bookmark.
        assert rig.api.watch_calls == ["100", "130", "130", "130"]
        assert rig.reflector.connected
        assert rig.api.lists == 1, "a broken stream resumes: it never re-lists"


async def test_backoff_resets_after_a_healthy_stream() -> None:
    async with running() as rig:
        rig.api.open_errors.extend(KubeConnectionError("refused") for _ in range(2))
        rig.watch.fail(KubeConnectionError("reset"))
        await rig.clock.advance(1.0 + 2.0 + 4.0)
        assert len(rig.api.watch_calls) == 4 and rig.reflector.connected
        rig.watch.push("ADDED", bucket("n", "140"))
        rig.watch.fail(KubeConnectionError("reset"))
        await rig.clock.settle()
        calls = len(rig.api.watch_calls)
        await rig.clock.advance(1.0)
        assert len(rig.api.watch_calls) == calls + 1


async def test_retry_after_is_honoured_as_a_minimum() -> None:
    async with running() as rig:
        rig.api.open_errors.append(
            KubeApiError(429, "TooManyRequests", "slow down", retry_after=5.0)
        )
        rig.watch.fail(KubeConnectionError("reset"))
        await rig.clock.advance(1.0)  # the watch opened at once fails with 429
        calls = len(rig.api.watch_calls)
        await rig.clock.advance(4.9)
        assert len(rig.api.watch_calls) == calls
        await rig.clock.advance(0.1)
        assert len(rig.api.watch_calls) == calls + 1


@pytest.mark.parametrize("where", ["event", "status"])
async def test_gone_relists_and_publishes_only_the_difference(where: str) -> None:
    async with running(bucket("same", "1"), bucket("changed", "2"), bucket("gone", "3")) as rig:
        rig.sink.take()
        rig.api.objects.pop("gone")
        rig.api.put(bucket("changed", "20"), bucket("new", "21"))
        rig.api.version = "200"
        gone = KubeApiError(410, "Expired", "too old resource version")
        if where == "event":
            rig.watch.fail(gone)
        else:
            rig.api.open_errors.append(gone)
            rig.watch.fail(KubeConnectionError("reset"))
        await rig.clock.advance(1.0)
        assert rig.sink.take() == [("DELETED", "gone"), ("MODIFIED", "changed"), ("ADDED", "new")]
        assert rig.api.lists == 2
        assert rig.api.watch_calls[-1] == "200"
        assert rig.reflector.connected


async def test_deleted_after_relist_is_a_tombstone_with_the_last_version() -> None:
    async with running(bucket("gone", "3")) as rig:
        rig.api.objects.clear()
        rig.watch.push("BOOKMARK", {"metadata": {"resourceVersion": "110"}})
        rig.watch.fail(KubeApiError(410, "Expired", "too old"))
        await rig.clock.settle()
        deleted = rig.sink.events[-1]
        assert deleted == WatchEvent(
            BUCKET,
            EventType.DELETED,
            {
                "apiVersion": "s3.services.k8s.aws/v1alpha1",
                "kind": "Bucket",
                "metadata": {"name": "gone", "namespace": "team-a", "resourceVersion": "3"},
            },
        )
        assert rig.sink.events.count(SyncedEvent(BUCKET)) == 1, "synced is announced once"


async def test_cancellation_closes_the_stream() -> None:
    async with running() as rig:
        stream = rig.watch
    assert stream.closed


async def test_history_expiring_right_after_each_list_backs_off() -> None:
    async with running() as rig:
        rig.api.open_errors.extend(KubeApiError(410, "Expired", "too old") for _ in range(3))
        rig.watch.push("BOOKMARK", {"metadata": {"resourceVersion": "110"}})
        rig.watch.fail(KubeApiError(410, "Expired", "too old"))
        await rig.clock.settle()
        # The healthy stream's 410 re-lists at once; the watch from that list is refused 410
        # again, so the next list waits for the backoff (1 s, then 2 s).
        assert rig.api.lists == 2
        await rig.clock.advance(0.99)
        assert rig.api.lists == 2
        await rig.clock.advance(0.01)
        assert rig.api.lists == 3
        await rig.clock.advance(2.0)
        assert rig.api.lists == 4
        await rig.clock.advance(4.0)
        assert rig.api.lists == 5 and rig.reflector.connected
