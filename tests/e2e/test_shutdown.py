"""SIGTERM on `carm run`: in-flight reconciles finish within --graceful-shutdown-timeout (and are
cancelled after it), the process exits 0; a second signal exits at once.

A reconcile is held in flight by a proxy in front of the embedded API server that delays the
Bucket's finalizer patch, the first write of every reconcile."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

from carm.sandbox.authz import Request, allow_all
from tests.e2e.conftest import Sandbox
from tests.e2e.processes import (
    CarmRun,
    authorizing_proxy,
    http_get,
    sandbox_without_controller,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl]

ROOT = Path(__file__).resolve().parents[2]


class Hold:
    """Delays finalizer patches of Buckets by `seconds`, and counts them."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.held = 0
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> float:
        if request.verb == "patch" and request.resource_path == "buckets":
            with self._lock:
                self.held += 1
            return self.seconds
        return 0.0


def proxied_kubeconfig(sandbox: Sandbox, url: str, path: Path) -> str:
    config = yaml.safe_load(Path(sandbox.env["KUBECONFIG"]).read_text())
    config["clusters"][0]["cluster"]["server"] = url
    path.write_text(yaml.safe_dump(config))
    return str(path)


def create_bucket(sandbox: Sandbox, name: str) -> None:
    sandbox.kubectl(
        "apply",
        "-f",
        "-",
        stdin="apiVersion: s3.services.k8s.aws/v1alpha1\nkind: Bucket\n"
        f"metadata:\n  name: {name}\n  namespace: production\nspec:\n  name: {name}\n",
    )


def start(name: str, sandbox: Sandbox, kubeconfig: str, *args: str) -> CarmRun:
    replica = CarmRun(name, sandbox, *args, kubeconfig=kubeconfig)
    wait_until(lambda: http_get(replica.url("health") + "/readyz")[0] == 200, 30, "readiness")
    return replica


def synced(sandbox: Sandbox, name: str) -> bool:
    bucket = sandbox.get("bucket", name, "production")
    conditions = (bucket.get("status") or {}).get("conditions") or []
    return any(c["type"] == "ACK.ResourceSynced" and c["status"] == "True" for c in conditions)


def test_sigterm_drains_in_flight_reconciles_within_the_timeout(tmp_path: Path) -> None:
    hold = Hold()
    with (
        sandbox_without_controller(tmp_path) as sandbox,
        authorizing_proxy(api_url(sandbox), allow_all(), delay=hold) as proxy,
    ):
        kubeconfig = proxied_kubeconfig(sandbox, proxy.url, tmp_path / "proxied-kubeconfig")
        sandbox.kubectl("apply", "-f", str(ROOT / "deploy" / "examples"))
        replicas: list[CarmRun] = []
        try:
            # 1. The reconcile in flight finishes within the timeout: exit 0, bucket synced.
            hold.seconds = 1.5
            first = start("finishes", sandbox, kubeconfig, "--graceful-shutdown-timeout=10s")
            replicas.append(first)
            create_bucket(sandbox, "drained")
            wait_until(lambda: hold.held >= 1, 30, "a reconcile in flight")
            first.process.send_signal(signal.SIGTERM)
            assert first.process.wait(timeout=20) == 0, first.tail()
            assert synced(sandbox, "drained"), "the in-flight reconcile did not finish"
            assert first.logged("stopped: no reconcile in flight, lease released")

            # 2. One that outlives the timeout is cancelled at the timeout: still exit 0.
            hold.seconds = 60.0
            second = start("cancels", sandbox, kubeconfig, "--graceful-shutdown-timeout=1s")
            replicas.append(second)
            held = hold.held
            create_bucket(sandbox, "stuck")
            wait_until(lambda: hold.held > held, 30, "a reconcile in flight")
            signalled = time.monotonic()
            second.process.send_signal(signal.SIGTERM)
            assert second.process.wait(timeout=20) == 0, second.tail()
            assert time.monotonic() - signalled < 10
            assert any("cancelling them" in line["msg"] for line in second.lines()), second.tail()

            # 3. A second signal exits at once (code 1), whatever is in flight: here the
            # reconcile of "stuck", held again as soon as the replica starts.
            held = hold.held
            third = start("impatient", sandbox, kubeconfig, "--graceful-shutdown-timeout=60s")
            replicas.append(third)
            wait_until(lambda: hold.held > held, 30, "a reconcile in flight")
            third.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert third.process.poll() is None, "it should be waiting for the reconcile"
            signalled = time.monotonic()
            third.process.send_signal(signal.SIGTERM)
            assert third.process.wait(timeout=10) == 1, third.tail()
            assert time.monotonic() - signalled < 3
            assert third.logged("received SIGTERM again: exiting at once"), third.tail()
        finally:
            hold.seconds = 0.0
            for replica in replicas:
                replica.close()


def api_url(sandbox: Sandbox) -> str:
    config = yaml.safe_load(Path(sandbox.env["KUBECONFIG"]).read_text())
    return str(config["clusters"][0]["cluster"]["server"])
