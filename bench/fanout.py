"""Fan-out: B Buckets in N namespaces mapped to A accounts, applied at once.

`python -m bench fanout [--quick]` (full: 2,000 / 200 / 20; quick: 300 / 30 / 10)

For each system under test, on a fresh test bed: the role map and the namespaces exist, the
system is started and has synced its canary; then the bench creates every Bucket (32 creates in
flight) and watches until all are ACK.ResourceSynced=True. Measured from the first create to
the last Bucket synced:

- time until all are synced, Buckets per second, create-to-Synced latency p50/p95/p99 (from
  just before a Bucket's create request to the watch event that shows it synced);
- AssumeRole calls and AWS calls per Bucket, from moto's request recorder;
- Kubernetes writes per Bucket: the embedded server's write count, less the bench's creates;
- the system's CPU seconds in the window and peak RSS (VmHWM).

Then the results are checked the same way for every system: each account owns exactly its
Buckets' bucket names (listed as that account), and the controller's own account owns none.
Writes bench/results/fanout.json and fanout.png (latency distribution and throughput).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._chart import fanout_chart
from bench._cli import for_each_system, parse, parser
from bench._population import (
    BucketRef,
    Population,
    create_buckets,
    create_namespaces,
    plan_population,
    tracking,
)
from bench._report import Row, Table, Target, percentile, write_json
from bench._spy import sampled
from bench._systems import CANARY_BUCKET, Running, System, run_system
from bench._testbed import WRITE_VERBS, TestBed, buckets_path, test_bed


@dataclass(frozen=True)
class Plan:
    buckets: int
    namespaces: int
    accounts: int
    concurrency: int = 16
    in_flight: int = 32
    timeout: float = 300.0
    settle: float = 0.3
    """After the last Bucket synced: counting goes on until the system was idle this long."""


FULL = Plan(buckets=2_000, namespaces=200, accounts=20)
QUICK = Plan(buckets=300, namespaces=30, accounts=10, timeout=120.0)

ROWS = [
    Row("seconds", "time until all Synced", "s", 2),
    Row("buckets_per_second", "throughput", "Buckets/s", 1),
    Row("p50_ms", "create-to-Synced p50", "ms", 0),
    Row("p95_ms", "create-to-Synced p95", "ms", 0),
    Row("p99_ms", "create-to-Synced p99", "ms", 0),
    Row("assume_role", "AssumeRole calls", "", 0),
    Row("reconciles_per_bucket", "reconciles per Bucket", "", 2),
    Row("aws_calls_per_bucket", "AWS calls per Bucket", "", 2),
    Row("kube_writes_per_bucket", "Kubernetes writes per Bucket", "", 2),
    Row("kube_reads", "Kubernetes reads (get/list/watch)", "", 0),
    Row("cpu_seconds", "CPU seconds", "s", 2),
    Row("peak_rss_mib", "peak RSS", "MiB", 1),
    Row("idle_rss_mib", "RSS before the burst", "MiB", 1),
    Row("correct", "buckets in the right accounts", "", 0),
]


async def fan_out(
    bed: TestBed, running: Running, population: Population, plan: Plan
) -> dict[str, Any]:
    """Apply every Bucket at once and measure until all are synced."""
    keys = {b.key for b in population.buckets}
    counts_before, bench_writes_before = await bed.kube.request_counts(), bed.kube.writes
    cpu_before = running.cpu_seconds()
    seen = len(running.reconciles())
    await bed.start_recording()
    created: dict[tuple[str, str], float] = {}
    async with tracking(bed) as tracker, sampled(running.pid, f"fanout-{running.system.name}"):
        started = time.perf_counter()
        await create_buckets(bed, population.buckets, created, plan.in_flight)
        complete = await tracker.wait_for(keys, plan.timeout)
        trailing = await running.quiesce(bed, plan.settle, plan.timeout)
    rss_after = running.rss_mib()
    calls = await bed.stop_recording()
    cpu = running.cpu_seconds() - cpu_before
    counts = await bed.kube.request_counts()
    running.check_alive()
    synced = {k: t for k, t in tracker.synced.items() if k in keys}
    seconds = (max(synced.values()) - started) if synced else None
    writes = sum(counts[v] - counts_before[v] for v in WRITE_VERBS)
    writes -= bed.kube.writes - bench_writes_before
    reads = sum(counts[v] - counts_before[v] for v in ("get", "list", "watch"))
    latencies = sorted(max(0.0, (synced[k] - created[k]) * 1000) for k in synced)
    count = len(population.buckets)
    return {
        "seconds": seconds,
        "buckets_per_second": len(synced) / seconds if seconds else None,
        "synced": len(synced),
        "trailing_seconds": trailing - plan.settle,
        "reconciles_per_bucket": (len(running.reconciles()) - seen) / len(population.buckets),
        "complete": complete,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "assume_role": calls.assume_role,
        "assume_role_by_account": dict(calls.assume_role_by_account),
        "aws_calls": calls.total,
        "aws_calls_per_bucket": calls.total / count,
        "aws_operations": dict(calls.operations),
        "kube_writes_per_bucket": writes / count,
        "kube_writes_by_verb": {
            v: counts[v] - counts_before[v] - (count if v == "create" else 0)
            for v in WRITE_VERBS
            if counts[v] != counts_before[v]
        },
        "kube_reads": reads,
        "cpu_seconds": cpu,
        "peak_rss_mib": running.peak_rss_mib(),
        "rss_after_mib": rss_after,
        "latencies_ms": [round(v, 1) for v in latencies],
    }


async def check_accounts(bed: TestBed, population: Population) -> tuple[bool, str]:
    """Every account owns exactly its Buckets; the controller's own account none of them."""
    expected = population.expected_names()
    own = bed.moto.controller_account_id
    accounts = [*population.accounts, own]
    listings = await asyncio.gather(*(bed.bucket_names_of(a) for a in accounts))
    problems = []
    for account, names in zip(accounts, listings, strict=True):
        owned = {n for n in names if not n.startswith(CANARY_BUCKET)}
        wanted = expected.get(account, set()) if account != own else set()
        if owned != wanted:
            missing, extra = wanted - owned, owned - wanted
            problems.append(f"account {account}: {len(missing)} missing, {len(extra)} extra")
    return not problems, "; ".join(problems) or "every bucket in its namespace's account"


