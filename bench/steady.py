"""Steady state: B synced Buckets held, through one resync.

`python -m bench steady [--quick]` (full: 10,000 Buckets; quick: 2,000)

The population is built once, directly: the buckets are created in moto (in their accounts)
before any system runs. Then, for each system under test, on a fresh Kubernetes API:

1. the system is started with its canary and one shape Bucket per account: its RSS then is
   the baseline (interpreter, imports, every account's credentials and clients, next to no
   Buckets), and a shape Bucket shows what this system leaves on a synced Bucket
   (finalizers, annotations, status);
2. the system is stopped, and the B Buckets are created as that system would have left them
   (the shape, with each Bucket's own name, bucket name and account);
3. the system is started again with a short resync interval; after its start-up pass (carm and
   the floor check every Bucket once when they start; kopf does nothing until its timers fire)
   the bench measures a window of B reconciles: the periodic resync.

Reported: CPU seconds and AWS calls (moto's recorder) per reconciled Bucket in the window,
Kubernetes writes in it (zero is right: nothing changed), and RSS per 1,000 Buckets held (RSS
holding B, less the baseline, per Bucket more than the baseline held), with what that makes
for 10,000 (measured at the full size, scaled from 2,000 with --quick).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench._cli import parse, parser, systems_of
from bench._population import BucketRef, Population, bounded, create_namespaces, plan_population
from bench._report import Row, Table, Target, write_json
from bench._spy import sampled
from bench._systems import Running, System, run_system, wait_synced
from bench._testbed import WRITE_VERBS, TestBed, buckets_path, test_bed

SHAPE_BUCKET = "bench-shape-bucket-"


@dataclass(frozen=True)
class Plan:
    buckets: int
    namespaces: int
    accounts: int
    resync: float
    concurrency: int = 16
    timeout: float = 600.0
    skip: tuple[str, ...] = ()
    """Systems not run at this size (and why, in SKIPPED)."""


FULL = Plan(buckets=10_000, namespaces=200, accounts=20, resync=20.0)
QUICK = Plan(
    buckets=2_000, namespaces=30, accounts=10, resync=2.0, timeout=120.0, skip=("carm-ack",)
)
SKIPPED = {
    "carm-ack": "not run with --quick (the run's two minutes): it is carm with one reconcile at "
    "a time, so its costs per Bucket are carm's and only its passes take longer; the full "
    "size runs it",
}

ROWS = [
    Row("startup_seconds", "start-up until every Bucket checked once", "s", 2),
    Row("window_reconciles", "reconciles in the resync window", "", 0),
    Row("window_seconds", "resync window", "s", 2),
    Row("cpu_ms_per_bucket", "CPU per reconciled Bucket", "ms", 3),
    Row("aws_calls_per_bucket", "AWS calls per reconciled Bucket", "", 2),
    Row("kube_writes", "Kubernetes writes in the window", "", 0),
    Row("baseline_rss_mib", "baseline RSS (every account, few Buckets)", "MiB", 1),
    Row("held_rss_mib", "RSS holding the Buckets", "MiB", 1),
    Row("rss_mib_per_1000", "RSS per 1,000 Buckets held", "MiB", 2),
    Row("rss_mib_for_10000", "RSS above the baseline for 10,000 Buckets", "MiB", 1),
]


def population_of(plan: Plan) -> Population:
    return plan_population(plan.buckets, plan.namespaces, plan.accounts, prefix="st")


@dataclass(frozen=True)
class Baseline:
    """What a system looks like before it holds the population: its RSS with every account's
    credentials and clients in use while holding `buckets` Buckets, and the shape it leaves
    on a synced Bucket."""

    rss_mib: float
    buckets: int
    shape: dict[str, Any]


Known = dict[str, Baseline]
"""System name -> its baseline, when another workload (the fan-out) has seen it."""


async def baseline_of(bed: TestBed, system: System, population: Population, plan: Plan) -> Baseline:
    """Start the system with its canary and a shape Bucket in one namespace of each account."""
    firsts = {account: ns for ns, account in reversed(population.namespace_account.items())}
    async with run_system(bed, system, concurrency=plan.concurrency) as running:
        for account, namespace in firsts.items():
            await bed.create_bucket(namespace, "shape", f"{SHAPE_BUCKET}{system.name}-{account}")
        for namespace in firsts.values():
            await wait_synced(bed, running, namespace, "shape")
        await running.quiesce(bed, 0.3, 10)
        rss = running.rss_mib()
        account, namespace = next(iter(firsts.items()))
        obj = await bed.kube.get(buckets_path(namespace, "shape"))
    meta = obj["metadata"]
    shape = {
        "annotations": meta.get("annotations") or {},
        "finalizers": meta.get("finalizers") or [],
        "status": obj.get("status") or {},
        "account": account,
        "bucket": f"{SHAPE_BUCKET}{system.name}-{account}",
    }
    return Baseline(rss, len(firsts), shape)


async def create_clones(bed: TestBed, population: Population, shape: dict[str, Any]) -> None:
    """Every Bucket as the system leaves a synced one: the shape with its own names."""
    template = orjson.dumps({k: shape[k] for k in ("annotations", "finalizers", "status")})

    def clone(ref: BucketRef) -> dict[str, Any]:
        text = template.replace(shape["bucket"].encode(), ref.bucket_name.encode())
        text = text.replace(shape["account"].encode(), ref.account.encode())
        parts: dict[str, Any] = orjson.loads(text)
        return parts

    def job(ref: BucketRef) -> Any:
        async def create() -> None:
            parts = clone(ref)
            body = {
                "apiVersion": "s3.services.k8s.aws/v1alpha1",
                "kind": "Bucket",
                "metadata": {
                    "name": ref.name,
                    "namespace": ref.namespace,
                    "annotations": parts["annotations"],
                    "finalizers": parts["finalizers"],
                },
                "spec": {"name": ref.bucket_name},
            }
            await bed.kube.create(buckets_path(ref.namespace), body)
            path = buckets_path(ref.namespace, ref.name) + "/status"
            await bed.kube.merge_patch(path, {"status": parts["status"]})

        return create

    await bounded(32, [job(ref) for ref in population.buckets])


async def startup_pass(running: Running, population: Population, within: float) -> float:
    """Wait until every Bucket was reconciled once, or (kopf) the system is idle without
    having reconciled any; returns seconds since the system's process started."""
    keys = {b.key for b in population.buckets}
    deadline = time.monotonic() + within
    idle_since, last = time.monotonic(), -1
    while time.monotonic() < deadline:
        running.check_alive()
        reconciles = running.reconciles()
        done = {(r.namespace, r.name) for r in reconciles}
        if keys <= done:
            break
        if not done & keys:
            if len(reconciles) != last:
                idle_since, last = time.monotonic(), len(reconciles)
            elif time.monotonic() - idle_since > 0.5:
                break
        await asyncio.sleep(0.05)
    return time.perf_counter() - running.started


