"""Watches: streams, resume, synthetic ADDED, bookmarks, 410, timeouts, selectors, drops."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from carm.sandbox.kubeapi.server import KubeApiServer
from carm.sandbox.kubeapi.storage import Change
from carm.sandbox.kubeapi.watch import Watcher

from .conftest import GADGET_CRD, GROUP, VERSION, core_v1, gadget

CONFIG_MAPS = "/api/v1/namespaces/default/configmaps"


class Stream:
    """Lines of one raw watch response, decoded."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.response.content.readline(), 5)
        assert line, "the watch ended"
        assert line.endswith(b"\n")
        event: dict[str, Any] = orjson.loads(line)
        return event

    async def next_change(self) -> dict[str, Any]:
        """The next event that is not a BOOKMARK."""
        while True:
            event = await self.next()
            if event["type"] != "BOOKMARK":
                return event

    async def ended(self) -> bool:
        rest = await asyncio.wait_for(self.response.content.read(), 5)
        return all(orjson.loads(line)["type"] == "BOOKMARK" for line in rest.splitlines() if line)


@asynccontextmanager
async def raw_watch(http: aiohttp.ClientSession, path: str) -> AsyncIterator[Stream]:
    async with http.get(path) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.headers.get("Transfer-Encoding") == "chunked"
        yield Stream(response)


async def create(http: aiohttp.ClientSession, name: str, **labels: str) -> dict[str, Any]:
    body = {"metadata": {"name": name, "labels": labels}}
    async with http.post(CONFIG_MAPS, json=body) as response:
        created: dict[str, Any] = await response.json()
    return created


async def patch(http: aiohttp.ClientSession, name: str, change: dict[str, Any]) -> None:
    async with http.patch(
        f"{CONFIG_MAPS}/{name}",
        data=orjson.dumps(change),
        headers={"Content-Type": "application/merge-patch+json"},
    ) as response:
        assert response.status == 200


async def test_kubernetes_asyncio_watch_sees_every_change(api: client.ApiClient) -> None:
    core = core_v1(api)
    listed = await core.list_namespaced_config_map("default")
    seen: list[tuple[str, str, str]] = []

    async def follow() -> None:
        async with watch.Watch() as stream:
            async for event in stream.stream(
                core.list_namespaced_config_map,
                "default",
                resource_version=listed.metadata.resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=5,
            ):
                obj = event["object"]
                seen.append((event["type"], obj.metadata.name, obj.metadata.resource_version))
                if event["type"] == "DELETED":
                    return

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.1)
    created = await core.create_namespaced_config_map("default", {"metadata": {"name": "w"}})
    modified = await core.patch_namespaced_config_map(
        "w", "default", {"data": {"a": "1"}}, _content_type="application/merge-patch+json"
    )
    await core.delete_namespaced_config_map("w", "default")
    await asyncio.wait_for(follower, 5)

    assert [kind for kind, _, _ in seen] == ["ADDED", "MODIFIED", "DELETED"]
    assert seen[0][2] == created.metadata.resource_version
    assert seen[1][2] == modified.metadata.resource_version
    assert int(seen[2][2]) > int(modified.metadata.resource_version)


@pytest.mark.parametrize("version", ["", "0"])
async def test_watch_from_now_starts_with_synthetic_added(
    http: aiohttp.ClientSession, version: str
) -> None:
    await create(http, "old-1")
    await create(http, "old-2")
    async with raw_watch(http, f"{CONFIG_MAPS}?watch=true&resourceVersion={version}") as stream:
        first = await stream.next_change()
        second = await stream.next_change()
        await create(http, "new")
        third = await stream.next_change()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in (first, second, third)] == [
        ("ADDED", "old-1"),
        ("ADDED", "old-2"),
        ("ADDED", "new"),
    ]
    assert third["object"]["kind"] == "ConfigMap"
    assert third["object"]["apiVersion"] == "v1"


@pytest.mark.parametrize("spelling", ["true", "True", "1"])
async def test_watch_flag_spellings(http: aiohttp.ClientSession, spelling: str) -> None:
    await create(http, "x")
    async with raw_watch(http, f"{CONFIG_MAPS}?watch={spelling}") as stream:
        assert (await stream.next_change())["type"] == "ADDED"


async def test_resume_replays_only_later_changes(http: aiohttp.ClientSession) -> None:
    first = await create(http, "a")
    await create(http, "b")
    await patch(http, "a", {"data": {"k": "v"}})
    since = first["metadata"]["resourceVersion"]
    async with raw_watch(http, f"{CONFIG_MAPS}?watch=1&resourceVersion={since}") as stream:
        replayed = [await stream.next_change(), await stream.next_change()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in replayed] == [
        ("ADDED", "b"),
        ("MODIFIED", "a"),
    ]


