"""Discovery, OpenAPI v2 and v3, and health: what kubectl and kubernetes_asyncio read first."""

from __future__ import annotations

import copy
from typing import Any

import aiohttp
import orjson
import pytest
from kubernetes_asyncio import client

from carm.sandbox.kubeapi.server import KubeApiServer

from .conftest import GADGET_CRD, GROUP, VERSION

AGGREGATED = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)


async def get_json(http: aiohttp.ClientSession, path: str, **headers: str) -> Any:
    async with http.get(path, headers=headers) as response:
        assert response.status == 200, path
        assert response.content_type == "application/json"
        return await response.json()


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/livez"])
async def test_health(http: aiohttp.ClientSession, path: str) -> None:
    async with http.get(path) as response:
        assert response.status == 200
        assert await response.text() == "ok"


async def test_version(api: client.ApiClient) -> None:
    version = await client.VersionApi(api).get_code()
    assert (version.major, version.minor) == ("1", "32")


async def test_core_discovery(http: aiohttp.ClientSession) -> None:
    versions = await get_json(http, "/api", Accept=AGGREGATED)
    resources = await get_json(http, "/api/v1")

    assert versions["kind"] == "APIVersions" and versions["versions"] == ["v1"]
    by_name = {entry["name"]: entry for entry in resources["resources"]}
    assert set(by_name) >= {
        "namespaces",
        "namespaces/status",
        "namespaces/finalize",
        "configmaps",
        "secrets",
        "events",
        "serviceaccounts",
    }
    assert by_name["namespaces"]["namespaced"] is False
    assert by_name["configmaps"]["shortNames"] == ["cm"]
    assert "watch" in by_name["configmaps"]["verbs"]
    assert by_name["namespaces/status"]["verbs"] == ["get", "patch", "update"]


@pytest.mark.usefixtures("crd")
async def test_group_discovery_includes_custom_kinds(http: aiohttp.ClientSession) -> None:
    groups = await get_json(http, "/apis", Accept=AGGREGATED)
    names = {group["name"]: group for group in groups["groups"]}
    group = await get_json(http, f"/apis/{GROUP}")
    resources = await get_json(http, f"/apis/{GROUP}/{VERSION}")

    assert groups["kind"] == "APIGroupList"
    assert {"coordination.k8s.io", "apiextensions.k8s.io", GROUP} <= set(names)
    assert names[GROUP]["preferredVersion"] == {
        "groupVersion": f"{GROUP}/{VERSION}",
        "version": VERSION,
    }
    assert group["kind"] == "APIGroup"
    by_name = {entry["name"]: entry for entry in resources["resources"]}
    assert by_name["gadgets"]["kind"] == "Gadget"
    assert by_name["gadgets"]["singularName"] == "gadget"
    assert by_name["gadgets"]["shortNames"] == ["gd"]
    assert by_name["gadgets"]["categories"] == ["all"]
    assert by_name["gadgets/status"]["verbs"] == ["get", "patch", "update"]


async def test_unknown_group_is_not_found(http: aiohttp.ClientSession) -> None:
    async with http.get("/apis/nothing.example.com/v1") as response:
        assert response.status == 404


