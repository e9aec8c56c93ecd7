"""Two replicas of `carm run --enable-leader-election` against the sandbox: one reconciles,
the other stays warm; SIGKILL the leader and the standby takes over after the lease runs out;
SIGTERM the leader and it hands over at once. Every Bucket converges throughout."""

from __future__ import annotations

import signal
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.conftest import Sandbox
from tests.e2e.processes import CarmRun, http_get, lease_holder, sandbox_without_controller

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl]

ROOT = Path(__file__).resolve().parents[2]
LEASE, RENEW, RETRY = 4.0, 3.0, 0.5
ELECTION = (
    "--enable-leader-election",
    *("--leader-election-lease-duration", f"{LEASE}s"),
    *("--leader-election-renew-deadline", f"{RENEW}s"),
    *("--leader-election-retry-period", f"{int(RETRY * 1000)}ms"),
)


def create_buckets(sandbox: Sandbox, *names: str) -> None:
    manifest = "".join(
        "---\napiVersion: s3.services.k8s.aws/v1alpha1\nkind: Bucket\n"
        f"metadata:\n  name: {name}\n  namespace: production\nspec:\n  name: {name}\n"
        for name in names
    )
    sandbox.kubectl("apply", "-f", "-", stdin=manifest)


def wait_synced(sandbox: Sandbox, *names: str) -> None:
    sandbox.kubectl(
        "wait",
        "--for=condition=ACK.ResourceSynced",
        *(f"bucket/{name}" for name in names),
        "-n",
        "production",
        "--timeout=60s",
    )


def became_leader_at(replica: CarmRun) -> float:
    line = replica.wait_logged("became the leader", timeout=LEASE * 4)
    return datetime.fromisoformat(line["time"]).timestamp()


def ready(replica: CarmRun) -> bool:
    return http_get(replica.url("health") + "/readyz")[0] == 200


def test_standby_takes_over_after_sigkill_and_at_once_after_sigterm(tmp_path: Path) -> None:
    with sandbox_without_controller(tmp_path) as sandbox:
        sandbox.kubectl("apply", "-f", str(ROOT / "deploy" / "examples"))
        create_buckets(sandbox, "ha-one", "ha-two", "ha-three")
        a = CarmRun("a", sandbox, *ELECTION)
        b = c = None
        try:
            became_leader_at(a)
            b = CarmRun("b", sandbox, *ELECTION)
            wait_synced(sandbox, "ha-one", "ha-two", "ha-three")
            deadline = time.monotonic() + 30
            while not ready(b):  # the standby is ready: its caches are warm
                assert time.monotonic() < deadline, b.tail()
                time.sleep(0.1)
            assert lease_holder(sandbox).startswith(a.wait_logged("became the leader")["identity"])
            assert b.metric("controller_runtime_reconcile_total") == 0, "the standby reconciled"
            assert a.metric("leader_election_master_status") == 1
            assert b.metric("leader_election_master_status") == 0

            # SIGKILL: nothing is released; the standby waits for the lease to run out.
            a.process.kill()
            killed = time.time()
            create_buckets(sandbox, "ha-while-leaderless")
            took_over = became_leader_at(b) - killed
            # It sees renewals only when it polls: within one retry period of the duration.
            # Never early (that would be two leaders); late only by polling and load.
            assert LEASE - RETRY - 0.2 <= took_over <= LEASE + RETRY + 1.5, took_over
            wait_synced(sandbox, "ha-one", "ha-two", "ha-three", "ha-while-leaderless")

            # SIGTERM: the leader releases the lease and the new standby takes it at its poll.
            c = CarmRun("c", sandbox, *ELECTION)
            while not ready(c):
                assert time.monotonic() < deadline + 60, c.tail()
                time.sleep(0.1)
            b.process.send_signal(signal.SIGTERM)
            stopped = time.time()
            assert b.process.wait(timeout=20) == 0, b.tail()
            assert b.logged("released the lease"), b.tail()
            handed_over = became_leader_at(c) - stopped
            # Its next poll, not the lease running out (slack for a loaded machine).
            assert handed_over <= RETRY + 1.5 < LEASE, handed_over
            create_buckets(sandbox, "ha-after-handover")
            wait_synced(sandbox, "ha-after-handover")
            assert c.metric("controller_runtime_reconcile_total", result="success") >= 1
        finally:
            for replica in (a, b, c):
                if replica is not None:
                    replica.close()
