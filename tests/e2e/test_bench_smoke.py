"""The benchmark scripts work: every workload at a toy size, on the real test bed (the embedded
API and moto as processes) with the real systems under test as processes.

Timings are never asserted (these machines are shared and noisy); what is asserted is that
each workload produces its figures and that the results are right: the buckets exist in their
namespaces' accounts, carm re-syncs a re-mapped account with the new role and nothing else,
carm's resync of synced Buckets writes nothing, the denied role's Buckets show the failure
while the healthy ones sync. Runs in about 20 s (35 s on a loaded machine).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

for _needed in ("kopf", "psutil"):
    pytest.importorskip(_needed, reason="the benchmarks need the bench extra: pip install .[bench]")

from bench import churn, failure, fanout, steady  # noqa: E402
from bench._population import Population  # noqa: E402
from bench._systems import SYSTEMS, Running  # noqa: E402
from bench._testbed import TestBed  # noqa: E402

pytestmark = [pytest.mark.e2e]

FANOUT = fanout.Plan(buckets=8, namespaces=4, accounts=2, timeout=60.0)
CHURN = churn.Plan(timeout=30.0, grace=0.3)
STEADY = steady.Plan(buckets=12, namespaces=3, accounts=2, resync=1.0, timeout=60.0)
FAILURE = failure.Plan(
    denied_buckets=10,
    denied_namespaces=2,
    healthy_buckets=6,
    healthy_namespaces=3,
    healthy_accounts=2,
    window=2.0,
)


# carm-ack is carm with one flag changed: the three launchers below cover every code path.
FANOUT_SYSTEMS = ("carm", "floor", "kopf")


async def test_fan_out_of_carm_floor_kopf_and_churn_of_carm_and_floor(tmp_path: Path) -> None:
    results = {}
    for name in FANOUT_SYSTEMS:
        system = SYSTEMS[name]

        async def remap(bed: TestBed, running: Running, population: Population) -> dict[str, Any]:
            return await churn.remap(bed, running, population, CHURN)

        then = remap if name in ("carm", "floor") else None
        workdir = tmp_path / name
        workdir.mkdir()
        results[name] = await fanout.measure(system, workdir, FANOUT, then=then)

    for name, figures in results.items():
        assert figures["correct"], f"{name}: {figures['check']}"
        assert figures["synced"] == FANOUT.buckets, name
        assert figures["assume_role"] == FANOUT.accounts, name
        assert figures["kube_writes_per_bucket"] >= 2, name  # finalizer and status at least
        assert figures["cpu_seconds"] > 0 and figures["peak_rss_mib"] > 0, name
    for name in ("carm", "floor"):
        remapped = results[name]["then"]
        assert remapped["resynced"], f"{name}: {remapped}"
        assert remapped["other_reconciles"] == 0, f"{name}: {remapped}"
        assert remapped["assume_role_by_role"] == {
            churn.role_arn(fanout.population_of(FANOUT).accounts[0], churn.NEW_ROLE): 1
        }

    churned = {name: results[name].pop("then") for name in ("carm", "floor")}
    table = fanout.report(FANOUT, results, tmp_path / "out")
    assert {t.text for t in table.targets} >= {"AssumeRole calls = accounts"}
    churn.report(FANOUT, churned, tmp_path / "out")
    document = orjson.loads((tmp_path / "out" / "fanout.json").read_bytes())
    assert set(document["results"]) == set(FANOUT_SYSTEMS)
    assert document["ratios"]["carm/floor"]["buckets_per_second"] > 0
    assert (tmp_path / "out" / "churn.json").exists()
    pytest.importorskip("matplotlib")
    assert (tmp_path / "out" / "fanout.png").stat().st_size > 0


async def test_steady_state_carm(tmp_path: Path) -> None:
    results = await steady.run_all([SYSTEMS["carm"]], STEADY, tmp_path)
    for name, figures in results.items():
        assert figures["window_reconciles"] >= STEADY.buckets, name
        assert figures["kube_writes"] == 0, f"{name} wrote during a resync of synced Buckets"
        assert figures["held_rss_mib"] > 0 and figures["cpu_ms_per_bucket"] > 0, name
    # A resync of a Bucket whose spec manages nothing costs carm one read (HeadBucket).
    assert set(results["carm"]["aws_operations"]) == {"s3:HeadBucket"}
    steady.report(STEADY, results, tmp_path / "out")
    assert (tmp_path / "out" / "steady.json").exists()


async def test_failure_carm(tmp_path: Path) -> None:
    figures = await failure.measure(SYSTEMS["carm"], tmp_path, FAILURE)
    assert figures["healthy_synced"] == FAILURE.healthy_buckets
    assert figures["denied_assume_role"] >= 1
    assert figures["denied_assume_role"] <= figures["allowed_assume_role"]
    assert figures["denied_reported"] == FAILURE.denied_buckets
    failure.report(FAILURE, {"carm": figures}, tmp_path / "out")
    assert (tmp_path / "out" / "failure.json").exists()