async def resync_window(
    bed: TestBed, running: Running, population: Population, plan: Plan
) -> dict[str, Any]:
    seen = len(running.reconciles())
    counts_before = await bed.kube.request_counts()
    cpu_before = running.cpu_seconds()
    await bed.start_recording()
    started = time.perf_counter()
    deadline = time.monotonic() + plan.timeout
    async with sampled(running.pid, f"steady-{running.system.name}"):
        while len(running.reconciles()) - seen < plan.buckets and time.monotonic() < deadline:
            running.check_alive()
            await asyncio.sleep(0.05)
    seconds = time.perf_counter() - started
    calls = await bed.stop_recording()
    cpu = running.cpu_seconds() - cpu_before
    counts = await bed.kube.request_counts()
    reconciles = len(running.reconciles()) - seen
    return {
        "window_reconciles": reconciles,
        "window_seconds": seconds,
        "cpu_ms_per_bucket": cpu * 1000 / reconciles if reconciles else None,
        "aws_calls_per_bucket": calls.total / reconciles if reconciles else None,
        "aws_operations": dict(calls.operations),
        "kube_writes": sum(counts[v] - counts_before[v] for v in WRITE_VERBS),
        "held_rss_mib": running.rss_mib(),
        "peak_rss_mib": running.peak_rss_mib(),
    }


