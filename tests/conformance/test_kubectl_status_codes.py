"""The HTTP status of each answer, read from kubectl's own request log (`-v=6`)."""

from __future__ import annotations

import json

import pytest

from .harness import Kubectl, unique_name

pytestmark = pytest.mark.kubectl


def config_map(name: str, namespace: str, **extra: object) -> str:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
    }
    return json.dumps({**body, **extra})


def test_create_get_replace_delete_codes(kubectl: Kubectl, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    body = config_map("coded", namespace, data={"a": "1"})

    created = kubectl.responses("create", "-f", "-", input=body)
    duplicate = kubectl.responses("create", "-f", "-", input=body)
    missing = kubectl.responses("get", "configmap", "absent", "-n", namespace)
    stale = json.loads(body) | {
        "metadata": {"name": "coded", "namespace": namespace, "resourceVersion": "1"}
    }
    conflict = kubectl.responses("replace", "-f", "-", input=json.dumps(stale))
    unknown = kubectl.responses(
        "create", "-f", "-", input=config_map("typo", namespace, datta={"a": "1"})
    )
    deleted = kubectl.responses("delete", "configmap", "coded", "-n", namespace)
    nowhere = unique_name("nowhere")
    orphan = kubectl.responses("create", "-f", "-", input=config_map("orphan", nowhere))

    assert created == [("POST", base, 201)]
    assert duplicate == [("POST", base, 409)]
    assert ("GET", f"{base}/absent", 404) in missing
    assert ("PUT", f"{base}/coded", 409) in conflict
    assert unknown == [("POST", base, 400)]
    assert ("DELETE", f"{base}/coded", 200) in deleted
    assert orphan == [("POST", f"/api/v1/namespaces/{nowhere}/configmaps", 404)]


def test_custom_resource_codes(kubectl: Kubectl, namespace: str, widget_crd: str) -> None:
    base = f"/apis/conformance.carm.dev/v1/namespaces/{namespace}/widgets"
    good = {
        "apiVersion": "conformance.carm.dev/v1",
        "kind": "Widget",
        "metadata": {"name": "coded", "namespace": namespace},
        "spec": {"color": "red"},
    }
    bad = good | {"spec": {"color": "red", "replicas": 99}}

    created = kubectl.responses("create", "-f", "-", input=json.dumps(good))
    invalid = kubectl.responses(
        "create",
        "-f",
        "-",
        input=json.dumps(bad | {"metadata": {"name": "bad", "namespace": namespace}}),
    )
    strategic = kubectl.responses(
        "patch",
        "widget",
        "coded",
        "-n",
        namespace,
        "--type=strategic",
        "-p",
        '{"spec":{"color":"blue"}}',
    )
    merged = kubectl.responses(
        "patch",
        "widget",
        "coded",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"color":"blue"}}',
    )

    assert created == [("POST", base, 201)]
    assert invalid == [("POST", base, 422)]
    assert ("PATCH", f"{base}/coded", 415) in strategic
    assert ("PATCH", f"{base}/coded", 200) in merged
