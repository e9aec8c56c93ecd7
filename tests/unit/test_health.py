"""Liveness and readiness as the kubelet and a person with curl see them: status codes and a
JSON body that names the failing check and why."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import anyio

from carm.clock import FakeClock
from carm.observability.health import (
    CheckResult,
    HealthChecks,
    WatchesConnected,
    caches_synced,
    known,
)
from carm.observability.http import serve_health


@dataclass
class Cache:
    synced: bool = False


@dataclass
class Stream:
    connected: bool = False


def test_readiness_names_the_caches_not_synced_yet() -> None:
    checks = HealthChecks()
    caches = {"Namespace": Cache(True), "Bucket": Cache(False), "ConfigMap": Cache(False)}
    checks.add_readiness("caches", caches_synced(caches))
    report = checks.readiness()
    assert not report.ok and report.failing == ["caches"]
    assert report.body()["checks"] == {
        "caches": {"ok": False, "message": "waiting for the first list of: Bucket, ConfigMap"}
    }
    caches["Bucket"].synced = caches["ConfigMap"].synced = True
    assert checks.readiness().ok


def test_nothing_registered_yet_means_starting_not_ready() -> None:
    report = HealthChecks().readiness()
    assert not report.ok and report.failing == ["starting"]
    assert HealthChecks().liveness().ok


async def test_a_watch_reconnecting_briefly_does_not_flap_readiness() -> None:
    clock = FakeClock()
    stream = Stream(connected=True)
    check = WatchesConnected([("Bucket in all namespaces", stream)], clock, grace=5)
    assert check().ok
    stream.connected = False
    assert check().ok, "down for 0 s: within the grace period"
    await clock.advance(4.9)
    assert check().ok
    stream.connected = True
    assert check().ok
    stream.connected = False
    assert check().ok
    await clock.advance(6)
    result = check()
    assert not result.ok and "Bucket in all namespaces (for 6s)" in result.message


def test_a_check_that_raises_fails_instead_of_breaking_the_endpoint() -> None:
    checks = HealthChecks()

    def broken() -> CheckResult:
        raise RuntimeError("boom")

    checks.add_readiness("broken", broken)
    checks.add_readiness("identity", known("own AWS account", lambda: "000000000000", "unknown"))
    report = checks.readiness()
    assert report.failing == ["broken"]
    assert report.results["broken"].message == "check failed: RuntimeError: boom"
    assert report.results["identity"].message == "own AWS account: 000000000000"


async def test_the_endpoints_answer_503_with_the_reason_then_200() -> None:
    checks = HealthChecks()
    identity: list[str] = []
    checks.add_readiness(
        "aws-identity", known("own AWS account", lambda: identity[0] if identity else None, "no")
    )
    async with anyio.create_task_group() as group:
        addr = await group.start(serve_health, "127.0.0.1:0", checks)
        async with aiohttp.ClientSession(trust_env=False) as http:
            async with http.get(f"http://{addr}/readyz") as response:
                assert response.status == 503
                body = await response.json()
                assert body["status"] == "failed" and body["failing"] == ["aws-identity"]
            identity.append("000000000000")
            async with http.get(f"http://{addr}/readyz") as response:
                assert response.status == 200 and (await response.json())["status"] == "ok"
            async with http.get(f"http://{addr}/healthz") as response:
                assert response.status == 200
                assert (await response.json())["checks"]["ping"]["ok"] is True
        group.cancel_scope.cancel()
