"""OpenAPI v3 documents, enough for `kubectl apply` to validate on the server side.

kubectl 1.32 reads `/openapi/v3`, follows the `serverRelativeURL` of the object's group-version,
and looks for an operation on the kind (matched by `x-kubernetes-group-version-kind`) that
takes a `fieldValidation` query parameter. Finding one, it sends the object with
`fieldValidation=Strict` and leaves validation to this server (see FACTS.md). Each document
also carries the kinds' schemas under `components`, for `kubectl explain`. A manifest of
`kind: List` is the exception, validated by kubectl itself against openapi_v2.py's document.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from carm.sandbox.kubeapi.discovery import KUBE_VERSION
from carm.sandbox.kubeapi.registry import Registry, ResourceType


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _hash(registry: Registry, gv_path: str) -> str:
    seed = f"{registry.generation}:{gv_path}".encode()
    return hashlib.sha512(seed).hexdigest()[:64].upper()


def index(registry: Registry) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for group, versions in registry.group_versions().items():
        for version in versions:
            gv_path = _gv_path(group, version)
            paths[gv_path] = {
                "serverRelativeURL": f"/openapi/v3/{gv_path}?hash={_hash(registry, gv_path)}"
            }
    return {"paths": dict(sorted(paths.items()))}


def schema_name(rtype: ResourceType) -> str:
    """`io.k8s.api.core.v1.ConfigMap`, or the reversed group for other groups."""
    if not rtype.group:
        return f"io.k8s.api.core.{rtype.version}.{rtype.kind}"
    reversed_group = ".".join(reversed(rtype.group.split(".")))
    return f"{reversed_group}.{rtype.version}.{rtype.kind}"


def _gvk(rtype: ResourceType) -> dict[str, str]:
    return {"group": rtype.group, "version": rtype.version, "kind": rtype.kind}


def _param(name: str, where: str = "query", required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": {"type": "string"}}


_WRITE_PARAMS = [_param("dryRun"), _param("fieldManager"), _param("fieldValidation")]
_LIST_PARAMS = [
    _param("labelSelector"),
    _param("fieldSelector"),
    _param("limit"),
    _param("continue"),
    _param("resourceVersion"),
    _param("watch"),
    _param("allowWatchBookmarks"),
    _param("timeoutSeconds"),
]


def _operation(rtype: ResourceType, action: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema_name(rtype)}"}
    operation: dict[str, Any] = {
        "operationId": f"{action}{rtype.kind}",
        "parameters": params,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": ref}}}
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(rtype),
    }
    if action in ("post", "put"):
        operation["requestBody"] = {"content": {"*/*": {"schema": ref}}, "required": True}
    if action == "patch":
        operation["requestBody"] = {
            "content": {
                media: {"schema": {"type": "object"}}
                for media in (
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/apply-patch+yaml",
                    *(("application/strategic-merge-patch+json",) if rtype.strategic_merge else ()),
                )
            },
            "required": True,
        }
    return operation


def _paths(rtype: ResourceType) -> dict[str, Any]:
    prefix = "/" + _gv_path(rtype.group, rtype.version)
    scope = f"{prefix}/namespaces/{{namespace}}" if rtype.namespaced else prefix
    scope_params = [_param("namespace", "path", True)] if rtype.namespaced else []
    item_params = [*scope_params, _param("name", "path", True)]
    paths: dict[str, Any] = {
        f"{scope}/{rtype.plural}": {
            "parameters": scope_params,
            "get": _operation(rtype, "list", _LIST_PARAMS),
            "post": _operation(rtype, "post", _WRITE_PARAMS),
            "delete": _operation(rtype, "deletecollection", _LIST_PARAMS),
        },
        f"{scope}/{rtype.plural}/{{name}}": {
            "parameters": item_params,
            "get": _operation(rtype, "get", []),
            "put": _operation(rtype, "put", _WRITE_PARAMS),
            "patch": _operation(rtype, "patch", [*_WRITE_PARAMS, _param("force")]),
            "delete": _operation(rtype, "delete", [_param("dryRun")]),
        },
    }
    if rtype.namespaced:
        paths[f"{prefix}/{rtype.plural}"] = {"get": _operation(rtype, "list", _LIST_PARAMS)}
    if rtype.has_status:
        paths[f"{scope}/{rtype.plural}/{{name}}/status"] = {
            "parameters": item_params,
            "get": _operation(rtype, "get", []),
            "put": _operation(rtype, "put", _WRITE_PARAMS),
            "patch": _operation(rtype, "patch", [*_WRITE_PARAMS, _param("force")]),
        }
    return paths


OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_STRING: dict[str, Any] = {"type": "string"}
_STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": _STRING}

# ObjectMeta as its Go type declares it. kubectl computes strategic merge patches of built-in
# kinds from it (the patch strategies); server-side apply merges every kind's metadata by it
# (the list types, see shapes.py).
OBJECT_META_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": _STRING,
        "generateName": _STRING,
        "namespace": _STRING,
        "selfLink": _STRING,
        "uid": _STRING,
        "resourceVersion": _STRING,
        "generation": {"type": "integer", "format": "int64"},
        "creationTimestamp": {"type": "string", "format": "date-time"},
        "deletionTimestamp": {"type": "string", "format": "date-time"},
        "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": {
            "type": "array",
            "items": _STRING,
            "x-kubernetes-list-type": "set",
            "x-kubernetes-patch-strategy": "merge",
        },
        "ownerReferences": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["apiVersion", "kind", "name", "uid"],
                "properties": {
                    "apiVersion": _STRING,
                    "kind": _STRING,
                    "name": _STRING,
                    "uid": _STRING,
                    "controller": {"type": "boolean"},
                    "blockOwnerDeletion": {"type": "boolean"},
                },
            },
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["uid"],
            "x-kubernetes-patch-merge-key": "uid",
            "x-kubernetes-patch-strategy": "merge",
        },
        "managedFields": {"type": "array", "items": {"type": "object"}},
    },
}


def _component(rtype: ResourceType) -> dict[str, Any]:
    body: dict[str, Any] = (
        copy.deepcopy(rtype.schema)
        if rtype.schema
        else {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    )
    properties = body.setdefault("properties", {})
    properties["metadata"] = {"allOf": [{"$ref": f"#/components/schemas/{OBJECT_META}"}]}
    body["x-kubernetes-group-version-kind"] = [_gvk(rtype)]
    return body


def document(registry: Registry, gv_path: str) -> dict[str, Any] | None:
    """The document of one group-version (`api/v1`, `apis/group/version`), None if unserved."""
    served = [rtype for rtype in registry if _gv_path(rtype.group, rtype.version) == gv_path]
    if not served:
        return None
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {OBJECT_META: OBJECT_META_SCHEMA}
    for rtype in served:
        paths.update(_paths(rtype))
        schemas[schema_name(rtype)] = _component(rtype)
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBE_VERSION["gitVersion"]},
        "paths": paths,
        "components": {"schemas": schemas},
    }
