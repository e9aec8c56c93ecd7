"""The built-in kinds this server serves, with just enough schema to prune and to be strict.

A built-in kind's `schema` plays the role of its Go type: fields it does not list are unknown
(dropped, or refused under `fieldValidation=Strict`, as the apiserver's decoder does), and type
mismatches are decoding errors (400), not 422 validation errors as for custom resources.
Deeply nested parts nobody here relies on are `x-kubernetes-preserve-unknown-fields`.

Per-kind behaviour lives in `ResourceType.extra` under these keys:

- `generation`: keeps `metadata.generation` (the apiserver does for CRDs, not for ConfigMaps);
- `merge_keys`: strategic-merge list keys, see `patch.py`;
- `field_selectors`: field paths a `fieldSelector` may use besides name and namespace;
- `create_on_update`: a PUT to a missing object creates it (Leases and Events, as upstream).
"""

from __future__ import annotations

from typing import Any

from carm.sandbox.kubeapi.registry import ResourceType

_STRING: dict[str, Any] = {"type": "string"}
_INTEGER: dict[str, Any] = {"type": "integer"}
_BOOLEAN: dict[str, Any] = {"type": "boolean"}
_STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": _STRING}
_ANY_OBJECT: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_STRING_LIST: dict[str, Any] = {"type": "array", "items": _STRING}


def _kind_schema(**properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "apiVersion": _STRING,
            "kind": _STRING,
            "metadata": _ANY_OBJECT,
            **properties,
        },
    }


