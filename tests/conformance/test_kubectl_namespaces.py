"""Namespace deletion as kubectl users meet it: Terminating while content remains."""

from __future__ import annotations

import json

import pytest

from .harness import Kubectl, unique_name, wait_gone

pytestmark = pytest.mark.kubectl

BUCKET_FINALIZER = "finalizers.s3.services.k8s.aws/Bucket"


def held_bucket(name: str, namespace: str) -> str:
    return json.dumps(
        {
            "apiVersion": "s3.services.k8s.aws/v1alpha1",
            "kind": "Bucket",
            "metadata": {"name": name, "namespace": namespace, "finalizers": [BUCKET_FINALIZER]},
            "spec": {"name": name},
        }
    )


def test_empty_namespace_deletes_completely(kubectl: Kubectl) -> None:
    name = unique_name("empty")
    kubectl("create", "namespace", name)
    kubectl("create", "configmap", "content", "-n", name)

    out = kubectl("delete", "namespace", name, "--timeout=30s")

    assert out.strip() == f'namespace "{name}" deleted'
    assert "NotFound" in kubectl.fails("get", "namespace", name)
    assert "NotFound" in kubectl.fails("get", "configmap", "content", "-n", name)


def test_finalizer_on_a_custom_object_keeps_its_namespace_terminating(
    kubectl: Kubectl, bucket_crd: str
) -> None:
    name = unique_name("terminating")
    kubectl("create", "namespace", name)
    kubectl.apply(held_bucket("kept", name))
    kubectl("create", "configmap", "loose", "-n", name)

    kubectl("delete", "namespace", name, "--wait=false")
    try:
        wait_gone(kubectl, ["configmap", "loose", "-n", name])
        namespace = kubectl.json("get", "namespace", name)
        bucket = kubectl.json("get", "bucket", "kept", "-n", name)
        refused = kubectl.fails("create", "configmap", "late", "-n", name)
    finally:
        kubectl(
            "patch",
            "bucket",
            "kept",
            "-n",
            name,
            "--type=json",
            "-p",
            '[{"op":"remove","path":"/metadata/finalizers"}]',
        )

    assert namespace["status"]["phase"] == "Terminating"
    assert namespace["metadata"]["deletionTimestamp"]
    assert bucket["metadata"]["deletionTimestamp"]
    assert bucket["metadata"]["finalizers"] == [BUCKET_FINALIZER]
    assert f"unable to create new content in namespace {name} because it is being terminated" in (
        refused
    )
    kubectl("wait", "--for=delete", f"namespace/{name}", "--timeout=30s")
    assert "NotFound" in kubectl.fails("get", "bucket", "kept", "-n", name)
