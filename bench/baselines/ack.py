"""What the floor and the kopf operator share with carm: ACK's names, the status a synced
Bucket carries, and the one JSON line per reconcile that the bench reads from every system.

carm logs `{"time": ..., "msg": "synced", "namespace": ..., "name": ..., "account": ...}` for
each successful reconcile and `"msg": "reconcile failed: ..."` for each failed one; the
baselines print the same lines, so the bench counts reconciles per account the same way for
every system under test.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import orjson

OWNER_ANNOTATION = "services.k8s.aws/owner-account-id"
ROLE_MAP = "ack-role-account-map"
GROUP, VERSION, PLURAL = "s3.services.k8s.aws", "v1alpha1", "buckets"
FINALIZER = "finalizers.s3.services.k8s.aws/Bucket"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def synced_status(bucket: str, account: str, region: str) -> dict[str, Any]:
    """The status carm writes for a synced Bucket (ACK's fields and conditions)."""
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "ackResourceMetadata": {
            "arn": f"arn:aws:s3:::{bucket}",
            "ownerAccountID": account,
            "region": region,
            "partition": "aws",
        },
        "location": f"/{bucket}",
        "conditions": [
            {
                "type": "ACK.ResourceSynced",
                "status": "True",
                "lastTransitionTime": when,
                "message": "Resource synced successfully",
            },
            {"type": "Ready", "status": "True", "lastTransitionTime": when},
        ],
    }


def failed_status(reason: str, message: str) -> dict[str, Any]:
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "conditions": [
            {
                "type": kind,
                "status": status,
                "lastTransitionTime": when,
                "reason": reason,
                "message": message,
            }
            for kind, status in (
                ("ACK.ResourceSynced", "False"),
                ("Ready", "False"),
                ("ACK.Recoverable", "True"),
            )
        ]
    }


def log_reconcile(outcome: str, namespace: str, name: str, account: str) -> None:
    """One reconcile line, as carm logs it ("synced" or "reconcile failed: ...")."""
    line = {"time": _now(), "msg": outcome, "namespace": namespace, "name": name}
    line["account"] = account
    sys.stderr.buffer.write(orjson.dumps(line) + b"\n")
    sys.stderr.flush()
