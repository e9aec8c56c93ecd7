"""Discovery, OpenAPI v3 and health: what kubectl and kubernetes_asyncio read first."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client

from .conftest import GROUP, VERSION

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


async def test_openapi_v2_is_not_served(http: aiohttp.ClientSession) -> None:
    async with http.get("/openapi/v2") as response:
        assert response.status == 404
