"""Field sets: which fields of an object a manager owns, and their FieldsV1 encoding.

A field path is a tuple of path elements, each kept in its serialized FieldsV1 form, so that
sets compare, hash and encode without conversion:

- `f:<name>`: a map entry or struct field;
- `k:{"name":"web","port":80}`: the item of an associative list whose merge keys have these
  values (keys sorted, compact JSON escaped as Go does);
- `v:"value"`: the item of a set list with that value.

A set holds its members only: the leaves a manager set, the list items it added, and the map
entries the schema does not declare (labels, `additionalProperties`). Struct fields that merely
contain owned fields are not members, as in structured-merge-diff. FieldsV1 nests the members as
a tree of JSON objects: a member with nothing below is `{}`, a member with children carries
`".": {}` among them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from carm.sandbox.kubeapi.errors import ApiError, bad_request
from carm.sandbox.kubeapi.shapes import ATOMIC, MAP, Shape

FieldPath = tuple[str, ...]
FieldSet = frozenset[FieldPath]

EMPTY: FieldSet = frozenset()
MISSING: Any = object()

# What the apiserver never records as owned: identity and server-kept metadata.
_NOT_OWNED = frozenset(
    {
        ("f:apiVersion",),
        ("f:kind",),
        *(
            ("f:metadata", f"f:{name}")
            for name in (
                "name",
                "namespace",
                "creationTimestamp",
                "selfLink",
                "uid",
                "generation",
                "managedFields",
                "resourceVersion",
            )
        ),
    }
)
# How elements sort within an object: fields, then keyed items, then set values (as upstream).
_RANK = {"f": 0, "k": 1, "v": 2, "i": 3}


def _go_json(value: Any) -> str:
    """Compact JSON as Go's encoder writes it (sorted keys, HTML characters escaped)."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def item_element(kind: str, keys: tuple[str, ...], item: Any, where: FieldPath) -> str:
    """The path element of a `set` or `map` list item; a map item must carry its keys."""
    if kind != MAP:
        return "v:" + _go_json(item)
    if not isinstance(item, dict):
        raise _typed_error(where, "associative list with keys has an element that is not a map")
    missing = [key for key in keys if key not in item]
    if missing:
        raise _typed_error(
            where,
            f'associative list with keys has an element that omits key field "{missing[0]}" '
            "(and doesn't have default value)",
        )
    return "k:" + _go_json({key: item[key] for key in keys})


def _typed_error(where: FieldPath, why: str) -> ApiError:
    return bad_request(f"failed to create typed patch object: {path_string(where)}: {why}")


# ---------------------------------------------------------------------------------------------
# What a configuration owns


def owned_fields(config: dict[str, Any], shape: Shape) -> FieldSet:
    """The members an applied configuration sets (identity and server metadata left out)."""
    found: set[FieldPath] = set()
    _walk_map(config, shape, (), found)
    return frozenset(found - _NOT_OWNED)


def _walk(value: Any, shape: Shape, path: FieldPath, found: set[FieldPath]) -> None:
    if isinstance(value, dict):
        if shape.atomic_map:
            found.add(path)
        else:
            _walk_map(value, shape, path, found)
    elif isinstance(value, list):
        kind, keys = shape.list_type()
        if kind == ATOMIC:
            found.add(path)
            return
        item_shape = shape.item()
        seen: set[str] = set()
        for item in value:
            element = item_element(kind, keys, item, path)
            if element in seen:
                raise _typed_error(path, f"duplicate entries for key {element[2:]}")
            seen.add(element)
            item_path = (*path, element)
            if isinstance(item, dict):
                _walk_map(item, item_shape, item_path, found)
            found.add(item_path)
    else:
        found.add(path)


def _walk_map(value: dict[str, Any], shape: Shape, path: FieldPath, found: set[FieldPath]) -> None:
    for name, child in value.items():
        child_shape, declared = shape.field(name)
        child_path = (*path, f"f:{name}")
        _walk(child, child_shape, child_path, found)
        if not declared:
            found.add(child_path)


