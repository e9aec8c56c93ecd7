"""A Swagger 2.0 document as the protobuf message `openapi.v2.Document` of google/gnostic.

kubectl fetches `/openapi/v2` only in protobuf and unmarshals the body as that message whatever
the Content-Type says, so a JSON answer would not do. The apiserver produces the protobuf by
compiling its JSON document with gnostic; this module does the same for the documents
`openapi_v2.py` builds, following gnostic's mapping:

- most messages list their JSON keys in field-number order (1, 2, ...) and gather every `x-`
  key, in document order, into a last `vendor_extension` field of `NamedAny`s;
- the values of `NamedAny`, `default`, `enum` and `example` travel as YAML text (JSON is YAML);
- maps of schemas (`definitions`, `properties`), paths and responses are repeated
  name/value pairs, and a few JSON fields become wrapper messages (`type` is a `TypeItem`,
  `items` an `ItemsItem`, `additionalProperties` a schema-or-boolean `oneof`, a parameter a
  nest of `oneof`s chosen by its `in`);
- as in proto3, zero scalars (empty strings, false, 0) are left out, while a present message
  is written even when empty: kubectl tells an object with `properties` from a map by it.

Only the parts of Swagger 2.0 the served documents use are described; anything else is a
`ValueError`, so a document this server cannot encode fails loudly in its tests.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# Encodes the JSON value of one field as that field (tag included), or as b"" when left out.
Codec = Callable[[int, Any], bytes]

_UINT64 = (1 << 64) - 1


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _bytes(number: int, payload: bytes) -> bytes:
    return _tag(number, 2) + _varint(len(payload)) + payload


def _string(number: int, value: Any) -> bytes:
    return _bytes(number, str(value).encode()) if value else b""


def _strings(number: int, value: Any) -> bytes:
    values = [value] if isinstance(value, str) else value
    return b"".join(_bytes(number, str(item).encode()) for item in values)


def _bool(number: int, value: Any) -> bytes:
    return _tag(number, 0) + b"\x01" if value else b""


def _int(number: int, value: Any) -> bytes:
    return _tag(number, 0) + _varint(int(value) & _UINT64) if value else b""


def _double(number: int, value: Any) -> bytes:
    return _tag(number, 1) + struct.pack("<d", float(value)) if value else b""


def _yaml(value: Any) -> bytes:
    """gnostic's `Any`: its `yaml` field (2) holds the value's text."""
    return _bytes(2, (json.dumps(value) + "\n").encode())


def _any(number: int, value: Any) -> bytes:
    return _bytes(number, _yaml(value))


def _anys(number: int, value: Any) -> bytes:
    return b"".join(_any(number, item) for item in value)


def _named(number: int, name: str, payload: bytes) -> bytes:
    """One pair of a name/value map (`NamedSchema`, `NamedAny`...): name 1, value 2."""
    return _bytes(number, _string(1, name) + _bytes(2, payload))


def _unsupported(number: int, value: Any) -> bytes:
    raise ValueError(f"gnostic: field {number} is not supported here: {value!r}")


class Message:
    """A gnostic message whose fields are JSON keys numbered from 1, then vendor extensions."""

    def __init__(
        self, name: str, fields: Sequence[tuple[str, Codec]], extensions: bool = True
    ) -> None:
        self.name = name
        self._fields = {key: (number, codec) for number, (key, codec) in enumerate(fields, 1)}
        self._extensions = len(fields) + 1 if extensions else None

    def encode(self, value: Mapping[str, Any]) -> bytes:
        unexpected = [
            key
            for key in value
            if key not in self._fields
            and not (self._extensions is not None and key.startswith("x-"))
        ]
        if unexpected:
            raise ValueError(f"gnostic: {self.name} has no field {unexpected[0]!r}")
        out = [
            codec(number, value[key])
            for key, (number, codec) in self._fields.items()
            if key in value
        ]
        if self._extensions is not None:
            out += [
                _named(self._extensions, key, _yaml(item))
                for key, item in value.items()
                if key.startswith("x-")
            ]
        return b"".join(out)

    def codec(self, number: int, value: Any) -> bytes:
        return _bytes(number, self.encode(value))

    def repeated(self, number: int, value: Any) -> bytes:
        return b"".join(_bytes(number, self.encode(item)) for item in value)


# -- schemas ------------------------------------------------------------------------------------


def _schema(number: int, value: Any) -> bytes:
    return SCHEMA.codec(number, value)


def _schemas(number: int, value: Any) -> bytes:
    return SCHEMA.repeated(number, value)


def _schema_map(number: int, value: Any) -> bytes:
    """`Properties` or `Definitions`: repeated `NamedSchema` in field 1."""
    pairs = b"".join(_named(1, name, SCHEMA.encode(item)) for name, item in value.items())
    return _bytes(number, pairs)


def _type_item(number: int, value: Any) -> bytes:
    return _bytes(number, _strings(1, value))


def _items_item(number: int, value: Any) -> bytes:
    schemas = value if isinstance(value, list) else [value]
    return _bytes(number, SCHEMA.repeated(1, schemas))


def _additional_properties(number: int, value: Any) -> bytes:
    if isinstance(value, bool):  # a set oneof member is written even when false
        return _bytes(number, _tag(2, 0) + _varint(int(value)))
    return _bytes(number, SCHEMA.codec(1, value))


EXTERNAL_DOCS = Message("ExternalDocs", [("description", _string), ("url", _string)])
XML = Message(
    "Xml",
    [
        ("name", _string),
        ("namespace", _string),
        ("prefix", _string),
        ("attribute", _bool),
        ("wrapped", _bool),
    ],
)
SCHEMA = Message(
    "Schema",
    [
        ("$ref", _string),
        ("format", _string),
        ("title", _string),
        ("description", _string),
        ("default", _any),
        ("multipleOf", _double),
        ("maximum", _double),
        ("exclusiveMaximum", _bool),
        ("minimum", _double),
        ("exclusiveMinimum", _bool),
        ("maxLength", _int),
        ("minLength", _int),
        ("pattern", _string),
        ("maxItems", _int),
        ("minItems", _int),
        ("uniqueItems", _bool),
        ("maxProperties", _int),
        ("minProperties", _int),
        ("required", _strings),
        ("enum", _anys),
        ("additionalProperties", _additional_properties),
        ("type", _type_item),
        ("items", _items_item),
        ("allOf", _schemas),
        ("properties", _schema_map),
        ("discriminator", _string),
        ("readOnly", _bool),
        ("xml", XML.codec),
        ("externalDocs", EXTERNAL_DOCS.codec),
        ("example", _any),
    ],
)

# -- parameters ---------------------------------------------------------------------------------

_PRIMITIVE_FIELDS: list[tuple[str, Codec]] = [
    ("type", _string),
    ("format", _string),
    ("items", _unsupported),
    ("collectionFormat", _string),
    ("default", _any),
    ("maximum", _double),
    ("exclusiveMaximum", _bool),
    ("minimum", _double),
    ("exclusiveMinimum", _bool),
    ("maxLength", _int),
    ("minLength", _int),
    ("pattern", _string),
    ("maxItems", _int),
    ("minItems", _int),
    ("uniqueItems", _bool),
    ("enum", _anys),
    ("multipleOf", _double),
]
_NAMED: list[tuple[str, Codec]] = [
    ("required", _bool),
    ("in", _string),
    ("description", _string),
    ("name", _string),
]
# Header and path parameters have no `allowEmptyValue`; query and form parameters do.
_PATH_LIKE = [*_NAMED, *_PRIMITIVE_FIELDS]
_QUERY_LIKE = [*_NAMED, ("allowEmptyValue", _bool), *_PRIMITIVE_FIELDS]
# `NonBodyParameter` oneof members, by the parameter's `in`.
_NON_BODY = {
    "header": (1, Message("HeaderParameterSubSchema", _PATH_LIKE)),
    "formData": (2, Message("FormDataParameterSubSchema", _QUERY_LIKE)),
    "query": (3, Message("QueryParameterSubSchema", _QUERY_LIKE)),
    "path": (4, Message("PathParameterSubSchema", _PATH_LIKE)),
}
BODY_PARAMETER = Message(
    "BodyParameter",
    [
        ("description", _string),
        ("name", _string),
        ("in", _string),
        ("required", _bool),
        ("schema", _schema),
    ],
)
JSON_REFERENCE = Message(
    "JsonReference", [("$ref", _string), ("description", _string)], extensions=False
)


def _parameter(value: Mapping[str, Any]) -> bytes:
    """`ParametersItem`: a reference (2) or a `Parameter` (1): body (1) or non-body (2)."""
    if "$ref" in value:
        return JSON_REFERENCE.codec(2, value)
    where = value.get("in")
    if where == "body":
        return _bytes(1, BODY_PARAMETER.codec(1, value))
    if where not in _NON_BODY:
        raise ValueError(f"gnostic: a parameter cannot be in {where!r}")
    member, message = _NON_BODY[where]
    return _bytes(1, _bytes(2, message.codec(member, value)))


def _parameters(number: int, value: Any) -> bytes:
    return b"".join(_bytes(number, _parameter(item)) for item in value)


# -- operations, paths, the document --------------------------------------------------------------


def _schema_item(number: int, value: Any) -> bytes:
    """A response's `SchemaItem`: a schema (1); file schemas (2) are not served here."""
    if value.get("type") == "file":
        raise ValueError("gnostic: file schemas are not supported here")
    return _bytes(number, SCHEMA.codec(1, value))