@pytest.mark.usefixtures("crd")
async def test_openapi_v3_lets_kubectl_validate_on_the_server(
    http: aiohttp.ClientSession,
) -> None:
    index = await get_json(http, "/openapi/v3")
    url = index["paths"][f"apis/{GROUP}/{VERSION}"]["serverRelativeURL"]
    document = await get_json(http, url)
    core = await get_json(http, index["paths"]["api/v1"]["serverRelativeURL"])

    collection = document["paths"][f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/gadgets"]
    post = collection["post"]
    assert post["x-kubernetes-action"] == "post"
    assert post["x-kubernetes-group-version-kind"] == {
        "group": GROUP,
        "version": VERSION,
        "kind": "Gadget",
    }
    assert "fieldValidation" in {param["name"] for param in post["parameters"]}
    item = document["paths"][f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/gadgets/{{name}}"]
    assert "fieldValidation" in {param["name"] for param in item["patch"]["parameters"]}
    assert "patch" in core["paths"]["/api/v1/namespaces/{name}"]
    schema = document["components"]["schemas"][f"dev.carm.test.{VERSION}.Gadget"]
    assert schema["properties"]["spec"]["required"] == ["name"]


async def test_openapi_hash_changes_with_served_kinds(
    http: aiohttp.ClientSession, crd: dict[str, Any]
) -> None:
    before = (await get_json(http, "/openapi/v3"))["paths"]["api/v1"]["serverRelativeURL"]
    await http.delete(
        f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
    )
    after = await get_json(http, "/openapi/v3")
    assert f"apis/{GROUP}/{VERSION}" not in after["paths"]
    assert after["paths"]["api/v1"]["serverRelativeURL"] != before


PROTOBUF_V2 = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


@pytest.mark.parametrize(
    ("accept", "served"),
    [
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", PROTOBUF_V2),
        (PROTOBUF_V2, PROTOBUF_V2),
        (f"application/json;q=0.5, {PROTOBUF_V2}", PROTOBUF_V2),
        ("application/*", "application/json"),
    ],
)
async def test_openapi_v2_encoding_follows_accept(
    http: aiohttp.ClientSession, accept: str, served: str
) -> None:
    async with http.get("/openapi/v2", headers={"Accept": accept}) as response:
        body = await response.read()
        assert response.status == 200
        assert response.headers["Content-Type"] == served
        assert response.headers["Vary"] == "Accept"
    if served == PROTOBUF_V2:
        assert body.startswith(b"\n\x032.0")  # field 1 (swagger) = "2.0"
    else:
        assert orjson.loads(body)["swagger"] == "2.0"


async def test_openapi_v2_refuses_other_encodings(http: aiohttp.ClientSession) -> None:
    async with http.get("/openapi/v2", headers={"Accept": "application/yaml"}) as response:
        assert response.status == 406
        assert await response.read() == b""


async def test_openapi_v2_etag_is_shared_and_revalidates(http: aiohttp.ClientSession) -> None:
    async with http.get("/openapi/v2", headers={"Accept": "application/json"}) as response:
        etag = response.headers["ETag"]
    async with http.get("/openapi/v2", headers={"Accept": PROTOBUF_V2}) as response:
        assert response.headers["ETag"] == etag
    async with http.get(
        "/openapi/v2", headers={"Accept": PROTOBUF_V2, "If-None-Match": etag}
    ) as response:
        assert response.status == 304
        assert await response.read() == b""


@pytest.mark.usefixtures("crd")
async def test_openapi_v2_publishes_custom_schemas_as_the_apiserver_does(
    http: aiohttp.ClientSession,
) -> None:
    document = await get_json(http, "/openapi/v2")

    gadget = document["definitions"][f"dev.carm.test.{VERSION}.Gadget"]
    spec = gadget["properties"]["spec"]
    assert gadget["x-kubernetes-group-version-kind"] == [
        {"group": GROUP, "version": VERSION, "kind": "Gadget"}
    ]
    assert gadget["properties"]["metadata"] == {
        "$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    }
    assert spec["required"] == ["name"]
    assert spec["properties"]["size"] == {"type": "integer", "minimum": 1, "maximum": 10}
    assert spec["properties"]["note"] == {}  # nullable: untyped, kubectl accepts null
    assert spec["properties"]["enabled"] == {"type": "boolean"}  # defaults are pruned
    assert spec["properties"]["extra"] == {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    assert spec["properties"]["tags"]["items"]["required"] == ["key"]
    patch = document["paths"][f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/gadgets/{{name}}"][
        "patch"
    ]
    assert "application/merge-patch+json" in patch["consumes"]
    assert {"name": "fieldValidation", "in": "query", "type": "string", "uniqueItems": True} in (
        patch["parameters"]
    )
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "Gadget"


async def test_openapi_v2_schemaless_roots_accept_any_field(
    http: aiohttp.ClientSession, kubeapi: KubeApiServer
) -> None:
    crd = copy.deepcopy(GADGET_CRD)
    crd["metadata"]["name"] = f"blobs.{GROUP}"
    crd["spec"]["names"] = {"kind": "Blob", "plural": "blobs", "singular": "blob"}
    crd["spec"]["versions"][0]["schema"] = {
        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    }
    kubeapi.install_crd(crd)

    document = await get_json(http, "/openapi/v2")

    # Listing apiVersion, kind and metadata would make kubectl refuse every other field.
    assert document["definitions"][f"dev.carm.test.{VERSION}.Blob"] == {
        "type": "object",
        "x-kubernetes-group-version-kind": [{"group": GROUP, "version": VERSION, "kind": "Blob"}],
    }


async def test_openapi_v2_built_in_kinds_keep_their_go_types(http: aiohttp.ClientSession) -> None:
    document = await get_json(http, "/openapi/v2")

    lease_gvk = [{"group": "coordination.k8s.io", "version": "v1", "kind": "Lease"}]
    (lease,) = (
        schema
        for schema in document["definitions"].values()
        if schema.get("x-kubernetes-group-version-kind") == lease_gvk
    )
    # A Go pointer is nullable in the v3 stand-in; its v2 schema keeps the type.
    assert lease["properties"]["spec"]["properties"]["holderIdentity"] == {"type": "string"}
