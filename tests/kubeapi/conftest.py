"""Fixtures for the embedded API server's own tests: a started server, a raw HTTP session, a
kubernetes_asyncio client configured from the kubeconfig the server writes, and a CRD."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from carm.sandbox.kubeapi.server import KubeApiServer, serve_kubeapi

GROUP = "test.carm.dev"
VERSION = "v1"

GADGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"gadgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {
            "kind": "Gadget",
            "plural": "gadgets",
            "singular": "gadget",
            "shortNames": ["gd"],
            "categories": ["all"],
        },
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {
                        "name": "Ready",
                        "type": "string",
                        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                    },
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {
                                        "type": "string",
                                        "minLength": 3,
                                        "maxLength": 20,
                                        "pattern": "^[a-z0-9-]+$",
                                    },
                                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                    "mode": {"type": "string", "enum": ["fast", "slow"]},
                                    "ratio": {"type": "number"},
                                    "enabled": {"type": "boolean", "default": True},
                                    "note": {"type": "string", "nullable": True},
                                    "tags": {
                                        "type": "array",
                                        "maxItems": 3,
                                        "items": {
                                            "type": "object",
                                            "required": ["key"],
                                            "properties": {
                                                "key": {"type": "string"},
                                                "value": {"type": "string"},
                                            },
                                        },
                                    },
                                    "labels": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                    },
                                    "extra": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    },
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {
                                    "phase": {"type": "string"},
                                    "conditions": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "type": {"type": "string"},
                                                "status": {"type": "string"},
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}


def core_v1(api: client.ApiClient) -> Any:
    """CoreV1Api, held as Any: its annotations refuse the dict bodies and `_content_type`
    keyword that kubernetes_asyncio documents and accepts (see FACTS.md)."""
    return client.CoreV1Api(api)


def custom_objects(api: client.ApiClient) -> Any:
    """CustomObjectsApi, held as Any (same reason as `core_v1`)."""
    return client.CustomObjectsApi(api)


def extensions_v1(api: client.ApiClient) -> Any:
    """ApiextensionsV1Api, held as Any (same reason as `core_v1`)."""
    return client.ApiextensionsV1Api(api)


def coordination_v1(api: client.ApiClient) -> Any:
    """CoordinationV1Api, held as Any (same reason as `core_v1`)."""
    return client.CoordinationV1Api(api)


def status_of(error: ApiException) -> dict[str, Any]:
    """The Status body of a failed call."""
    body: dict[str, Any] = orjson.loads(error.body or b"{}")
    return body


def gadget(name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Gadget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"name": name, **spec},
    }


@pytest.fixture
async def kubeapi() -> AsyncIterator[KubeApiServer]:
    """A started embedded API server (bookmarks every 0.1 s so tests see them quickly)."""
    async with serve_kubeapi(bookmark_interval=0.1) as server:
        yield server


@pytest.fixture
async def http(kubeapi: KubeApiServer) -> AsyncIterator[aiohttp.ClientSession]:
    """A raw HTTP session against the server (relative URLs)."""
    async with aiohttp.ClientSession(base_url=kubeapi.url) as session:
        yield session


@pytest.fixture
async def api(kubeapi: KubeApiServer, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    """A kubernetes_asyncio ApiClient loaded from the server's kubeconfig."""
    path = tmp_path / "kubeconfig"
    kubeapi.write_kubeconfig(path)
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(path), client_configuration=configuration)
    async with client.ApiClient(configuration) as api_client:
        yield api_client


@pytest.fixture
def crd(kubeapi: KubeApiServer) -> dict[str, Any]:
    """The Gadget CRD, installed."""
    kubeapi.install_crd(copy.deepcopy(GADGET_CRD))
    return GADGET_CRD