RESPONSE = Message(
    "Response",
    [
        ("description", _string),
        ("schema", _schema_item),
        ("headers", _unsupported),
        ("examples", _unsupported),
    ],
)


def _responses(number: int, value: Any) -> bytes:
    """`Responses`: each code a `NamedResponseValue` (1), then vendor extensions (2)."""
    codes = b"".join(
        _named(
            1, code, JSON_REFERENCE.codec(2, item) if "$ref" in item else RESPONSE.codec(1, item)
        )
        for code, item in value.items()
        if not code.startswith("x-")
    )
    extensions = b"".join(
        _named(2, key, _yaml(item)) for key, item in value.items() if key.startswith("x-")
    )
    return _bytes(number, codes + extensions)


OPERATION = Message(
    "Operation",
    [
        ("tags", _strings),
        ("summary", _string),
        ("description", _string),
        ("externalDocs", EXTERNAL_DOCS.codec),
        ("operationId", _string),
        ("produces", _strings),
        ("consumes", _strings),
        ("parameters", _parameters),
        ("responses", _responses),
        ("schemes", _strings),
        ("deprecated", _bool),
        ("security", _unsupported),
    ],
)
PATH_ITEM = Message(
    "PathItem",
    [
        ("$ref", _string),
        ("get", OPERATION.codec),
        ("put", OPERATION.codec),
        ("post", OPERATION.codec),
        ("delete", OPERATION.codec),
        ("options", OPERATION.codec),
        ("head", OPERATION.codec),
        ("patch", OPERATION.codec),
        ("parameters", _parameters),
    ],
)


