"""The CustomResourceDefinition of S3 Buckets, with ACK's group, kind and field names.

This dict is the single source of `deploy/crds/s3.services.k8s.aws_buckets.yaml` (a test keeps
the file in step) and of the CRD the sandbox installs.
"""

from __future__ import annotations

from typing import Any

GROUP = "s3.services.k8s.aws"
VERSION = "v1alpha1"
KIND = "Bucket"
PLURAL = "buckets"

_STRING: dict[str, Any] = {"type": "string"}

_CONDITION: dict[str, Any] = {
    "type": "object",
    "required": ["status", "type"],
    "properties": {
        "type": _STRING,
        "status": _STRING,
        "reason": _STRING,
        "message": _STRING,
        "lastTransitionTime": {"type": "string", "format": "date-time"},
    },
}

_SPEC: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "description": "The name of the bucket in AWS."},
        "createBucketConfiguration": {
            "type": "object",
            "properties": {"locationConstraint": _STRING},
        },
        "tagging": {
            "type": "object",
            "properties": {
                "tagSet": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"key": _STRING, "value": _STRING},
                    },
                }
            },
        },
    },
}

_STATUS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "ackResourceMetadata": {
            "type": "object",
            "required": ["ownerAccountID", "region"],
            "properties": {
                "arn": _STRING,
                "ownerAccountID": _STRING,
                "region": _STRING,
                "partition": _STRING,
            },
        },
        "conditions": {"type": "array", "items": _CONDITION},
        "location": _STRING,
    },
}

BUCKET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "names": {
            "kind": KIND,
            "listKind": f"{KIND}List",
            "plural": PLURAL,
            "singular": "bucket",
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "BUCKET", "type": "string", "jsonPath": ".spec.name"},
                    {
                        "name": "ACCOUNT",
                        "type": "string",
                        "jsonPath": ".status.ackResourceMetadata.ownerAccountID",
                    },
                    {
                        "name": "REGION",
                        "type": "string",
                        "jsonPath": ".status.ackResourceMetadata.region",
                    },
                    {
                        "name": "SYNCED",
                        "type": "string",
                        "jsonPath": '.status.conditions[?(@.type=="ACK.ResourceSynced")].status',
                    },
                    {"name": "AGE", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "description": "An S3 bucket managed in the account of its namespace.",
                        "properties": {
                            "apiVersion": _STRING,
                            "kind": _STRING,
                            "metadata": {"type": "object"},
                            "spec": _SPEC,
                            "status": _STATUS,
                        },
                    }
                },
            }
        ],
    },
}
