"""The controller's probes against the embedded API and moto: /readyz answers 503 (naming the
cache) until every cache has synced, /healthz answers 200 throughout, and a stop requested while
caches cannot sync ends the controller at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from carm.app import Controller
from carm.sandbox.kubeapi.server import KubeApiServer
from carm.sandbox.moto import MotoServer
from carm.settings import Settings


async def probe(http: aiohttp.ClientSession, addr: str, path: str) -> tuple[int, dict[str, Any]]:
    async with http.get(f"http://{addr}{path}") as response:
        return response.status, await response.json()


async def bound_health_address(controller: Controller) -> str:
    """The health server comes up first, before identity and caches."""
    with anyio.fail_after(10):
        while True:
            if controller.state.healthz_addr is not None:
                return controller.state.healthz_addr
            await anyio.sleep(0.01)


def controller_that_cannot_sync(
    kube_server: KubeApiServer,
    moto_server: MotoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    metrics_addr: str,
) -> Controller:
    """A controller whose Bucket cache cannot sync: listing Buckets answers 500."""
    for name, value in moto_server.controller_env().items():
        monkeypatch.setenv(name, value)
    kubeconfig = tmp_path / "kubeconfig"
    kube_server.write_kubeconfig(kubeconfig)
    kube_server.inject_errors(verbs=["list"], status=500, plural="buckets")
    return Controller(
        Settings(
            kubeconfig=str(kubeconfig),
            aws_region="us-east-1",
            aws_endpoint_url=moto_server.url,
            system_namespace="ack-system",
            metrics_addr=metrics_addr,
            healthz_addr="127.0.0.1:0",
        )
    )


async def test_readyz_is_503_until_the_caches_sync(
    kube_server: KubeApiServer,
    moto_server: MotoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    controller = controller_that_cannot_sync(
        kube_server, moto_server, tmp_path, monkeypatch, metrics_addr="127.0.0.1:0"
    )
    async with anyio.create_task_group() as group, aiohttp.ClientSession(trust_env=False) as http:
        group.start_soon(controller.run)
        group.cancel_scope.deadline = anyio.current_time() + 60
        addr = await bound_health_address(controller)
        for _ in range(5):  # it stays unready while the list keeps failing
            status, body = await probe(http, addr, "/readyz")
            assert status == 503 and "caches" in body["failing"], body
            assert (await probe(http, addr, "/healthz"))[0] == 200
            await anyio.sleep(0.1)
        assert "Bucket" in str(body["checks"]["caches"])
        assert not controller.state.ready.is_set()

        kube_server.clear_faults()
        with anyio.fail_after(15):
            while True:
                if (await probe(http, addr, "/readyz"))[0] == 200:
                    break
                await anyio.sleep(0.05)
        status, body = await probe(http, addr, "/readyz")
        assert body["failing"] == [] and set(body["checks"]) == {
            "caches",
            "aws-identity",
            "watches",
        }
        await controller.state.ready.wait()
        # A graceful stop: run() returns by itself, which ends the task group.
        controller.ops.request_stop()


async def test_a_stop_while_starting_ends_the_controller_at_once(
    kube_server: KubeApiServer,
    moto_server: MotoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    controller = controller_that_cannot_sync(
        kube_server, moto_server, tmp_path, monkeypatch, metrics_addr=""
    )
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(controller.run)
            await bound_health_address(controller)
            controller.ops.request_stop()
    assert not controller.state.ready.is_set()
