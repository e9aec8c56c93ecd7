"""CustomResourceDefinitions: their defaults, validation and status, and the kinds they serve.

A CRD is accepted and established at once (there is no naming controller racing it here), so
its status carries `NamesAccepted` and `Established` True from the first write and
`kubectl wait --for=condition=established` returns immediately.
"""

from __future__ import annotations

import copy
from typing import Any

from carm.sandbox.kubeapi.metadata import now_rfc3339
from carm.sandbox.kubeapi.registry import ResourceType
from carm.sandbox.kubeapi.schema import Cause

# The apiserver's own finalizer on every CRD: it deletes the custom resources before the CRD.
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


def apply_defaults(crd: dict[str, Any]) -> None:
    """Fill what the apiserver defaults in a CRD spec (in place)."""
    spec = crd.setdefault("spec", {})
    names = spec.setdefault("names", {})
    kind = names.get("kind") or ""
    names.setdefault("singular", kind.lower())
    names.setdefault("listKind", f"{kind}List")
    spec.setdefault("conversion", {"strategy": "None"})
    for version in spec.get("versions") or ():
        if isinstance(version, dict):
            version.setdefault("served", True)
            version.setdefault("storage", False)


def _invalid(field: str, value: Any, why: str) -> Cause:
    shown = f'"{value}"' if isinstance(value, str) else str(value)
    return {
        "reason": "FieldValueInvalid",
        "field": field,
        "message": f"Invalid value: {shown}: {why}",
    }


def _required(field: str) -> Cause:
    return {"reason": "FieldValueRequired", "field": field, "message": "Required value"}


def validate(crd: dict[str, Any]) -> list[Cause]:
    """The checks of a CRD that matter for serving it (names, scope, versions)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    causes: list[Cause] = []
    group = spec.get("group") or ""
    plural = names.get("plural") or ""
    if not group:
        causes.append(_required("spec.group"))
    elif "." not in group:
        causes.append(_invalid("spec.group", group, "should be a domain with at least one dot"))
    if not plural:
        causes.append(_required("spec.names.plural"))
    if not names.get("kind"):
        causes.append(_required("spec.names.kind"))
    name = crd.get("metadata", {}).get("name", "")
    if group and plural and name != f"{plural}.{group}":
        causes.append(_invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(
            {
                "reason": "FieldValueNotSupported",
                "field": "spec.scope",
                "message": f'Unsupported value: "{spec.get("scope", "")}": supported values: '
                '"Cluster", "Namespaced"',
            }
        )
    versions = [v for v in spec.get("versions") or () if isinstance(v, dict)]
    if not versions:
        causes.append(_required("spec.versions"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(
            _invalid("spec.versions", "", "must have exactly one version marked as storage version")
        )
    return causes


def status_for(crd: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Established and names-accepted status; transition times kept from `previous`."""
    spec = crd["spec"]
    earlier = {c.get("type"): c for c in (previous or {}).get("conditions") or ()}

    def condition(kind: str, reason: str, message: str) -> dict[str, Any]:
        since = earlier.get(kind, {}).get("lastTransitionTime") or now_rfc3339()
        return {
            "type": kind,
            "status": "True",
            "lastTransitionTime": since,
            "reason": reason,
            "message": message,
        }

    stored = list((previous or {}).get("storedVersions") or ())
    for version in spec.get("versions") or ():
        if version.get("storage") and version.get("name") not in stored:
            stored.append(version["name"])
    return {
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition(
                "Established", "InitialNamesAccepted", "the initial names have been accepted"
            ),
        ],
        "acceptedNames": copy.deepcopy(spec["names"]),
        "storedVersions": stored,
    }


def served_types(crd: dict[str, Any]) -> list[ResourceType]:
    """One ResourceType per served version of the CRD."""
    spec = crd["spec"]
    names = spec["names"]
    served: list[ResourceType] = []
    for version in spec.get("versions") or ():
        if not version.get("served", True):
            continue
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        served.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                kind=names["kind"],
                plural=names["plural"],
                singular=names.get("singular") or names["kind"].lower(),
                namespaced=spec.get("scope") == "Namespaced",
                list_kind=names.get("listKind") or "",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                has_status="status" in (version.get("subresources") or {}),
                schema=schema,
                printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
                custom=True,
                extra={"generation": True, "crd": crd["metadata"]["name"]},
            )
        )
    return served