def _object(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


_META_MERGE_KEYS = {"metadata.ownerReferences": "uid", "metadata.finalizers": ""}

_OBJECT_REFERENCE = _object(
    apiVersion=_STRING,
    kind=_STRING,
    name=_STRING,
    namespace=_STRING,
    uid=_STRING,
    resourceVersion=_STRING,
    fieldPath=_STRING,
)

NAMESPACE = ResourceType(
    group="",
    version="v1",
    kind="Namespace",
    plural="namespaces",
    singular="namespace",
    namespaced=False,
    short_names=("ns",),
    has_status=True,
    strategic_merge=True,
    schema=_kind_schema(
        spec=_object(finalizers=_STRING_LIST),
        status=_object(phase=_STRING, conditions={"type": "array", "items": _ANY_OBJECT}),
    ),
    extra={"merge_keys": _META_MERGE_KEYS, "field_selectors": ("status.phase",)},
)

CONFIG_MAP = ResourceType(
    group="",
    version="v1",
    kind="ConfigMap",
    plural="configmaps",
    singular="configmap",
    namespaced=True,
    short_names=("cm",),
    strategic_merge=True,
    schema=_kind_schema(data=_STRING_MAP, binaryData=_STRING_MAP, immutable=_BOOLEAN),
    extra={"merge_keys": _META_MERGE_KEYS},
)

SECRET = ResourceType(
    group="",
    version="v1",
    kind="Secret",
    plural="secrets",
    singular="secret",
    namespaced=True,
    strategic_merge=True,
    schema=_kind_schema(data=_STRING_MAP, stringData=_STRING_MAP, type=_STRING, immutable=_BOOLEAN),
    extra={"merge_keys": _META_MERGE_KEYS, "field_selectors": ("type",)},
)

EVENT = ResourceType(
    group="",
    version="v1",
    kind="Event",
    plural="events",
    singular="event",
    namespaced=True,
    short_names=("ev",),
    strategic_merge=True,
    schema=_kind_schema(
        action=_STRING,
        count=_INTEGER,
        eventTime={"type": "string", "nullable": True},
        firstTimestamp={"type": "string", "nullable": True},
        lastTimestamp={"type": "string", "nullable": True},
        involvedObject=_OBJECT_REFERENCE,
        message=_STRING,
        reason=_STRING,
        related=_OBJECT_REFERENCE,
        reportingComponent=_STRING,
        reportingInstance=_STRING,
        series=_ANY_OBJECT,
        source=_object(component=_STRING, host=_STRING),
        type=_STRING,
    ),
    extra={
        "merge_keys": _META_MERGE_KEYS,
        "create_on_update": True,
        "field_selectors": (
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ),
    },
)

SERVICE_ACCOUNT = ResourceType(
    group="",
    version="v1",
    kind="ServiceAccount",
    plural="serviceaccounts",
    singular="serviceaccount",
    namespaced=True,
    short_names=("sa",),
    strategic_merge=True,
    schema=_kind_schema(
        automountServiceAccountToken=_BOOLEAN,
        imagePullSecrets={"type": "array", "items": _object(name=_STRING)},
        secrets={"type": "array", "items": _OBJECT_REFERENCE},
    ),
    extra={
        "merge_keys": {**_META_MERGE_KEYS, "secrets": "name", "imagePullSecrets": "name"},
    },
)

LEASE = ResourceType(
    group="coordination.k8s.io",
    version="v1",
    kind="Lease",
    plural="leases",
    singular="lease",
    namespaced=True,
    strategic_merge=True,
    schema=_kind_schema(
        spec=_object(
            holderIdentity={"type": "string", "nullable": True},
            leaseDurationSeconds={"type": "integer", "nullable": True},
            acquireTime={"type": "string", "nullable": True},
            renewTime={"type": "string", "nullable": True},
            leaseTransitions={"type": "integer", "nullable": True},
            strategy={"type": "string", "nullable": True},
            preferredHolder={"type": "string", "nullable": True},
        )
    ),
    extra={"merge_keys": _META_MERGE_KEYS, "create_on_update": True},
)

CUSTOM_RESOURCE_DEFINITION = ResourceType(
    group="apiextensions.k8s.io",
    version="v1",
    kind="CustomResourceDefinition",
    plural="customresourcedefinitions",
    singular="customresourcedefinition",
    namespaced=False,
    short_names=("crd", "crds"),
    categories=("api-extensions",),
    has_status=True,
    strategic_merge=True,
    schema=_kind_schema(spec=_ANY_OBJECT, status=_ANY_OBJECT),
    extra={"merge_keys": _META_MERGE_KEYS, "generation": True},
)

# -- What `kubectl apply -k deploy/` installs besides the above: stored and served, never acted
# on (no authorization, no pods). Their schemas name the fields of the Go types one level deep.

_POLICY_RULE = _object(
    apiGroups=_STRING_LIST,
    resources=_STRING_LIST,
    verbs=_STRING_LIST,
    resourceNames=_STRING_LIST,
    nonResourceURLs=_STRING_LIST,
)
_RULES: dict[str, Any] = {"type": "array", "items": _POLICY_RULE}
_SUBJECTS: dict[str, Any] = {
    "type": "array",
    "items": _object(kind=_STRING, apiGroup=_STRING, name=_STRING, namespace=_STRING),
}
_ROLE_REF = _object(apiGroup=_STRING, kind=_STRING, name=_STRING)


def _rbac(kind: str, plural: str, namespaced: bool, **properties: dict[str, Any]) -> ResourceType:
    return ResourceType(
        group="rbac.authorization.k8s.io",
        version="v1",
        kind=kind,
        plural=plural,
        singular=kind.lower(),
        namespaced=namespaced,
        strategic_merge=True,
        schema=_kind_schema(**properties),
        extra={"merge_keys": _META_MERGE_KEYS},
    )


CLUSTER_ROLE = _rbac(
    "ClusterRole", "clusterroles", False, rules=_RULES, aggregationRule=_ANY_OBJECT
)
CLUSTER_ROLE_BINDING = _rbac(
    "ClusterRoleBinding", "clusterrolebindings", False, subjects=_SUBJECTS, roleRef=_ROLE_REF
)
ROLE = _rbac("Role", "roles", True, rules=_RULES)
ROLE_BINDING = _rbac("RoleBinding", "rolebindings", True, subjects=_SUBJECTS, roleRef=_ROLE_REF)

DEPLOYMENT = ResourceType(
    group="apps",
    version="v1",
    kind="Deployment",
    plural="deployments",
    singular="deployment",
    namespaced=True,
    short_names=("deploy",),
    categories=("all",),
    has_status=True,
    strategic_merge=True,
    schema=_kind_schema(spec=_ANY_OBJECT, status=_ANY_OBJECT),
    extra={"merge_keys": _META_MERGE_KEYS, "generation": True},
)

BUILTIN_TYPES: tuple[ResourceType, ...] = (
    NAMESPACE,
    CONFIG_MAP,
    SECRET,
    EVENT,
    SERVICE_ACCOUNT,
    LEASE,
    CUSTOM_RESOURCE_DEFINITION,
    CLUSTER_ROLE,
    CLUSTER_ROLE_BINDING,
    ROLE,
    ROLE_BINDING,
    DEPLOYMENT,
)

# Namespaces every cluster starts with.
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
