"""Everyday kubectl verbs on built-in kinds: apply, create, get, annotate, label, patch, replace,
delete, and the errors kubectl prints from the server's Status objects."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .harness import Kubectl, manifest, names, unique_name

pytestmark = pytest.mark.kubectl


def config_map(name: str, namespace: str, data: dict[str, str], **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": data,
    }


def secret(name: str, namespace: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "type": "Opaque",
    }


def test_apply_creates_then_reports_unchanged_then_configured(
    kubectl: Kubectl, namespace: str
) -> None:
    first = kubectl.apply(manifest(config_map("settings", namespace, {"a": "1"})))
    again = kubectl.apply(manifest(config_map("settings", namespace, {"a": "1"})))
    changed = kubectl.apply(manifest(config_map("settings", namespace, {"a": "2"})))

    assert first.strip() == "configmap/settings created"
    assert again.strip() == "configmap/settings unchanged"
    assert changed.strip() == "configmap/settings configured"
    stored = kubectl.json("get", "configmap", "settings", "-n", namespace)
    assert stored["data"] == {"a": "2"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in stored["metadata"]["annotations"]


def test_server_sets_identity_and_timestamps(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "configmap", "one", "-n", namespace, "--from-literal=a=1")
    kubectl("create", "configmap", "two", "-n", namespace, "--from-literal=a=1")

    one = kubectl.json("get", "configmap", "one", "-n", namespace)["metadata"]
    two = kubectl.json("get", "configmap", "two", "-n", namespace)["metadata"]

    assert one["uid"] != two["uid"]
    assert int(two["resourceVersion"]) > int(one["resourceVersion"])
    assert one["creationTimestamp"].endswith("Z")
    assert one["namespace"] == namespace


def test_generate_name_gets_a_random_suffix(kubectl: Kubectl, namespace: str) -> None:
    body = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"generateName": "generated-", "namespace": namespace},
        }
    )

    first = kubectl("create", "-f", "-", "-o", "name", input=body).strip()
    second = kubectl("create", "-f", "-", "-o", "name", input=body).strip()

    assert first.startswith("configmap/generated-")
    assert len(first) == len("configmap/generated-") + 5
    assert first != second


def test_create_of_an_existing_object_reports_already_exists(
    kubectl: Kubectl, namespace: str
) -> None:
    body = manifest(config_map("taken", namespace, {}))
    kubectl("create", "-f", "-", input=body)

    from_file = kubectl.fails("create", "-f", "-", input=body)
    generated = kubectl.fails("create", "configmap", "taken", "-n", namespace)

    assert (
        'Error from server (AlreadyExists): error when creating "STDIN": '
        'configmaps "taken" already exists'
    ) in from_file
    assert 'failed to create configmap: configmaps "taken" already exists' in generated


def test_create_in_a_missing_namespace_reports_not_found(kubectl: Kubectl) -> None:
    missing = unique_name("missing")

    err = kubectl.fails("create", "-f", "-", input=manifest(config_map("orphan", missing, {})))

    assert 'Error from server (NotFound): error when creating "STDIN"' in err
    assert f'namespaces "{missing}" not found' in err


def test_get_of_a_missing_object_reports_not_found(kubectl: Kubectl, namespace: str) -> None:
    err = kubectl.fails("get", "configmap", "absent", "-n", namespace)
    quiet = kubectl("get", "configmap", "absent", "-n", namespace, "--ignore-not-found")

    assert 'Error from server (NotFound): configmaps "absent" not found' in err
    assert quiet == ""


def test_list_in_an_empty_namespace_finds_nothing(kubectl: Kubectl, namespace: str) -> None:
    result = kubectl.run("get", "secrets", "-n", namespace)

    assert result.ok
    assert f"No resources found in {namespace} namespace." in result.stderr


def test_annotate_and_label_add_overwrite_and_remove(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "configmap", "tagged", "-n", namespace)

    assert kubectl("annotate", "cm", "tagged", "-n", namespace, "note=first").strip() == (
        "configmap/tagged annotated"
    )
    refused = kubectl.fails("annotate", "cm", "tagged", "-n", namespace, "note=second")
    kubectl("annotate", "cm", "tagged", "-n", namespace, "note=second", "--overwrite")
    assert kubectl("label", "cm", "tagged", "-n", namespace, "tier=web").strip() == (
        "configmap/tagged labeled"
    )
    kubectl("label", "cm", "tagged", "-n", namespace, "tier-")

    assert "--overwrite is false" in refused
    meta = kubectl.json("get", "cm", "tagged", "-n", namespace)["metadata"]
    assert meta["annotations"]["note"] == "second"
    assert "tier" not in meta.get("labels", {})


def test_label_selectors_filter_lists(kubectl: Kubectl, namespace: str) -> None:
    # Secrets: a real cluster adds unlabelled ConfigMaps of its own to every namespace.
    kubectl.apply(
        manifest(
            secret("web-a", namespace, app="web", tier="front"),
            secret("web-b", namespace, app="web", tier="back"),
            secret("db", namespace, app="db", tier="back"),
            secret("plain", namespace),
        )
    )

    def selected(selector: str) -> list[str]:
        return names(kubectl("get", "secrets", "-n", namespace, "-l", selector, "-o", "name"))

    assert selected("app=web") == ["web-a", "web-b"]
    assert selected("app==web,tier=back") == ["web-b"]
    assert selected("app!=web") == ["db", "plain"]
    assert selected("tier in (front,back),app notin (db)") == ["web-a", "web-b"]
    assert selected("app") == ["db", "web-a", "web-b"]
    assert selected("!app") == ["plain"]


def test_all_namespaces_lists_across_namespaces(kubectl: Kubectl) -> None:
    mark = unique_name("mark")
    spaces = [unique_name("across"), unique_name("across")]
    for ns in spaces:
        kubectl("create", "namespace", ns)
        kubectl.apply(manifest(config_map("shared-name", ns, {}, mark=mark)))
    try:
        out = kubectl(
            "get",
            "configmaps",
            "-A",
            "-l",
            f"mark={mark}",
            "-o",
            "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{'\\n'}{end}",
        )
    finally:
        kubectl("delete", "namespace", *spaces, "--wait=false")

    assert sorted(out.split()) == sorted(f"{ns}/shared-name" for ns in spaces)


def test_merge_strategic_and_json_patches(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "configmap", "patched", "-n", namespace, "--from-literal=a=1")

    merge = kubectl(
        "patch", "cm", "patched", "-n", namespace, "--type", "merge", "-p", '{"data":{"b":"2"}}'
    )
    kubectl("patch", "cm", "patched", "-n", namespace, "-p", '{"data":{"a":null,"c":"3"}}')
    kubectl(
        "patch",
        "cm",
        "patched",
        "-n",
        namespace,
        "--type",
        "json",
        "-p",
        '[{"op":"replace","path":"/data/b","value":"20"},{"op":"add","path":"/data/d","value":"4"}]',
    )
    failed_test = kubectl.fails(
        "patch",
        "cm",
        "patched",
        "-n",
        namespace,
        "--type",
        "json",
        "-p",
        '[{"op":"test","path":"/data/b","value":"wrong"},{"op":"remove","path":"/data/b"}]',
    )

    assert merge.strip() == "configmap/patched patched"
    assert "The request is invalid" in failed_test
    assert "testing value /data/b failed" in failed_test
    assert kubectl.json("get", "cm", "patched", "-n", namespace)["data"] == {
        "b": "20",
        "c": "3",
        "d": "4",
    }


def test_no_op_patch_keeps_the_resource_version(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "configmap", "steady", "-n", namespace, "--from-literal=a=1")
    before = kubectl.json("get", "cm", "steady", "-n", namespace)["metadata"]["resourceVersion"]

    out = kubectl(
        "patch", "cm", "steady", "-n", namespace, "--type", "merge", "-p", '{"data":{"a":"1"}}'
    )

    assert out.strip() == "configmap/steady patched (no change)"
    after = kubectl.json("get", "cm", "steady", "-n", namespace)["metadata"]["resourceVersion"]
    assert after == before


def test_replace_with_a_stale_resource_version_conflicts(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "configmap", "contested", "-n", namespace, "--from-literal=a=1")
    stale = kubectl.json("get", "cm", "contested", "-n", namespace)
    kubectl("patch", "cm", "contested", "-n", namespace, "-p", '{"data":{"a":"2"}}')
    stale["data"] = {"a": "3"}

    err = kubectl.fails("replace", "-f", "-", input=json.dumps(stale))
    del stale["metadata"]["resourceVersion"]
    kubectl("replace", "-f", "-", input=json.dumps(stale))

    assert (
        'Operation cannot be fulfilled on configmaps "contested": the object has been modified; '
        "please apply your changes to the latest version and try again"
    ) in err
    assert kubectl.json("get", "cm", "contested", "-n", namespace)["data"] == {"a": "3"}


def test_strict_field_validation_rejects_unknown_fields(kubectl: Kubectl, namespace: str) -> None:
    body = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "typo", "namespace": namespace},
            "datta": {"a": "1"},
        }
    )

    strict = kubectl.fails("apply", "-f", "-", "--validate=strict", input=body)
    default = kubectl.fails("apply", "-f", "-", input=body)
    warned = kubectl.run("apply", "-f", "-", "--validate=warn", input=body)

    assert 'unknown field "datta"' in strict
    assert 'unknown field "datta"' in default
    assert warned.ok
    assert 'unknown field "datta"' in warned.stderr
    assert "datta" not in kubectl.json("get", "cm", "typo", "-n", namespace)


def test_validate_false_drops_unknown_fields(kubectl: Kubectl, namespace: str) -> None:
    body = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "lenient", "namespace": namespace, "colour": "red"},
            "data": {"a": "1"},
        }
    )

    result = kubectl.run("apply", "-f", "-", "--validate=false", input=body)

    assert result.ok, result.stderr
    assert "unknown field" not in result.stderr
    stored = kubectl.json("get", "cm", "lenient", "-n", namespace)
    assert "colour" not in stored["metadata"]
    assert stored["data"] == {"a": "1"}


def test_delete_removes_and_then_reports_not_found(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "configmap", "doomed", "-n", namespace)

    out = kubectl("delete", "configmap", "doomed", "-n", namespace)
    err = kubectl.fails("delete", "configmap", "doomed", "-n", namespace)
    quiet = kubectl("delete", "configmap", "doomed", "-n", namespace, "--ignore-not-found")

    assert out.strip() == 'configmap "doomed" deleted'
    assert 'Error from server (NotFound): configmaps "doomed" not found' in err
    assert quiet == ""


def test_delete_by_label_selector(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(
        manifest(
            config_map("drop-1", namespace, {}, batch="old"),
            config_map("drop-2", namespace, {}, batch="old"),
            config_map("keep", namespace, {}, batch="new"),
        )
    )

    kubectl("delete", "cm", "-n", namespace, "-l", "batch=old")

    assert names(kubectl("get", "cm", "-n", namespace, "-l", "batch", "-o", "name")) == ["keep"]


def test_delete_collection(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(manifest(*(secret(f"bulk-{i}", namespace, batch="bulk") for i in range(3))))
    kubectl.apply(manifest(secret("other", namespace)))

    out = kubectl.raw_delete(f"/api/v1/namespaces/{namespace}/secrets?labelSelector=batch%3Dbulk")

    assert sorted(item["metadata"]["name"] for item in out["items"]) == [
        "bulk-0",
        "bulk-1",
        "bulk-2",
    ]
    assert names(kubectl("get", "secrets", "-n", namespace, "-o", "name")) == ["other"]


def test_describe_shows_the_events_of_an_object(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "configmap", "described", "-n", namespace, "--from-literal=k=v")
    uid = kubectl.json("get", "cm", "described", "-n", namespace)["metadata"]["uid"]
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "described.1", "namespace": namespace},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": "described",
            "namespace": namespace,
            "uid": uid,
        },
        "reason": "Synced",
        "message": "seen by the conformance suite",
        "type": "Normal",
        "source": {"component": "conformance"},
        "count": 1,
        "firstTimestamp": "2024-01-01T00:00:00Z",
        "lastTimestamp": "2024-01-01T00:00:00Z",
    }
    kubectl("create", "-f", "-", input=json.dumps(event))

    out = kubectl("describe", "configmap", "described", "-n", namespace)

    assert "Name:         described" in out
    assert "Synced" in out
    assert "seen by the conformance suite" in out


def test_chunked_lists_return_every_object(kubectl: Kubectl, namespace: str) -> None:
    # Secrets, because a real cluster puts ConfigMaps and ServiceAccounts of its own in every
    # namespace and no Secrets.
    base = f"/api/v1/namespaces/{namespace}/secrets"
    created = [f"item-{i:02d}" for i in range(7)]
    kubectl.apply(manifest(*(secret(name, namespace, set="chunk") for name in created)))

    chunked = names(kubectl("get", "secrets", "-n", namespace, "--chunk-size=2", "-o", "name"))
    first = kubectl.raw(f"{base}?limit=3")
    selected = kubectl.raw(f"{base}?limit=3&labelSelector=set%3Dchunk")
    rest = kubectl.raw(f"{base}?limit=10&continue={first['metadata']['continue']}")

    assert chunked == created
    assert [item["metadata"]["name"] for item in first["items"]] == created[:3]
    assert first["metadata"]["remainingItemCount"] == 4
    # With a selector the server cannot know how many remain, and says nothing.
    assert selected["metadata"]["continue"]
    assert "remainingItemCount" not in selected["metadata"]
    assert [item["metadata"]["name"] for item in rest["items"]] == created[3:]
    assert not rest["metadata"].get("continue")
    assert rest["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


def test_continued_list_is_a_snapshot_of_the_first_page(kubectl: Kubectl, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/secrets"
    kubectl.apply(manifest(*(secret(f"item-{i}", namespace) for i in range(4))))
    first = kubectl.raw(f"{base}?limit=2")
    kubectl.apply(manifest(secret("item-9", namespace)))
    kubectl("label", "secret", "item-3", "-n", namespace, "changed=later")
    kubectl("delete", "secret", "item-2", "-n", namespace)

    rest = kubectl.raw(f"{base}?limit=10&continue={first['metadata']['continue']}")

    # Every page shows the collection as it was at the first page's resourceVersion.
    assert [item["metadata"]["name"] for item in rest["items"]] == ["item-2", "item-3"]
    assert "changed" not in (rest["items"][1]["metadata"].get("labels") or {})
