"""Fixtures for Kubernetes I/O against the embedded API server: a server with the Bucket CRD
and a few namespaces, and a `KubeClient` reading the kubeconfig it writes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from carm.kube.client import NAMESPACES, KubeClient
from carm.resources.s3.crd import BUCKET_CRD
from carm.sandbox.kubeapi.server import KubeApiServer, serve_kubeapi

TEST_NAMESPACES = ("team-a", "team-b", "ack-system")


@pytest.fixture
async def kube_server() -> AsyncIterator[KubeApiServer]:
    # A short bookmark interval exercises bookmarks within a test's lifetime.
    async with serve_kubeapi(host="127.0.0.1", port=0, bookmark_interval=0.2) as server:
        server.install_crd(BUCKET_CRD)
        yield server


@pytest.fixture
async def kube(kube_server: KubeApiServer, tmp_path: Path) -> AsyncIterator[KubeClient]:
    path = tmp_path / "kubeconfig"
    kube_server.write_kubeconfig(path)
    client = await KubeClient.from_kubeconfig(str(path))
    for name in TEST_NAMESPACES:
        await client.create(NAMESPACES, {"metadata": {"name": name}})
    try:
        yield client
    finally:
        await client.aclose()
