"""CustomResourceDefinition manifests of test-only kinds, so a test states only what its kind
is about (names, scope, schema) and not the CRD boilerplate around them."""

from __future__ import annotations

from typing import Any

# Objects of a kind without a schema keep whatever fields they are given.
ANY_FIELDS: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def custom_resource_definition(
    group: str,
    version: str,
    kind: str,
    plural: str,
    schema: dict[str, Any] | None = None,
    *,
    scope: str = "Namespaced",
    status_subresource: bool = False,
) -> dict[str, Any]:
    """A CRD serving and storing one version of `kind` with `schema` (its openAPIV3Schema,
    ANY_FIELDS by default); singular and list kind are the ones the apiserver would default."""
    served: dict[str, Any] = {
        "name": version,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": ANY_FIELDS if schema is None else schema},
    }
    if status_subresource:
        served["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
            },
            "scope": scope,
            "versions": [served],
        },
    }
