"""Built-in kinds through kubernetes_asyncio: metadata, create/get/update/patch/delete, errors."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import orjson
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from carm.sandbox.kubeapi.server import KubeApiServer

from .conftest import coordination_v1, core_v1, status_of


def config_map(name: str, namespace: str = "default", **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


async def test_initial_namespaces_are_active(api: client.ApiClient) -> None:
    core = core_v1(api)
    names = [ns.metadata.name for ns in (await core.list_namespace()).items]
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= set(names)
    default = await core.read_namespace("default")
    assert default.status.phase == "Active"
    assert default.spec.finalizers == ["kubernetes"]
    assert default.metadata.labels == {"kubernetes.io/metadata.name": "default"}


async def test_create_sets_server_metadata(api: client.ApiClient) -> None:
    core = core_v1(api)
    first = await core.create_namespaced_config_map("default", config_map("one", a="1"))
    second = await core.create_namespaced_config_map("default", config_map("two"))

    assert re.fullmatch(r"[0-9a-f-]{36}", first.metadata.uid)
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    assert first.metadata.generation is None  # ConfigMaps have none, as upstream
    assert first.data == {"a": "1"}
    # RFC 3339 with seconds precision, as the apiserver writes it.
    raw = await core.read_namespaced_config_map("one", "default", _preload_content=False)
    stamp = orjson.loads(await raw.read())["metadata"]["creationTimestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)


async def test_generate_name_appends_a_random_suffix(api: client.ApiClient) -> None:
    core = core_v1(api)
    body = {"metadata": {"generateName": "job-"}, "data": {}}
    made = {
        (await core.create_namespaced_config_map("default", body)).metadata.name for _ in range(5)
    }
    assert len(made) == 5
    assert all(re.fullmatch(r"job-[a-z0-9]{5}", name) for name in made)


async def test_create_conflicts_and_missing_namespace(api: client.ApiClient) -> None:
    core = core_v1(api)
    await core.create_namespaced_config_map("default", config_map("taken"))

    with pytest.raises(ApiException) as exists:
        await core.create_namespaced_config_map("default", config_map("taken"))
    with pytest.raises(ApiException) as no_namespace:
        await core.create_namespaced_config_map("nowhere", config_map("x", "nowhere"))

    assert exists.value.status == 409
    assert status_of(exists.value)["reason"] == "AlreadyExists"
    assert status_of(exists.value)["message"] == 'configmaps "taken" already exists'
    assert no_namespace.value.status == 404
    assert status_of(no_namespace.value)["message"] == 'namespaces "nowhere" not found'


async def test_get_missing_is_a_not_found_status(api: client.ApiClient) -> None:
    core = core_v1(api)
    with pytest.raises(ApiException) as caught:
        await core.read_namespaced_config_map("ghost", "default")
    status = status_of(caught.value)
    assert caught.value.status == 404
    assert status == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'configmaps "ghost" not found',
        "reason": "NotFound",
        "details": {"name": "ghost", "kind": "configmaps"},
        "code": 404,
    }


async def test_update_with_stale_version_conflicts(api: client.ApiClient) -> None:
    core = core_v1(api)
    created = await core.create_namespaced_config_map("default", config_map("cm", a="1"))
    stale = created.metadata.resource_version
    fresh = config_map("cm", a="2")
    fresh["metadata"]["resourceVersion"] = stale
    updated = await core.replace_namespaced_config_map("cm", "default", fresh)

    with pytest.raises(ApiException) as caught:
        await core.replace_namespaced_config_map("cm", "default", fresh)  # `stale` again

    assert updated.data == {"a": "2"}
    assert caught.value.status == 409
    status = status_of(caught.value)
    assert status["reason"] == "Conflict"
    assert status["message"] == (
        'Operation cannot be fulfilled on configmaps "cm": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )


async def test_update_without_version_is_unconditional(api: client.ApiClient) -> None:
    core = core_v1(api)
    await core.create_namespaced_config_map("default", config_map("cm", a="1"))
    replaced = await core.replace_namespaced_config_map("cm", "default", config_map("cm", a="3"))
    assert replaced.data == {"a": "3"}


async def test_update_of_missing_object_is_not_found(api: client.ApiClient) -> None:
    core = core_v1(api)
    with pytest.raises(ApiException) as caught:
        await core.replace_namespaced_config_map("absent", "default", config_map("absent"))
    assert caught.value.status == 404


async def test_no_op_writes_keep_the_resource_version(
    api: client.ApiClient, kubeapi: KubeApiServer
) -> None:
    core = core_v1(api)
    created = await core.create_namespaced_config_map("default", config_map("same", a="1"))
    before = kubeapi.store.resource_version

    replaced = await core.replace_namespaced_config_map(
        "same", "default", config_map("same", a="1")
    )
    patched = await core.patch_namespaced_config_map(
        "same", "default", {"data": {"a": "1"}}, _content_type="application/merge-patch+json"
    )

    assert replaced.metadata.resource_version == created.metadata.resource_version
    assert patched.metadata.resource_version == created.metadata.resource_version
    assert kubeapi.store.resource_version == before


async def test_patch_kinds_on_builtins(api: client.ApiClient) -> None:
    core = core_v1(api)
    await core.create_namespaced_config_map("default", config_map("p", a="1", b="2"))

    merged = await core.patch_namespaced_config_map(
        "p",
        "default",
        {"data": {"a": None, "c": "3"}},
        _content_type="application/merge-patch+json",
    )
    json_patched = await core.patch_namespaced_config_map(
        "p",
        "default",
        [{"op": "replace", "path": "/data/b", "value": "20"}],
        _content_type="application/json-patch+json",
    )
    strategic = await core.patch_namespaced_config_map(
        "p",
        "default",
        {"metadata": {"finalizers": ["x/y"]}, "data": {"d": "4"}},
        _content_type="application/strategic-merge-patch+json",
    )

    assert merged.data == {"b": "2", "c": "3"}
    assert json_patched.data == {"b": "20", "c": "3"}
    assert strategic.data == {"b": "20", "c": "3", "d": "4"}
    assert strategic.metadata.finalizers == ["x/y"]


async def test_patch_of_missing_object_is_not_found(api: client.ApiClient) -> None:
    core = core_v1(api)
    with pytest.raises(ApiException) as caught:
        await core.patch_namespaced_config_map(
            "absent", "default", {"data": {}}, _content_type="application/merge-patch+json"
        )
    assert caught.value.status == 404


async def test_secret_string_data_folds_into_base64_data(api: client.ApiClient) -> None:
    core = core_v1(api)
    body = {
        "metadata": {"name": "creds"},
        "data": {"kept": "a2VwdA=="},
        "stringData": {"password": "hunter2"},
    }
    secret = await core.create_namespaced_secret("default", body)
    assert secret.data == {"kept": "a2VwdA==", "password": "aHVudGVyMg=="}
    assert secret.string_data is None
    assert secret.type == "Opaque"


async def test_delete_answers_a_success_status_then_not_found(api: client.ApiClient) -> None:
    core = core_v1(api)
    created = await core.create_namespaced_config_map("default", config_map("doomed"))
    deleted = await core.delete_namespaced_config_map("doomed", "default")

    assert deleted.status == "Success"
    assert deleted.details.name == "doomed"
    assert deleted.details.uid == created.metadata.uid
    with pytest.raises(ApiException) as caught:
        await core.delete_namespaced_config_map("doomed", "default")
    assert caught.value.status == 404


async def test_delete_preconditions(api: client.ApiClient) -> None:
    core = core_v1(api)
    await core.create_namespaced_config_map("default", config_map("guarded"))
    with pytest.raises(ApiException) as caught:
        await core.delete_namespaced_config_map(
            "guarded", "default", body={"preconditions": {"uid": "not-the-uid"}}
        )
    assert caught.value.status == 409
    assert (
        "Precondition failed: UID in precondition: not-the-uid"
        in status_of(caught.value)["message"]
    )


async def test_builtin_kinds_round_trip(api: client.ApiClient) -> None:
    core = core_v1(api)
    leases = coordination_v1(api)
    account = await core.create_namespaced_service_account(
        "default", {"metadata": {"name": "robot"}, "automountServiceAccountToken": False}
    )
    event = await core.create_namespaced_event(
        "default",
        {
            "metadata": {"name": "ev1"},
            "involvedObject": {"kind": "ConfigMap", "name": "x", "namespace": "default"},
            "reason": "Tested",
            "message": "it works",
            "type": "Normal",
        },
    )
    lease = await leases.create_namespaced_lease(
        "default",
        {
            "metadata": {"name": "leader"},
            "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15},
        },
    )
    lease.spec.holder_identity = "you"
    renewed = await leases.replace_namespaced_lease("leader", "default", lease)

    assert account.automount_service_account_token is False
    assert event.reason == "Tested"
    assert renewed.spec.holder_identity == "you"
    assert int(renewed.metadata.resource_version) > int(lease.metadata.resource_version)


async def test_wrong_types_in_builtins_are_bad_requests(http: aiohttp.ClientSession) -> None:
    async with http.post(
        "/api/v1/namespaces/default/configmaps",
        json={"metadata": {"name": "typed"}, "data": {"n": 1}},
    ) as response:
        status = await response.json()
    assert response.status == 400
    assert status["reason"] == "BadRequest"


async def test_namespace_mismatch_and_name_mismatch(http: aiohttp.ClientSession) -> None:
    async with http.post(
        "/api/v1/namespaces/default/configmaps",
        json={"metadata": {"name": "m", "namespace": "kube-system"}},
    ) as mismatch:
        assert mismatch.status == 400
    async with http.put(
        "/api/v1/namespaces/default/configmaps/a", json={"metadata": {"name": "b"}}
    ) as renamed:
        assert renamed.status == 400


async def test_invalid_names_are_rejected(api: client.ApiClient) -> None:
    core = core_v1(api)
    with pytest.raises(ApiException) as caught:
        await core.create_namespace({"metadata": {"name": "Not_Valid"}})
    status = status_of(caught.value)
    assert caught.value.status == 422
    assert status["details"]["causes"][0]["field"] == "metadata.name"
    assert status["message"].startswith('Namespace "Not_Valid" is invalid: metadata.name:')


async def test_immutable_config_maps_refuse_data_changes(api: client.ApiClient) -> None:
    core = core_v1(api)
    body = config_map("frozen", a="1")
    body["immutable"] = True
    await core.create_namespaced_config_map("default", body)
    with pytest.raises(ApiException) as caught:
        await core.patch_namespaced_config_map(
            "frozen", "default", {"data": {"a": "2"}}, _content_type="application/merge-patch+json"
        )
    assert caught.value.status == 422


async def test_unknown_paths_and_methods(http: aiohttp.ClientSession) -> None:
    async with http.get("/api/v1/widgets") as missing:
        assert missing.status == 404
        assert (await missing.json())["reason"] == "NotFound"
    async with http.post("/api/v1/namespaces/default/configmaps/x") as wrong:
        assert wrong.status == 405
        assert (await wrong.json())["reason"] == "MethodNotAllowed"
    async with http.get("/api/v1/namespaces/default/configmaps/x/status") as no_status:
        assert no_status.status == 404


async def test_dry_run_stores_nothing(http: aiohttp.ClientSession, kubeapi: KubeApiServer) -> None:
    before = kubeapi.store.resource_version
    async with http.post(
        "/api/v1/namespaces/default/configmaps?dryRun=All", json={"metadata": {"name": "dry"}}
    ) as response:
        assert response.status == 201
    async with http.get("/api/v1/namespaces/default/configmaps/dry") as lookup:
        assert lookup.status == 404
    assert kubeapi.store.resource_version == before


async def test_yaml_and_protobuf_bodies_are_understood(http: aiohttp.ClientSession) -> None:
    yaml_body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: b\n"
    async with http.post(
        "/api/v1/namespaces/default/configmaps",
        data=yaml_body,
        headers={"Content-Type": "application/yaml"},
    ) as response:
        assert response.status == 201
        assert (await response.json())["data"] == {"a": "b"}


@pytest.mark.parametrize(
    ("labels", "annotations"),
    [
        ({"ok": "bad value!"}, {}),
        ({"bad key!": "v"}, {}),
        ({"k": "v" * 64}, {}),
        ({}, {"bad key!": "anything goes in values"}),
    ],
)
async def test_label_and_annotation_rules(
    http: aiohttp.ClientSession, labels: dict[str, str], annotations: dict[str, str]
) -> None:
    body = {"metadata": {"name": "l", "labels": labels, "annotations": annotations}}
    async with http.post("/api/v1/namespaces/default/configmaps", json=body) as response:
        status = await response.json()
    assert response.status == 422
    assert status["details"]["causes"][0]["field"] in ("metadata.labels", "metadata.annotations")
