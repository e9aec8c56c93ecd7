"""Server-side apply without HTTP: the FieldsV1 encoding, merge and removal rules, conflicts, and
what other writes do to `managedFields`."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from carm.sandbox.kubeapi.apply import server_side_apply
from carm.sandbox.kubeapi.builtins import BUILTIN_TYPES, CONFIG_MAP
from carm.sandbox.kubeapi.builtins import NAMESPACE as NAMESPACE_TYPE
from carm.sandbox.kubeapi.errors import ApiError
from carm.sandbox.kubeapi.fieldsets import decode, encode, owned_fields, path_string
from carm.sandbox.kubeapi.registry import Registry, ResourceType
from carm.sandbox.kubeapi.shapes import Shape
from carm.sandbox.kubeapi.storage import Store
from carm.sandbox.kubeapi.verbs import APPLY_PATCH, MERGE_PATCH, Verbs, WriteOptions

_STRING = {"type": "string"}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "name": _STRING,
                "size": {"type": "integer"},
                "versioning": {"type": "object", "properties": {"status": _STRING}},
                "settings": {"type": "object", "additionalProperties": _STRING},
                "selector": {
                    "type": "object",
                    "x-kubernetes-map-type": "atomic",
                    "properties": {"app": _STRING, "tier": _STRING},
                },
                "args": {"type": "array", "items": _STRING},
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": _STRING},
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name", "protocol"],
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": _STRING,
                            "protocol": _STRING,
                            "port": {"type": "integer"},
                        },
                    },
                },
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        },
        "status": {"type": "object", "properties": {"phase": _STRING}},
    },
}
SHAPE = Shape.of_kind(SCHEMA, None)


def config(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "test.carm.dev/v1",
        "kind": "Gadget",
        "metadata": {"name": "g", "namespace": "default"},
        "spec": spec,
    }


def apply(
    live: dict[str, Any] | None, applied: dict[str, Any], manager: str = "m", force: bool = False
) -> dict[str, Any]:
    return server_side_apply(
        live,
        applied,
        applier=(manager, ""),
        api_version="test.carm.dev/v1",
        shape=SHAPE,
        force=force,
        now="2024-01-01T00:00:00Z",
    )


def owners(obj: dict[str, Any]) -> dict[str, Any]:
    return {e["manager"]: e["fieldsV1"] for e in obj["metadata"].get("managedFields", [])}


# -- FieldsV1 ---------------------------------------------------------------------------------


def test_fields_v1_encodes_each_kind_of_field() -> None:
    applied = config(
        name="n",
        versioning={"status": "Enabled"},
        settings={"a": "1"},
        selector={"app": "web"},
        args=["-v"],
        tags=["x"],
        ports=[{"name": "web", "protocol": "TCP", "port": 80}],
        extra={"free": {"deep": 1}},
    )
    applied["metadata"]["labels"] = {"team": "s3"}

    encoded = encode(owned_fields(applied, SHAPE))

    assert encoded == {
        "f:metadata": {"f:labels": {"f:team": {}}},
        "f:spec": {
            "f:args": {},
            "f:extra": {"f:free": {".": {}, "f:deep": {}}},
            "f:name": {},
            "f:ports": {
                'k:{"name":"web","protocol":"TCP"}': {
                    ".": {},
                    "f:name": {},
                    "f:port": {},
                    "f:protocol": {},
                }
            },
            "f:selector": {},
            "f:settings": {"f:a": {}},
            "f:tags": {'v:"x"': {}},
            "f:versioning": {"f:status": {}},
        },
    }
    assert list(encoded["f:spec"]["f:ports"]['k:{"name":"web","protocol":"TCP"}'])[-1] == "."


def test_fields_v1_round_trips_and_identity_is_never_owned() -> None:
    owned = owned_fields(config(tags=["a", "b"], settings={"k": "v"}), SHAPE)

    assert decode(encode(owned)) == owned
    assert ("f:metadata", "f:name") not in owned
    assert ("f:apiVersion",) not in owned
    assert ("f:spec", "f:tags", 'v:"a"') in owned


def test_keys_are_escaped_as_go_writes_them() -> None:
    owned = owned_fields(config(tags=["<a&b>"]), SHAPE)

    assert ("f:spec", "f:tags", 'v:"\\u003ca\\u0026b\\u003e"') in owned


def test_paths_print_as_in_conflict_messages() -> None:
    port = ("f:spec", "f:ports", 'k:{"name":"web","protocol":"TCP"}', "f:port")

    assert path_string(port) == '.spec.ports[name="web",protocol="TCP"].port'
    assert path_string(("f:spec", "f:tags", 'v:"x"')) == '.spec.tags[="x"]'


def test_built_in_kinds_key_lists_by_their_merge_keys() -> None:
    shape = Shape.of_kind(CONFIG_MAP.schema, CONFIG_MAP.extra["merge_keys"])
    applied = {
        "metadata": {"name": "c", "finalizers": ["a/b"], "ownerReferences": [{"uid": "u1"}]},
        "data": {"k": "v"},
    }

    owned = owned_fields(applied, shape)

    assert owned == {
        ("f:data", "f:k"),
        ("f:metadata", "f:finalizers", 'v:"a/b"'),
        ("f:metadata", "f:ownerReferences", 'k:{"uid":"u1"}'),
        ("f:metadata", "f:ownerReferences", 'k:{"uid":"u1"}', "f:uid"),
    }


def test_map_list_items_must_carry_their_keys() -> None:
    with pytest.raises(ApiError) as raised:
        owned_fields(config(ports=[{"name": "web", "port": 80}]), SHAPE)

    assert raised.value.code == 400
    assert 'omits key field "protocol"' in raised.value.message


# -- merge and removal ------------------------------------------------------------------------


def test_a_field_no_longer_applied_is_removed_with_its_emptied_parent() -> None:
    first = apply(None, config(name="n", versioning={"status": "Enabled"}))
    second = apply(first, config(name="n"))

    assert second["spec"] == {"name": "n"}
    assert owners(second) == {"m": {"f:spec": {"f:name": {}}}}


def test_map_keys_and_list_items_merge_and_go_one_by_one() -> None:
    http = {"name": "http", "protocol": "TCP", "port": 80}
    dns = {"name": "dns", "protocol": "UDP", "port": 53}
    first = apply(None, config(settings={"a": "1", "b": "2"}, ports=[http, dns], tags=["x", "y"]))
    second = apply(first, config(settings={"b": "2"}, ports=[dns], tags=["y"]))

    assert second["spec"] == {"settings": {"b": "2"}, "ports": [dns], "tags": ["y"]}


def test_atomic_lists_and_maps_are_replaced_whole() -> None:
    first = apply(None, config(args=["a", "b"], selector={"app": "web", "tier": "front"}))
    second = apply(first, config(args=["c"], selector={"app": "api"}))

    assert second["spec"] == {"args": ["c"], "selector": {"app": "api"}}


def test_what_other_writers_set_stays_and_live_items_keep_their_place() -> None:
    live = apply(None, config(ports=[{"name": "a", "protocol": "TCP", "port": 1}]))
    live["spec"]["ports"].insert(0, {"name": "z", "protocol": "TCP", "port": 26})
    live["spec"]["size"] = 7  # as a merge patch would leave it

    new = {"name": "b", "protocol": "TCP", "port": 2}
    result = apply(live, config(ports=[new]))

    assert result["spec"] == {
        "size": 7,
        "ports": [{"name": "z", "protocol": "TCP", "port": 26}, new],
    }


def test_the_applied_order_wins_for_items_both_have() -> None:
    a = {"name": "a", "protocol": "TCP", "port": 1}
    b = {"name": "b", "protocol": "TCP", "port": 2}
    first = apply(None, config(ports=[a, b]))

    assert apply(first, config(ports=[b, a]))["spec"]["ports"] == [b, a]


def test_an_empty_configuration_drops_the_entry() -> None:
    first = apply(None, config(size=1))
    second = apply(first, config())

    assert "spec" not in second
    assert "managedFields" not in second["metadata"]


# -- conflicts --------------------------------------------------------------------------------


def test_a_different_value_conflicts_with_every_field_listed() -> None:
    live = apply(None, config(size=1, settings={"a": "1"}))

    with pytest.raises(ApiError) as raised:
        apply(live, config(size=2, settings={"a": "2"}), manager="other")

    error = raised.value
    assert error.code == 409
    assert error.reason == "Conflict"
    assert error.message == (
        'Apply failed with 2 conflicts: conflicts with "m":\n- .spec.settings.a\n- .spec.size'
    )
    assert error.status()["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "m"',
            "field": ".spec.settings.a",
        },
        {"reason": "FieldManagerConflict", "message": 'conflict with "m"', "field": ".spec.size"},
    ]


def test_force_moves_ownership_and_the_loser_no_longer_removes_it() -> None:
    live = apply(None, config(size=1, name="n"))
    forced = apply(live, config(size=2), manager="other", force=True)
    after = apply(forced, config(name="n"))  # "m" stops applying size: it is not m's any more

    assert owners(forced) == {"m": {"f:spec": {"f:name": {}}}, "other": {"f:spec": {"f:size": {}}}}
    assert after["spec"] == {"name": "n", "size": 2}


def test_the_same_value_is_shared_and_kept_while_anyone_applies_it() -> None:
    live = apply(None, config(size=3))
    shared = apply(live, config(size=3), manager="other")
    left = apply(shared, config())

    assert set(owners(shared)) == {"m", "other"}
    assert left["spec"] == {"size": 3}
    assert set(owners(left)) == {"other"}


# -- through the verbs ------------------------------------------------------------------------

GADGETS = ResourceType(
    group="test.carm.dev",
    version="v1",
    kind="Gadget",
    plural="gadgets",
    singular="gadget",
    namespaced=True,
    has_status=True,
    schema=SCHEMA,
    custom=True,
    extra={"generation": True, "crd": "gadgets.test.carm.dev"},
)


@pytest.fixture
def verbs() -> Verbs:
    registry = Registry()
    for rtype in BUILTIN_TYPES:
        registry.add(rtype)
    verbs = Verbs(registry, Store())
    verbs.create(NAMESPACE_TYPE, "", {"metadata": {"name": "default"}}, WriteOptions())
    registry.add(GADGETS)
    return verbs


def ssa(
    verbs: Verbs,
    applied: dict[str, Any],
    manager: str = "m",
    subresource: str | None = None,
) -> dict[str, Any]:
    raw = yaml.safe_dump(applied).encode()
    options = WriteOptions(field_manager=manager)
    return verbs.patch(GADGETS, "default", "g", raw, APPLY_PATCH, options, subresource).body


def test_reapplying_the_same_configuration_changes_nothing(verbs: Verbs) -> None:
    first = ssa(verbs, config(size=1))
    again = ssa(verbs, config(size=1))

    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert again["metadata"]["managedFields"] == first["metadata"]["managedFields"]


def test_a_patch_removing_an_applied_field_drops_it_from_the_owner(verbs: Verbs) -> None:
    ssa(verbs, config(size=1, name="n"))
    patched = verbs.patch(
        GADGETS, "default", "g", b'{"spec":{"size":null}}', MERGE_PATCH, WriteOptions()
    ).body

    assert owners(patched) == {"m": {"f:spec": {"f:name": {}}}}


def test_other_writes_keep_clear_or_replace_the_entries(verbs: Verbs) -> None:
    applied = ssa(verbs, config(size=1))
    kept = verbs.patch(
        GADGETS, "default", "g", b'{"metadata":{"managedFields":[]}}', MERGE_PATCH, WriteOptions()
    ).body
    cleared = verbs.patch(
        GADGETS, "default", "g", b'{"metadata":{"managedFields":[{}]}}', MERGE_PATCH, WriteOptions()
    ).body

    assert kept["metadata"]["managedFields"] == applied["metadata"]["managedFields"]
    assert "managedFields" not in cleared["metadata"]


def test_an_applied_configuration_may_not_carry_managed_fields(verbs: Verbs) -> None:
    applied = config(size=1)
    applied["metadata"]["managedFields"] = [{"manager": "x"}]

    with pytest.raises(ApiError) as raised:
        ssa(verbs, applied)

    assert raised.value.code == 400
    assert raised.value.message == "metadata.managedFields must be nil"


def test_status_is_applied_through_its_subresource_only(verbs: Verbs) -> None:
    with_status = {**config(size=1), "status": {"phase": "Ready"}}
    created = ssa(verbs, with_status)
    status = ssa(verbs, {**config(), "status": {"phase": "Ready"}}, "ctl", subresource="status")

    assert "status" not in created
    assert owners(created) == {"m": {"f:spec": {"f:size": {}}}}
    assert status["status"] == {"phase": "Ready"}
    assert status["spec"] == {"size": 1}
    entry = next(e for e in status["metadata"]["managedFields"] if e["manager"] == "ctl")
    assert entry["subresource"] == "status"
    assert entry["fieldsV1"] == {"f:status": {"f:phase": {}}}
