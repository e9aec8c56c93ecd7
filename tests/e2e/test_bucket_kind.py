"""The Bucket kind through `carm sandbox` and the real kubectl: an ACK manifest with many fields
applies unchanged; adoption, read-only and deletion policy retain, each as a user drives them.

These tests use their own account (333333333333) and namespace, so they share the session's
sandbox with the other end-to-end tests without touching their resources."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import boto3
import orjson
import pytest

from tests.e2e.conftest import Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl]

ACCOUNT = "333333333333"
NAMESPACE = "bucket-kind"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/s3FullAccess"

ACK_MANIFEST = f"""apiVersion: s3.services.k8s.aws/v1alpha1
kind: Bucket
metadata:
  name: ack-manifest
  namespace: {NAMESPACE}
spec:
  name: carm-e2e-ack-manifest
  tagging:
    tagSet:
      - key: team
        value: storage
  versioning:
    status: Enabled
  encryption:
    rules:
      - applyServerSideEncryptionByDefault:
          sseAlgorithm: AES256
        bucketKeyEnabled: true
  publicAccessBlock:
    blockPublicACLs: true
    blockPublicPolicy: true
    ignorePublicACLs: true
    restrictPublicBuckets: true
  ownershipControls:
    rules:
      - objectOwnership: BucketOwnerEnforced
  lifecycle:
    rules:
      - id: expire-tmp
        status: Enabled
        filter:
          prefix: tmp/
        expiration:
          days: 7
  cors:
    corsRules:
      - allowedMethods: [GET, HEAD]
        allowedOrigins: ["https://example.com"]
        maxAgeSeconds: 3000
  policy: |
    {{
      "Version": "2012-10-17",
      "Statement": [
        {{
          "Sid": "DenyInsecureTransport",
          "Effect": "Deny",
          "Principal": "*",
          "Action": "s3:*",
          "Resource": [
            "arn:aws:s3:::carm-e2e-ack-manifest",
            "arn:aws:s3:::carm-e2e-ack-manifest/*"
          ],
          "Condition": {{"Bool": {{"aws:SecureTransport": "false"}}}}
        }}
      ]
    }}
"""


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def account(sandbox: Sandbox) -> Sandbox:
    """Namespace `bucket-kind` owned by 333333333333, mapped in ack-role-account-map."""
    existing = sandbox.kubectl("get", "configmaps", "-n", "ack-system", "-o", "name")
    if "ack-role-account-map" in existing:
        patch = orjson.dumps({"data": {ACCOUNT: ROLE}}).decode()
        sandbox.kubectl(
            "patch", "configmap", "ack-role-account-map", "-n", "ack-system",
            "--type", "merge", "-p", patch,
        )  # fmt: skip
    else:
        sandbox.kubectl(
            "create", "configmap", "ack-role-account-map", "-n", "ack-system",
            f"--from-literal={ACCOUNT}={ROLE}",
        )  # fmt: skip
    namespace = (
        f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n"
        f'  annotations:\n    services.k8s.aws/owner-account-id: "{ACCOUNT}"\n'
    )
    sandbox.kubectl("apply", "-f", "-", stdin=namespace)
    return sandbox


def s3_of(sandbox: Sandbox) -> Any:
    """An S3 client acting in 333333333333, as its own users would."""
    where = {
        "endpoint_url": sandbox.env["AWS_ENDPOINT_URL"],
        "region_name": sandbox.env["AWS_REGION"],
    }
    sts = boto3.client(
        "sts",
        aws_access_key_id=sandbox.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=sandbox.env["AWS_SECRET_ACCESS_KEY"],
        **where,
    )
    issued = sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/e2e", RoleSessionName="e2e")
    credentials = issued["Credentials"]
    return boto3.client(
        "s3",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        **where,
    )


def condition(sandbox: Sandbox, name: str, kind: str) -> dict[str, Any] | None:
    bucket = sandbox.get("bucket", name, NAMESPACE)
    for entry in (bucket.get("status") or {}).get("conditions") or []:
        if entry["type"] == kind:
            return dict(entry)
    return None


def wait_synced(sandbox: Sandbox, name: str) -> None:
    sandbox.kubectl(
        "wait", "--for=condition=ACK.ResourceSynced", f"bucket/{name}", "-n", NAMESPACE,
        "--timeout=60s",
    )  # fmt: skip


def test_an_ack_bucket_manifest_applies_unchanged(account: Sandbox) -> None:
    # Strict field validation (kubectl's default) rejects any field the CRD does not know.
    account.kubectl("apply", "--validate=strict", "-f", "-", stdin=ACK_MANIFEST)
    wait_synced(account, "ack-manifest")
    s3 = s3_of(account)
    bucket = "carm-e2e-ack-manifest"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    controls = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]
    assert controls["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags["team"] == "storage" and tags["services.k8s.aws/namespace"] == NAMESPACE
    assert "DenyInsecureTransport" in s3.get_bucket_policy(Bucket=bucket)["Policy"]
    # `kubectl get buckets` shows the bucket, its account and region, Synced, age.
    table = account.kubectl("get", "buckets", "-n", NAMESPACE, "ack-manifest")
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "BUCKET", "ACCOUNT", "REGION", "SYNCED", "AGE"]
    assert row.split()[:5] == ["ack-manifest", bucket, ACCOUNT, "us-east-1", "True"]


def test_adopt_an_existing_bucket_with_an_empty_spec(account: Sandbox) -> None:
    s3 = s3_of(account)
    s3.create_bucket(Bucket="carm-e2e-legacy")
    s3.put_bucket_versioning(
        Bucket="carm-e2e-legacy", VersioningConfiguration={"Status": "Enabled"}
    )
    manifest = f"""apiVersion: s3.services.k8s.aws/v1alpha1
