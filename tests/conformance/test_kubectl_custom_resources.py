"""CustomResourceDefinitions through kubectl: serving, schema validation, pruning, the status
subresource, generation, finalizers, and `kubectl wait` on conditions."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.crds import custom_resource_definition

from .harness import Kubectl, condition, unique_name, wait_gone

pytestmark = pytest.mark.kubectl


def widget(name: str, namespace: str, **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "conformance.carm.dev/v1",
            "kind": "Widget",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def synced(status: str, message: str = "") -> str:
    """A status patch setting ACK's ResourceSynced condition."""
    cond = {
        "type": "ACK.ResourceSynced",
        "status": status,
        "reason": "Tested",
        "message": message,
        "lastTransitionTime": "2024-01-01T00:00:00Z",
    }
    return json.dumps({"status": {"conditions": [cond]}})


def test_crd_becomes_established_and_served(kubectl: Kubectl, widget_crd: str) -> None:
    crd = kubectl.json("get", "crd", widget_crd)
    established = condition(crd, "Established")

    assert established is not None
    assert established["status"] == "True"
    assert condition(crd, "NamesAccepted") is not None
    waited = kubectl("wait", "--for=condition=established", f"crd/{widget_crd}", "--timeout=10s")
    assert (
        waited.strip()
        == f"customresourcedefinition.apiextensions.k8s.io/{widget_crd} condition met"
    )
    assert "conformance.carm.dev/v1" in kubectl("api-versions").split()
    resources = kubectl("api-resources", "--api-group=conformance.carm.dev", "-o", "wide")
    assert "wdg" in resources
    assert "Widget" in resources


def test_deleted_crd_stops_being_served(kubectl: Kubectl) -> None:
    group = f"{unique_name('g')}.conformance.carm.dev"
    throwaway = custom_resource_definition(group, "v1", "Gizmo", "gizmos", scope="Cluster")
    kubectl.apply(json.dumps(throwaway))
    kubectl("wait", "--for=condition=Established", f"crd/gizmos.{group}", "--timeout=30s")
    kubectl(
        "create",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": f"{group}/v1",
                "kind": "Gizmo",
                "metadata": {"name": "g1"},
                "anything": [1, 2],
            }
        ),
    )
    assert kubectl("get", f"gizmos.{group}", "-o", "name").split() == [f"gizmo.{group}/g1"]

    kubectl("delete", "crd", f"gizmos.{group}")
    wait_gone(kubectl, ["crd", f"gizmos.{group}"])

    err = kubectl.fails("get", f"gizmos.{group}")
    assert 'the server doesn\'t have a resource type "gizmos"' in err


def test_schema_violations_are_rejected_with_field_paths(
    kubectl: Kubectl, namespace: str, widget_crd: str
) -> None:
    too_many = kubectl.fails(
        "apply", "-f", "-", input=widget("w", namespace, color="red", replicas=11)
    )
    bad_enum = kubectl.fails("apply", "-f", "-", input=widget("w", namespace, color="purple"))
    missing = kubectl.fails("apply", "-f", "-", input=widget("w", namespace, replicas=1))
    wrong_type = kubectl.fails(
        "apply", "-f", "-", input=widget("w", namespace, color="red", replicas="three")
    )

    assert 'The Widget "w" is invalid' in too_many
    assert "spec.replicas: Invalid value: 11" in too_many
    assert "less than or equal to 10" in too_many
    assert 'spec.color: Unsupported value: "purple"' in bad_enum
    assert "spec.color: Required value" in missing
    assert "spec.replicas: Invalid value" in wrong_type
    assert "must be of type integer" in wrong_type
    assert kubectl.run("get", "widget", "w", "-n", namespace).returncode != 0


def test_unknown_fields_are_refused_strictly_or_pruned(
    kubectl: Kubectl, namespace: str, widget_crd: str
) -> None:
    body = widget("extra", namespace, color="red", shade="dark")

    strict = kubectl.fails("apply", "-f", "-", input=body)
    lenient = kubectl.run("apply", "-f", "-", "--validate=false", input=body)

    assert 'unknown field "spec.shade"' in strict
    assert lenient.ok, lenient.stderr
    assert kubectl.json("get", "widget", "extra", "-n", namespace)["spec"] == {"color": "red"}


def test_printer_columns_show_in_kubectl_get(
    kubectl: Kubectl, namespace: str, widget_crd: str
) -> None:
    kubectl.apply(widget("shown", namespace, color="green", replicas=3))

    header, row = kubectl("get", "widgets", "-n", namespace).splitlines()

    assert header.split() == ["NAME", "COLOR", "REPLICAS"]
    assert row.split() == ["shown", "green", "3"]


def test_status_is_written_only_through_its_subresource(
    kubectl: Kubectl, namespace: str, widget_crd: str
) -> None:
    kubectl.apply(widget("split", namespace, color="red"))
    status = synced("True")

    main = kubectl("patch", "widget", "split", "-n", namespace, "--type=merge", "-p", status)
    sub = kubectl(
        "patch",
        "widget",
        "split",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    )
    sneaky = json.dumps({"spec": {"color": "blue"}, "status": {"observedGeneration": 7}})
    kubectl(
        "patch",
        "widget",
        "split",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        sneaky,
    )

    assert main.strip() == "widget.conformance.carm.dev/split patched (no change)"
    assert sub.strip() == "widget.conformance.carm.dev/split patched"
    stored = kubectl.json("get", "widget", "split", "-n", namespace)
    assert stored["spec"] == {"color": "red"}
    assert stored["status"]["observedGeneration"] == 7
    assert condition(stored, "ACK.ResourceSynced")["status"] == "True"  # type: ignore[index]
    assert stored["metadata"]["generation"] == 1


