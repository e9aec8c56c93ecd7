"""Reflectors against the embedded API server: no change is missed through dropped watches,
expired history (410) and a server restart, and the published view ends equal to the server.

Waits are bounded (`anyio.fail_after`) but nothing asserts on timings. Backoff is real time
here, kept short by the policy; its exact schedule is pinned down on a fake clock in
tests/unit/test_reflector_loop.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from carm.events import BusEvent, EventType, Kind, ObjectKey, RawObject, SyncedEvent, WatchEvent
from carm.kube.client import BUCKETS, CONFIG_MAPS, NAMESPACES, KubeApiError, KubeClient, ResourceRef
from carm.kube.reflector import BackoffPolicy, ListWatchClient, Reflector, resource_version_of
from carm.resources.s3.crd import BUCKET_CRD
from carm.sandbox.kubeapi.server import KubeApiServer, serve_kubeapi

BUCKET = Kind("Bucket")

FAST = BackoffPolicy(initial=0.02, maximum=0.2)


def bucket(name: str, namespace: str = "team-a") -> RawObject:
    return {
        "apiVersion": "s3.services.k8s.aws/v1alpha1",
        "kind": "Bucket",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"name": f"{namespace}-{name}"},
    }


@dataclass
class Recorder:
    """An EventSink keeping every event and the view they add up to."""

    events: list[BusEvent] = field(default_factory=list)
    view: dict[ObjectKey, str] = field(default_factory=dict)
    changed: anyio.Event = field(default_factory=anyio.Event)

    def publish(self, event: BusEvent) -> None:
        self.events.append(event)
        if isinstance(event, WatchEvent):
            if event.type is EventType.DELETED:
                self.view.pop(event.key, None)
            else:
                self.view[event.key] = resource_version_of(event.obj)
        self.changed.set()
        self.changed = anyio.Event()

    def watch_events(self) -> list[WatchEvent]:
        return [e for e in self.events if isinstance(e, WatchEvent)]

    def versions_of(self, key: ObjectKey) -> list[tuple[EventType, str]]:
        return [(e.type, resource_version_of(e.obj)) for e in self.watch_events() if e.key == key]

    async def until(self, condition: Callable[[], bool], within: float = 10.0) -> None:
        with anyio.fail_after(within):
            while not condition():
                await self.changed.wait()


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll a flag another task flips (the reflector's `connected`, `resource_version`)."""
    with anyio.fail_after(within):
        while not condition():  # noqa: ASYNC110 - plain attributes, no event to wait on
            await anyio.sleep(0.01)


async def server_view(
    kube: KubeClient, ref: ResourceRef, namespace: str | None = None
) -> dict[ObjectKey, str]:
    items, _ = await kube.list_all(ref, namespace)
    return {ObjectKey.of(obj): resource_version_of(obj) for obj in items}


async def until_equal(sink: Recorder, kube: KubeClient, namespace: str | None = None) -> None:
    """Until the sink's view equals the server's list (re-read after each change)."""
    with anyio.fail_after(10):
        while sink.view != await server_view(kube, BUCKETS, namespace):
            with anyio.move_on_after(0.5):
                await sink.changed.wait()


