"""`metadata.managedFields`: the entries the server keeps, and what other writes may do to them.

Only server-side apply records ownership here (an `Apply` entry per field manager and
subresource). Creates, updates and patches do not add `Update` entries: that would make every
write pay for a diff of the whole object, and nothing in the sandbox reads them. What those
writes do to the entries follows the apiserver:

- `managedFields` left out of the body, or sent as `[]`, keeps the stored entries (clients that
  do not know the field cannot drop it by accident);
- a list of empty entries (`[{}]`) clears them;
- any other well-formed list replaces them; a malformed one is ignored;
- a write to a subresource never changes them.

A write that removes a field an `Apply` manager owns drops the field from that manager's set
(an entry left empty goes), as the apiserver does. That check walks only the owned paths, and
only of objects that have `Apply` entries, so objects never applied pay nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from carm.sandbox.kubeapi.fieldsets import MISSING, FieldSet, decode, encode, lookup

APPLY = "Apply"
UPDATE = "Update"
FIELDS_V1 = "FieldsV1"

# An applier is known by its field manager name and the subresource it applied to ("" = main).
Applier = tuple[str, str]


def applier_of(entry: Mapping[str, Any]) -> Applier:
    return (str(entry.get("manager") or ""), str(entry.get("subresource") or ""))


def apply_sets(entries: Iterable[Mapping[str, Any]]) -> dict[Applier, FieldSet]:
    """The field set of every `Apply` entry."""
    return {
        applier_of(entry): decode(entry.get("fieldsV1"))
        for entry in entries
        if entry.get("operation") == APPLY
    }


def apply_entry(applier: Applier, api_version: str, fields: FieldSet, time: str) -> dict[str, Any]:
    manager, subresource = applier
    entry: dict[str, Any] = {
        "manager": manager,
        "operation": APPLY,
        "apiVersion": api_version,
        "time": time,
        "fieldsType": FIELDS_V1,
        "fieldsV1": encode(fields),
    }
    if subresource:
        entry["subresource"] = subresource
    return entry


def in_server_order(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sorted as the apiserver stores them: operation, time, manager, apiVersion, subresource."""
    return sorted(
        entries,
        key=lambda e: (
            str(e.get("operation") or ""),
            str(e.get("time") or ""),
            str(e.get("manager") or ""),
            str(e.get("apiVersion") or ""),
            str(e.get("subresource") or ""),
        ),
    )


def _well_formed(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("manager", ""), str)
        and entry.get("operation") in (APPLY, UPDATE)
        and entry.get("fieldsType", FIELDS_V1) == FIELDS_V1
        and isinstance(entry.get("fieldsV1", {}), dict)
    )


def after_write(requested: Any, stored: Any, *, subresource: str | None) -> Any:
    """The entries a create, update or patch leaves (None: the object has none)."""
    if subresource is not None or requested is None or requested == [] or requested == stored:
        return stored
    if isinstance(requested, list) and requested and all(entry == {} for entry in requested):
        return None
    if isinstance(requested, list) and all(_well_formed(entry) for entry in requested):
        return requested
    return stored


def forget_removed(entries: Any, obj: dict[str, Any], *, subresource: str | None) -> Any:
    """`entries` without the fields `obj` no longer has, in the `Apply` entries a write can touch.

    A write to the main resource of a kind with a status subresource cannot change status, nor
    a status write anything else, so only the entries of the written part are walked.
    """
    if not isinstance(entries, list) or not any(
        isinstance(e, dict) and e.get("operation") == APPLY for e in entries
    ):
        return entries
    written = subresource or ""
    kept: list[dict[str, Any]] = []
    changed = False
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("operation") != APPLY:
            kept.append(entry)
            continue
        if str(entry.get("subresource") or "") != written:
            kept.append(entry)
            continue
        owned = decode(entry.get("fieldsV1"))
        present = frozenset(path for path in owned if lookup(obj, path) is not MISSING)
        if present == owned:
            kept.append(entry)
            continue
        changed = True
        if present:
            kept.append({**entry, "fieldsV1": encode(present)})
    if not changed:
        return entries
    return kept or None