def test_generation_counts_spec_changes_only(
    kubectl: Kubectl, namespace: str, widget_crd: str
) -> None:
    kubectl.apply(widget("counted", namespace, color="red"))
    kubectl("label", "widget", "counted", "-n", namespace, "touched=yes")
    after_label = kubectl.json("get", "widget", "counted", "-n", namespace)["metadata"]
    kubectl(
        "patch",
        "widget",
        "counted",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"color":"blue"}}',
    )
    after_spec = kubectl.json("get", "widget", "counted", "-n", namespace)["metadata"]

    assert after_label["generation"] == 1
    assert after_spec["generation"] == 2


def test_strategic_merge_patch_is_unsupported_for_custom_resources(
    kubectl: Kubectl, namespace: str, widget_crd: str
) -> None:
    kubectl.apply(widget("plain", namespace, color="red"))

    err = kubectl.fails(
        "patch",
        "widget",
        "plain",
        "-n",
        namespace,
        "--type=strategic",
        "-p",
        '{"spec":{"color":"blue"}}',
    )

    # kubectl words the server's 415 itself.
    assert (
        "application/strategic-merge-patch+json is not supported by conformance.carm.dev/v1" in err
    )
    assert "the body of the request was in an unknown format" in err


def test_json_patch_edits_custom_resources(
    kubectl: Kubectl, namespace: str, widget_crd: str
) -> None:
    kubectl.apply(widget("listed", namespace, color="red", tags=["a"]))

    kubectl(
        "patch",
        "widget",
        "listed",
        "-n",
        namespace,
        "--type=json",
        "-p",
        '[{"op":"add","path":"/spec/tags/-","value":"b"},'
        '{"op":"add","path":"/spec/replicas","value":2}]',
    )
    invalid = kubectl.fails(
        "patch",
        "widget",
        "listed",
        "-n",
        namespace,
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/replicas","value":99}]',
    )

    assert kubectl.json("get", "widget", "listed", "-n", namespace)["spec"] == {
        "color": "red",
        "tags": ["a", "b"],
        "replicas": 2,
    }
    assert "spec.replicas" in invalid


def test_finalizer_holds_a_deleted_object_until_removed(
    kubectl: Kubectl, namespace: str, widget_crd: str
) -> None:
    held = json.loads(widget("held", namespace, color="red"))
    held["metadata"]["finalizers"] = ["conformance.carm.dev/hold"]
    kubectl.apply(json.dumps(held))

    out = kubectl("delete", "widget", "held", "-n", namespace, "--wait=false")
    terminating = kubectl.json("get", "widget", "held", "-n", namespace)
    kubectl(
        "patch",
        "widget",
        "held",
        "-n",
        namespace,
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/metadata/finalizers"}]',
    )

    assert out.strip() == 'widget.conformance.carm.dev "held" deleted'
    assert terminating["metadata"]["deletionTimestamp"]
    assert terminating["metadata"]["finalizers"] == ["conformance.carm.dev/hold"]
    wait_gone(kubectl, ["widget", "held", "-n", namespace])


def test_kubectl_wait_sees_an_ack_condition_set_later(
    kubectl: Kubectl, namespace: str, bucket_crd: str
) -> None:
    name = "waited"
    kubectl.apply(
        json.dumps(
            {
                "apiVersion": "s3.services.k8s.aws/v1alpha1",
                "kind": "Bucket",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"name": name},
            }
        )
    )
    target = f"bucket.s3.services.k8s.aws/{name}"

    with kubectl.spawn(
        "wait", "--for=condition=ACK.ResourceSynced", target, "-n", namespace, "--timeout=30s"
    ) as waiting:
        time.sleep(0.5)  # let kubectl start watching before the condition appears
        kubectl(
            "patch",
            target,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            synced("False", "IAM Role is not available"),
        )
        assert waiting.exited(timeout=1.0) is None, "kubectl wait accepted a False condition"
        kubectl(
            "patch",
            target,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            synced("True"),
        )
        line = waiting.next_line(timeout=20)
        code = waiting.exited(timeout=10)

    assert line == f"{target} condition met"
    assert code == 0
    assert "condition met" in kubectl(
        "wait", "--for=condition=ACK.ResourceSynced=True", target, "-n", namespace, "--timeout=5s"
    )


def test_kubectl_wait_times_out_on_an_absent_condition(
    kubectl: Kubectl, namespace: str, widget_crd: str
) -> None:
    kubectl.apply(widget("idle", namespace, color="red"))

    err = kubectl.fails(
        "wait", "--for=condition=Ready", "widget/idle", "-n", namespace, "--timeout=1s"
    )

    assert "timed out waiting for the condition on widgets/idle" in err


def test_explain_reads_the_crd_schema(kubectl: Kubectl, widget_crd: str) -> None:
    out = kubectl("explain", "widgets.spec")

    assert "KIND:       Widget" in out
    assert "color\t<string> -required-" in out
    assert "enum: red, green, blue" in out
    assert "replicas\t<integer>" in out


def test_server_side_apply_creates_and_updates(
    kubectl: Kubectl, namespace: str, widget_crd: str
) -> None:
    first = kubectl.apply(widget("ssa", namespace, color="red"), "--server-side")
    second = kubectl.apply(widget("ssa", namespace, color="green", replicas=2), "--server-side")

    assert first.strip() == "widget.conformance.carm.dev/ssa serverside-applied"
    assert second.strip() == "widget.conformance.carm.dev/ssa serverside-applied"
    stored = kubectl.json("get", "widget", "ssa", "-n", namespace)
    assert stored["spec"] == {"color": "green", "replicas": 2}
    assert stored["metadata"]["generation"] == 2