async def shape_of(bed: TestBed, ref: BucketRef) -> dict[str, Any]:
    """What the system leaves on a synced Bucket (for the steady-state workload's clones)."""
    obj = await bed.kube.get(buckets_path(ref.namespace, ref.name))
    meta = obj["metadata"]
    return {
        "annotations": meta.get("annotations") or {},
        "finalizers": meta.get("finalizers") or [],
        "status": obj.get("status") or {},
        "account": ref.account,
        "bucket": ref.bucket_name,
    }


def population_of(plan: Plan) -> Population:
    return plan_population(plan.buckets, plan.namespaces, plan.accounts)


Then = Callable[[TestBed, Running, Population], Awaitable[dict[str, Any]]]
"""A further workload on the synced fan-out population (mapping churn); its figures are
returned under the key "then"."""


async def measure(
    system: System, workdir: Path, plan: Plan, then: Then | None = None
) -> dict[str, Any]:
    async with test_bed(workdir) as bed:
        population = population_of(plan)
        await create_namespaces(bed, population)
        async with run_system(bed, system, concurrency=plan.concurrency) as running:
            idle = running.rss_mib()
            figures = await fan_out(bed, running, population, plan)
            figures["idle_rss_mib"] = idle
            figures["shape"] = await shape_of(bed, population.buckets[0])
            if then is not None:
                figures["then"] = await then(bed, running, population)
        figures["correct"], figures["check"] = await check_accounts(bed, population)
    return figures


def table(plan: Plan, results: dict[str, dict[str, Any]]) -> Table:
    result = Table(
        "fanout",
        f"fan-out: {plan.buckets} Buckets in {plan.namespaces} namespaces, {plan.accounts} "
        f"accounts, {plan.concurrency} concurrent reconciles",
        ROWS,
        results,
    )
    ratio = result.ratio("buckets_per_second", "carm", "floor")
    if ratio is not None:
        result.targets.append(
            Target("throughput >= 0.8 x floor", ratio >= 0.8, f"carm/floor = {ratio:.2f}")
        )
    kopf = result.ratio("buckets_per_second", "carm", "kopf")
    if kopf is not None:
        result.targets.append(
            Target("throughput >= 3 x kopf", kopf >= 3.0, f"carm/kopf = {kopf:.2f}")
        )
    carm = results.get("carm")
    if carm is not None:
        result.targets.append(
            Target(
                "AssumeRole calls = accounts",
                carm["assume_role"] == plan.accounts,
                f"{carm['assume_role']} calls for {plan.accounts} accounts",
            )
        )
    for name, figures in results.items():
        if not figures.get("correct") or not figures.get("complete"):
            result.notes.append(f"{name}: {figures.get('synced')} synced; {figures.get('check')}")
    return result


def report(plan: Plan, results: dict[str, dict[str, Any]], output_dir: Path) -> Table:
    result = table(plan, results)
    print()
    print(result.render())
    path = write_json("fanout", {"plan": vars(plan)} | result.document(), output_dir)
    chart = fanout_chart(results, result.title, output_dir / "fanout.png")
    print(f"  written: {path}" + (f", {chart}" if chart else ""))
    return result


def main(argv: list[str]) -> int:
    args = parse(parser("fanout", __doc__.split("\n")[0]), argv)
    plan = QUICK if args.quick else FULL

    async def run(system: System, workdir: Path) -> dict[str, Any]:
        return await measure(system, workdir, plan)

    results = for_each_system(args, "fanout", run)
    report(plan, results, args.output_dir)
    return 0 if all(r.get("correct") and r.get("complete") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
