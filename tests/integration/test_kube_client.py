"""KubeClient against the embedded API server: every verb, paging, errors and watch streams."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import orjson
import pytest
from aiohttp import web
from kubernetes_asyncio.config import incluster_config

from carm.events import RawObject
from carm.kube.client import (
    BUCKETS,
    CONFIG_MAPS,
    NAMESPACES,
    KubeApiError,
    KubeClient,
    KubeConnectionError,
)
from carm.sandbox.kubeapi.server import KubeApiServer
from tests.pki import Pki, client_common_name, serve_https


def config_map(name: str, namespace: str = "team-a", **data: str) -> RawObject:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def bucket(name: str, namespace: str = "team-a") -> RawObject:
    return {
        "apiVersion": "s3.services.k8s.aws/v1alpha1",
        "kind": "Bucket",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"name": f"{namespace}-{name}"},
    }


async def test_get_and_not_found(kube: KubeClient) -> None:
    namespace = await kube.get(NAMESPACES, "team-a")
    assert namespace["metadata"]["name"] == "team-a"
    assert namespace["metadata"]["resourceVersion"]

    with pytest.raises(KubeApiError) as caught:
        await kube.get(CONFIG_MAPS, "missing", "team-a")
    error = caught.value
    assert error.not_found and error.status == 404 and error.reason == "NotFound"
    assert not error.retryable
    assert "missing" in error.message


async def test_create_then_create_again_conflicts(kube: KubeClient) -> None:
    created = await kube.create(CONFIG_MAPS, config_map("settings", a="1"))
    assert created["metadata"]["uid"]
    assert created["data"] == {"a": "1"}
    with pytest.raises(KubeApiError) as caught:
        await kube.create(CONFIG_MAPS, config_map("settings", a="2"))
    assert caught.value.conflict and caught.value.already_exists


async def test_list_pages_and_list_all(kube: KubeClient) -> None:
    for i in range(7):
        await kube.create(CONFIG_MAPS, config_map(f"cm-{i}"))
    await kube.create(CONFIG_MAPS, config_map("elsewhere", namespace="team-b"))

    first = await kube.list(CONFIG_MAPS, "team-a", limit=3)
    assert len(first["items"]) == 3
    token = first["metadata"]["continue"]
    assert token
    second = await kube.list(CONFIG_MAPS, "team-a", limit=3, continue_=token)
    assert {i["metadata"]["name"] for i in first["items"]}.isdisjoint(
        i["metadata"]["name"] for i in second["items"]
    )

    items, version = await kube.list_all(CONFIG_MAPS, "team-a", page_size=3)
    assert sorted(i["metadata"]["name"] for i in items) == [f"cm-{i}" for i in range(7)]
    assert version

    everywhere, _ = await kube.list_all(CONFIG_MAPS, page_size=2)
    assert {"elsewhere", "cm-0"} <= {i["metadata"]["name"] for i in everywhere}

    selected, _ = await kube.list_all(CONFIG_MAPS, field_selector="metadata.name=cm-3")
    assert [i["metadata"]["name"] for i in selected] == ["cm-3"]


async def test_replace_is_a_compare_and_swap(kube: KubeClient) -> None:
    created = await kube.create(CONFIG_MAPS, config_map("cas", v="1"))
    updated = await kube.replace(CONFIG_MAPS, {**created, "data": {"v": "2"}})
    assert updated["data"] == {"v": "2"}
    assert updated["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]

    with pytest.raises(KubeApiError) as caught:
        await kube.replace(CONFIG_MAPS, {**created, "data": {"v": "stale"}})
    assert caught.value.conflict and not caught.value.already_exists
    assert (await kube.get(CONFIG_MAPS, "cas", "team-a"))["data"] == {"v": "2"}


async def test_merge_patch_and_status_subresource(kube: KubeClient) -> None:
    await kube.create(BUCKETS, bucket("logs"))
    patched = await kube.merge_patch(
        BUCKETS, "logs", {"metadata": {"labels": {"team": "a"}}}, "team-a"
    )
    assert patched["metadata"]["labels"] == {"team": "a"}

    status = {"conditions": [{"type": "Ready", "status": "True"}]}
    with_status = await kube.merge_patch(
        BUCKETS,
        "logs",
        {"status": status, "spec": {"name": "ignored-on-status"}},
        "team-a",
        subresource="status",
    )
    assert with_status["status"] == status
    assert with_status["spec"]["name"] == "team-a-logs", "a status write leaves the spec alone"
    assert with_status["metadata"]["generation"] == patched["metadata"]["generation"]


async def test_json_patch_and_finalized_delete(kube: KubeClient) -> None:
    obj = bucket("held")
    obj["metadata"]["finalizers"] = ["example.com/keep", "finalizers.s3.services.k8s.aws/Bucket"]
    created = await kube.create(BUCKETS, obj)

    deleting = await kube.delete(BUCKETS, "held", "team-a")
    assert deleting["metadata"]["deletionTimestamp"], "finalizers hold the object"

    # Remove one finalizer by index, guarded by the resourceVersion it was read at.
    stale = created["metadata"]["resourceVersion"]
    with pytest.raises(KubeApiError) as caught:
        await kube.json_patch(
            BUCKETS,
            "held",
            [
                {"op": "test", "path": "/metadata/resourceVersion", "value": stale},
                {"op": "remove", "path": "/metadata/finalizers/0"},
            ],
            "team-a",
        )
    assert caught.value.status in (409, 422)
    current = deleting["metadata"]["resourceVersion"]
    remaining = await kube.json_patch(
        BUCKETS,
        "held",
        [
            {"op": "test", "path": "/metadata/resourceVersion", "value": current},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ],
        "team-a",
    )
    assert remaining["metadata"]["finalizers"] == ["finalizers.s3.services.k8s.aws/Bucket"]

    await kube.merge_patch(BUCKETS, "held", {"metadata": {"finalizers": None}}, "team-a")
    with pytest.raises(KubeApiError) as caught:
        await kube.get(BUCKETS, "held", "team-a")
    assert caught.value.not_found


async def test_delete_then_get_is_not_found(kube: KubeClient) -> None:
    await kube.create(CONFIG_MAPS, config_map("short-lived"))
    await kube.delete(CONFIG_MAPS, "short-lived", "team-a")
    with pytest.raises(KubeApiError) as caught:
        await kube.delete(CONFIG_MAPS, "short-lived", "team-a")
    assert caught.value.not_found


async def test_watch_streams_changes_after_a_version(kube: KubeClient) -> None:
    _, version = await kube.list_all(CONFIG_MAPS, "team-a")
    seen: list[tuple[str, str]] = []
    async with kube.watch(
        CONFIG_MAPS, "team-a", resource_version=version, timeout_seconds=5
    ) as events:
        await kube.create(CONFIG_MAPS, config_map("w", v="1"))
        await kube.merge_patch(CONFIG_MAPS, "w", {"data": {"v": "2"}}, "team-a")
        await kube.delete(CONFIG_MAPS, "w", "team-a")
        with anyio.fail_after(5):
            async for type_, obj in events:
                if type_ != "BOOKMARK":
                    seen.append((type_, obj["data"]["v"]))
                if type_ == "DELETED":
                    break
    assert seen == [("ADDED", "1"), ("MODIFIED", "2"), ("DELETED", "2")]


async def test_watch_carries_events_larger_than_a_read_chunk(kube: KubeClient) -> None:
    _, version = await kube.list_all(CONFIG_MAPS, "team-a")
    big = "x" * (900 * 1024)
    async with kube.watch(CONFIG_MAPS, "team-a", resource_version=version) as events:
        await kube.create(CONFIG_MAPS, config_map("big", payload=big))
        with anyio.fail_after(5):
            async for type_, obj in events:
                if type_ == "ADDED":
                    assert obj["data"]["payload"] == big
                    break


async def test_watch_ends_cleanly_at_its_timeout(kube: KubeClient) -> None:
    _, version = await kube.list_all(CONFIG_MAPS, "team-a")
    with anyio.fail_after(5):
        async with kube.watch(
            CONFIG_MAPS, "team-a", resource_version=version, timeout_seconds=1
        ) as events:
            types = {type_ async for type_, _ in events}
    assert types <= {"BOOKMARK"}


async def test_watch_from_a_compacted_version_is_gone(
    kube: KubeClient, kube_server: KubeApiServer
) -> None:
    _, version = await kube.list_all(CONFIG_MAPS, "team-a")
    await kube.create(CONFIG_MAPS, config_map("after"))
    kube_server.compact()
    # The server may refuse the request outright or send an ERROR event first thing.
    with pytest.raises(KubeApiError) as caught, anyio.fail_after(5):
        async with kube.watch(CONFIG_MAPS, "team-a", resource_version=version) as events:
            async for _ in events:
                pass
    assert caught.value.gone


async def test_server_errors_are_retryable_and_counted(
    kube_server: KubeApiServer, tmp_path: Path
) -> None:
    path = tmp_path / "kubeconfig"
    kube_server.write_kubeconfig(path)
    verbs: Counter[tuple[str, int | None]] = Counter()
    client = await KubeClient.from_kubeconfig(
        str(path), on_request=lambda verb, status: verbs.update([(verb, status)])
    )
    async with client:
        kube_server.inject_errors(verbs=["list"], status=500, count=1)
        with pytest.raises(KubeApiError) as caught:
            await client.list(NAMESPACES)
        assert caught.value.status == 500 and caught.value.retryable
        await client.list(NAMESPACES)

        kube_server.inject_errors(verbs=["get"], status=429, count=1)
        with pytest.raises(KubeApiError) as caught:
            await client.get(NAMESPACES, "default")
        assert caught.value.status == 429 and caught.value.retryable
        await client.create(NAMESPACES, {"metadata": {"name": "counted"}})
    assert verbs[("list", 500)] == 1
    assert verbs[("list", 200)] == 1
    assert verbs[("get", 429)] == 1
    assert verbs[("create", 201)] == 1


async def test_a_stopped_server_is_a_connection_error(
    kube: KubeClient, kube_server: KubeApiServer
) -> None:
    await kube_server.stop()
    with pytest.raises(KubeConnectionError) as caught:
        await kube.get(NAMESPACES, "team-a")
    assert caught.value.retryable
    await kube_server.start()
    assert (await kube.get(NAMESPACES, "team-a"))["metadata"]["name"] == "team-a"


async def test_from_env_reads_kubeconfig_variable(
    kube_server: KubeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "kubeconfig"
    kube_server.write_kubeconfig(path)
    monkeypatch.setenv("KUBECONFIG", str(path))
    client = await KubeClient.from_env(None)
    async with client:
        assert client.base_url == kube_server.url.rstrip("/")
        assert (await client.get(NAMESPACES, "default"))["metadata"]["name"] == "default"


async def test_closed_client_refuses_requests(kube: KubeClient) -> None:
    await kube.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await kube.get(NAMESPACES, "team-a")
    await kube.aclose()  # closing twice is harmless


# A stub server for what the embedded server does not check: credentials.


async def test_token_is_sent_and_reloaded_after_a_401(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first")
    accepted = ["first"]
    seen: list[str | None] = []

    async def get_namespace(request: web.Request) -> web.Response:
        authorization = request.headers.get("Authorization")
        seen.append(authorization)
        if authorization != f"Bearer {accepted[0]}":
            status = {"kind": "Status", "code": 401, "reason": "Unauthorized", "message": "no"}
            return web.json_response(status, status=401)
        return web.json_response({"kind": "Namespace", "metadata": {"name": "x"}})

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{name}", get_namespace)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stub", "cluster": {"server": f"http://{host}:{port}"}}],
            "users": [{"name": "u", "user": {"tokenFile": str(token_file)}}],
            "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "u"}}],
            "current-context": "stub",
        }
        path = tmp_path / "kubeconfig"
        path.write_bytes(orjson.dumps(kubeconfig))
        async with await KubeClient.from_kubeconfig(str(path)) as client:
            await client.get(NAMESPACES, "x")
            # The token rotates: the next request is refused, the client reloads and retries.
            token_file.write_text("second")
            accepted[0] = "second"
            await client.get(NAMESPACES, "x")
            # Credentials nobody accepts: the 401 reaches the caller after one retry.
            accepted[0] = "third"
            with pytest.raises(KubeApiError) as caught:
                await client.get(NAMESPACES, "x")
            assert caught.value.status == 401 and not caught.value.retryable
    finally:
        await runner.cleanup()
    assert seen == [
        "Bearer first",
        "Bearer first",
        "Bearer second",
        "Bearer second",
        "Bearer second",
    ]


# TLS: a stub HTTPS server with its own CA, reached in-cluster style and through a kubeconfig
# with a client certificate.


@asynccontextmanager
async def https_stub(
    pki: Pki, accepted_token: list[str] | None, *, require_client_cert: bool = False
) -> AsyncIterator[tuple[int, list[str | None]]]:
    """GET /api/v1/namespaces/{name} over TLS; checks the bearer token when one is given."""
    seen: list[str | None] = []

    async def get_namespace(request: web.Request) -> web.Response:
        authorization = request.headers.get("Authorization")
        seen.append(authorization)
        if accepted_token is not None and authorization != f"Bearer {accepted_token[0]}":
            status = {"kind": "Status", "code": 401, "reason": "Unauthorized", "message": "no"}
            return web.json_response(status, status=401)
        return web.json_response(
            {
                "kind": "Namespace",
                "metadata": {"name": request.match_info["name"]},
                "commonName": client_common_name(request),
            }
        )

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{name}", get_namespace)
    async with serve_https(app, pki, require_client_cert=require_client_cert) as port:
        yield port, seen


async def test_in_cluster_verifies_the_ca_and_reloads_a_rotated_token(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token_file))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(pki.ca))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    accepted = ["first"]
    async with https_stub(pki, accepted) as (port, seen):
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(port))
        async with await KubeClient.from_env(None) as client:
            assert client.base_url == f"https://127.0.0.1:{port}"
            assert (await client.get(NAMESPACES, "a"))["metadata"]["name"] == "a"
            token_file.write_text("second")
            accepted[0] = "second"
            await client.get(NAMESPACES, "b")
    assert seen == ["Bearer first", "Bearer first", "Bearer second"]


async def test_kubeconfig_client_certificate_and_untrusted_server(pki: Pki, tmp_path: Path) -> None:
    async with https_stub(pki, None, require_client_cert=True) as (port, _):

        def kubeconfig(name: str, cluster: dict[str, object]) -> str:
            user = {"client-certificate": str(pki.client_cert), "client-key": str(pki.client_key)}
            config = {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
            path = tmp_path / name
            path.write_bytes(orjson.dumps(config))
            return str(path)

        server = f"https://127.0.0.1:{port}"
        trusted = kubeconfig("trusted", {"server": server, "certificate-authority": str(pki.ca)})
        async with await KubeClient.from_kubeconfig(trusted) as client:
            answer = await client.get(NAMESPACES, "a")
            assert answer["commonName"] == "carm", "the server saw our client certificate"

        untrusted = kubeconfig("untrusted", {"server": server})
        async with await KubeClient.from_kubeconfig(untrusted) as client:
            with pytest.raises(KubeConnectionError, match="certificate"):
                await client.get(NAMESPACES, "a")
