"""The CustomResourceDefinition of IAMRoleSelector, ACK's cluster-scoped role chooser.

Group `services.k8s.aws` (ACK's core group, not a service's), kind `IAMRoleSelector`, the field
names of ACK's runtime, so ACK's selector manifests apply unchanged. Matching is done by
`carm.accounts.selectors`; the schema only shapes the object (an empty selector part matches
everything, so nothing but `spec.arn` is required).
"""

from __future__ import annotations

from typing import Any

GROUP = "services.k8s.aws"
VERSION = "v1alpha1"
KIND = "IAMRoleSelector"
PLURAL = "iamroleselectors"

_STRING: dict[str, Any] = {"type": "string"}
_MATCH_LABELS: dict[str, Any] = {
    "type": "object",
    "description": "Labels that must all be present with these values.",
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}

_SPEC: dict[str, Any] = {
    "type": "object",
    "required": ["arn"],
    "properties": {
        "arn": {"type": "string", "description": "The IAM role to assume for matched resources."},
        "namespaceSelector": {
            "type": "object",
            "description": "Namespaces by name (any of) and labels (all of); empty: all.",
            "properties": {
                "names": {"type": "array", "items": _STRING},
                "labelSelector": _MATCH_LABELS,
            },
        },
        "resourceTypeSelector": {
            "type": "array",
            "description": "Resource types (any of); an empty field is a wildcard; empty: all.",
            "items": {
                "type": "object",
                "properties": {"group": _STRING, "version": _STRING, "kind": _STRING},
            },
        },
        "resourceLabelSelector": _MATCH_LABELS,
    },
}

IAM_ROLE_SELECTOR_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "names": {
            "kind": KIND,
            "listKind": f"{KIND}List",
            "plural": PLURAL,
            "singular": "iamroleselector",
        },
        "scope": "Cluster",
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "ROLE", "type": "string", "jsonPath": ".spec.arn"},
                    {"name": "AGE", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "description": "Chooses the IAM role carm assumes for matching resources.",
                        "properties": {
                            "apiVersion": _STRING,
                            "kind": _STRING,
                            "metadata": {"type": "object"},
                            "spec": _SPEC,
                            "status": {"type": "object"},
                        },
                    }
                },
            }
        ],
    },
}
