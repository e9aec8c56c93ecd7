"""CustomResourceDefinitions: serving, validation, pruning, fieldValidation, status split."""

from __future__ import annotations

import copy
from typing import Any

import aiohttp
import orjson
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from carm.sandbox.kubeapi.server import KubeApiServer

from .conftest import GADGET_CRD, GROUP, VERSION, custom_objects, extensions_v1, gadget, status_of

PATH = f"/apis/{GROUP}/{VERSION}/namespaces/default/gadgets"
MERGE = "application/merge-patch+json"


async def test_created_crd_is_established_and_served(api: client.ApiClient) -> None:
    extensions = extensions_v1(api)
    custom = custom_objects(api)
    created = await extensions.create_custom_resource_definition(copy.deepcopy(GADGET_CRD))

    conditions = {c.type: c.status for c in created.status.conditions}
    made = await custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", "gadgets", gadget("first")
    )
    listed = await custom.list_namespaced_custom_object(GROUP, VERSION, "default", "gadgets")

    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert created.status.accepted_names.kind == "Gadget"
    assert created.status.stored_versions == [VERSION]
    assert created.spec.names.list_kind == "GadgetList"
    assert "customresourcecleanup.apiextensions.k8s.io" in created.metadata.finalizers
    assert made["metadata"]["generation"] == 1
    assert listed["kind"] == "GadgetList"
    assert [item["metadata"]["name"] for item in listed["items"]] == ["first"]


async def test_crd_with_inconsistent_names_is_invalid(api: client.ApiClient) -> None:
    extensions = extensions_v1(api)
    broken = copy.deepcopy(GADGET_CRD)
    broken["metadata"]["name"] = "wrong.test.carm.dev"
    with pytest.raises(ApiException) as caught:
        await extensions.create_custom_resource_definition(broken)
    assert caught.value.status == 422
    assert status_of(caught.value)["details"]["causes"][0]["field"] == "metadata.name"


@pytest.mark.usefixtures("crd")
@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({}, "spec.name", "Required value"),
        (
            {"name": "ok-name", "size": "big"},
            "spec.size",
            'Invalid value: "string": spec.size in body must be of type integer: "string"',
        ),
        (
            {"name": "ok-name", "size": 11},
            "spec.size",
            "Invalid value: 11: spec.size in body should be less than or equal to 10",
        ),
        (
            {"name": "ok-name", "size": 0},
            "spec.size",
            "Invalid value: 0: spec.size in body should be greater than or equal to 1",
        ),
        (
            {"name": "ok-name", "mode": "medium"},
            "spec.mode",
            'Unsupported value: "medium": supported values: "fast", "slow"',
        ),
        (
            {"name": "UPPER"},
            "spec.name",
            "Invalid value: \"UPPER\": spec.name in body should match '^[a-z0-9-]+$'",
        ),
        (
            {"name": "ab"},
            "spec.name",
            'Invalid value: "ab": spec.name in body should be at least 3 chars long',
        ),
        ({"name": "a" * 21}, "spec.name", "Too long: may not be more than 20 bytes"),
        ({"name": "ok-name", "tags": [{"value": "v"}]}, "spec.tags[0].key", "Required value"),
        (
            {"name": "ok-name", "tags": [{"key": str(i)} for i in range(4)]},
            "spec.tags",
            "Too many: 4: must have at most 3 items",
        ),
        (
            {"name": "ok-name", "labels": {"a": 1}},
            "spec.labels.a",
            'Invalid value: "integer": spec.labels.a in body must be of type string: "integer"',
        ),
        (
            {"name": "ok-name", "size": None},
            "spec.size",
            'Invalid value: "null": spec.size in body must be of type integer: "null"',
        ),
    ],
)
async def test_schema_violations_are_422_with_field_paths(
    http: aiohttp.ClientSession, spec: dict[str, Any], field: str, message: str
) -> None:
    body = gadget("bad")
    body["spec"] = spec
    async with http.post(PATH, json=body) as response:
        status = await response.json()
    assert response.status == 422
    assert status["reason"] == "Invalid"
    assert status["details"]["kind"] == "Gadget"
    assert status["details"]["group"] == GROUP
    assert {"field": field, "message": message} in [
        {"field": c["field"], "message": c["message"]} for c in status["details"]["causes"]
    ]
    assert status["message"].startswith(f'Gadget.{GROUP} "bad" is invalid: ')


@pytest.mark.usefixtures("crd")
async def test_invalid_message_reads_like_the_apiserver(http: aiohttp.ClientSession) -> None:
    body = gadget("bad")
    del body["spec"]["name"]
    async with http.post(PATH, json=body) as response:
        status = await response.json()
    assert status["message"] == f'Gadget.{GROUP} "bad" is invalid: spec.name: Required value'


@pytest.mark.usefixtures("crd")
async def test_nullable_and_defaults(http: aiohttp.ClientSession) -> None:
    async with http.post(PATH, json=gadget("nulls", note=None)) as response:
        stored = await response.json()
    assert response.status == 201
    assert stored["spec"] == {"name": "nulls", "note": None, "enabled": True}


