"""Fault injection (Python API and /_sandbox HTTP), request counts, restart with state kept."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from carm.clock import FakeClock
from carm.sandbox.kubeapi.faults import FaultInjector
from carm.sandbox.kubeapi.server import KubeApiServer

from .conftest import core_v1, status_of

CONFIG_MAPS = "/api/v1/namespaces/default/configmaps"


async def test_429_for_a_number_of_requests(
    http: aiohttp.ClientSession, kubeapi: KubeApiServer
) -> None:
    kubeapi.inject_errors(verbs=["create"], status=429, count=2)
    answers = []
    for index in range(3):
        async with http.post(CONFIG_MAPS, json={"metadata": {"name": f"c{index}"}}) as response:
            body = await response.json()
            answers.append(
                (response.status, response.headers.get("Retry-After"), body.get("reason"))
            )
    assert answers == [
        (429, "1", "TooManyRequests"),
        (429, "1", "TooManyRequests"),
        (201, None, None),
    ]


async def test_500_only_for_the_chosen_plural_and_verb(
    api: client.ApiClient, kubeapi: KubeApiServer
) -> None:
    core = core_v1(api)
    kubeapi.inject_errors(verbs=["list", "get"], status=500, plural="secrets")
    await core.list_namespaced_config_map("default")  # another plural: untouched
    await core.create_namespaced_secret("default", {"metadata": {"name": "s"}})  # another verb
    with pytest.raises(ApiException) as caught:
        await core.list_namespaced_secret("default")
    assert caught.value.status == 500
    assert status_of(caught.value)["message"] == "Internal error occurred: injected fault"
    kubeapi.clear_faults()
    await core.list_namespaced_secret("default")


def test_faults_for_a_time_window_on_a_fake_clock() -> None:
    clock = FakeClock()
    faults = FaultInjector(clock)
    faults.add(verbs=["watch"], status=503, seconds=2.0)
    first = faults.check("watch", "configmaps")
    assert first is not None and first.code == 503
    assert faults.check("list", "configmaps") is None
    clock._now += 2.0  # moving the fake clock without sleepers
    assert faults.check("watch", "configmaps") is None


def test_fault_arguments_are_checked() -> None:
    faults = FaultInjector()
    with pytest.raises(ValueError, match="unknown verbs"):
        faults.add(verbs=["fly"], status=500)
    with pytest.raises(ValueError, match="HTTP error code"):
        faults.add(verbs=["get"], status=200)


async def test_latency_slows_every_request(
    http: aiohttp.ClientSession, kubeapi: KubeApiServer
) -> None:
    kubeapi.set_latency(0.2)
    began = time.monotonic()
    async with http.get(CONFIG_MAPS) as response:
        assert response.status == 200
    assert time.monotonic() - began >= 0.2
    kubeapi.clear_faults()
    began = time.monotonic()
    async with http.get(CONFIG_MAPS) as response:
        assert response.status == 200
    assert time.monotonic() - began < 0.2


async def test_request_counts_by_verb(http: aiohttp.ClientSession, kubeapi: KubeApiServer) -> None:
    await http.post(CONFIG_MAPS, json={"metadata": {"name": "a"}})
    await http.get(f"{CONFIG_MAPS}/a")
    await http.get(CONFIG_MAPS)
    await http.patch(
        f"{CONFIG_MAPS}/a", data=b"{}", headers={"Content-Type": "application/merge-patch+json"}
    )
    await http.put(f"{CONFIG_MAPS}/a", json={"metadata": {"name": "a"}})
    await http.delete(f"{CONFIG_MAPS}/a")
    async with http.get(f"{CONFIG_MAPS}?watch=1&timeoutSeconds=1"):
        pass
    counts = kubeapi.request_counts()
    assert {
        verb: counts.get(verb)
        for verb in ("create", "get", "list", "patch", "update", "delete", "watch")
    } == {
        "create": 1,
        "get": 1,
        "list": 1,
        "patch": 1,
        "update": 1,
        "delete": 1,
        "watch": 1,
    }


async def test_admin_endpoints(http: aiohttp.ClientSession, kubeapi: KubeApiServer) -> None:
    async with http.post(
        "/_sandbox/faults", json={"verbs": ["get"], "status": 429, "count": 1}
    ) as added:
        assert added.status == 200
    async with http.get("/api/v1/namespaces/default") as throttled:
        assert throttled.status == 429
    async with http.get("/api/v1/namespaces/default") as fine:
        assert fine.status == 200
    async with http.post("/_sandbox/faults", json={"verbs": ["nope"], "status": 500}) as bad:
        assert bad.status == 400
    async with http.post("/_sandbox/latency", json={"seconds": 0.05}):
        assert kubeapi.faults.latency == 0.05
    async with http.delete("/_sandbox/faults"):
        assert kubeapi.faults.latency == 0
    async with http.get("/_sandbox/requests") as counts:
        assert (await counts.json())["get"] == 2
    first = await (await http.post(CONFIG_MAPS, json={"metadata": {"name": "a"}})).json()
    await http.post(CONFIG_MAPS, json={"metadata": {"name": "b"}})
    async with http.post("/_sandbox/compact"):
        pass
    since = first["metadata"]["resourceVersion"]
    async with http.get(f"{CONFIG_MAPS}?watch=1&resourceVersion={since}") as expired:
        assert b'"code":410' in await expired.read()
    async with http.get(f"{CONFIG_MAPS}?watch=1") as watching:
        async with http.post("/_sandbox/watches/drop"):
            pass
        await asyncio.wait_for(watching.read(), 5)


async def test_restart_keeps_state_and_port(kubeapi: KubeApiServer, api: client.ApiClient) -> None:
    core = core_v1(api)
    before = await core.create_namespaced_config_map("default", {"metadata": {"name": "kept"}})
    port = kubeapi.port

    await kubeapi.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session:
            await session.get(f"{kubeapi.url}/version")
    await kubeapi.start()

    after = await core.read_namespaced_config_map("kept", "default")
    newer = await core.create_namespaced_config_map("default", {"metadata": {"name": "newer"}})
    assert kubeapi.port == port
    assert after.metadata.uid == before.metadata.uid
    assert after.metadata.resource_version == before.metadata.resource_version
    assert int(newer.metadata.resource_version) > int(after.metadata.resource_version)


async def test_stop_ends_open_watches(http: aiohttp.ClientSession, kubeapi: KubeApiServer) -> None:
    async with http.get(f"{CONFIG_MAPS}?watch=1") as watching:
        await asyncio.sleep(0.05)
        began = time.monotonic()
        await kubeapi.stop()
        await asyncio.wait_for(watching.read(), 5)  # the stream ends, the client re-lists
    assert time.monotonic() - began < 1.5
    await kubeapi.start()


async def test_restart_over_http(http: aiohttp.ClientSession, kubeapi: KubeApiServer) -> None:
    await http.post(CONFIG_MAPS, json={"metadata": {"name": "survivor"}})
    async with http.post("/_sandbox/restart", json={"downtime": 0.2}) as response:
        assert response.status == 200
    await asyncio.sleep(0.1)
    async with aiohttp.ClientSession() as fresh:
        with pytest.raises(aiohttp.ClientConnectionError):
            await fresh.get(f"{kubeapi.url}/version")
        for _ in range(50):
            await asyncio.sleep(0.05)
            try:
                async with fresh.get(f"{kubeapi.url}{CONFIG_MAPS}/survivor") as back:
                    assert back.status == 200
                    break
            except aiohttp.ClientConnectionError:
                continue
        else:
            pytest.fail("the server did not come back")