async def test_too_old_version_is_a_single_410_error_event(
    http: aiohttp.ClientSession, kubeapi: KubeApiServer
) -> None:
    first = await create(http, "a")
    await create(http, "b")
    kubeapi.compact()
    current = kubeapi.store.resource_version
    since = first["metadata"]["resourceVersion"]
    async with http.get(f"{CONFIG_MAPS}?watch=true&resourceVersion={since}") as response:
        lines = (await response.read()).splitlines()
    assert response.status == 200
    assert [orjson.loads(line) for line in lines] == [
        {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"too old resource version: {since} ({current})",
                "reason": "Expired",
                "code": 410,
            },
        }
    ]


async def test_history_is_bounded() -> None:
    from carm.sandbox.kubeapi.server import serve_kubeapi

    async with (
        serve_kubeapi(history_size=3) as server,
        aiohttp.ClientSession(base_url=server.url) as http,
    ):
        first = await create(http, "a")
        for name in "bcde":
            await create(http, name)
        recent = server.store.resource_version - 2
        async with http.get(
            f"{CONFIG_MAPS}?watch=1&resourceVersion={first['metadata']['resourceVersion']}"
        ) as expired:
            assert b'"code":410' in await expired.read()
        async with raw_watch(http, f"{CONFIG_MAPS}?watch=1&resourceVersion={recent}") as stream:
            assert (await stream.next_change())["object"]["metadata"]["name"] == "d"


async def test_kubernetes_asyncio_raises_410_on_expired(
    api: client.ApiClient, kubeapi: KubeApiServer
) -> None:
    core = core_v1(api)
    old = (await core.list_namespaced_config_map("default")).metadata.resource_version
    await core.create_namespaced_config_map("default", {"metadata": {"name": "x"}})
    kubeapi.compact()
    with pytest.raises(ApiException) as caught:
        async with watch.Watch() as stream:
            async for _ in stream.stream(
                core.list_namespaced_config_map, "default", resource_version=old
            ):
                pass
    assert caught.value.status == 410


async def test_bookmarks_carry_the_current_version(
    http: aiohttp.ClientSession, kubeapi: KubeApiServer
) -> None:
    await create(http, "a")
    async with raw_watch(
        http, f"{CONFIG_MAPS}?watch=true&allowWatchBookmarks=true&resourceVersion=0"
    ) as stream:
        added = await stream.next()
        await create(http, "b")  # a change elsewhere moves the version on
        events = [await stream.next() for _ in range(3)]
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert added["type"] == "ADDED"
    assert bookmarks
    assert bookmarks[-1] == {
        "type": "BOOKMARK",
        "object": {
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(kubeapi.store.resource_version)},
        },
    }


async def test_no_bookmarks_unless_asked(http: aiohttp.ClientSession) -> None:
    async with http.get(f"{CONFIG_MAPS}?watch=true&timeoutSeconds=1") as response:
        body = await response.read()
    assert b"BOOKMARK" not in body


async def test_timeout_seconds_ends_the_stream_cleanly(http: aiohttp.ClientSession) -> None:
    began = time.monotonic()
    async with raw_watch(http, f"{CONFIG_MAPS}?watch=true&timeoutSeconds=1") as stream:
        assert await stream.ended()
    assert 0.9 <= time.monotonic() - began < 3


async def test_label_selector_turns_moves_into_added_and_deleted(
    http: aiohttp.ClientSession,
) -> None:
    await create(http, "mover", app="other")
    async with raw_watch(http, f"{CONFIG_MAPS}?watch=1&labelSelector=app%3Dweb") as stream:
        await create(http, "ignored", app="db")
        await patch(http, "mover", {"metadata": {"labels": {"app": "web"}}})
        joined = await stream.next_change()
        await patch(http, "mover", {"data": {"x": "1"}})
        changed = await stream.next_change()
        await patch(http, "mover", {"metadata": {"labels": {"app": "gone"}}})
        left = await stream.next_change()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in (joined, changed, left)] == [
        ("ADDED", "mover"),
        ("MODIFIED", "mover"),
        ("DELETED", "mover"),
    ]


async def test_field_selector_watches_one_object(http: aiohttp.ClientSession) -> None:
    async with raw_watch(http, f"{CONFIG_MAPS}?watch=1&fieldSelector=metadata.name%3Dme") as stream:
        await create(http, "not-me")
        await create(http, "me")
        event = await stream.next_change()
    assert event["object"]["metadata"]["name"] == "me"


async def test_namespace_and_cluster_wide_watches(http: aiohttp.ClientSession) -> None:
    await http.post("/api/v1/namespaces", json={"metadata": {"name": "elsewhere"}})
    async with (
        raw_watch(http, f"{CONFIG_MAPS}?watch=1") as local,
        raw_watch(http, "/api/v1/configmaps?watch=1") as everywhere,
    ):
        await http.post(
            "/api/v1/namespaces/elsewhere/configmaps", json={"metadata": {"name": "far"}}
        )
        await create(http, "near")
        local_event = await local.next_change()
        far = await everywhere.next_change()
        near = await everywhere.next_change()
    assert local_event["object"]["metadata"]["name"] == "near"
    assert (far["object"]["metadata"]["namespace"], near["object"]["metadata"]["namespace"]) == (
        "elsewhere",
        "default",
    )


