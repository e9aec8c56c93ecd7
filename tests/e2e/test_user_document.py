"""The user document, played unchanged with kubectl against `carm sandbox`."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.e2e.conftest import Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl]

# The document's steps, as a user pastes them into a shell (its heredocs expand
# $ACK_SYSTEM_NAMESPACE from the sourced env).
ROLE_MAP = """cat <<EOF | kubectl apply -f -
apiVersion: v1
kind: ConfigMap
metadata:
  name: ack-role-account-map
  namespace: $ACK_SYSTEM_NAMESPACE
data:
  "111111111111": arn:aws:iam::111111111111:role/s3FullAccess
EOF
"""
NAMESPACE = """cat <<EOF | kubectl apply -f -
apiVersion: v1
kind: Namespace
metadata:
  name: production
  annotations:
    services.k8s.aws/owner-account-id: "111111111111"
EOF
"""
ANNOTATE = "kubectl annotate namespace production services.k8s.aws/owner-account-id=111111111111"
BUCKET = """cat <<EOF | kubectl apply -f -
apiVersion: s3.services.k8s.aws/v1alpha1
kind: Bucket
metadata:
  name: my-bucket
  namespace: production
spec:
  name: my-bucket
EOF
"""


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "it") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_document_creates_the_bucket_in_the_mapped_account_and_deletes_it(
    sandbox: Sandbox,
) -> None:
    sandbox.shell(ROLE_MAP)
    sandbox.shell(NAMESPACE)
    # The document's command for existing namespaces (the value is already set, so the real
    # kubectl needs --overwrite only if it differs; it does not here).
    assert "annotated" in sandbox.shell(ANNOTATE)
    sandbox.shell(BUCKET)
    sandbox.kubectl(
        "wait",
        "--for=condition=ACK.ResourceSynced",
        "bucket/my-bucket",
        "-n",
        "production",
        "--timeout=60s",
    )
    bucket = sandbox.get("bucket", "my-bucket", "production")
    metadata = bucket["status"]["ackResourceMetadata"]
    assert metadata["ownerAccountID"] == "111111111111"
    assert metadata["arn"] == "arn:aws:s3:::my-bucket"
    synced = {c["type"]: c["status"] for c in bucket["status"]["conditions"]}
    assert synced["ACK.ResourceSynced"] == "True"
    assert "finalizers.s3.services.k8s.aws/Bucket" in bucket["metadata"]["finalizers"]
    # Where it landed, seen by each account itself.
    assert "my-bucket" in sandbox.buckets_of("111111111111")
    assert "my-bucket" not in sandbox.buckets_of("000000000000")
    # The credentials came from AssumeRole on the mapped role (counted by the controller).
    assert (
        sandbox.metric("carm_sts_assume_role_total", account="111111111111", result="success") >= 1
    )

    sandbox.kubectl("delete", "bucket", "my-bucket", "-n", "production", "--timeout=60s")
    assert "my-bucket" not in sandbox.buckets_of("111111111111")
    out = sandbox.kubectl("get", "bucket", "my-bucket", "-n", "production", check=False)
    assert "NotFound" in out or "not found" in out
