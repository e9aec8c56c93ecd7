"""The OpenAPI v2 (Swagger 2.0) document at `/openapi/v2`, for kubectl's client-side validation.

kubectl 1.32 validates on the server (see openapi.py) except for a manifest of `kind: List`:
it cannot ask whether `v1/List` takes `fieldValidation`, so with validation on it checks every
item itself against the v2 schema of the item's kind (unknown fields, types, required fields),
then applies the items one by one. It asks for protobuf only; see gnostic.py.

One document covers every served group-version, as the apiserver's does. Its paths are the v3
documents' paths in Swagger 2.0 form. Its definitions are the kinds' schemas under their v3
names, changed the way the apiserver publishes v2:

- `metadata` is a `$ref` to ObjectMeta, and `apiVersion` and `kind` are strings;
- for custom resources, the changes apiextensions-apiserver makes so kubectl's validator copes:
  no `allOf`/`oneOf`/`anyOf`/`not`; a nullable field loses its type, items and properties (and
  its place in `required`); a field that keeps unknown fields loses its items and properties,
  and a root that does becomes a bare `object`; an array without items loses its type;
- built-in kinds stand for Go types, whose v2 schemas have no `nullable`;
- keywords Swagger 2.0 lacks are dropped, and `default`s are pruned as the apiserver does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from carm.sandbox.kubeapi import gnostic, openapi
from carm.sandbox.kubeapi.discovery import KUBE_VERSION
from carm.sandbox.kubeapi.registry import Registry, ResourceType

JSON = "application/json"
PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
# What `Accept` may name, and what is answered: kubectl still asks with the old "@" spelling.
_OFFERS = (
    ("application", "json", JSON),
    ("application", "com.github.proto-openapi.spec.v2@v1.0+protobuf", PROTOBUF),
    ("application", "com.github.proto-openapi.spec.v2.v1.0+protobuf", PROTOBUF),
)

_GVK = "x-kubernetes-group-version-kind"
_V3_REF = "#/components/schemas/"
_V2_REF = "#/definitions/"
_STRING: dict[str, Any] = {"type": "string"}
# Swagger 2.0 schema keywords kept (besides `x-` extensions and the nested schemas).
_KEPT = frozenset(
    {
        "$ref",
        "format",
        "title",
        "description",
        "multipleOf",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "maxProperties",
        "minProperties",
        "required",
        "enum",
        "type",
        "discriminator",
        "readOnly",
        "example",
    }
)


@dataclass(frozen=True)
class Rendered:
    body: bytes
    content_type: str
    etag: str  # the same for both encodings, as the apiserver's (it answers `Vary: Accept`)


def render(registry: Registry, accept: str) -> Rendered | None:
    """The document in the encoding `accept` asks for; None when it names none served (406)."""
    media_type = negotiate(accept)
    if media_type is None:
        return None
    swagger = document(registry)
    as_json = orjson.dumps(swagger)
    etag = hashlib.sha512(as_json).hexdigest().upper()
    body = as_json if media_type == JSON else gnostic.encode_document(swagger)
    return Rendered(body, media_type, etag)


def negotiate(accept: str) -> str | None:
    """The served media type for an `Accept` header: the best-ranked range that matches."""
    for wanted_type, wanted_subtype in _ranges(accept or "*/*"):
        for offered_type, offered_subtype, answer in _OFFERS:
            if wanted_type in (offered_type, "*") and wanted_subtype in (offered_subtype, "*"):
                return answer
    return None


def _ranges(accept: str) -> list[tuple[str, str]]:
    """Media ranges by quality, then specific before wildcard (stable otherwise)."""
    ranked: list[tuple[float, bool, bool, str, str]] = []
    for clause in accept.split(","):
        media, *params = (part.strip() for part in clause.split(";"))
        if "/" not in media:
            continue
        main, sub = media.split("/", 1)
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, main == "*", sub == "*", main, sub))
    ranked.sort(key=lambda item: item[:3])
    return [(main, sub) for *_, main, sub in ranked]


def document(registry: Registry) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for gv_path in openapi.index(registry)["paths"]:
        v3 = openapi.document(registry, gv_path)
        if v3 is not None:
            paths.update({path: _path_item(item) for path, item in v3["paths"].items()})
    definitions: dict[str, Any] = {
        openapi.OBJECT_META: _schema(openapi.OBJECT_META_SCHEMA, custom=False)
    }
    for rtype in registry:
        definitions[openapi.schema_name(rtype)] = _definition(rtype)
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": KUBE_VERSION["gitVersion"]},
        "paths": dict(sorted(paths.items())),
        "definitions": dict(sorted(definitions.items())),
    }


# -- definitions ----------------------------------------------------------------------------------


def _definition(rtype: ResourceType) -> dict[str, Any]:
    gvk = [{"group": rtype.group, "version": rtype.version, "kind": rtype.kind}]
    source = rtype.schema
    if source is None or (rtype.custom and source.get("x-kubernetes-preserve-unknown-fields")):
        # Listing apiVersion, kind and metadata here would make kubectl refuse everything else.
        return {"type": "object", _GVK: gvk}
    body = _schema(source, custom=rtype.custom)
    properties = body.setdefault("properties", {})
    properties["apiVersion"] = _STRING
    properties["kind"] = _STRING
    properties["metadata"] = {"$ref": _V2_REF + openapi.OBJECT_META}
    body[_GVK] = gvk
    return body


def _schema(source: dict[str, Any], custom: bool) -> dict[str, Any]:
    """A schema in Swagger 2.0 terms, recursively."""
    node = _as_crd_v2(source) if custom else source
    out = {key: value for key, value in node.items() if key in _KEPT or key.startswith("x-")}
    if node.get("properties"):
        out["properties"] = {name: _schema(sub, custom) for name, sub in node["properties"].items()}
    if "items" in node:
        out["items"] = _schema(node["items"], custom)
    additional = node.get("additionalProperties")
    if isinstance(additional, bool):
        out["additionalProperties"] = additional
    elif isinstance(additional, dict):
        out["additionalProperties"] = _schema(additional, custom)
    return out


def _as_crd_v2(source: dict[str, Any]) -> dict[str, Any]:
    """One node of a CRD schema changed as apiextensions-apiserver does for v2 (see above)."""
    node = dict(source)
    if node.get("nullable"):
        for key in ("type", "items", "properties"):
            node.pop(key, None)
    if node.get("x-kubernetes-preserve-unknown-fields"):
        node.pop("items", None)
        node.pop("properties", None)
    if node.get("type") == "array" and "items" not in node:
        del node["type"]
    properties = node.get("properties") or {}
    required = [
        name for name in node.get("required", ()) if not properties.get(name, {}).get("nullable")
    ]
    additional = node.get("additionalProperties")
    if isinstance(additional, dict) and additional.get("nullable"):
        required = []
    node.pop("required", None)
    if required:
        node["required"] = required
    return node


# -- paths ----------------------------------------------------------------------------------------


def _path_item(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in item.items():
        if key == "parameters":
            if value:
                out["parameters"] = [_parameter(param) for param in value]
        else:
            out[key] = _operation(value)
    return out


def _parameter(param: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": param["name"],
        "in": param["in"],
        "type": param["schema"]["type"],
        "uniqueItems": True,
    }
    if param.get("required"):
        out["required"] = True
    return out


def _reference(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return {"$ref": schema["$ref"].replace(_V3_REF, _V2_REF, 1)}
    return _schema(schema, custom=False)


def _operation(operation: dict[str, Any]) -> dict[str, Any]:
    parameters = [_parameter(param) for param in operation["parameters"]]
    consumes = ["*/*"]
    body = operation.get("requestBody")
    if body is not None:
        consumes = list(body["content"])
        schema = next(iter(body["content"].values()))["schema"]
        parameters.append(
            {"name": "body", "in": "body", "required": True, "schema": _reference(schema)}
        )
    produces: list[str] = []
    responses: dict[str, Any] = {}
    for code, response in operation["responses"].items():
        content = response.get("content", {})
        produces += [media for media in content if media not in produces]
        responses[code] = {"description": response["description"]}
        if content:
            responses[code]["schema"] = _reference(next(iter(content.values()))["schema"])
    extensions = {key: value for key, value in operation.items() if key.startswith("x-")}
    return {
        "operationId": operation["operationId"],
        "consumes": consumes,
        "produces": produces,
        "parameters": parameters,
        "responses": responses,
        **extensions,
    }
