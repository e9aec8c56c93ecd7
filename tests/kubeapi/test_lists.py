"""Lists: label and field selectors, paging with limit/continue, list resourceVersion."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from carm.sandbox.kubeapi.server import KubeApiServer

from .conftest import core_v1


async def make(core: Any, name: str, namespace: str = "default", **labels: str) -> None:
    await core.create_namespaced_config_map(
        namespace, {"metadata": {"name": name, "labels": labels}}
    )


@pytest.fixture
async def labelled(api: client.ApiClient) -> Any:
    core = core_v1(api)
    await make(core, "web-a", app="web", tier="front")
    await make(core, "web-b", app="web", tier="back")
    await make(core, "db", app="db", tier="back")
    await make(core, "plain")
    return core


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", ["web-a", "web-b"]),
        ("app==web,tier=back", ["web-b"]),
        ("app!=web", ["db", "plain"]),
        ("tier in (front,back),app notin (db)", ["web-a", "web-b"]),
        ("tier in (front, back)", ["db", "web-a", "web-b"]),
        ("app", ["db", "web-a", "web-b"]),
        ("!app", ["plain"]),
        ("", ["db", "plain", "web-a", "web-b"]),
    ],
)
async def test_label_selectors(labelled: Any, selector: str, expected: list[str]) -> None:
    listed = await labelled.list_namespaced_config_map("default", label_selector=selector)
    assert [cm.metadata.name for cm in listed.items] == expected


async def test_field_selectors(labelled: Any) -> None:
    by_name = await labelled.list_config_map_for_all_namespaces(field_selector="metadata.name=db")
    not_default = await labelled.list_config_map_for_all_namespaces(
        field_selector="metadata.namespace!=default"
    )
    assert [cm.metadata.name for cm in by_name.items] == ["db"]
    assert not_default.items == []
    with pytest.raises(ApiException) as caught:
        await labelled.list_namespaced_config_map("default", field_selector="spec.nothing=1")
    assert caught.value.status == 400


async def test_cluster_wide_list_spans_namespaces(api: client.ApiClient) -> None:
    core = core_v1(api)
    await core.create_namespace({"metadata": {"name": "other"}})
    await make(core, "here")
    await make(core, "there", "other")
    listed = await core.list_config_map_for_all_namespaces()
    assert [(cm.metadata.namespace, cm.metadata.name) for cm in listed.items] == [
        ("default", "here"),
        ("other", "there"),
    ]


async def test_paging_returns_every_object_once(
    api: client.ApiClient, kubeapi: KubeApiServer
) -> None:
    core = core_v1(api)
    for index in range(23):
        await make(core, f"item-{index:02d}")
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = await core.list_namespaced_config_map("default", limit=5, _continue=token)
        pages += 1
        seen += [cm.metadata.name for cm in page.items]
        if pages == 1:
            first_version = page.metadata.resource_version
            assert page.metadata.remaining_item_count == 18
        assert page.metadata.resource_version == first_version
        token = page.metadata._continue
        if not token:
            break
    assert pages == 5
    assert seen == [f"item-{index:02d}" for index in range(23)]
    assert first_version == str(kubeapi.store.resource_version)


async def test_paging_with_a_selector(labelled: Any) -> None:
    first = await labelled.list_namespaced_config_map("default", label_selector="tier", limit=2)
    rest = await labelled.list_namespaced_config_map(
        "default", label_selector="tier", limit=2, _continue=first.metadata._continue
    )
    assert [cm.metadata.name for cm in first.items + rest.items] == ["db", "web-a", "web-b"]
    assert rest.metadata._continue is None


async def test_bad_continue_token_is_a_bad_request(http: aiohttp.ClientSession) -> None:
    async with http.get("/api/v1/namespaces/default/configmaps?limit=1&continue=junk") as resp:
        assert resp.status == 400


async def test_continue_token_expires_after_compaction(
    labelled: Any, kubeapi: KubeApiServer
) -> None:
    first = await labelled.list_namespaced_config_map("default", limit=1)
    await make(labelled, "later")  # compaction forgets versions older than the current one
    kubeapi.compact()
    with pytest.raises(ApiException) as caught:
        await labelled.list_namespaced_config_map(
            "default", limit=1, _continue=first.metadata._continue
        )
    assert caught.value.status == 410


async def test_table_output_for_kubectl_get(http: aiohttp.ClientSession) -> None:
    await http.post(
        "/api/v1/namespaces/default/configmaps",
        json={"metadata": {"name": "t"}, "data": {"a": "1", "b": "2"}},
    )
    headers = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    async with http.get("/api/v1/namespaces/default/configmaps", headers=headers) as response:
        table = await response.json()
    assert table["kind"] == "Table"
    assert [column["name"] for column in table["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert table["rows"][0]["cells"][:2] == ["t", 2]
    assert table["rows"][0]["object"]["metadata"]["name"] == "t"


async def test_delete_collection_by_label(labelled: Any) -> None:
    await labelled.delete_collection_namespaced_config_map("default", label_selector="app=web")
    remaining = await labelled.list_namespaced_config_map("default")
    assert [cm.metadata.name for cm in remaining.items] == ["db", "plain"]


async def test_continued_pages_show_the_first_pages_version(labelled: Any) -> None:
    first = await labelled.list_namespaced_config_map("default", limit=2)  # db, plain
    await make(labelled, "web-0")  # created after the first page: not in its snapshot
    await labelled.patch_namespaced_config_map(
        "web-a",
        "default",
        {"metadata": {"labels": {"changed": "later"}}},
        _content_type="application/merge-patch+json",
    )
    await labelled.delete_namespaced_config_map("web-b", "default")

    rest = await labelled.list_namespaced_config_map(
        "default", limit=10, _continue=first.metadata._continue
    )

    assert [cm.metadata.name for cm in rest.items] == ["web-a", "web-b"]
    assert "changed" not in rest.items[0].metadata.labels
    assert rest.metadata.resource_version == first.metadata.resource_version
