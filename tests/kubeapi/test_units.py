"""Pure parts of the server: patches, selectors, schemas, routes, protobuf, tables."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from carm.sandbox.kubeapi import protobuf, routes, schema, tables
from carm.sandbox.kubeapi.errors import ApiError
from carm.sandbox.kubeapi.patch import json_patch, merge_patch, strategic_merge_patch
from carm.sandbox.kubeapi.selectors import field_predicate, label_predicate

# -- patches ----------------------------------------------------------------------------------


def test_merge_patch_merges_objects_and_deletes_nulls() -> None:
    target = {"a": {"b": 1, "c": 2}, "list": [1, 2], "gone": True}
    patched = merge_patch(target, {"a": {"b": None, "d": 3}, "list": [3], "gone": None})
    assert patched == {"a": {"c": 2, "d": 3}, "list": [3]}
    assert target == {"a": {"b": 1, "c": 2}, "list": [1, 2], "gone": True}  # untouched


def test_json_patch_operations() -> None:
    document = {"a": {"b": [1, 2]}, "x~y": 1, "s/t": 2}
    patched = json_patch(
        document,
        [
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "add", "path": "/a/b/0", "value": 0},
            {"op": "remove", "path": "/x~0y"},
            {"op": "replace", "path": "/s~1t", "value": 20},
            {"op": "copy", "from": "/a/b", "path": "/copied"},
            {"op": "move", "from": "/copied", "path": "/moved"},
            {"op": "test", "path": "/moved/3", "value": 3},
        ],
    )
    assert patched == {"a": {"b": [0, 1, 2, 3]}, "s/t": 20, "moved": [0, 1, 2, 3]}
    assert document == {"a": {"b": [1, 2]}, "x~y": 1, "s/t": 2}


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "test", "path": "/a", "value": 2},
        {"op": "remove", "path": "/missing"},
        {"op": "add", "path": "/no/such/parent", "value": 1},
        {"op": "replace", "path": "/list/5", "value": 1},
    ],
)
def test_json_patch_failures_are_422(operation: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as caught:
        json_patch({"a": 1, "list": [1]}, [operation])
    assert caught.value.code == 422


def test_strategic_merge_patch_lists_and_directives() -> None:
    keys = {"metadata.finalizers": "", "metadata.ownerReferences": "uid", "secrets": "name"}
    target = {
        "metadata": {"finalizers": ["a"], "ownerReferences": [{"uid": "1", "name": "x"}]},
        "secrets": [{"name": "s1", "extra": 1}, {"name": "s2"}],
        "data": {"k": "v", "drop": "me"},
    }
    patch = {
        "metadata": {
            "finalizers": ["b"],
            "ownerReferences": [{"uid": "1", "name": "y"}, {"uid": "2", "name": "z"}],
        },
        "$setElementOrder/secrets": [{"name": "s1"}],
        "secrets": [{"name": "s2", "$patch": "delete"}, {"name": "s1", "more": 2}],
        "data": {"drop": None},
    }
    patched = strategic_merge_patch(target, patch, keys)
    assert patched == {
        "metadata": {
            "finalizers": ["a", "b"],
            "ownerReferences": [{"uid": "1", "name": "y"}, {"uid": "2", "name": "z"}],
        },
        "secrets": [{"name": "s1", "extra": 1, "more": 2}],
        "data": {"k": "v"},
    }
    removed = strategic_merge_patch(
        patched, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, keys
    )
    assert removed["metadata"]["finalizers"] == ["b"]
    replaced = strategic_merge_patch(target, {"data": {"$patch": "replace", "only": "1"}}, keys)
    assert replaced["data"] == {"only": "1"}


# -- selectors --------------------------------------------------------------------------------


def labelled(**labels: str) -> dict[str, Any]:
    return {"metadata": {"name": "n", "namespace": "ns", "labels": labels}}


def test_label_selector_grammar() -> None:
    predicate = label_predicate("env in (prod, staging),tier!=db,!legacy,team")
    assert predicate is not None
    assert predicate(labelled(env="prod", tier="web", team="a"))
    assert not predicate(labelled(env="dev", team="a"))
    assert not predicate(labelled(env="prod", team="a", legacy="yes"))
    assert not predicate(labelled(env="prod", tier="db", team="a"))
    assert not predicate(labelled(env="prod"))
    assert label_predicate("") is None


def test_field_selectors() -> None:
    predicate = field_predicate("metadata.name=n,metadata.namespace!=other")
    assert predicate is not None and predicate(labelled())
    assert field_predicate("status.phase=Active", ["status.phase"]) is not None
    with pytest.raises(ApiError):
        field_predicate("spec.secret=1")


# -- schemas ----------------------------------------------------------------------------------

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "when": {"type": "string", "format": "date-time"},
                "port": {"x-kubernetes-int-or-string": True},
                "choice": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "items": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                "nested": {
                    "type": "object",
                    "properties": {"keep": {"type": "string"}},
                },
            },
        },
    },
}


def test_prune_reports_paths_and_keeps_known_fields() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "K",
        "metadata": {"name": "n", "junk": 1},
        "spec": {"nested": {"keep": "x", "drop": 1}, "items": ["a"], "other": 2},
    }
    unknown = schema.prune(SCHEMA, obj)
    assert sorted(unknown) == ["metadata.junk", "spec.nested.drop", "spec.other"]
    assert obj == {
        "apiVersion": "v1",
        "kind": "K",
        "metadata": {"name": "n"},
        "spec": {"nested": {"keep": "x"}, "items": ["a"]},
    }


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"when": "2026-01-01T00:00:00Z"}, None),
        ({"when": "yesterday"}, "must be of type date-time"),
        ({"port": 80}, None),
        ({"port": "http"}, None),
        ({"port": 1.5}, "must be of type integer-or-string"),
        ({"choice": True}, "anyOf"),
        ({"items": ["a", "a"]}, "Duplicate value"),
    ],
)
def test_validation_edge_cases(spec: dict[str, Any], problem: str | None) -> None:
    causes = schema.validate(SCHEMA, {"spec": spec})
    if problem is None:
        assert causes == []
    else:
        assert len(causes) == 1 and problem in causes[0]["message"]


# -- routes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/api/v1/namespaces", routes.Target("", "v1", "namespaces")),
        ("/api/v1/namespaces/ns", routes.Target("", "v1", "namespaces", name="ns")),
        (
            "/api/v1/namespaces/ns/status",
            routes.Target("", "v1", "namespaces", name="ns", subresource="status"),
        ),
        ("/api/v1/namespaces/ns/configmaps", routes.Target("", "v1", "configmaps", "ns")),
        (
            "/api/v1/watch/namespaces/ns/configmaps/x",
            routes.Target("", "v1", "configmaps", "ns", "x", watch_path=True),
        ),
        (
            "/apis/g.io/v1/namespaces/ns/things/a/status",
            routes.Target("g.io", "v1", "things", "ns", "a", "status"),
        ),
        ("/apis/g.io/v1/things", routes.Target("g.io", "v1", "things")),
        ("/apis/g.io/v1", None),
        ("/api/v1", None),
    ],
)
def test_route_parsing(path: str, target: routes.Target | None) -> None:
    assert routes.parse(path) == target


# -- protobuf ---------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_protobuf_bodies_decode_to_json_shape() -> None:
    meta = (
        _field(1, b"cfg")
        + _field(2, b"")  # empty strings are written on the wire; JSON omits them
        + _field(11, _field(1, b"app") + _field(2, b"web"))
        + _field(14, b"a/b")
    )
    config_map = (
        _field(1, meta)
        + _field(2, _field(1, b"k") + _field(2, b"v"))
        + _field(3, _field(1, b"bin") + _field(2, b"\x00\x01"))
        + _field(4, 0)  # immutable=false is optional, so it is kept
    )
    envelope = _field(1, _field(1, b"v1") + _field(2, b"ConfigMap")) + _field(2, config_map)
    decoded = protobuf.decode(protobuf.MAGIC + envelope, "ConfigMap")
    assert decoded == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg", "labels": {"app": "web"}, "finalizers": ["a/b"]},
        "data": {"k": "v"},
        "binaryData": {"bin": base64.b64encode(b"\x00\x01").decode()},
        "immutable": False,
    }


def test_protobuf_without_magic_is_a_bad_request() -> None:
    with pytest.raises(ApiError) as caught:
        protobuf.decode(b"{}", "ConfigMap")
    assert caught.value.code == 400


# -- tables -----------------------------------------------------------------------------------


def test_json_path_subset() -> None:
    obj = {
        "status": {
            "conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]
        },
        "spec": {"list": [1, 2]},
    }
    assert tables.json_path(obj, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert tables.json_path(obj, "{.spec.list[1]}") == [2]
    assert tables.json_path(obj, ".spec.list[*]") == [1, 2]
    assert tables.json_path(obj, ".spec.missing") == []


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (5, "5s"),
        (119, "119s"),
        (125, "2m5s"),
        (600, "10m"),
        (3 * 3600 + 120, "3h2m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 3600, "3d1h"),
        (100 * 86400, "100d"),
        (800 * 86400, "2y"),
    ],
)
def test_human_durations(seconds: int, shown: str) -> None:
    assert tables.human_duration(seconds) == shown
