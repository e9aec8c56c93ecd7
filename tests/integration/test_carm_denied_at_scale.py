"""1,000 Buckets of one account whose role STS denies: one AssumeRole per backoff interval for
all of them together, and every one of them says ACK.Recoverable, naming the role and AWS' code."""

from __future__ import annotations

import math
import time
from pathlib import Path

import anyio
import pytest

from carm.kube.client import BUCKETS, KubeClient
from carm.sandbox.kubeapi.server import KubeApiServer
from carm.sandbox.moto import MotoServer
from tests.integration.carm_harness import CarmHarness, Parts, running_controller

DENIED = "333333333333"
ROLE = f"arn:aws:iam::{DENIED}:role/s3-denied"
NAMESPACES = [f"denied-{i}" for i in range(10)]
PER_NAMESPACE = 100
BACKOFF = 5.0
"""The credential cache's first backoff (CredentialPolicy.backoff_initial_seconds); it doubles."""


@pytest.fixture
def parts(
    kube: KubeClient,
    kube_server: KubeApiServer,
    moto_server: MotoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Parts:
    for name, value in moto_server.controller_env().items():
        monkeypatch.setenv(name, value)
    moto_server.deny_assume_role(ROLE)
    moto_server.set_iam_enforcement(True)
    return kube, kube_server, moto_server, tmp_path


def attempts_allowed(elapsed: float) -> int:
    """AssumeRole attempts possible within `elapsed` s: the first, then one after each backoff
    interval (5 s, 10 s, 20 s, ...: attempt k+1 comes 5 * (2**k - 1) s after the first)."""
    return 1 + max(0, math.floor(math.log2(elapsed / BACKOFF + 1)))


async def create_all(carm: CarmHarness) -> None:
    limiter = anyio.CapacityLimiter(16)

    async def create(namespace: str, index: int) -> None:
        async with limiter:
            await carm.bucket(namespace, f"carm-denied-{namespace}-{index}")

    async with anyio.create_task_group() as group:
        for namespace in NAMESPACES:
            for index in range(PER_NAMESPACE):
                group.start_soon(create, namespace, index)


async def test_a_thousand_buckets_of_a_denied_role_cost_one_assume_role_per_backoff(
    parts: Parts,
) -> None:
    async with running_controller(parts) as carm:
        await carm.role_map({DENIED: ROLE})
        for namespace in NAMESPACES:
            await carm.namespace(namespace, {"services.k8s.aws/owner-account-id": DENIED})
        started = time.monotonic()
        await create_all(carm)
        with anyio.fail_after(120):
            while True:
                items, _ = await carm.kube.list_all(BUCKETS)
                flagged = [
                    c
                    for obj in items
                    for c in (obj.get("status") or {}).get("conditions") or []
                    if c["type"] == "ACK.Recoverable" and c["status"] == "True"
                ]
                if len(flagged) == len(NAMESPACES) * PER_NAMESPACE:
                    break
                await anyio.sleep(0.5)
        elapsed = time.monotonic() - started

        assert all(ROLE in c["message"] and "AccessDenied" in c["message"] for c in flagged)
        assert all(c["reason"] == "AssumeRoleFailed" for c in flagged)
        calls = carm.metric(
            "ack_outbound_api_requests_total", service="sts", op_type="OTHER", op_id="AssumeRole"
        )
        assert 1 <= calls <= attempts_allowed(elapsed), (calls, elapsed)
        carm.moto.set_iam_enforcement(False)  # to look inside the account
        assert not await carm.moto.list_bucket_names(DENIED)
