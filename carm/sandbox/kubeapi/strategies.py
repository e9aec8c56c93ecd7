"""Per-kind write rules, as the apiserver's registry strategies apply them.

Each rule edits the object about to be stored, in place: Namespaces get their phase, their
`kubernetes` finalizer and their name label; Secrets fold `stringData` into base64 `data`;
CRDs get their defaults, their cleanup finalizer and an established status.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from carm.sandbox.kubeapi import crds
from carm.sandbox.kubeapi.errors import bad_request
from carm.sandbox.kubeapi.registry import ResourceType

NAMESPACE_FINALIZER = "kubernetes"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def _is(rtype: ResourceType, group: str, kind: str) -> bool:
    return rtype.group == group and rtype.kind == kind and not rtype.custom


def is_namespace(rtype: ResourceType) -> bool:
    return _is(rtype, "", "Namespace")


def is_crd(rtype: ResourceType) -> bool:
    return _is(rtype, "apiextensions.k8s.io", "CustomResourceDefinition")


def prepare_create(rtype: ResourceType, obj: dict[str, Any]) -> None:
    if rtype.custom:
        if rtype.has_status:
            # The status of a new custom resource is the controller's to write, not the creator's.
            obj.pop("status", None)
    elif is_namespace(rtype):
        obj["spec"] = {"finalizers": [NAMESPACE_FINALIZER]}
        obj["status"] = {"phase": "Active"}
        _label_namespace(obj)
    elif _is(rtype, "", "Secret"):
        _fold_string_data(obj)
    elif is_crd(rtype):
        crds.apply_defaults(obj)
        finalizers = obj["metadata"].setdefault("finalizers", [])
        if crds.CLEANUP_FINALIZER not in finalizers:
            finalizers.append(crds.CLEANUP_FINALIZER)


def prepare_update(rtype: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> None:
    if is_namespace(rtype):
        # Only the `finalize` subresource changes spec.finalizers.
        new["spec"] = old.get("spec", {})
        _label_namespace(new)
    elif _is(rtype, "", "Secret"):
        _fold_string_data(new)
    elif is_crd(rtype):
        crds.apply_defaults(new)


def after_validation(rtype: ResourceType, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """Rules that need a valid object (a CRD's status is derived from its valid spec)."""
    if is_crd(rtype):
        new["status"] = crds.status_for(new, (old or {}).get("status"))


def _label_namespace(obj: dict[str, Any]) -> None:
    labels = obj["metadata"].setdefault("labels", {})
    labels[NAMESPACE_NAME_LABEL] = obj["metadata"]["name"]


def _fold_string_data(secret: dict[str, Any]) -> None:
    string_data = secret.pop("stringData", None) or {}
    data = secret.get("data") or {}
    for key, value in data.items():
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError, TypeError) as error:
            raise bad_request(
                f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data '
                f"in data[{key!r}]: {error}"
            ) from None
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    if data:
        secret["data"] = data
    secret.setdefault("type", "Opaque")