def _paths(number: int, value: Any) -> bytes:
    """`Paths`: vendor extensions (1), then each path a `NamedPathItem` (2)."""
    extensions = b"".join(
        _named(1, key, _yaml(item)) for key, item in value.items() if key.startswith("x-")
    )
    paths = b"".join(
        _named(2, path, PATH_ITEM.encode(item))
        for path, item in value.items()
        if not path.startswith("x-")
    )
    return _bytes(number, extensions + paths)


INFO = Message(
    "Info",
    [
        ("title", _string),
        ("version", _string),
        ("description", _string),
        ("termsOfService", _string),
        ("contact", _unsupported),
        ("license", _unsupported),
    ],
)
DOCUMENT = Message(
    "Document",
    [
        ("swagger", _string),
        ("info", INFO.codec),
        ("host", _string),
        ("basePath", _string),
        ("schemes", _strings),
        ("consumes", _strings),
        ("produces", _strings),
        ("paths", _paths),
        ("definitions", _schema_map),
        ("parameters", _unsupported),
        ("responses", _unsupported),
        ("security", _unsupported),
        ("securityDefinitions", _unsupported),
        ("tags", _unsupported),
        ("externalDocs", EXTERNAL_DOCS.codec),
    ],
)


def encode_document(document: Mapping[str, Any]) -> bytes:
    """The protobuf bytes of a Swagger 2.0 document, as the apiserver serves them."""
    return DOCUMENT.encode(document)