# ---------------------------------------------------------------------------------------------
# Finding a path in an object


@lru_cache(maxsize=4096)
def _decoded(element: str) -> Any:
    return json.loads(element[2:])


def lookup(obj: Any, path: FieldPath) -> Any:
    """The value at `path` in `obj`, or MISSING."""
    node = obj
    for element in path:
        node = child(node, element)
        if node is MISSING:
            return MISSING
    return node


def child(node: Any, element: str) -> Any:
    """The value one element below `node`, or MISSING."""
    kind = element[0]
    if kind == "f":
        return node.get(element[2:], MISSING) if isinstance(node, dict) else MISSING
    if not isinstance(node, list):
        return MISSING
    index = index_of(node, element)
    return MISSING if index is None else node[index]


def index_of(items: list[Any], element: str) -> int | None:
    """Where the item that `element` (`k:` or `v:`) names sits in a list."""
    wanted = _decoded(element)
    if element[0] == "k":
        for index, item in enumerate(items):
            if isinstance(item, dict) and all(
                key in item and item[key] == value for key, value in wanted.items()
            ):
                return index
        return None
    for index, item in enumerate(items):
        if item == wanted:
            return index
    return None


def prefixes(paths: Iterable[FieldPath]) -> set[FieldPath]:
    """Every proper prefix of the given paths (the containers of what they hold)."""
    found: set[FieldPath] = set()
    for path in paths:
        for end in range(1, len(path)):
            found.add(path[:end])
    return found


# ---------------------------------------------------------------------------------------------
# FieldsV1


def _order(element: str) -> tuple[int, str]:
    return (_RANK.get(element[0], 4), element)


def path_order(path: FieldPath) -> tuple[tuple[int, str], ...]:
    """A sort key that lists paths in the order the apiserver walks a set."""
    return tuple(_order(element) for element in path)


def encode(fields: FieldSet) -> dict[str, Any]:
    """The FieldsV1 tree of a set."""
    tree: dict[str, Any] = {}
    for path in fields:
        node = tree
        for element in path:
            node = node.setdefault(element, {})
        node["."] = {}
    return _finish(tree)


def _finish(node: dict[str, Any]) -> dict[str, Any]:
    member = node.pop(".", None) is not None
    out = {element: _finish(node[element]) for element in sorted(node, key=_order)}
    if member and out:
        out["."] = {}
    return out


def decode(fields_v1: Any) -> FieldSet:
    """The set a FieldsV1 tree encodes (elements of unknown kinds are skipped, as upstream)."""
    found: set[FieldPath] = set()
    if isinstance(fields_v1, dict):
        _read(fields_v1, (), found)
    return frozenset(found)


def _read(node: dict[str, Any], path: FieldPath, found: set[FieldPath]) -> None:
    for element, below in node.items():
        if element == ".":
            found.add(path)
        elif element[:2] in ("f:", "k:", "v:", "i:"):
            child_path = (*path, element)
            if isinstance(below, dict) and below:
                _read(below, child_path, found)
            else:
                found.add(child_path)


# ---------------------------------------------------------------------------------------------
# Paths as messages print them


def path_string(path: FieldPath) -> str:
    """`.spec.ports[name="web"].port`, as the apiserver names a field in a conflict."""
    parts: list[str] = []
    for element in path:
        kind, text = element[0], element[2:]
        if kind == "f":
            parts.append("." + text)
        elif kind == "k":
            keys = _decoded(element)
            parts.append("[" + ",".join(f"{k}={_shown(v)}" for k, v in keys.items()) + "]")
        elif kind == "v":
            parts.append(f"[={_shown(_decoded(element))}]")
        else:
            parts.append(f"[{text}]")
    return "".join(parts)


def _shown(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else _go_json(value)
