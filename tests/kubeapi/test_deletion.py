"""Deletion as the apiserver does it: finalizers, and Namespaces that empty themselves."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from carm.sandbox.kubeapi.server import KubeApiServer

from .conftest import GROUP, VERSION, core_v1, custom_objects, gadget, status_of

MERGE = "application/merge-patch+json"
FINALIZER = "test.carm.dev/hold"


def held_config_map(name: str, namespace: str = "default") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "finalizers": [FINALIZER]}}


async def test_finalizers_hold_a_deleted_object(
    api: client.ApiClient, kubeapi: KubeApiServer
) -> None:
    core = core_v1(api)
    created = await core.create_namespaced_config_map("default", held_config_map("held"))

    answer = await core.delete_namespaced_config_map("held", "default", _preload_content=False)
    marked: dict[str, Any] = orjson.loads(await answer.read())
    again = await core.delete_namespaced_config_map("held", "default", _preload_content=False)
    still: dict[str, Any] = orjson.loads(await again.read())

    assert answer.status == 200
    assert marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 0
    assert int(marked["metadata"]["resourceVersion"]) > int(created.metadata.resource_version)
    assert still["metadata"]["resourceVersion"] == marked["metadata"]["resourceVersion"]


async def test_removing_the_last_finalizer_deletes(api: client.ApiClient) -> None:
    core = core_v1(api)
    body = held_config_map("two")
    body["metadata"]["finalizers"].append("test.carm.dev/second")
    await core.create_namespaced_config_map("default", body)
    await core.delete_namespaced_config_map("two", "default")

    one_left = await core.patch_namespaced_config_map(
        "two",
        "default",
        [{"op": "remove", "path": "/metadata/finalizers/0"}],
        _content_type="application/json-patch+json",
    )
    current = await core.read_namespaced_config_map("two", "default")
    current.metadata.finalizers = []
    await core.replace_namespaced_config_map("two", "default", current)

    assert one_left.metadata.finalizers == ["test.carm.dev/second"]
    with pytest.raises(ApiException) as gone:
        await core.read_namespaced_config_map("two", "default")
    assert gone.value.status == 404


async def test_no_new_finalizers_while_deleting(api: client.ApiClient) -> None:
    core = core_v1(api)
    await core.create_namespaced_config_map("default", held_config_map("late"))
    await core.delete_namespaced_config_map("late", "default")
    with pytest.raises(ApiException) as caught:
        await core.patch_namespaced_config_map(
            "late",
            "default",
            {"metadata": {"finalizers": [FINALIZER, "another/one"]}},
            _content_type=MERGE,
        )
    status = status_of(caught.value)
    assert caught.value.status == 422
    assert status["details"]["causes"][0]["field"] == "metadata.finalizers"
    assert "no new finalizers can be added if the object is being deleted" in status["message"]


async def test_namespace_deletion_empties_then_removes_it(api: client.ApiClient) -> None:
    core = core_v1(api)
    await core.create_namespace({"metadata": {"name": "doomed"}})
    await core.create_namespaced_config_map("doomed", {"metadata": {"name": "a"}})
    await core.create_namespaced_secret("doomed", {"metadata": {"name": "b"}})

    answer = await core.delete_namespace("doomed", _preload_content=False)
    terminating: dict[str, Any] = orjson.loads(await answer.read())

    assert terminating["status"]["phase"] == "Terminating"
    assert terminating["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiException) as gone:
        await core.read_namespace("doomed")
    assert gone.value.status == 404
    assert (
        await core.list_config_map_for_all_namespaces(field_selector=("metadata.namespace=doomed"))
    ).items == []


async def test_finalized_object_keeps_its_namespace_terminating(
    api: client.ApiClient, crd: dict[str, Any]
) -> None:
    core = core_v1(api)
    custom = custom_objects(api)
    await core.create_namespace({"metadata": {"name": "sticky"}})
    body = gadget("held", "sticky")
    body["metadata"]["finalizers"] = [FINALIZER]
    await custom.create_namespaced_custom_object(GROUP, VERSION, "sticky", "gadgets", body)
    await core.create_namespaced_config_map("sticky", {"metadata": {"name": "plain"}})

    await core.delete_namespace("sticky")
    namespace = await core.read_namespace("sticky")
    held = await custom.get_namespaced_custom_object(GROUP, VERSION, "sticky", "gadgets", "held")
    with pytest.raises(ApiException) as refused:
        await core.create_namespaced_config_map("sticky", {"metadata": {"name": "new"}})
    with pytest.raises(ApiException) as plain:
        await core.read_namespaced_config_map("plain", "sticky")

    assert namespace.status.phase == "Terminating"
    assert held["metadata"]["deletionTimestamp"]
    assert plain.value.status == 404
    assert refused.value.status == 403
    assert status_of(refused.value)["message"] == (
        'configmaps "new" is forbidden: unable to create new content in namespace sticky '
        "because it is being terminated"
    )

    await custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        "sticky",
        "gadgets",
        "held",
        {"metadata": {"finalizers": None}},
        _content_type=MERGE,
    )
    with pytest.raises(ApiException) as gone:
        await core.read_namespace("sticky")
    assert gone.value.status == 404
