"""The user document's steps, through kubectl, with its YAML exactly as printed there.

The role map's namespace is the shell variable `$ACK_SYSTEM_NAMESPACE` in the document; it is
filled in the way the document's heredoc would fill it, with ACK's default `ack-system`.
"""

from __future__ import annotations

import string

import pytest

from .harness import Kubectl

pytestmark = pytest.mark.kubectl

ACK_SYSTEM_NAMESPACE = "ack-system"

ROLE_ACCOUNT_MAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: ack-role-account-map
  namespace: $ACK_SYSTEM_NAMESPACE
data:
  "111111111111": arn:aws:iam::111111111111:role/s3FullAccess
"""

PRODUCTION_NAMESPACE = """\
apiVersion: v1
kind: Namespace
metadata:
  name: production
  annotations:
    services.k8s.aws/owner-account-id: "111111111111"
"""

BUCKET = """\
apiVersion: s3.services.k8s.aws/v1alpha1
kind: Bucket
metadata:
  name: my-bucket
  namespace: production
spec:
  name: my-bucket
"""

OWNER_ACCOUNT_ID = "services.k8s.aws/owner-account-id"


def ensure_namespace(kubectl: Kubectl, name: str) -> None:
    if not kubectl.run("get", "namespace", name).ok:
        kubectl("create", "namespace", name)


def test_role_account_map_applies_in_the_system_namespace(kubectl: Kubectl) -> None:
    ensure_namespace(kubectl, ACK_SYSTEM_NAMESPACE)
    role_map = string.Template(ROLE_ACCOUNT_MAP).substitute(
        ACK_SYSTEM_NAMESPACE=ACK_SYSTEM_NAMESPACE
    )

    first = kubectl.apply(role_map)
    again = kubectl.apply(role_map)

    assert "configmap/ack-role-account-map" in first
    assert again.strip() == "configmap/ack-role-account-map unchanged"
    stored = kubectl.json("get", "configmap", "ack-role-account-map", "-n", ACK_SYSTEM_NAMESPACE)
    assert stored["data"] == {"111111111111": "arn:aws:iam::111111111111:role/s3FullAccess"}


def test_namespace_applies_with_its_owner_account_annotation(kubectl: Kubectl) -> None:
    kubectl.apply(PRODUCTION_NAMESPACE)

    stored = kubectl.json("get", "namespace", "production")

    assert stored["metadata"]["annotations"][OWNER_ACCOUNT_ID] == "111111111111"
    assert stored["status"]["phase"] == "Active"


def test_existing_namespace_is_annotated_with_the_documented_command(kubectl: Kubectl) -> None:
    kubectl.apply(PRODUCTION_NAMESPACE)
    kubectl("annotate", "namespace", "production", f"{OWNER_ACCOUNT_ID}-")
    assert OWNER_ACCOUNT_ID not in kubectl.json("get", "namespace", "production")["metadata"].get(
        "annotations", {}
    )

    out = kubectl("annotate", "namespace", "production", f"{OWNER_ACCOUNT_ID}=111111111111")

    assert out.strip() == "namespace/production annotated"
    stored = kubectl.json("get", "namespace", "production")
    assert stored["metadata"]["annotations"][OWNER_ACCOUNT_ID] == "111111111111"


def test_bucket_applies_in_the_annotated_namespace(kubectl: Kubectl, bucket_crd: str) -> None:
    kubectl.apply(PRODUCTION_NAMESPACE)

    out = kubectl.apply(BUCKET)

    assert "bucket.s3.services.k8s.aws/my-bucket" in out
    stored = kubectl.json("get", "bucket", "my-bucket", "-n", "production")
    assert stored["apiVersion"] == "s3.services.k8s.aws/v1alpha1"
    assert stored["spec"] == {"name": "my-bucket"}
    assert stored["metadata"]["generation"] == 1
    listed = kubectl("get", "buckets.s3.services.k8s.aws", "-n", "production", "-o", "name")
    assert "bucket.s3.services.k8s.aws/my-bucket" in listed.split()
