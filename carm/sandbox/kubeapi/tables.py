"""`meta.k8s.io/v1` Tables, for `kubectl get` (it asks with `Accept: ...;as=Table;...`).

Custom kinds get Name plus their `additionalPrinterColumns` (or Name and Age when they declare
none), evaluated with the small JSONPath subset printer columns use (`.a.b`, `[0]`, `[*]`,
`[?(@.type=="Ready")]`); built-in kinds get the columns the real server prints for them.
Date cells are rendered as ages ("5m"), as the server does.
"""

from __future__ import annotations

import re
import time
from calendar import timegm
from collections.abc import Callable
from typing import Any

from carm.sandbox.kubeapi.registry import ResourceType

Column = dict[str, Any]
Cell = Callable[[dict[str, Any]], Any]

_AGE: Column = {
    "name": "Age",
    "type": "date",
    "jsonPath": ".metadata.creationTimestamp",
    "description": "CreationTimestamp",
}


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def human_duration(seconds: float) -> str:
    """kubectl's short age format: 45s, 5m3s, 17m, 3h4m, 20h, 3d4h, 120d, 3y..."""
    seconds = max(0, int(seconds))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"


def _age(timestamp: Any) -> str | None:
    if not isinstance(timestamp, str):
        return None
    try:
        then = timegm(time.strptime(timestamp.replace("Z", ""), "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return "<invalid>"
    return human_duration(time.time() - then)


_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\*)\]|\[\?\(@\.([\w.]+)\s*==\s*[\"']([^\"']*)[\"']\)\]")


def json_path(obj: Any, path: str) -> list[Any]:
    """All values `path` selects in `obj` (a `{...}` wrapper is allowed)."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    values = [obj]
    for match in _STEP.finditer(path):
        key, index, filter_key, filter_value = match.groups()
        selected: list[Any] = []
        for value in values:
            if key is not None and isinstance(value, dict) and key in value:
                selected.append(value[key])
            elif index is not None and isinstance(value, list):
                if index == "*":
                    selected.extend(value)
                elif int(index) < len(value):
                    selected.append(value[int(index)])
            elif filter_key is not None and isinstance(value, list):
                for item in value:
                    found = json_path(item, "." + filter_key)
                    if found and str(found[0]) == filter_value:
                        selected.append(item)
        values = selected
    return values


def _cell(column: Column, obj: dict[str, Any]) -> Any:
    found = json_path(obj, column.get("jsonPath", ""))
    if not found:
        return None
    value = found[0]
    kind = column.get("type", "string")
    if kind == "date":
        return _age(value)
    if kind == "string":
        return (
            value
            if isinstance(value, str)
            else str(value).lower()
            if isinstance(value, bool)
            else str(value)
        )
    return value


def _column_cell(column: Column) -> Cell:
    return lambda obj: _cell(column, obj)


def _name(obj: dict[str, Any]) -> Any:
    return obj["metadata"]["name"]


def _created(obj: dict[str, Any]) -> Any:
    return _age(obj["metadata"].get("creationTimestamp"))


def _count(field: str) -> Cell:
    return lambda obj: len(obj.get(field) or {})


def _at(path: str) -> Cell:
    return lambda obj: (json_path(obj, path) or [""])[0]


_BUILTIN: dict[str, list[tuple[str, str, Cell]]] = {
    "Namespace": [("Status", "string", _at(".status.phase"))],
    "ConfigMap": [
        ("Data", "integer", lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}))
    ],
    "Secret": [("Type", "string", _at(".type")), ("Data", "integer", _count("data"))],
    "ServiceAccount": [("Secrets", "integer", lambda o: len(o.get("secrets") or []))],
    "Lease": [("Holder", "string", _at(".spec.holderIdentity"))],
    "Event": [
        ("Type", "string", _at(".type")),
        ("Reason", "string", _at(".reason")),
        ("Message", "string", _at(".message")),
    ],
}


def _columns(rtype: ResourceType) -> tuple[list[Column], list[Cell]]:
    definitions: list[Column] = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "priority": 0,
            "description": "Name must be unique within a namespace.",
        }
    ]
    cells: list[Cell] = [_name]
    if rtype.custom:
        declared = list(rtype.printer_columns) or [_AGE]
        for column in declared:
            definitions.append(
                {
                    "name": column.get("name", ""),
                    "type": column.get("type", "string"),
                    "format": column.get("format", ""),
                    "description": column.get("description", ""),
                    "priority": column.get("priority", 0),
                }
            )
            cells.append(_column_cell(column))
        return definitions, cells
    if rtype.kind == "CustomResourceDefinition":
        definitions.append(
            {"name": "Created At", "type": "date", "format": "", "priority": 0, "description": ""}
        )
        cells.append(lambda obj: obj["metadata"].get("creationTimestamp"))
        return definitions, cells
    for name, kind, cell in _BUILTIN.get(rtype.kind, []):
        definitions.append(
            {"name": name, "type": kind, "format": "", "priority": 0, "description": ""}
        )
        cells.append(cell)
    definitions.append(
        {"name": "Age", "type": "string", "format": "", "priority": 0, "description": ""}
    )
    cells.append(_created)
    return definitions, cells


def to_table(rtype: ResourceType, body: dict[str, Any]) -> dict[str, Any]:
    """A Table of one object or of a list's items (metadata of lists carried over)."""
    items = body.get("items", [body])
    definitions, cells = _columns(rtype)
    rows = [
        {
            "cells": [cell(obj) for cell in cells],
            "object": {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            },
        }
        for obj in items
    ]
    metadata = (
        body["metadata"]
        if "items" in body
        else {"resourceVersion": body["metadata"].get("resourceVersion", "")}
    )
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    }
