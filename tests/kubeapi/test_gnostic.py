"""The Swagger 2.0 to gnostic protobuf encoding, read back field by field.

kubectl itself reads these bytes in tests/conformance/test_kubectl_list_manifests.py; these
tests pin the parts of gnostic's mapping that kubectl depends on, by field number from
gnostic's OpenAPIv2.proto.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest

from carm.sandbox.kubeapi.gnostic import encode_document
from carm.sandbox.kubeapi.protobuf import wire_fields

Field = tuple[int, int | bytes]

# The fields of one message, read by the server's own protobuf reader (of kubectl's request
# bodies): a reader written apart from the encoder under test, and checked by kubectl itself.
read = wire_fields


def as_double(bits: int | bytes) -> float:
    """A fixed 64-bit field (as `read` gives it) as the double it holds."""
    assert isinstance(bits, int)
    value: float = struct.unpack("<d", bits.to_bytes(8, "little"))[0]
    return value


def only(fields: list[Field], number: int) -> Any:
    values = [value for found, value in fields if found == number]
    assert len(values) == 1, (number, fields)
    return values[0]


def named(fields: list[Field], number: int) -> dict[str, bytes]:
    """A repeated name/value pair field (name 1, value 2) as a dict."""
    pairs = {}
    for found, value in fields:
        if found == number:
            assert isinstance(value, bytes)
            pair = read(value)
            pairs[only(pair, 1).decode()] = only(pair, 2)
    return pairs


def definition(schema: dict[str, Any]) -> list[Field]:
    """The encoded `Schema` of a document holding only that definition."""
    document = read(encode_document({"swagger": "2.0", "definitions": {"Thing": schema}}))
    return read(named(read(only(document, 9)), 1)["Thing"])


def test_schema_wrappers_and_nesting() -> None:
    schema = definition(
        {
            "type": "object",
            "required": ["spec"],
            "properties": {"spec": {"type": "array", "items": {"$ref": "#/definitions/Item"}}},
            "additionalProperties": False,
        }
    )

    assert read(only(schema, 22)) == [(1, b"object")]  # TypeItem
    assert only(schema, 19) == b"spec"
    spec = read(named(read(only(schema, 25)), 1)["spec"])  # Properties of NamedSchema
    items = read(only(read(only(spec, 23)), 1))  # ItemsItem holds one Schema
    assert only(items, 1) == b"#/definitions/Item"
    assert read(only(schema, 21)) == [(2, 0)]  # additionalProperties: the boolean, even false


def test_empty_properties_stay_present() -> None:
    # kubectl tells an object with properties (a kind) from a map by this field's presence.
    schema = definition({"type": "object", "properties": {}})

    assert only(schema, 25) == b""


def test_zero_scalars_are_left_out_as_in_proto3() -> None:
    schema = definition({"type": "integer", "minimum": 0, "maximum": 10, "description": ""})

    assert [number for number, _ in schema] == [7, 22]
    assert as_double(only(schema, 7)) == 10.0


def test_extensions_and_enums_travel_as_yaml_text() -> None:
    gvk = [{"group": "", "version": "v1", "kind": "ConfigMap"}]
    schema = definition({"type": "string", "enum": ["a"], "x-kubernetes-group-version-kind": gvk})

    assert read(only(schema, 20)) == [(2, b'"a"\n')]
    extension = named(schema, 31)["x-kubernetes-group-version-kind"]
    assert read(extension) == [(2, b'[{"group": "", "version": "v1", "kind": "ConfigMap"}]\n')]


def test_parameters_nest_by_where_they_go() -> None:
    operation = {
        "operationId": "patchThing",
        "parameters": [
            {"name": "fieldValidation", "in": "query", "type": "string", "uniqueItems": True},
            {"name": "name", "in": "path", "type": "string", "required": True},
            {"name": "body", "in": "body", "required": True, "schema": {"type": "object"}},
        ],
        "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/T"}}},
    }
    document = read(encode_document({"swagger": "2.0", "paths": {"/things": {"patch": operation}}}))

    path_item = read(named(read(only(document, 8)), 2)["/things"])
    patch = read(only(path_item, 8))
    parameters = [value for number, value in patch if number == 8 and isinstance(value, bytes)]
    query, path, body = (read(only(read(value), 1)) for value in parameters)
    query_schema = read(only(read(only(query, 2)), 3))  # NonBodyParameter, query member
    assert (only(query_schema, 4), only(query_schema, 6), only(query_schema, 20)) == (
        b"fieldValidation",
        b"string",
        1,
    )
    path_schema = read(only(read(only(path, 2)), 4))  # path member: no allowEmptyValue
    assert (only(path_schema, 1), only(path_schema, 4), only(path_schema, 5)) == (
        1,
        b"name",
        b"string",
    )
    body_parameter = read(only(body, 1))
    assert only(body_parameter, 2) == b"body"
    response = read(named(read(only(patch, 9)), 1)["200"])  # ResponseValue
    schema = read(only(read(only(read(only(response, 1)), 2)), 1))  # Response.schema.schema
    assert only(schema, 1) == b"#/definitions/T"


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="Schema has no field 'nullable'"):
        encode_document({"definitions": {"Thing": {"type": "string", "nullable": True}}})
