"""Command-line options every workload shares, and running a workload for each system."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench import _spy, _systems
from bench._report import RESULTS_DIR
from bench._systems import SYSTEMS, System


def parser(workload: str, description: str) -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(prog=f"python -m bench {workload}", description=description)
    result.add_argument("--quick", action="store_true", help="the small size (CI, laptops)")
    result.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated systems under test (default: {','.join(SYSTEMS)})",
    )
    result.add_argument(
        "--output-dir", type=Path, default=RESULTS_DIR, help="JSON (and PNG) go here"
    )
    result.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    result.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run every system under test with cProfile, one .prof file per start in DIR",
    )
    result.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="sample each system with py-spy during the measured windows; summaries in DIR",
    )
    return result


def parse(result: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    args = result.parse_args(argv)
    if args.profile is not None:
        _systems.PROFILE_DIR = args.profile.resolve()
    if args.py_spy is not None:
        _spy.SPY_DIR = args.py_spy.resolve()
    return args


def systems_of(args: argparse.Namespace) -> list[System]:
    names = [name.strip() for name in args.systems.split(",") if name.strip()]
    unknown = [name for name in names if name not in SYSTEMS]
    if unknown:
        raise SystemExit(f"unknown systems {unknown}; known: {', '.join(SYSTEMS)}")
    return [SYSTEMS[name] for name in names]


def for_each_system(
    args: argparse.Namespace,
    workload: str,
    measure: Callable[[System, Path], Coroutine[Any, Any, dict[str, Any]]],
) -> dict[str, dict[str, Any]]:
    """Run `measure(system, workdir)` for each system in turn, each on a fresh test bed."""
    results: dict[str, dict[str, Any]] = {}
    tmp = tempfile.mkdtemp(prefix=f"bench-{workload}-")
    try:
        for system in systems_of(args):
            workdir = Path(tmp) / system.name
            workdir.mkdir()
            started = time.perf_counter()
            print(f"[{workload}] {system.name}: {system.description} ...", flush=True)
            load = os.getloadavg()[0]
            results[system.name] = asyncio.run(measure(system, workdir)) | {"load_1m": load}
            print(f"[{workload}] {system.name}: done in {time.perf_counter() - started:.1f} s")
    finally:
        if args.keep:
            print(f"[{workload}] logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return results