@pytest.mark.usefixtures("crd")
async def test_unknown_fields_are_pruned_silently_or_warned(http: aiohttp.ClientSession) -> None:
    body = gadget("pruned", extra={"free": {"form": 1}})
    body["spec"]["bogus"] = 1
    body["metadata"]["bogusMeta"] = 2
    body["topLevel"] = 3
    async with http.post(PATH, json=body) as response:
        stored = await response.json()
        warnings = response.headers.getall("Warning", [])
    assert response.status == 201
    assert "bogus" not in stored["spec"]
    assert "topLevel" not in stored and "bogusMeta" not in stored["metadata"]
    assert stored["spec"]["extra"] == {"free": {"form": 1}}  # preserve-unknown-fields
    assert sorted(warnings) == sorted(
        [
            '299 - "unknown field \\"metadata.bogusMeta\\""',
            '299 - "unknown field \\"spec.bogus\\""',
            '299 - "unknown field \\"topLevel\\""',
        ]
    )


@pytest.mark.usefixtures("crd")
async def test_ignore_drops_without_warning(http: aiohttp.ClientSession) -> None:
    body = gadget("quiet")
    body["spec"]["bogus"] = 1
    async with http.post(f"{PATH}?fieldValidation=Ignore", json=body) as response:
        assert response.status == 201
        assert "Warning" not in response.headers


@pytest.mark.usefixtures("crd")
async def test_strict_refuses_unknown_fields(http: aiohttp.ClientSession) -> None:
    body = gadget("strict")
    body["spec"]["foo"] = 1
    async with http.post(f"{PATH}?fieldValidation=Strict", json=body) as response:
        status = await response.json()
    assert response.status == 400
    assert status["reason"] == "BadRequest"
    assert status["message"] == (
        'Gadget in version "v1" cannot be handled as a Gadget: strict decoding error: '
        'unknown field "spec.foo"'
    )


async def test_strict_applies_to_builtin_kinds(http: aiohttp.ClientSession) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "s", "nope": 1},
        "data": {},
        "spec": {},
    }
    async with http.post(
        "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", json=body
    ) as response:
        status = await response.json()
    assert response.status == 400
    assert 'unknown field "metadata.nope"' in status["message"]
    assert 'unknown field "spec"' in status["message"]


@pytest.mark.usefixtures("crd")
async def test_status_subresource_splits_writes(api: client.ApiClient) -> None:
    custom = custom_objects(api)
    body = gadget("split", size=1)
    body["status"] = {"phase": "ignored on create"}
    created = await custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", "gadgets", body
    )
    with_status = await custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        "default",
        "gadgets",
        "split",
        {"status": {"phase": "Ready"}, "spec": {"size": 9}},
        _content_type=MERGE,
    )
    with_spec = await custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        "default",
        "gadgets",
        "split",
        {"status": {"phase": "Lost"}, "spec": {"size": 2}},
        _content_type=MERGE,
    )

    assert "status" not in created
    assert with_status["status"] == {"phase": "Ready"}
    assert with_status["spec"]["size"] == 1  # a /status write changes only status
    assert with_status["metadata"]["generation"] == 1  # and never bumps the generation
    assert with_spec["status"] == {"phase": "Ready"}  # a main write ignores status
    assert with_spec["spec"]["size"] == 2
    assert with_spec["metadata"]["generation"] == 2


@pytest.mark.usefixtures("crd")
async def test_generation_moves_only_with_spec(api: client.ApiClient) -> None:
    custom = custom_objects(api)
    await custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", "gadgets", gadget("gen")
    )
    labelled = await custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        "default",
        "gadgets",
        "gen",
        {"metadata": {"labels": {"a": "b"}}},
        _content_type=MERGE,
    )
    assert labelled["metadata"]["generation"] == 1
    replaced = await custom.replace_namespaced_custom_object(
        GROUP, VERSION, "default", "gadgets", "gen", {**labelled, "spec": {"name": "gen-2"}}
    )
    assert replaced["metadata"]["generation"] == 2


@pytest.mark.usefixtures("crd")
async def test_strategic_merge_is_unsupported_for_custom_resources(
    http: aiohttp.ClientSession,
) -> None:
    await http.post(PATH, json=gadget("smp"))
    async with http.patch(
        f"{PATH}/smp",
        data=b'{"spec": {"size": 2}}',
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    ) as response:
        status = await response.json()
    assert response.status == 415
    assert status["reason"] == "UnsupportedMediaType"


