"""Structural OpenAPI v3 schemas: pruning, defaulting and validation, as the apiserver does them.

The apiserver handles a custom resource body in this order, and so does this module's caller:

1. **prune**: fields the schema does not know are dropped (kept under
   `x-kubernetes-preserve-unknown-fields`); their paths are reported so the caller can honour
   `fieldValidation` (Strict: 400, Warn: a `Warning` header, Ignore: silence);
2. **default**: `default` values fill missing fields;
3. **validate**: types, required, enum, pattern, lengths, bounds, items, formats... Each
   problem is a cause `{reason, message, field}` worded like the apiserver's, so the 422 reads
   `Bucket.s3.services.k8s.aws "x" is invalid: spec.name: Required value`.

`metadata` is never walked with the schema: the server validates it itself.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
import uuid
from datetime import datetime
from functools import lru_cache
from typing import Any

from carm.sandbox.kubeapi.metadata import OBJECT_META_FIELDS

Schema = dict[str, Any]
Cause = dict[str, str]

_ALWAYS_KEPT = ("apiVersion", "kind", "metadata")


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ---------------------------------------------------------------------------------------------
# Pruning


def prune(schema: Schema | None, obj: dict[str, Any]) -> list[str]:
    """Drop fields `schema` does not know from `obj` (in place); return their paths.

    With no schema at all, everything is kept (as for a CRD version without one).
    """
    unknown: list[str] = []
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        for key in [key for key in meta if key not in OBJECT_META_FIELDS]:
            unknown.append(f"metadata.{key}")
            del meta[key]
    if schema is None:
        return unknown
    _prune_node(schema, obj, "", unknown, root=True)
    return unknown


def _prune_node(schema: Schema, value: Any, path: str, unknown: list[str], *, root: bool) -> None:
    if isinstance(value, dict):
        properties: dict[str, Schema] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        for key in list(value):
            if root and key in _ALWAYS_KEPT:
                continue
            if embedded and key in ("apiVersion", "kind", "metadata"):
                continue
            child_path = _child(path, key)
            if key in properties:
                _prune_node(properties[key], value[key], child_path, unknown, root=False)
            elif isinstance(additional, dict):
                _prune_node(additional, value[key], child_path, unknown, root=False)
            elif additional is True or preserve:
                continue
            elif properties or additional is False or schema.get("type") == "object":
                unknown.append(child_path)
                del value[key]
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                _prune_node(items, item, f"{path}[{index}]", unknown, root=False)


# ---------------------------------------------------------------------------------------------
# Defaulting


def apply_defaults(schema: Schema | None, value: Any) -> None:
    """Fill `default`s of missing object fields, recursively, in place."""
    if schema is None:
        return
    if isinstance(value, dict):
        properties: dict[str, Schema] = schema.get("properties") or {}
        for key, sub in properties.items():
            if key == "metadata":
                continue
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                apply_defaults(sub, value[key])
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key, item in value.items():
                if key not in properties:
                    apply_defaults(additional, item)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for item in value:
                apply_defaults(items, item)


# ---------------------------------------------------------------------------------------------
# Validation


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _go_value(value: Any) -> str:
    """A value as Go's `%#v` prints it in field errors."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return _type_name(value)


def _cause(reason: str, field: str, message: str) -> Cause:
    return {"reason": reason, "message": message, "field": field}


def _invalid(field: str, value: Any, why: str) -> Cause:
    return _cause("FieldValueInvalid", field, f"Invalid value: {_go_value(value)}: {why}")


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _type_matches(expected: str, value: Any) -> bool:
    actual = _type_name(value)
    if expected == "number":
        return actual in ("integer", "number")
    return actual == expected


def _format_problem(fmt: str, value: str) -> bool:
    """True when a string value breaks a (cheaply checkable) format."""
    try:
        if fmt == "date-time":
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif fmt == "byte":
            base64.b64decode(value, validate=True)
        elif fmt == "uuid":
            uuid.UUID(value)
        elif fmt in ("int32", "int64"):
            int(value)
        else:
            return False
    except (ValueError, binascii.Error):
        return True
    return False


def validate(schema: Schema | None, obj: dict[str, Any]) -> list[Cause]:
    """Every way `obj` breaks `schema`, as causes with field paths (metadata is not walked)."""
    if schema is None:
        return []
    causes: list[Cause] = []
    _validate_node(schema, obj, "", causes, root=True)
    return causes


def _validate_node(
    schema: Schema, value: Any, path: str, causes: list[Cause], *, root: bool
) -> None:
    if value is None:
        if schema.get("nullable") or (
            "type" not in schema and not schema.get("x-kubernetes-int-or-string")
        ):
            return
        causes.append(
            _cause(
                "FieldValueTypeInvalid",
                path,
                f'Invalid value: "null": {path} in body must be of type '
                f'{schema.get("type", "string")}: "null"',
            )
        )
        return
    if schema.get("x-kubernetes-int-or-string"):
        if _type_name(value) not in ("integer", "string"):
            causes.append(_type_cause(path, value, "integer-or-string"))
            return
    elif "type" in schema and not _type_matches(schema["type"], value):
        causes.append(_type_cause(path, value, schema["type"]))
        return
    _validate_value(schema, value, path, causes)
    _validate_combinators(schema, value, path, causes)
    if isinstance(value, dict):
        _validate_object(schema, value, path, causes, root=root)
    elif isinstance(value, list):
        _validate_array(schema, value, path, causes)