async def test_drop_watches_ends_every_stream(
    http: aiohttp.ClientSession, kubeapi: KubeApiServer
) -> None:
    now = kubeapi.store.resource_version
    async with (
        raw_watch(http, f"{CONFIG_MAPS}?watch=1") as one,
        raw_watch(http, f"/api/v1/namespaces?watch=1&resourceVersion={now}") as two,
    ):
        await asyncio.sleep(0.05)
        assert kubeapi.hub.count() == 2
        kubeapi.drop_watches()
        assert await one.ended()
        assert await two.ended()
    await asyncio.sleep(0.05)
    assert kubeapi.hub.count() == 0


async def test_client_disconnect_releases_the_watch(
    http: aiohttp.ClientSession, kubeapi: KubeApiServer
) -> None:
    async with http.get(f"{CONFIG_MAPS}?watch=1"):
        await asyncio.sleep(0.05)
        assert kubeapi.hub.count() == 1
    for _ in range(50):
        if kubeapi.hub.count() == 0:
            break
        await asyncio.sleep(0.02)
    assert kubeapi.hub.count() == 0


async def test_custom_resource_watch_ends_when_its_crd_goes(
    http: aiohttp.ClientSession, kubeapi: KubeApiServer
) -> None:
    kubeapi.install_crd(copy.deepcopy(GADGET_CRD))
    path = f"/apis/{GROUP}/{VERSION}/namespaces/default/gadgets"
    async with raw_watch(http, f"{path}?watch=1") as stream:
        await http.post(path, json=gadget("gee"))
        added = await stream.next_change()
        await http.delete(
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.{GROUP}"
        )
        deleted = await stream.next_change()
        assert await stream.ended()
    assert (added["type"], deleted["type"]) == ("ADDED", "DELETED")


def change(name: str, version: int) -> Change:
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": str(version)},
    }
    return Change(version, "ADDED", ("", "configmaps"), "default", obj, None)


async def test_a_slow_watcher_is_closed_not_waited_for() -> None:
    watcher = Watcher(("", "configmaps"), None, None, "v1", max_queue=2)
    for version in range(1, 4):
        watcher.offer(change(f"c{version}", version))  # never blocks
    assert watcher.closed and watcher.overflowed


async def test_each_event_is_serialised_once_for_all_watchers() -> None:
    event = change("shared", 7)
    one = Watcher(("", "configmaps"), None, None, "v1", max_queue=10)
    two = Watcher(("", "configmaps"), "default", None, "v1", max_queue=10)
    one.offer(event)
    two.offer(event)
    assert one.drain()[0] is two.drain()[0]


async def test_send_initial_events_ends_with_a_marked_bookmark(
    http: aiohttp.ClientSession, kubeapi: KubeApiServer
) -> None:
    await create(http, "existing")
    path = (
        f"{CONFIG_MAPS}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true"
        "&resourceVersionMatch=NotOlderThan"
    )
    async with raw_watch(http, path) as stream:
        added = await stream.next()
        end = await stream.next()
    assert (added["type"], added["object"]["metadata"]["name"]) == ("ADDED", "existing")
    assert end["type"] == "BOOKMARK"
    assert end["object"]["metadata"] == {
        "resourceVersion": str(kubeapi.store.resource_version),
        "annotations": {"k8s.io/initial-events-end": "true"},
    }


async def test_watch_in_tables_for_kubectl_get_watch(http: aiohttp.ClientSession) -> None:
    await create(http, "shown")
    headers = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    async with http.get(f"{CONFIG_MAPS}?watch=1", headers=headers) as response:
        stream = Stream(response)
        initial = await stream.next()
        await create(http, "later")
        live = await stream.next()
    for event in (initial, live):
        assert event["type"] == "ADDED"
        assert event["object"]["kind"] == "Table"
        assert [c["name"] for c in event["object"]["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert [initial["object"]["rows"][0]["cells"][0], live["object"]["rows"][0]["cells"][0]] == [
        "shown",
        "later",
    ]


async def test_a_client_that_stops_reading_does_not_stall_writers() -> None:
    from carm.sandbox.kubeapi.server import serve_kubeapi

    async with (
        serve_kubeapi(watch_queue_size=20) as server,
        aiohttp.ClientSession(base_url=server.url) as http,
    ):
        # A watch whose client never reads: once the socket buffers fill, its queue overflows.
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(f"GET {CONFIG_MAPS}?watch=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        await asyncio.sleep(0.05)
        assert server.hub.count() == 1
        payload = "x" * 200_000
        began = time.monotonic()
        for index in range(200):  # ~40 MB of events, far beyond the socket buffers
            async with http.post(
                CONFIG_MAPS, json={"metadata": {"name": f"big-{index}"}, "data": {"p": payload}}
            ) as response:
                assert response.status == 201
        assert time.monotonic() - began < 20
        assert server.hub.count() == 0  # the stuck watch was closed, not waited for
        writer.close()
        await writer.wait_closed()
