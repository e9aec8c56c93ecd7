"""Failure: one account's role denied, 1,000 Buckets in it, healthy accounts beside it.

`python -m bench failure [--quick]` (full: 1,000 denied + 2,000 healthy Buckets, 60 s window;
quick: 1,000 denied + 300 healthy, 6 s window)

For each system under test, on a fresh test bed with moto's IAM checks on: the controller may
assume every role except the denied account's (an explicit Deny on its identity); the healthy
accounts' roles exist and may use S3. The bench creates every Bucket at once (denied and
healthy interleaved) and watches for a fixed window (the floor's ends when it is idle:
it never retries). Measured:

- the healthy Buckets: time until all are synced and Buckets per second (the reconcile
  throughput beside the broken account);
- AssumeRole calls for the denied role (moto's recorder, read every 0.2 s to time them): per
  minute, and against what "one per backoff interval" allows for the window (carm's
  credential cache backs off 5 s, 10 s, 20 s, ... for all of the role's Buckets together);
- reconciles of the denied Buckets, Kubernetes writes, CPU seconds, peak RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench._cli import for_each_system, parse, parser
from bench._population import (
    Population,
    create_buckets,
    create_namespaces,
    plan_population,
    role_arn,
    tracking,
)
from bench._report import Row, Table, Target, write_json
from bench._systems import System, run_system
from bench._testbed import WRITE_VERBS, TestBed, classify_aws_request, test_bed

BACKOFF = 5.0
"""carm's first AssumeRole backoff (CredentialPolicy.backoff_initial_seconds); it doubles."""


@dataclass(frozen=True)
class Plan:
    denied_buckets: int
    denied_namespaces: int
    healthy_buckets: int
    healthy_namespaces: int
    healthy_accounts: int
    window: float
    concurrency: int = 16


FULL = Plan(1_000, 20, 2_000, 180, 19, window=60.0)
QUICK = Plan(1_000, 10, 300, 27, 9, window=6.0)

ROWS = [
    Row("healthy_seconds", "time until all healthy Buckets Synced", "s", 2),
    Row("healthy_per_second", "healthy throughput", "Buckets/s", 1),
    Row("denied_assume_role", "AssumeRole calls for the denied role", "", 0),
    Row("allowed_assume_role", "  one per backoff interval would allow", "", 0),
    Row("sts_per_minute", "STS calls per minute for the denied role", "/min", 1),
    Row("min_gap_seconds", "shortest gap between them", "s", 1),
    Row("denied_reconciles", "reconciles of denied Buckets", "", 0),
    Row("denied_reported", "denied Buckets showing the failure", "", 0),
    Row("kube_writes", "Kubernetes writes", "", 0),
    Row("cpu_seconds", "CPU seconds", "s", 2),
    Row("peak_rss_mib", "peak RSS", "MiB", 1),
]


def attempts_allowed(elapsed: float) -> int:
    """AssumeRole attempts one per backoff interval allows within `elapsed` s: the first, then
    one after each interval (attempt k+1 comes 5 * (2**k - 1) s after the first)."""
    return 1 + max(0, math.floor(math.log2(max(0.0, elapsed) / BACKOFF + 1)))


def populations(plan: Plan) -> tuple[Population, Population]:
    healthy = plan_population(
        plan.healthy_buckets, plan.healthy_namespaces, plan.healthy_accounts, prefix="ok"
    )
    denied = plan_population(
        plan.denied_buckets, plan.denied_namespaces, 1, prefix="no", first_account=90
    )
    return healthy, denied


class AssumeRoleTimes:
    """Times of the AssumeRole calls for one role, read from moto's recording as they land."""

    def __init__(self, bed: TestBed, role: str) -> None:
        self.bed = bed
        self.role = role.encode()
        self.times: list[float] = []
        self._offset = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            self.poll()

    def poll(self) -> None:
        """Note the calls recorded since the last poll (at the time they are seen)."""
        if not self.bed.recording.exists():
            return
        data = self.bed.recording.read_bytes()[self._offset :]
        end = data.rfind(b"\n") + 1
        self._offset += end
        now = time.perf_counter()
        for line in data[:end].splitlines():
            if b"sts" not in line:
                continue
            operation, role = classify_aws_request(orjson.loads(line))
            if operation == "sts:AssumeRole" and role is not None and role.encode() == self.role:
                self.times.append(now)


async def prepare(bed: TestBed, healthy: Population, denied: Population) -> str:
    """Roles, role map, namespaces and the Deny; returns the denied role's ARN."""
    moto = bed.moto
    await asyncio.gather(
        *(asyncio.to_thread(moto.create_role, a, "carm-bench") for a in healthy.accounts)
    )
    denied_role = role_arn(denied.accounts[0])
    await asyncio.to_thread(moto.deny_assume_role, denied_role)
    await asyncio.to_thread(moto.set_iam_enforcement, True)
    both = Population(
        healthy.accounts + denied.accounts,
        healthy.namespace_account | denied.namespace_account,
        [],
    )
    await create_namespaces(bed, both)
    return denied_role