def _type_cause(path: str, value: Any, expected: str) -> Cause:
    actual = _type_name(value)
    return _cause(
        "FieldValueTypeInvalid",
        path,
        f'Invalid value: "{actual}": {path} in body must be of type {expected}: "{actual}"',
    )


def _validate_value(schema: Schema, value: Any, path: str, causes: list[Cause]) -> None:
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        supported = ", ".join(_go_value(item) for item in enum)
        causes.append(
            _cause(
                "FieldValueNotSupported",
                path,
                f"Unsupported value: {_go_value(value)}: supported values: {supported}",
            )
        )
    if isinstance(value, str):
        _validate_string(schema, value, path, causes)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _validate_number(schema, value, path, causes)


def _validate_string(schema: Schema, value: str, path: str, causes: list[Cause]) -> None:
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        limit = schema["maxLength"]
        unit = "byte" if limit == 1 else "bytes"
        causes.append(
            _cause("FieldValueTooLong", path, f"Too long: may not be more than {limit} {unit}")
        )
    if "minLength" in schema and len(value) < schema["minLength"]:
        causes.append(
            _invalid(
                path, value, f"{path} in body should be at least {schema['minLength']} chars long"
            )
        )
    if "pattern" in schema and not _compiled(schema["pattern"]).search(value):
        causes.append(_invalid(path, value, f"{path} in body should match '{schema['pattern']}'"))
    fmt = schema.get("format")
    if fmt and _format_problem(fmt, value):
        causes.append(
            _invalid(path, value, f"{path} in body must be of type {fmt}: {_go_value(value)}")
        )


def _validate_number(schema: Schema, value: float, path: str, causes: list[Cause]) -> None:
    if "maximum" in schema:
        limit = schema["maximum"]
        if schema.get("exclusiveMaximum") and value >= limit:
            causes.append(_invalid(path, value, f"{path} in body should be less than {limit}"))
        elif value > limit:
            causes.append(
                _invalid(path, value, f"{path} in body should be less than or equal to {limit}")
            )
    if "minimum" in schema:
        limit = schema["minimum"]
        if schema.get("exclusiveMinimum") and value <= limit:
            causes.append(_invalid(path, value, f"{path} in body should be greater than {limit}"))
        elif value < limit:
            causes.append(
                _invalid(path, value, f"{path} in body should be greater than or equal to {limit}")
            )
    multiple = schema.get("multipleOf")
    if multiple and (value / multiple) != int(value / multiple):
        causes.append(_invalid(path, value, f"{path} in body should be a multiple of {multiple}"))


def _validate_combinators(schema: Schema, value: Any, path: str, causes: list[Cause]) -> None:
    def problems(sub: Schema) -> list[Cause]:
        found: list[Cause] = []
        _validate_node(sub, value, path, found, root=False)
        return found

    for sub in schema.get("allOf") or ():
        causes.extend(problems(sub))
    if schema.get("anyOf") and all(problems(sub) for sub in schema["anyOf"]):
        causes.append(_invalid(path, value, f'"{path}" must validate at least one schema (anyOf)'))
    if schema.get("oneOf"):
        passing = sum(1 for sub in schema["oneOf"] if not problems(sub))
        if passing != 1:
            causes.append(
                _invalid(path, value, f'"{path}" must validate one and only one schema (oneOf)')
            )
    if isinstance(schema.get("not"), dict) and not problems(schema["not"]):
        causes.append(_invalid(path, value, f'"{path}" must not validate the schema (not)'))


def _validate_object(
    schema: Schema, value: dict[str, Any], path: str, causes: list[Cause], *, root: bool
) -> None:
    for key in schema.get("required") or ():
        if key not in value:
            causes.append(_cause("FieldValueRequired", _child(path, key), "Required value"))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        causes.append(
            _cause(
                "FieldValueTooMany",
                path,
                f"Too many: {len(value)}: must have at most {schema['maxProperties']} items",
            )
        )
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        causes.append(
            _invalid(
                path,
                len(value),
                f"{path} in body should have at least {schema['minProperties']} properties",
            )
        )
    properties: dict[str, Schema] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key, item in value.items():
        if root and key == "metadata":
            continue
        child_path = _child(path, key)
        if key in properties:
            _validate_node(properties[key], item, child_path, causes, root=False)
        elif isinstance(additional, dict):
            _validate_node(additional, item, child_path, causes, root=False)


def _validate_array(schema: Schema, value: list[Any], path: str, causes: list[Cause]) -> None:
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        causes.append(
            _cause(
                "FieldValueTooMany",
                path,
                f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
            )
        )
    if "minItems" in schema and len(value) < schema["minItems"]:
        causes.append(
            _invalid(
                path, len(value), f"{path} in body should have at least {schema['minItems']} items"
            )
        )
    if schema.get("uniqueItems"):
        seen: list[Any] = []
        for item in value:
            if item in seen:
                causes.append(
                    _cause("FieldValueDuplicate", path, f"Duplicate value: {_go_value(item)}")
                )
                break
            seen.append(item)
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            _validate_node(items, item, f"{path}[{index}]", causes, root=False)
