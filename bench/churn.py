"""Mapping churn: with the fan-out population synced, re-point one account to a new role.

`python -m bench churn [--quick]`

For each system under test: the fan-out workload first (its population, synced), then one
merge patch of ack-role-account-map maps the first account to a new role
(`carm-bench-v2`). Measured from that patch:

- the time until every Bucket of that account was reconciled again (each system prints one
  line per reconcile) after an AssumeRole of the new role (moto's recorder sees it);
- reconciles of Buckets of every other account (the goal is zero), counted for a further
  grace period after the re-mapped account converged;
- AssumeRole and other AWS calls, Kubernetes writes, CPU seconds.

kopf's create/delete handlers never run again for an existing Bucket, and the credential
cache a kopf team would write is keyed by account: it does not react at all, which shows as
no reconcile of the account within `react_within` of the change.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import fanout
from bench._cli import for_each_system, parse, parser
from bench._population import Population, role_arn
from bench._report import Row, Table, Target, write_json
from bench._systems import Running, System
from bench._testbed import WRITE_VERBS, TestBed

NEW_ROLE = "carm-bench-v2"


@dataclass(frozen=True)
class Plan:
    timeout: float
    """How long the re-mapped account may take to re-sync."""
    grace: float
    """How long reconciles of other accounts are looked for after it did."""
    react_within: float = 1.5
    """A system that has not reconciled one Bucket of the account by then does not react to
    a role-map change at all (kopf): waiting out the timeout would show nothing more."""


FULL = Plan(timeout=60.0, grace=3.0)
QUICK = Plan(timeout=4.0, grace=0.5)

ROWS = [
    Row("seconds", "time until the account re-synced", "s", 2),
    Row("resynced", "its Buckets re-synced with the new role", "", 0),
    Row("account_buckets", "Buckets of the re-mapped account", "", 0),
    Row("other_reconciles", "reconciles of other accounts", "", 0),
    Row("assume_role", "AssumeRole calls", "", 0),
    Row("aws_calls", "AWS calls", "", 0),
    Row("kube_writes", "Kubernetes writes", "", 0),
    Row("cpu_seconds", "CPU seconds", "s", 2),
]


async def remap(
    bed: TestBed, running: Running, population: Population, plan: Plan
) -> dict[str, Any]:
    account = population.accounts[0]
    wanted = {b.key for b in population.of_account(account)}
    seen = len(running.reconciles())
    counts_before, bench_writes_before = await bed.kube.request_counts(), bed.kube.writes
    cpu_before = running.cpu_seconds()
    await bed.start_recording()
    mark = time.time()
    await bed.put_role_map({account: role_arn(account, NEW_ROLE)})
    deadline = time.monotonic() + plan.timeout
    converged_at: float | None = None
    while time.monotonic() < deadline:
        after = running.reconciles()[seen:]
        done = {(r.namespace, r.name): r.wall for r in after if r.ok and r.account == account}
        if wanted <= done.keys():
            converged_at = max(done[k] for k in wanted)
            break
        if not done and time.time() - mark > plan.react_within:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(plan.grace)
    calls = await bed.stop_recording()
    counts = await bed.kube.request_counts()
    after = running.reconciles()[seen:]
    new_role = calls.assume_role_by_role.get(role_arn(account, NEW_ROLE), 0)
    writes = sum(counts[v] - counts_before[v] for v in WRITE_VERBS)
    writes -= bed.kube.writes - bench_writes_before
    resynced = converged_at is not None and new_role >= 1
    return {
        "seconds": converged_at - mark if resynced and converged_at else None,
        "resynced": resynced,
        "account_buckets": len(wanted),
        "account_reconciles": sum(1 for r in after if r.account == account),
        "other_reconciles": sum(1 for r in after if r.account != account),
        "assume_role": calls.assume_role,
        "assume_role_by_role": dict(calls.assume_role_by_role),
        "aws_calls": calls.total,
        "aws_operations": dict(calls.operations),
        "kube_writes": writes,
        "cpu_seconds": running.cpu_seconds() - cpu_before,
        "react_within": plan.react_within,
    }


def table(plan: fanout.Plan, results: dict[str, dict[str, Any]]) -> Table:
    result = Table(
        "churn",
        f"mapping churn: re-point 1 of {plan.accounts} accounts "
        f"({plan.buckets // plan.accounts} of {plan.buckets} Buckets) to a new role",
        ROWS,
        results,
    )
    carm = results.get("carm")
    if carm is not None:
        result.targets.append(
            Target(
                "zero reconciles of other accounts",
                carm["other_reconciles"] == 0,
                f"{carm['other_reconciles']} reconciles of other accounts",
            )
        )
    for name, figures in results.items():
        if not figures.get("resynced"):
            result.notes.append(
                f"{name}: did not re-sync the account with the new role "
                f"({figures.get('account_reconciles')} reconciles of it, AssumeRole by role: "
                f"{figures.get('assume_role_by_role')}; no reaction within "
                f"{figures.get('react_within')} s means none will come)"
            )
    return result


def report(plan: fanout.Plan, results: dict[str, dict[str, Any]], output_dir: Path) -> Table:
    result = table(plan, results)
    print()
    print(result.render())
    path = write_json("churn", {"plan": vars(plan)} | result.document(), output_dir)
    print(f"  written: {path}")
    return result


def main(argv: list[str]) -> int:
    args = parse(parser("churn", __doc__.split("\n")[0]), argv)
    population_plan = fanout.QUICK if args.quick else fanout.FULL
    plan = QUICK if args.quick else FULL

    async def run(system: System, workdir: Path) -> dict[str, Any]:
        async def churn(bed: TestBed, running: Running, population: Population) -> dict[str, Any]:
            return await remap(bed, running, population, plan)

        figures = await fanout.measure(system, workdir, population_plan, then=churn)
        return dict(figures["then"])

    results = for_each_system(args, "churn", run)
    report(population_plan, results, args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
