"""Many accounts, namespaces and Buckets: one AssumeRole per account, observed from outside."""

from __future__ import annotations

import time

import orjson
import pytest

from tests.e2e.conftest import Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl]

ACCOUNTS = [f"2000000000{n:02d}" for n in range(20)]
NAMESPACES_PER_ACCOUNT = 10
BUCKETS_PER_NAMESPACE = 5


def manifests() -> str:
    docs = []
    for account in ACCOUNTS:
        for n in range(NAMESPACES_PER_ACCOUNT):
            namespace = f"fan-{account[-2:]}-{n}"
            docs.append(
                f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n"
                f'  annotations:\n    services.k8s.aws/owner-account-id: "{account}"\n'
            )
            for b in range(BUCKETS_PER_NAMESPACE):
                docs.append(
                    "apiVersion: s3.services.k8s.aws/v1alpha1\nkind: Bucket\n"
                    f"metadata:\n  name: b{b}\n  namespace: {namespace}\n"
                    f"spec:\n  name: fan-{account[-2:]}-{n}-{b}\n"
                )
    return "---\n".join(docs)


def synced_count(sandbox: Sandbox) -> int:
    listing = orjson.loads(sandbox.kubectl("get", "buckets", "-A", "-o", "json"))
    count = 0
    for item in listing["items"]:
        if not item["metadata"]["namespace"].startswith("fan-"):
            continue
        conditions = (item.get("status") or {}).get("conditions") or []
        if any(c["type"] == "ACK.ResourceSynced" and c["status"] == "True" for c in conditions):
            count += 1
    return count


def test_twenty_accounts_converge_with_one_assume_role_each(sandbox: Sandbox) -> None:
    before = {a: sandbox.metric("carm_sts_assume_role_total", account=a) for a in ACCOUNTS}
    role_map = {a: f"arn:aws:iam::{a}:role/carm-fan-out" for a in ACCOUNTS}
    existing = sandbox.kubectl("get", "configmaps", "-n", "ack-system", "-o", "name")
    if "ack-role-account-map" in existing:
        patch = orjson.dumps({"data": role_map}).decode()
        sandbox.kubectl(
            "patch",
            "configmap",
            "ack-role-account-map",
            "-n",
            "ack-system",
            "--type",
            "merge",
            "-p",
            patch,
        )
    else:
        literals = [f"--from-literal={a}={arn}" for a, arn in role_map.items()]
        sandbox.kubectl(
            "create", "configmap", "ack-role-account-map", "-n", "ack-system", *literals
        )
    sandbox.kubectl("apply", "-f", "-", stdin=manifests())
    total = len(ACCOUNTS) * NAMESPACES_PER_ACCOUNT * BUCKETS_PER_NAMESPACE
    deadline = time.monotonic() + 180
    while (count := synced_count(sandbox)) < total:
        assert time.monotonic() < deadline, f"only {count} of {total} Buckets synced"
        time.sleep(1.0)
    calls = {
        a: sandbox.metric("carm_sts_assume_role_total", account=a) - before[a] for a in ACCOUNTS
    }
    assert calls == {a: 1.0 for a in ACCOUNTS}
    # Each account owns exactly its own 50 buckets.
    for account in ACCOUNTS[:3]:
        owned = {name for name in sandbox.buckets_of(account) if name.startswith("fan-")}
        assert len(owned) == NAMESPACES_PER_ACCOUNT * BUCKETS_PER_NAMESPACE
        assert all(name.startswith(f"fan-{account[-2:]}-") for name in owned)
