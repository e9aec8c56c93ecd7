"""Discovery, OpenAPI and every built-in kind the embedded server serves, as kubectl sees them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from .harness import Kubectl, unique_name

pytestmark = pytest.mark.kubectl


def test_server_version_and_api_versions(kubectl: Kubectl) -> None:
    version = json.loads(kubectl("version", "-o", "json"))
    api_versions = kubectl("api-versions").split()

    assert version["serverVersion"]["major"] == "1"
    assert {"v1", "coordination.k8s.io/v1", "apiextensions.k8s.io/v1"} <= set(api_versions)


def test_api_resources_list_built_in_kinds(kubectl: Kubectl) -> None:
    out = kubectl("api-resources", "-o", "name")

    assert {
        "namespaces",
        "configmaps",
        "secrets",
        "events",
        "serviceaccounts",
        "leases.coordination.k8s.io",
        "customresourcedefinitions.apiextensions.k8s.io",
    } <= set(out.split())


def test_openapi_v3_names_each_group_version(kubectl: Kubectl) -> None:
    root = kubectl.raw("/openapi/v3")
    core_url = root["paths"]["api/v1"]["serverRelativeURL"]
    core = kubectl.raw(core_url)

    assert "apis/coordination.k8s.io/v1" in root["paths"]
    assert "post" in core["paths"]["/api/v1/namespaces/{namespace}/configmaps"]


def test_short_names_resolve(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "configmap", "short", "-n", namespace)
    kubectl("create", "serviceaccount", "robot", "-n", namespace)

    assert kubectl("get", "cm", "-n", namespace, "-o", "name").split() == ["configmap/short"]
    assert "serviceaccount/robot" in kubectl("get", "sa", "-n", namespace, "-o", "name").split()
    assert "namespace/default" in kubectl("get", "ns", "-o", "name").split()


def namespaced_objects(ns: str) -> list[dict[str, Any]]:
    """One object of every namespaced built-in kind, as a user would write it."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kind-cm", "namespace": ns},
            "data": {"key": "value"},
            "binaryData": {"blob": base64.b64encode(b"\x00\x01").decode()},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "kind-secret", "namespace": ns},
            "type": "Opaque",
            "data": {"password": base64.b64encode(b"hunter2").decode()},
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "kind-sa", "namespace": ns},
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "kind-event", "namespace": ns},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": "kind-cm",
                "namespace": ns,
            },
            "reason": "Tested",
            "message": "a conformance test wrote this",
            "type": "Normal",
            "source": {"component": "conformance"},
            "count": 1,
            "firstTimestamp": "2024-01-01T00:00:00Z",
            "lastTimestamp": "2024-01-01T00:00:00Z",
        },
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "kind-lease", "namespace": ns},
            "spec": {
                "holderIdentity": "carm-0",
                "leaseDurationSeconds": 15,
                "renewTime": "2024-01-01T00:00:00.000000Z",
            },
        },
    ]


@pytest.mark.parametrize("index", range(5), ids=["configmap", "secret", "sa", "event", "lease"])
def test_each_namespaced_kind_round_trips(kubectl: Kubectl, namespace: str, index: int) -> None:
    written = namespaced_objects(namespace)[index]
    kind, name = written["kind"], written["metadata"]["name"]

    out = kubectl.apply(json.dumps(written))
    stored = kubectl.json("get", kind.lower(), name, "-n", namespace)

    assert "created" in out
    assert stored["kind"] == kind
    assert stored["apiVersion"] == written["apiVersion"]
    for field, value in written.items():
        if field not in ("apiVersion", "kind", "metadata"):
            assert stored[field] == value, field


def test_secret_string_data_is_stored_base64_encoded(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "secret", "generic", "creds", "-n", namespace, "--from-literal=user=admin")

    stored = kubectl.json("get", "secret", "creds", "-n", namespace)

    assert stored["data"] == {"user": base64.b64encode(b"admin").decode()}
    assert stored["type"] == "Opaque"


def test_lease_is_renewed_with_an_update(kubectl: Kubectl, namespace: str) -> None:
    lease = namespaced_objects(namespace)[4]
    kubectl.apply(json.dumps(lease))
    stored = kubectl.json("get", "lease", "kind-lease", "-n", namespace)
    stored["spec"]["renewTime"] = "2024-01-01T00:00:10.000000Z"
    stored["spec"]["holderIdentity"] = "carm-1"

    kubectl("replace", "-f", "-", input=json.dumps(stored))

    renewed = kubectl.json("get", "lease", "kind-lease", "-n", namespace)
    assert renewed["spec"]["holderIdentity"] == "carm-1"
    assert int(renewed["metadata"]["resourceVersion"]) > int(stored["metadata"]["resourceVersion"])


def test_namespace_is_cluster_scoped_and_active(kubectl: Kubectl) -> None:
    name = unique_name("scoped")
    kubectl("create", "namespace", name)
    try:
        stored = kubectl.json("get", "namespace", name)
    finally:
        kubectl("delete", "namespace", name, "--wait=false")

    assert "namespace" not in stored["metadata"]
    assert stored["status"]["phase"] == "Active"
    assert "kubernetes" in stored["spec"]["finalizers"]
    assert stored["metadata"]["labels"]["kubernetes.io/metadata.name"] == name