kind: Bucket
metadata:
  name: legacy
  namespace: {NAMESPACE}
  annotations:
    services.k8s.aws/adoption-policy: adopt
    services.k8s.aws/adoption-fields: '{{"name": "carm-e2e-legacy"}}'
"""
    account.kubectl("apply", "-f", "-", stdin=manifest)
    wait_synced(account, "legacy")
    adopted = account.get("bucket", "legacy", NAMESPACE)
    assert adopted["spec"]["name"] == "carm-e2e-legacy"
    assert adopted["spec"]["versioning"] == {"status": "Enabled"}
    assert adopted["status"]["ackResourceMetadata"]["ownerAccountID"] == ACCOUNT
    # Managed from now on: a change to the adopted spec reaches S3.
    patch = '{"spec": {"versioning": {"status": "Suspended"}}}'
    account.kubectl("patch", "bucket", "legacy", "-n", NAMESPACE, "--type", "merge", "-p", patch)
    wait_for(
        lambda: s3.get_bucket_versioning(Bucket="carm-e2e-legacy")["Status"] == "Suspended",
        "the adopted bucket to follow its spec",
    )


def test_read_only_observes_and_never_writes(account: Sandbox) -> None:
    s3 = s3_of(account)
    s3.create_bucket(Bucket="carm-e2e-observed")
    manifest = f"""apiVersion: s3.services.k8s.aws/v1alpha1
kind: Bucket
metadata:
  name: observed
  namespace: {NAMESPACE}
  annotations:
    services.k8s.aws/read-only: "true"
spec:
  name: carm-e2e-observed
  versioning:
    status: Enabled
"""
    account.kubectl("apply", "-f", "-", stdin=manifest)
    wait_for(
        lambda: (
            (condition(account, "observed", "ACK.ResourceSynced") or {}).get("reason")
            == "ReadOnlyDrift"
        ),
        "the read-only bucket to report its difference",
    )
    message = (condition(account, "observed", "ACK.ResourceSynced") or {})["message"]
    assert "spec.versioning" in message
    assert "Status" not in s3.get_bucket_versioning(Bucket="carm-e2e-observed")  # not written
    account.kubectl("delete", "bucket", "observed", "-n", NAMESPACE, "--timeout=60s")
    assert "carm-e2e-observed" in account.buckets_of(ACCOUNT)


def test_deletion_policy_retain_keeps_the_bucket(account: Sandbox) -> None:
    manifest = f"""apiVersion: s3.services.k8s.aws/v1alpha1
kind: Bucket
metadata:
  name: kept
  namespace: {NAMESPACE}
  annotations:
    services.k8s.aws/deletion-policy: retain
spec:
  name: carm-e2e-kept
"""
    account.kubectl("apply", "-f", "-", stdin=manifest)
    wait_synced(account, "kept")
    assert "carm-e2e-kept" in account.buckets_of(ACCOUNT)
    account.kubectl("delete", "bucket", "kept", "-n", NAMESPACE, "--timeout=60s")
    out = account.kubectl("get", "bucket", "kept", "-n", NAMESPACE, check=False)
    assert "NotFound" in out or "not found" in out  # the finalizer is gone
    assert "carm-e2e-kept" in account.buckets_of(ACCOUNT)  # and the bucket is not


def test_a_field_dropped_from_a_server_side_apply_is_removed_in_aws(account: Sandbox) -> None:
    """GitOps tools apply server-side: the API server drops a field its manager no longer
    applies, and carm then removes that sub-configuration in AWS."""

    def manifest(cors: bool) -> str:
        spec = "  name: carm-e2e-ssa\n"
        if cors:
            spec += (
                "  cors:\n    corsRules:\n      - allowedMethods: [GET]\n"
                '        allowedOrigins: ["https://example.com"]\n'
            )
        return (
            "apiVersion: s3.services.k8s.aws/v1alpha1\nkind: Bucket\n"
            f"metadata:\n  name: ssa\n  namespace: {NAMESPACE}\nspec:\n{spec}"
        )

    def cors_rules() -> list[dict[str, Any]] | None:
        try:
            rules: list[dict[str, Any]] = s3.get_bucket_cors(Bucket="carm-e2e-ssa")["CORSRules"]
        except s3.exceptions.ClientError as error:
            if error.response["Error"]["Code"] == "NoSuchCORSConfiguration":
                return None
            raise
        return rules

    s3 = s3_of(account)
    apply = ("apply", "--server-side", "--field-manager", "gitops", "-f", "-")
    account.kubectl(*apply, stdin=manifest(cors=True))
    wait_synced(account, "ssa")
    assert cors_rules() == [{"AllowedMethods": ["GET"], "AllowedOrigins": ["https://example.com"]}]

    account.kubectl(*apply, stdin=manifest(cors=False))
    assert "cors" not in account.get("bucket", "ssa", NAMESPACE)["spec"]
    wait_for(lambda: cors_rules() is None, "the CORS rules removed in S3")