@pytest.mark.usefixtures("crd")
async def test_server_side_apply_creates_then_merges(http: aiohttp.ClientSession) -> None:
    headers = {"Content-Type": "application/apply-patch+yaml"}
    document = f"apiVersion: {GROUP}/{VERSION}\nkind: Gadget\nmetadata:\n  name: applied\n"
    async with http.patch(
        f"{PATH}/applied?fieldManager=me",
        data=document + "spec:\n  name: applied\n",
        headers=headers,
    ) as created:
        assert created.status == 201
    async with http.patch(
        f"{PATH}/applied?fieldManager=me",
        data=document + "spec:\n  name: applied\n  size: 3\n",
        headers=headers,
    ) as updated:
        assert (await updated.json())["spec"]["size"] == 3


async def test_cluster_scoped_custom_resources(api: client.ApiClient) -> None:
    extensions = extensions_v1(api)
    custom = custom_objects(api)
    crd = copy.deepcopy(GADGET_CRD)
    crd["metadata"]["name"] = f"globals.{GROUP}"
    crd["spec"]["scope"] = "Cluster"
    crd["spec"]["names"] = {"kind": "Global", "plural": "globals"}
    await extensions.create_custom_resource_definition(crd)

    made = await custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        "globals",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Global",
            "metadata": {"name": "g"},
            "spec": {"name": "ggg"},
        },
    )
    assert "namespace" not in made["metadata"]
    fetched = await custom.get_cluster_custom_object(GROUP, VERSION, "globals", "g")
    assert fetched["metadata"]["uid"] == made["metadata"]["uid"]


async def test_deleted_crd_stops_serving_and_forgets_objects(
    api: client.ApiClient, http: aiohttp.ClientSession, kubeapi: KubeApiServer
) -> None:
    extensions = extensions_v1(api)
    custom = custom_objects(api)
    await extensions.create_custom_resource_definition(copy.deepcopy(GADGET_CRD))
    await custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", "gadgets", gadget("orphan")
    )

    await extensions.delete_custom_resource_definition(f"gadgets.{GROUP}")

    async with http.get(PATH) as listing:
        assert listing.status == 404
    async with http.get(f"/apis/{GROUP}/{VERSION}") as discovery:
        assert discovery.status == 404
    with pytest.raises(ApiException):
        await extensions.read_custom_resource_definition(f"gadgets.{GROUP}")
    # Re-created, the kind starts empty.
    kubeapi.install_crd(copy.deepcopy(GADGET_CRD))
    listed = await custom.list_namespaced_custom_object(GROUP, VERSION, "default", "gadgets")
    assert listed["items"] == []


async def test_crd_deletion_waits_for_finalized_objects(
    api: client.ApiClient, kubeapi: KubeApiServer
) -> None:
    extensions = extensions_v1(api)
    custom = custom_objects(api)
    kubeapi.install_crd(copy.deepcopy(GADGET_CRD))
    held = gadget("held")
    held["metadata"]["finalizers"] = ["test.carm.dev/hold"]
    await custom.create_namespaced_custom_object(GROUP, VERSION, "default", "gadgets", held)

    await extensions.delete_custom_resource_definition(f"gadgets.{GROUP}")
    terminating = await extensions.read_custom_resource_definition(f"gadgets.{GROUP}")
    marked = await custom.get_namespaced_custom_object(GROUP, VERSION, "default", "gadgets", "held")
    with pytest.raises(ApiException) as refused:
        await custom.create_namespaced_custom_object(
            GROUP, VERSION, "default", "gadgets", gadget("late")
        )
    await custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        "default",
        "gadgets",
        "held",
        {"metadata": {"finalizers": None}},
        _content_type=MERGE,
    )

    assert terminating.metadata.deletion_timestamp is not None
    assert marked["metadata"]["deletionTimestamp"]
    assert refused.value.status == 405
    with pytest.raises(ApiException) as gone:
        await extensions.read_custom_resource_definition(f"gadgets.{GROUP}")
    assert gone.value.status == 404


async def test_multiple_versions_share_storage(api: client.ApiClient) -> None:
    extensions = extensions_v1(api)
    custom = custom_objects(api)
    crd = copy.deepcopy(GADGET_CRD)
    beta = copy.deepcopy(crd["spec"]["versions"][0])
    beta["name"] = "v1beta1"
    beta["storage"] = False
    crd["spec"]["versions"].append(beta)
    await extensions.create_custom_resource_definition(crd)

    await custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", "gadgets", gadget("shared")
    )
    seen = await custom.get_namespaced_custom_object(
        GROUP, "v1beta1", "default", "gadgets", "shared"
    )
    assert seen["apiVersion"] == f"{GROUP}/v1beta1"
    assert seen["spec"]["name"] == "shared"


@pytest.mark.usefixtures("crd")
async def test_printer_columns_in_tables(http: aiohttp.ClientSession) -> None:
    await http.post(PATH, json=gadget("shown", size=4))
    await http.patch(
        f"{PATH}/shown/status",
        data=orjson.dumps({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        headers={"Content-Type": MERGE},
    )
    headers = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    async with http.get(PATH, headers=headers) as response:
        table = await response.json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Size", "Ready"]
    assert table["rows"][0]["cells"] == ["shown", 4, "True"]
