"""`kubectl apply -f` of a `kind: List`, the shape `kubectl get -o yaml` prints for several objects.

kubectl treats a List apart: it cannot ask the server whether `v1/List` takes `fieldValidation`,
so with validation on (the default) it validates every item itself against the schemas of
`/openapi/v2` (protobuf) before sending anything, then applies the items one by one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from .harness import Kubectl, names, unique_name

pytestmark = pytest.mark.kubectl


def as_list(*items: dict[str, Any]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(items)})


def namespace_object(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def config_map(name: str, namespace: str, **fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        **fields,
    }


def widget(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "conformance.carm.dev/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


@pytest.fixture
def listed_namespace(kubectl: Kubectl) -> Iterator[str]:
    """The name of a namespace the test's List creates; deleted afterwards."""
    name = unique_name("listed")
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@pytest.mark.usefixtures("widget_crd")
def test_apply_of_a_list_creates_every_item(kubectl: Kubectl, listed_namespace: str) -> None:
    manifest = as_list(
        namespace_object(listed_namespace),
        config_map("settings", listed_namespace, data={"a": "1"}),
        widget("gear", listed_namespace, color="red", replicas=2),
    )

    out = kubectl.run("apply", "-f", "-", input=manifest)

    assert out.ok, out.stderr
    assert out.stdout.splitlines() == [
        f"namespace/{listed_namespace} created",
        "configmap/settings created",
        "widget.conformance.carm.dev/gear created",
    ]
    assert kubectl.json("get", "configmap", "settings", "-n", listed_namespace)["data"] == {
        "a": "1"
    }
    assert names(kubectl("get", "widgets", "-n", listed_namespace, "-o", "name")) == ["gear"]


@pytest.mark.usefixtures("widget_crd")
def test_what_get_prints_applies_back(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(json.dumps(config_map("one", namespace, data={"a": "1"})))
    kubectl.apply(json.dumps(widget("two", namespace, color="blue")))
    printed = kubectl("get", "configmap/one", "widget/two", "-n", namespace, "-o", "yaml")

    # Applying records the printed server fields (uid...) in last-applied-configuration.
    again = kubectl("apply", "-f", "-", input=printed)

    assert printed.startswith("apiVersion: v1\nitems:\n")
    assert "kind: List" in printed
    assert again.splitlines() == [
        "configmap/one configured",
        "widget.conformance.carm.dev/two configured",
    ]
    assert kubectl.json("get", "widget", "two", "-n", namespace)["spec"] == {"color": "blue"}


@pytest.mark.usefixtures("widget_crd")
def test_items_are_validated_before_anything_is_sent(kubectl: Kubectl, namespace: str) -> None:
    manifest = as_list(
        config_map("typo", namespace, datta={"a": "1"}),
        widget("wrong", namespace, color="red", replicas="three"),
    )

    err = kubectl.fails("apply", "-f", "-", input=manifest)

    assert "error validating data" in err
    assert 'unknown field "datta" in io.k8s.api.core.v1.ConfigMap' in err
    assert "invalid type for dev.carm.conformance.v1.Widget.spec.replicas" in err
    assert kubectl.run("get", "configmap", "typo", "-n", namespace).returncode != 0
    assert kubectl.run("get", "widget", "wrong", "-n", namespace).returncode != 0


def test_validate_false_skips_the_client_side_check(kubectl: Kubectl, namespace: str) -> None:
    manifest = as_list(config_map("lenient", namespace, data={"a": "1"}, datta={"b": "2"}))

    out = kubectl("apply", "-f", "-", "--validate=false", input=manifest)

    assert out.strip() == "configmap/lenient created"
    assert "datta" not in kubectl.json("get", "configmap", "lenient", "-n", namespace)


def test_openapi_v2_is_served_as_json_by_default(kubectl: Kubectl) -> None:
    document = kubectl.raw("/openapi/v2")

    assert document["swagger"] == "2.0"
    config_map_schema = document["definitions"]["io.k8s.api.core.v1.ConfigMap"]
    assert config_map_schema["x-kubernetes-group-version-kind"] == [
        {"group": "", "version": "v1", "kind": "ConfigMap"}
    ]
    assert config_map_schema["properties"]["metadata"] == {
        "$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    }
    assert "/api/v1/namespaces/{namespace}/configmaps" in document["paths"]