def interleave(healthy: Population, denied: Population) -> list[Any]:
    """Denied and healthy Buckets mixed evenly, as they would arrive from many teams."""
    ratio = max(1, len(denied.buckets) // max(1, len(healthy.buckets)))
    mixed, rest = [], iter(denied.buckets)
    for bucket in healthy.buckets:
        mixed.append(bucket)
        mixed += [b for _, b in zip(range(ratio), rest, strict=False)]
    return mixed + list(rest)


async def measure(system: System, workdir: Path, plan: Plan) -> dict[str, Any]:
    healthy, denied = populations(plan)
    async with test_bed(workdir) as bed:
        denied_role = await prepare(bed, healthy, denied)
        async with run_system(bed, system, concurrency=plan.concurrency) as running:
            seen = len(running.reconciles())
            counts_before, bench_writes = await bed.kube.request_counts(), bed.kube.writes
            cpu_before = running.cpu_seconds()
            await bed.start_recording()
            times = AssumeRoleTimes(bed, denied_role)
            timer = asyncio.create_task(times.run())
            created: dict[tuple[str, str], float] = {}
            keys = {b.key for b in healthy.buckets}
            denied_keys = {b.key for b in denied.buckets}
            async with tracking(bed) as tracker:
                started = time.perf_counter()
                await create_buckets(bed, interleave(healthy, denied), created, 32)
                await tracker.wait_for(keys, plan.window)
                if system.retries:
                    await asyncio.sleep(max(0.0, started + plan.window - time.perf_counter()))
                else:  # nothing will come after: the end of its work ends the window
                    await tracker.wait_for(keys | denied_keys, plan.window, or_failed=True)
                    await running.quiesce(bed, 0.3, plan.window)
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
            times.poll()  # the calls since its last round
            calls = await bed.stop_recording()
            counts = await bed.kube.request_counts()
            cpu = running.cpu_seconds() - cpu_before
            running.check_alive()
            reconciles = [
                r for r in running.reconciles()[seen:] if (r.namespace, r.name) in denied_keys
            ]
            synced = [tracker.synced[k] for k in keys if k in tracker.synced]
            reported = len(tracker.failed & denied_keys)
            peak = running.peak_rss_mib()
            bench_writes = bed.kube.writes - bench_writes
    healthy_seconds = max(synced) - started if len(synced) == len(keys) else None
    writes = sum(counts[v] - counts_before[v] for v in WRITE_VERBS)
    writes -= bench_writes
    denied_calls = calls.assume_role_by_role.get(denied_role, 0)
    gaps = [b - a for a, b in zip(times.times, times.times[1:], strict=False)]
    window = plan.window
    return {
        "healthy_seconds": healthy_seconds,
        "healthy_per_second": len(keys) / healthy_seconds if healthy_seconds else None,
        "healthy_synced": len(synced),
        "denied_assume_role": denied_calls,
        "allowed_assume_role": attempts_allowed(window),
        "sts_per_minute": denied_calls * 60 / window,
        "min_gap_seconds": min(gaps) if gaps else None,
        "assume_role_times": [round(t - started, 2) for t in times.times],
        "denied_reconciles": len(reconciles),
        "denied_reported": reported,
        "kube_writes": writes,
        "aws_operations": dict(calls.operations),
        "cpu_seconds": cpu,
        "peak_rss_mib": peak,
    }


def table(plan: Plan, results: dict[str, dict[str, Any]]) -> Table:
    result = Table(
        "failure",
        f"failure: 1 account denied ({plan.denied_buckets} Buckets) beside "
        f"{plan.healthy_accounts} healthy ({plan.healthy_buckets} Buckets), "
        f"{plan.window:g} s window",
        ROWS,
        results,
    )
    carm = results.get("carm")
    if carm is not None:
        calls, allowed = carm["denied_assume_role"], carm["allowed_assume_role"]
        result.targets.append(
            Target(
                "at most one AssumeRole per backoff interval for the denied role",
                calls <= allowed,
                f"{calls} calls in {plan.window:g} s, {allowed} allowed; calls at "
                f"{carm['assume_role_times']} s",
            )
        )
    for name, figures in results.items():
        if figures["healthy_seconds"] is None:
            result.notes.append(
                f"{name}: only {figures['healthy_synced']} of {plan.healthy_buckets} healthy "
                f"Buckets synced in the {plan.window:g} s window"
            )
    return result


def report(plan: Plan, results: dict[str, dict[str, Any]], output_dir: Path) -> Table:
    result = table(plan, results)
    print()
    print(result.render())
    path = write_json("failure", {"plan": vars(plan)} | result.document(), output_dir)
    print(f"  written: {path}")
    return result


def main(argv: list[str]) -> int:
    args = parse(parser("failure", __doc__.split("\n")[0]), argv)
    plan = QUICK if args.quick else FULL

    async def run(system: System, workdir: Path) -> dict[str, Any]:
        return await measure(system, workdir, plan)

    results = for_each_system(args, "failure", run)
    report(plan, results, args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