async def measure(
    bed: TestBed, system: System, population: Population, plan: Plan, known: Known
) -> dict[str, Any]:
    await create_namespaces(bed, population)
    baseline = known.get(system.name) or await baseline_of(bed, system, population, plan)
    await create_clones(bed, population, baseline.shape)
    async with run_system(
        bed, system, concurrency=plan.concurrency, resync=plan.resync, canary="canary-2"
    ) as running:
        startup = await startup_pass(running, population, plan.timeout)
        figures = await resync_window(bed, running, population, plan)
    per_bucket = (figures["held_rss_mib"] - baseline.rss_mib) / (plan.buckets - baseline.buckets)
    return figures | {
        "startup_seconds": startup,
        "baseline_rss_mib": baseline.rss_mib,
        "baseline_buckets": baseline.buckets,
        "rss_mib_per_1000": per_bucket * 1000,
        "rss_mib_for_10000": per_bucket * 10_000,
        "shape": baseline.shape,
    }


def table(plan: Plan, results: dict[str, dict[str, Any]]) -> Table:
    result = Table(
        "steady",
        f"steady state: {plan.buckets} synced Buckets in {plan.namespaces} namespaces, "
        f"{plan.accounts} accounts, through one resync ({plan.resync:g} s interval)",
        ROWS,
        results,
    )
    result.notes += [f"{name}: {SKIPPED[name]}" for name in plan.skip]
    carm = results.get("carm")
    if carm is not None and carm.get("aws_calls_per_bucket") is not None:
        calls = carm["aws_calls_per_bucket"]
        result.targets.append(
            Target(
                "AWS calls per Bucket <= 1 + managed sub-configurations (none here: 1)",
                calls <= 1.0 + 1e-9,
                f"{calls:.2f} per reconciled Bucket: {carm['aws_operations']}",
            )
        )
        rss = carm["rss_mib_for_10000"]
        measured = "measured" if plan.buckets >= 10_000 else f"{plan.buckets} held, scaled"
        result.targets.append(
            Target(
                "under 100 MB RSS above the baseline for 10,000 Buckets",
                rss * 2**20 < 100e6,
                f"{rss:.1f} MiB ({measured})",
            )
        )
    return result


def report(plan: Plan, results: dict[str, dict[str, Any]], output_dir: Path) -> Table:
    result = table(plan, results)
    print()
    print(result.render())
    path = write_json("steady", {"plan": vars(plan)} | result.document(), output_dir)
    print(f"  written: {path}")
    return result


async def run_all(
    systems: list[System], plan: Plan, workdir: Path, known: Known | None = None
) -> dict[str, dict[str, Any]]:
    """One moto for every system (its buckets are created once), a fresh API for each.
    `known`: baselines already seen (by the fan-out), which spares a start of each system."""
    results: dict[str, dict[str, Any]] = {}
    population = population_of(plan)
    async with test_bed(workdir) as bed:
        started = time.perf_counter()
        names = {a: sorted(n) for a, n in population.expected_names().items()}
        await bed.create_aws_buckets(names)
        print(
            f"[steady] {plan.buckets} buckets created in moto in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        for index, system in enumerate(s for s in systems if s.name not in plan.skip):
            if index:
                await bed.stop_kube()
                await bed.start_kube()
            started = time.perf_counter()
            print(f"[steady] {system.name}: {system.description} ...", flush=True)
            load = os.getloadavg()[0]
            figures = await measure(bed, system, population, plan, known or {})
            results[system.name] = figures | {"load_1m": load}
            print(f"[steady] {system.name}: done in {time.perf_counter() - started:.1f} s")
    return results


def main(argv: list[str]) -> int:
    args = parse(parser("steady", __doc__.split("\n")[0]), argv)
    plan = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="bench-steady-") as tmp:
        results = asyncio.run(run_all(systems_of(args), plan, Path(tmp)))
    report(plan, results, args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