@asynccontextmanager
async def reflecting(
    kube: KubeClient,
    ref: ResourceRef = BUCKETS,
    kind: Kind = BUCKET,
    *,
    namespace: str | None = None,
    field_selector: str | None = None,
) -> AsyncIterator[tuple[Reflector, Recorder]]:
    sink = Recorder()
    client: ListWatchClient = kube  # KubeClient is what a reflector needs
    reflector = Reflector(
        client, ref, kind, sink, namespace=namespace, field_selector=field_selector, backoff=FAST
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(reflector.run)
        with anyio.fail_after(10):
            await reflector.synced.wait()
        yield reflector, sink
        tg.cancel_scope.cancel()
    assert not reflector.connected


async def test_initial_list_then_every_change(kube: KubeClient) -> None:
    first = await kube.create(BUCKETS, bucket("existing"))
    async with reflecting(kube) as (reflector, sink):
        assert sink.events == [
            WatchEvent(BUCKET, EventType.ADDED, sink.watch_events()[0].obj),
            SyncedEvent(BUCKET),
        ]
        assert sink.watch_events()[0].obj["metadata"]["uid"] == first["metadata"]["uid"]
        assert sink.watch_events()[0].obj["kind"] == "Bucket"

        created = await kube.create(BUCKETS, bucket("new", "team-b"))
        modified = await kube.merge_patch(
            BUCKETS, "existing", {"metadata": {"labels": {"x": "y"}}}, "team-a"
        )
        await kube.delete(BUCKETS, "new", "team-b")
        await until_equal(sink, kube)

        assert sink.versions_of(ObjectKey("team-b", "new"))[:1] == [
            (EventType.ADDED, created["metadata"]["resourceVersion"])
        ]
        assert [t for t, _ in sink.versions_of(ObjectKey("team-b", "new"))] == [
            EventType.ADDED,
            EventType.DELETED,
        ]
        assert sink.versions_of(ObjectKey("team-a", "existing")) == [
            (EventType.ADDED, first["metadata"]["resourceVersion"]),
            (EventType.MODIFIED, modified["metadata"]["resourceVersion"]),
        ]
        assert reflector.connected and reflector.lists == 1


async def test_namespaced_reflectors_see_only_their_namespace(kube: KubeClient) -> None:
    async with (
        reflecting(kube, namespace="team-a") as (_, sink_a),
        reflecting(kube, namespace="team-b") as (_, sink_b),
    ):
        await kube.create(BUCKETS, bucket("one", "team-a"))
        await kube.create(BUCKETS, bucket("two", "team-b"))
        await until_equal(sink_a, kube, "team-a")
        await until_equal(sink_b, kube, "team-b")
        assert set(sink_a.view) == {ObjectKey("team-a", "one")}
        assert set(sink_b.view) == {ObjectKey("team-b", "two")}


async def test_field_selector_picks_one_config_map(kube: KubeClient) -> None:
    for name in ("ack-role-account-map", "other"):
        await kube.create(
            CONFIG_MAPS, {"metadata": {"name": name, "namespace": "ack-system"}, "data": {}}
        )
    async with reflecting(
        kube,
        CONFIG_MAPS,
        Kind.CONFIG_MAP,
        namespace="ack-system",
        field_selector="metadata.name=ack-role-account-map",
    ) as (_, sink):
        await kube.merge_patch(CONFIG_MAPS, "other", {"data": {"a": "1"}}, "ack-system")
        await kube.merge_patch(
            CONFIG_MAPS, "ack-role-account-map", {"data": {"a": "1"}}, "ack-system"
        )
        await sink.until(lambda: len(sink.watch_events()) == 2)
        assert {e.key.name for e in sink.watch_events()} == {"ack-role-account-map"}


async def test_dropped_watches_miss_nothing(kube: KubeClient, kube_server: KubeApiServer) -> None:
    written: dict[ObjectKey, list[str]] = {}

    def record(obj: RawObject) -> None:
        written.setdefault(ObjectKey.of(obj), []).append(resource_version_of(obj))

    async with reflecting(kube) as (reflector, sink):

        async def writer() -> None:
            for round_ in range(8):
                for i in range(5):
                    name = f"b{i}"
                    if round_ == 0:
                        record(await kube.create(BUCKETS, bucket(name)))
                    else:
                        patch = {"metadata": {"labels": {"round": str(round_)}}}
                        record(await kube.merge_patch(BUCKETS, name, patch, "team-a"))
                await anyio.sleep(0.01)

        async def dropper() -> None:
            for _ in range(6):
                await anyio.sleep(0.015)
                kube_server.drop_watches()

        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            tg.start_soon(dropper)
        await until_equal(sink, kube)

        for key, versions in written.items():
            seen = [version for _, version in sink.versions_of(key)]
            assert seen == versions, f"{key}: every write seen once, in order"
        assert reflector.lists == 1, "resumed from the last resourceVersion, never re-listed"
        assert kube_server.request_counts()["watch"] > 1, "the watch was dropped and resumed"


async def test_expired_history_relists_and_publishes_the_difference(
    kube: KubeClient, kube_server: KubeApiServer
) -> None:
    for name in ("unchanged", "modified", "deleted"):
        await kube.create(BUCKETS, bucket(name))
    async with reflecting(kube) as (reflector, sink):
        before = len(sink.watch_events())
        # Keep the reflector from reconnecting while we write behind its back.
        kube_server.inject_errors(verbs=["watch"], status=500, seconds=30)
        kube_server.drop_watches()
        await eventually(lambda: not reflector.connected)
        await kube.delete(BUCKETS, "deleted", "team-a")
        modified = await kube.merge_patch(
            BUCKETS, "modified", {"metadata": {"labels": {"v": "2"}}}, "team-a"
        )
        added = await kube.create(BUCKETS, bucket("added"))
        kube_server.compact()
        kube_server.clear_faults()

        await until_equal(sink, kube)
        after = [(e.type, e.key.name) for e in sink.watch_events()[before:]]
        assert after == [
            (EventType.DELETED, "deleted"),
            (EventType.MODIFIED, "modified"),
            (EventType.ADDED, "added"),
        ]
        assert sink.view[ObjectKey("team-a", "modified")] == modified["metadata"]["resourceVersion"]
        assert sink.view[ObjectKey("team-a", "added")] == added["metadata"]["resourceVersion"]
        assert reflector.lists == 2
        assert sink.events.count(SyncedEvent(BUCKET)) == 1


async def test_server_restart_resumes(kube: KubeClient, kube_server: KubeApiServer) -> None:
    await kube.create(BUCKETS, bucket("before"))
    async with reflecting(kube) as (reflector, sink):
        await kube_server.stop()
        await eventually(lambda: not reflector.connected)
        await anyio.sleep(0.3)  # a few reconnect attempts fail meanwhile
        assert not reflector.connected
        await kube_server.start()
        await kube.create(BUCKETS, bucket("after"))
        await kube.merge_patch(BUCKETS, "before", {"metadata": {"labels": {"v": "2"}}}, "team-a")
        await until_equal(sink, kube)
        assert {k.name for k in sink.view} == {"before", "after"}
        await eventually(lambda: reflector.connected)


async def test_list_failures_delay_sync_but_do_not_stop_it(
    kube: KubeClient, kube_server: KubeApiServer
) -> None:
    await kube.create(BUCKETS, bucket("x"))
    kube_server.inject_errors(verbs=["list"], status=503, count=2)
    async with reflecting(kube) as (_, sink):
        assert set(sink.view) == {ObjectKey("team-a", "x")}


async def test_bookmarks_move_the_resource_version(kube: KubeClient) -> None:
    async with reflecting(kube, namespace="team-b") as (reflector, sink):
        start = reflector.resource_version
        # Writes elsewhere advance the server's version; bookmarks carry it to the reflector.
        await kube.create(BUCKETS, bucket("elsewhere", "team-a"))
        await eventually(lambda: reflector.resource_version != start)
        assert sink.watch_events() == []


async def test_churn_with_a_short_history_converges(tmp_path: Path) -> None:
    """Writes, deletes and dropped watches against a server that remembers only 8 changes:
    some resumes hit 410 and re-list; whatever the mix, the view ends equal to the server's."""
    async with serve_kubeapi(history_size=8, bookmark_interval=0.05) as server:
        server.install_crd(BUCKET_CRD)
        path = tmp_path / "kubeconfig"
        server.write_kubeconfig(path)
        async with await KubeClient.from_kubeconfig(str(path)) as kube:
            await kube.create(NAMESPACES, {"metadata": {"name": "team-a"}})
            async with reflecting(kube) as (reflector, sink):

                async def writer() -> None:
                    for i in range(60):
                        name = f"b{i % 7}"
                        try:
                            if i % 5 == 4:
                                await kube.delete(BUCKETS, name, "team-a")
                            else:
                                await kube.create(BUCKETS, bucket(name))
                        except KubeApiError as error:
                            assert error.not_found or error.already_exists
                            patch = {"metadata": {"labels": {"i": str(i)}}}
                            with contextlib.suppress(KubeApiError):
                                await kube.merge_patch(BUCKETS, name, patch, "team-a")
                        if i % 3 == 0:
                            await anyio.sleep(0.005)

                async def dropper() -> None:
                    # Keep the reflector out while more changes than the history holds
                    # happen: its resume must get 410 and re-list.
                    await kube.create(BUCKETS, bucket("filler"))
                    for round_ in range(4):
                        await anyio.sleep(0.01)
                        server.inject_errors(verbs=["watch"], status=503)
                        server.drop_watches()
                        for i in range(10):
                            patch = {"metadata": {"labels": {"n": f"{round_}-{i}"}}}
                            await kube.merge_patch(BUCKETS, "filler", patch, "team-a")
                        server.clear_faults()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(writer)
                    tg.start_soon(dropper)
                await until_equal(sink, kube)
                assert reflector.lists >= 2, "history expired at least once"
