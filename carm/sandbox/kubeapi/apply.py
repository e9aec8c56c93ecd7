"""Server-side apply: merge a configuration, take ownership, report conflicts, drop what was let go.

What an `application/apply-patch+yaml` request does to an object, in the apiserver's order:

1. **merge**: the configuration is merged into the live object: maps recursively (unless
   `atomic`), atomic lists replaced, `set` and `map` lists merged item by item (the
   configuration's order wins, live-only items stay where they were);
2. **conflicts**: a field the configuration sets to a value other than the live one, while
   another *Apply* manager owns it, is a conflict (409 with one cause per field) unless `force`
   is set, which moves the field to this manager. The same value is shared ownership;
3. **ownership**: the manager now owns exactly what the configuration sets (see fieldsets.py);
   an empty configuration leaves it no entry;
4. **removal**: a field the manager owned before and no longer sets is removed from the object,
   unless another Apply manager owns it. A map or list emptied that way goes too (the
   apiserver leaves a null that pruning then drops). This is what makes removing
   `spec.versioning` from a manifest remove it from the Bucket.

A field changed by a non-apply write is not owned by anyone here (no `Update` entries are kept,
see managed_fields.py), so an applier never conflicts with such a writer, where the apiserver
would report a conflict with e.g. `"kubectl-edit" using v1`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any

import orjson

from carm.sandbox.kubeapi.errors import ApiError
from carm.sandbox.kubeapi.fieldsets import (
    EMPTY,
    MISSING,
    FieldPath,
    FieldSet,
    child,
    encode,
    index_of,
    item_element,
    lookup,
    owned_fields,
    path_order,
    path_string,
    prefixes,
)
from carm.sandbox.kubeapi.managed_fields import (
    APPLY,
    Applier,
    applier_of,
    apply_entry,
    apply_sets,
    in_server_order,
)
from carm.sandbox.kubeapi.shapes import ATOMIC, Shape


@dataclass(frozen=True, slots=True)
class Conflict:
    applier: Applier
    path: FieldPath


def server_side_apply(
    live: dict[str, Any] | None,
    config: dict[str, Any],
    *,
    applier: Applier,
    api_version: str,
    shape: Shape,
    force: bool,
    now: str,
) -> dict[str, Any]:
    """The object `config` applied by `applier` makes of `live` (None: not there yet).

    Neither argument is modified. Raises a 409 `ApiError` on conflicts without `force`.
    """
    base: dict[str, Any] = orjson.loads(orjson.dumps(live)) if live is not None else {}
    meta = base.setdefault("metadata", {})
    entries: list[dict[str, Any]] = meta.pop("managedFields", None) or []
    others = apply_sets(entries)
    last = others.pop(applier, EMPTY)
    owned = owned_fields(config, shape)
    merged = _merge_map(base, config, shape, ())
    conflicts = _conflicts(live or {}, merged, owned, others)
    if conflicts and not force:
        raise conflict_error(conflicts)
    taken: dict[Applier, FieldSet] = {}
    for found in conflicts:
        taken[found.applier] = taken.get(found.applier, EMPTY) | {found.path}
    for other, paths in taken.items():
        others[other] = others[other] - paths
    kept = owned.union(*others.values())
    _remove(merged, _tree(last - kept), (), kept | prefixes(kept))
    unchanged = (
        live is not None
        and not taken
        and owned == last
        and _without_entries(merged) == _without_entries(live)
    )
    merged["metadata"]["managedFields"] = _entries(
        entries, others, taken, applier, owned, api_version, now, keep_time=unchanged
    )
    if not merged["metadata"]["managedFields"]:
        del merged["metadata"]["managedFields"]
    return merged


def _without_entries(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"}}


def _entries(
    entries: list[dict[str, Any]],
    others: Mapping[Applier, FieldSet],
    taken: Mapping[Applier, FieldSet],
    applier: Applier,
    owned: FieldSet,
    api_version: str,
    now: str,
    *,
    keep_time: bool,
) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for entry in entries:
        who = applier_of(entry)
        if entry.get("operation") != APPLY:
            result.append(entry)
        elif who == applier:
            if keep_time:
                result.append(entry)
        elif who in taken:
            if others[who]:
                result.append({**entry, "fieldsV1": encode(others[who])})
        else:
            result.append(entry)
    if owned and not keep_time:
        result.append(apply_entry(applier, api_version, owned, now))
    return in_server_order(result)


# ---------------------------------------------------------------------------------------------
# Merging


def _merge_map(
    target: dict[str, Any], config: Mapping[str, Any], shape: Shape, path: FieldPath
) -> dict[str, Any]:
    for name, value in config.items():
        if value is None:
            # The apiserver drops nulls of fields that are not nullable before storing.
            target.pop(name, None)
            continue
        child_shape, _ = shape.field(name)
        target[name] = _merged(target.get(name, MISSING), value, child_shape, (*path, f"f:{name}"))
    return target


def _merged(live: Any, config: Any, shape: Shape, path: FieldPath) -> Any:
    if isinstance(config, dict) and isinstance(live, dict) and not shape.atomic_map:
        return _merge_map(live, config, shape, path)
    if isinstance(config, list) and isinstance(live, list):
        kind, keys = shape.list_type()
        if kind != ATOMIC:
            return _merge_list(live, config, kind, keys, shape.item(), path)
    return copy.deepcopy(config)


def _merge_list(
    live: list[Any],
    config: list[Any],
    kind: str,
    keys: tuple[str, ...],
    item_shape: Shape,
    path: FieldPath,
) -> list[Any]:
    wanted = [item_element(kind, keys, item, path) for item in config]
    known = [_element_or_none(kind, keys, item, path) for item in live]
    live_at = {element: index for index, element in enumerate(known) if element is not None}
    in_config = set(wanted)
    merged: list[Any] = []
    emitted: set[str] = set()
    at_live = at_config = 0
    while at_live < len(live) or at_config < len(config):
        element = known[at_live] if at_live < len(live) else None
        if at_live < len(live) and element in emitted:
            at_live += 1
        elif at_live < len(live) and (element is None or element not in in_config):
            merged.append(live[at_live])  # not in the configuration: stays where it was
            at_live += 1
        elif at_config < len(config):
            target = wanted[at_config]
            item = config[at_config]
            at_config += 1
            if target in live_at:
                item_path = (*path, target)
                merged.append(_merged(live[live_at[target]], item, item_shape, item_path))
            else:
                merged.append(copy.deepcopy(item))
            emitted.add(target)
        else:
            at_live += 1
    return merged


def _element_or_none(kind: str, keys: tuple[str, ...], item: Any, path: FieldPath) -> str | None:
    try:
        return item_element(kind, keys, item, path)
    except ApiError:
        return None  # a stored item without its keys (written by a patch): matches nothing


# ---------------------------------------------------------------------------------------------
# Conflicts


def _conflicts(
    live: dict[str, Any],
    merged: dict[str, Any],
    owned: FieldSet,
    others: Mapping[Applier, FieldSet],
) -> list[Conflict]:
    containers = prefixes(owned)
    found: list[Conflict] = []
    for other in sorted(others):
        for path in sorted(owned & others[other], key=path_order):
            before = lookup(live, path)
            if before is MISSING or (path not in containers and before != lookup(merged, path)):
                found.append(Conflict(other, path))
    return found


def _manager_named(applier: Applier) -> str:
    manager, subresource = applier
    shown = json.dumps(manager)
    return f"{shown} with subresource {json.dumps(subresource)}" if subresource else shown


def conflict_error(conflicts: list[Conflict]) -> ApiError:
    """The apiserver's 409 for apply conflicts: one cause per field, grouped by manager."""
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {_manager_named(found.applier)}",
            "field": path_string(found.path),
        }
        for found in conflicts
    ]
    if len(conflicts) == 1:
        only = conflicts[0]
        message = (
            f"Apply failed with 1 conflict: conflict with {_manager_named(only.applier)}: "
            f"{path_string(only.path)}"
        )
    else:
        lines: list[str] = []
        for applier in sorted({found.applier for found in conflicts}):
            lines.append(f"conflicts with {_manager_named(applier)}:")
            lines.extend(
                f"- {path_string(found.path)}" for found in conflicts if found.applier == applier
            )
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return ApiError(409, "Conflict", message, details={"causes": causes})


# ---------------------------------------------------------------------------------------------
# Removal of what the manager let go

# A tree of paths: element -> (is the path itself a member, the tree below it).
_Tree = dict[str, tuple[bool, "_Tree"]]


def _tree(paths: FieldSet) -> _Tree:
    tree: _Tree = {}
    for path in paths:
        node = tree
        for depth, element in enumerate(path):
            member, below = node.get(element, (False, {}))
            node[element] = (member or depth == len(path) - 1, below)
            node = below
    return tree


def _remove(node: Any, tree: _Tree, path: FieldPath, kept_below: Set[FieldPath]) -> None:
    """Remove the members of `tree` from `node`, keeping what `kept_below` still holds."""
    for element, (member, below) in tree.items():
        value = child(node, element)
        if value is MISSING:
            continue
        element_path = (*path, element)
        if member and element_path not in kept_below:
            _delete(node, element)
            continue
        if below and isinstance(value, dict | list) and value:
            _remove(value, below, element_path, kept_below)
            if not value:
                _delete(node, element)


def _delete(node: Any, element: str) -> None:
    if isinstance(node, dict):
        node.pop(element[2:], None)
        return
    index = index_of(node, element)
    if index is not None:
        node.pop(index)
