"""`python -m bench all [--quick]`: every workload in one run, side by side.

Order: the embedded API's own ceiling first (`bench/kubeapi.py`), so a reader can tell when the
test bed rather than a system under test is the limit; then fan-out and mapping churn (churn
runs on the fan-out's synced population, in the same session: one sandbox per system for
both); steady state (reusing what the fan-out saw of each system: its RSS with every account
in use, and the shape of a synced Bucket); failure; then, at the full size only, any other
workload module in bench/ (`--quick` keeps to the two minutes it promises and names them
instead). Each table is printed when its workload finishes; a summary of every target and
the total time comes last. JSON (and the fan-out PNG) go to `--output-dir`.

Exit status: 0 when every workload ran and every system's results were correct (the right
buckets in the right accounts); a missed target is reported, not a failure.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
from pathlib import Path
from typing import Any

from bench import churn, failure, fanout, kubeapi, steady
from bench._cli import for_each_system, parse, parser, systems_of
from bench._population import Population
from bench._report import Table
from bench._systems import Running, System
from bench._testbed import TestBed

OWN = ("kubeapi", "fanout", "churn", "steady", "failure")


def _fanout_and_churn(args: Any, quick: bool) -> tuple[Table, Table, dict[str, Any]]:
    plan = fanout.QUICK if quick else fanout.FULL
    churn_plan = churn.QUICK if quick else churn.FULL

    async def then(bed: TestBed, running: Running, population: Population) -> dict[str, Any]:
        return await churn.remap(bed, running, population, churn_plan)

    async def run(system: System, workdir: Path) -> dict[str, Any]:
        return await fanout.measure(system, workdir, plan, then=then)

    results = for_each_system(args, "fanout+churn", run)
    churned = {name: figures.pop("then") for name, figures in results.items()}
    # After the fan-out, each system has used every account and holds the fan-out's Buckets
    # (and its canary): the steady state's baseline, without starting each system again.
    known = {
        name: steady.Baseline(f["rss_after_mib"], plan.buckets + 1, f["shape"])
        for name, f in results.items()
    }
    return (
        fanout.report(plan, results, args.output_dir),
        churn.report(plan, churned, args.output_dir),
        known,
    )


def _steady(args: Any, quick: bool, known: dict[str, Any]) -> Table:
    import tempfile

    plan = steady.QUICK if quick else steady.FULL
    with tempfile.TemporaryDirectory(prefix="bench-steady-") as tmp:
        results = asyncio.run(steady.run_all(systems_of(args), plan, Path(tmp), known))
    return steady.report(plan, results, args.output_dir)


def _failure(args: Any, quick: bool) -> Table:
    plan = failure.QUICK if quick else failure.FULL

    async def run(system: System, workdir: Path) -> dict[str, Any]:
        return await failure.measure(system, workdir, plan)

    return failure.report(plan, for_each_system(args, "failure", run), args.output_dir)


def _others() -> list[str]:
    from bench.__main__ import workloads

    return [name for name in workloads() if name not in OWN]


def main(argv: list[str]) -> int:
    args = parse(parser("all", "every workload, side by side"), argv)
    quick = bool(args.quick)
    started = time.perf_counter()
    ceiling = ["--output", str(args.output_dir / "kubeapi.json")] + (["--quick"] if quick else [])
    print("== the test bed's own ceiling: the embedded Kubernetes API (bench/kubeapi.py)")
    codes = [kubeapi.main(ceiling)]
    fan, churned, known = _fanout_and_churn(args, quick)
    tables = [fan, churned, _steady(args, quick, known), _failure(args, quick)]
    for name in _others():
        if quick:
            print(f"\n== also: python -m bench {name} [--quick] (not part of all --quick)")
            continue
        print(f"\n== {name} (python -m bench {name})")
        module = importlib.import_module(f"bench.{name}")
        codes.append(module.main([]))
    correct = all(
        figures.get("correct", True) and figures.get("complete", True)
        for figures in fan.results.values()
    )
    print(f"\n== summary ({time.perf_counter() - started:.0f} s)")
    for table in tables:
        for target in table.targets:
            print(f"[{table.workload}]{target.line()}")
    return 0 if correct and not any(codes) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
