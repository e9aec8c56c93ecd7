"""Server-side apply through `kubectl apply --server-side`: field ownership, removal of what a
manager stops applying, conflicts between managers, and `managedFields`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.crds import custom_resource_definition

from .harness import Kubectl

pytestmark = pytest.mark.kubectl

GROUP = "ssa.conformance.carm.dev"
# A kind with each list and map flavour server-side apply distinguishes.
GEAR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "size": {"type": "integer"},
                "settings": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                },
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "port": {"type": "integer"},
                        },
                    },
                },
            },
        }
    },
}
GEAR_CRD = custom_resource_definition(GROUP, "v1", "Gear", "gears", GEAR_SCHEMA)


@pytest.fixture(scope="module")
def gear_crd(kubectl: Kubectl) -> Iterator[str]:
    name = GEAR_CRD["metadata"]["name"]
    kubectl.apply(json.dumps(GEAR_CRD))
    kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=30s")
    yield name


def gear(namespace: str, **spec: Any) -> str:
    manifest = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Gear",
        "metadata": {"name": "g", "namespace": namespace},
        "spec": spec,
    }
    return json.dumps(manifest)


def bucket(namespace: str, **spec: Any) -> str:
    manifest = {
        "apiVersion": "s3.services.k8s.aws/v1alpha1",
        "kind": "Bucket",
        "metadata": {"name": "b", "namespace": namespace},
        "spec": {"name": f"{namespace}-b", **spec},
    }
    return json.dumps(manifest)


def test_reapply_without_a_field_removes_it(
    kubectl: Kubectl, namespace: str, bucket_crd: str
) -> None:
    created = kubectl.apply(bucket(namespace, versioning={"status": "Enabled"}), "--server-side")
    kubectl.apply(bucket(namespace), "--server-side")

    stored = kubectl.json("get", "bucket", "b", "-n", namespace)
    assert created.strip() == "bucket.s3.services.k8s.aws/b serverside-applied"
    assert stored["spec"] == {"name": f"{namespace}-b"}
    assert "managedFields" not in stored["metadata"]  # kubectl hides them by default


def test_nested_map_key_and_list_item_removal(
    kubectl: Kubectl, namespace: str, gear_crd: str
) -> None:
    ports = [{"name": "http", "port": 80}, {"name": "https", "port": 443}]
    kubectl.apply(gear(namespace, settings={"a": "1", "b": "2"}, ports=ports), "--server-side")
    kubectl.apply(gear(namespace, settings={"a": "1"}, ports=ports[1:]), "--server-side")

    spec = kubectl.json("get", "gear", "g", "-n", namespace)["spec"]
    assert spec == {"settings": {"a": "1"}, "ports": [{"name": "https", "port": 443}]}


def test_fields_set_by_other_writers_stay(kubectl: Kubectl, namespace: str, gear_crd: str) -> None:
    kubectl.apply(gear(namespace, size=1), "--server-side")
    kubectl("patch", "gear", "g", "-n", namespace, "--type=merge", "-p", '{"spec":{"size":5}}')
    kubectl(
        "patch",
        "gear",
        "g",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"settings":{"z":"9"}}}',
    )
    kubectl.apply(gear(namespace, ports=[{"name": "http", "port": 80}]), "--server-side")

    spec = kubectl.json("get", "gear", "g", "-n", namespace)["spec"]
    # size was owned by the applier and is no longer applied; settings.z never was applied.
    assert spec == {"settings": {"z": "9"}, "ports": [{"name": "http", "port": 80}]}


def test_second_manager_conflicts_then_forces(
    kubectl: Kubectl, namespace: str, gear_crd: str
) -> None:
    kubectl.apply(gear(namespace, size=1, settings={"a": "1"}), "--server-side")
    refused = kubectl.run(
        "apply", "--server-side", "--field-manager=other", "-f", "-", input=gear(namespace, size=2)
    )
    forced = kubectl(
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        "-",
        input=gear(namespace, size=2),
    )

    assert refused.returncode == 1
    assert 'Apply failed with 1 conflict: conflict with "kubectl": .spec.size' in refused.stderr
    assert "--force-conflicts" in refused.stderr
    assert forced.strip() == "gear.ssa.conformance.carm.dev/g serverside-applied"
    stored = kubectl.json("get", "gear", "g", "-n", namespace, "--show-managed-fields")
    assert stored["spec"] == {"size": 2, "settings": {"a": "1"}}
    owned = {e["manager"]: e["fieldsV1"] for e in stored["metadata"]["managedFields"]}
    assert owned == {
        "kubectl": {"f:spec": {"f:settings": {"f:a": {}}}},
        "other": {"f:spec": {"f:size": {}}},
    }


def test_same_value_is_shared_and_survives_one_manager_leaving(
    kubectl: Kubectl, namespace: str, gear_crd: str
) -> None:
    kubectl.apply(gear(namespace, size=3), "--server-side")
    kubectl(
        "apply", "--server-side", "--field-manager=other", "-f", "-", input=gear(namespace, size=3)
    )
    kubectl.apply(gear(namespace), "--server-side")

    shown = yaml.safe_load(
        kubectl("get", "gear", "g", "-n", namespace, "-o", "yaml", "--show-managed-fields")
    )
    assert shown["spec"] == {"size": 3}
    entries = shown["metadata"]["managedFields"]
    assert [(e["manager"], e["operation"]) for e in entries] == [("other", "Apply")]
    assert entries[0]["fieldsType"] == "FieldsV1"
    assert entries[0]["apiVersion"] == f"{GROUP}/v1"


def test_both_managers_show_with_show_managed_fields(
    kubectl: Kubectl, namespace: str, gear_crd: str
) -> None:
    kubectl.apply(gear(namespace, size=3, ports=[{"name": "http", "port": 80}]), "--server-side")
    kubectl(
        "apply",
        "--server-side",
        "--field-manager=other",
        "-f",
        "-",
        input=gear(namespace, ports=[{"name": "admin", "port": 9000}]),
    )

    shown = yaml.safe_load(
        kubectl("get", "gear", "g", "-n", namespace, "-o", "yaml", "--show-managed-fields")
    )
    owned = {e["manager"]: e["fieldsV1"] for e in shown["metadata"]["managedFields"]}
    assert owned == {
        "kubectl": {
            "f:spec": {
                "f:ports": {'k:{"name":"http"}': {".": {}, "f:name": {}, "f:port": {}}},
                "f:size": {},
            }
        },
        "other": {
            "f:spec": {"f:ports": {'k:{"name":"admin"}': {".": {}, "f:name": {}, "f:port": {}}}}
        },
    }
    assert shown["spec"]["ports"] == [
        {"name": "http", "port": 80},
        {"name": "admin", "port": 9000},
    ]
