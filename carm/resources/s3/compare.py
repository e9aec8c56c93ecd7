"""Does what S3 reports satisfy what the spec asks? Comparison of sub-configurations.

Both sides are in the spec's spelling (see `shapes.from_aws`) and are first brought to one
canonical form, because S3 answers with its own defaults and spellings:

- empty values are absent: S3 reports `BucketKeyEnabled: false`, `Prefix: ""`, empty lists,
  and every boolean of these APIs defaults to false, so `false`, `""`, `[]`, `{}` and `null`
  all mean "not set";
- lists of strings are sets (`events`, `allowedMethods`): S3 may reorder them;
- lists of objects keep their order (CORS and routing rules apply first-match-wins);
- date-times are compared as instants, whatever their spelling;
- an `id` that the spec leaves out but S3 reports was assigned by S3 (lifecycle, replication
  and notification rules get one) and is ignored.
"""

from __future__ import annotations

from typing import Any

from carm.resources.s3.crd import Schema
from carm.resources.s3.shapes import parse_time


def _empty(value: Any) -> bool:
    return value is None or value is False or value == "" or value == [] or value == {}


def canonical(value: Any, schema: Schema, path: str = "spec") -> Any:
    """`value` with defaults dropped, string lists sorted and date-times normalized."""
    kind = schema.get("type")
    if kind == "object" and isinstance(value, dict):
        properties: dict[str, Schema] = schema.get("properties") or {}
        result = {}
        for name, item in value.items():
            item = canonical(item, properties.get(name) or {}, f"{path}.{name}")
            if not _empty(item):
                result[name] = item
        return result
    if kind == "array" and isinstance(value, list):
        items_schema: Schema = schema.get("items") or {}
        items = [canonical(item, items_schema, f"{path}[{i}]") for i, item in enumerate(value)]
        if items_schema.get("type") in {"string", "integer", "boolean"}:
            return sorted(items, key=repr)
        return items
    if kind == "string" and schema.get("format") == "date-time" and isinstance(value, str):
        return parse_time(value, path)
    return value


def satisfied(desired: Any, observed: Any, schema: Schema) -> bool:
    """True when S3's `observed` value is what the spec's `desired` value asks for."""
    return _same(canonical(desired, schema), canonical(observed, schema))


def _same(desired: Any, observed: Any) -> bool:
    if isinstance(desired, dict) and isinstance(observed, dict):
        if "id" not in desired:
            observed = {k: v for k, v in observed.items() if k != "id"}
        return desired.keys() == observed.keys() and all(
            _same(desired[k], observed[k]) for k in desired
        )
    if isinstance(desired, list) and isinstance(observed, list):
        return len(desired) == len(observed) and all(
            _same(d, o) for d, o in zip(desired, observed, strict=True)
        )
    if _empty(desired) and _empty(observed):
        return True
    return bool(desired == observed)
