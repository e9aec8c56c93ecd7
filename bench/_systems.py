"""The systems under test, each a process of its own, and what the bench reads of them.

- `carm`: `carm run`, as deployed (16 concurrent reconciles by default);
- `carm-ack`: `carm run --reconcile-default-max-concurrent-syncs 1`, ACK's default;
- `floor`: `python -m bench.baselines.floor`, exactly the calls the job needs;
- `kopf`: `python -m kopf run ... -m bench.baselines.kopf_operator`, the kopf way.

Readiness is the same for all: a canary Bucket in a namespace without an owner-account
annotation (managed with the controller's own credentials, so it costs no AssumeRole) must be
synced before a workload starts. CPU seconds are the process's user + system time, from /proc
through psutil; peak RSS is the kernel's high-water mark (VmHWM). Reconciles are counted from
the one JSON line per reconcile every system prints (carm's own log line; the baselines print
the same shape).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import psutil

from bench._testbed import WRITE_VERBS, BenchError, TestBed, buckets_path, free_port, is_synced

PROFILE_DIR: Path | None = None
"""When set (`--profile DIR`), every system under test runs under cProfile, writing here."""

CANARY_NAMESPACE = "bench-canary"
CANARY = "canary"
CANARY_BUCKET = "bench-canary-bucket"


@dataclass(frozen=True)
class System:
    name: str
    description: str
    retries: bool = True
    """False for the floor, which tries nothing twice: a window that waits for retries can
    end as soon as it is idle."""

    def command(self, bed: TestBed, concurrency: int, resync: float | None) -> list[str]:
        python = sys.executable
        if self.name in ("carm", "carm-ack"):
            syncs = 1 if self.name == "carm-ack" else concurrency
            argv = [
                python,
                "-m",
                "carm.cli",
                "run",
                "--kubeconfig",
                str(bed.kubeconfig),
                "--aws-endpoint-url",
                bed.moto.url,
                "--aws-region",
                bed.moto.region,
                "--metrics-addr",
                f"127.0.0.1:{free_port()}",
                "--healthz-addr",
                "127.0.0.1:0",
                # The same AWS job as the baselines: CreateBucket, no tags (ACK's default tags
                # would add a PutBucketTagging per Bucket, and a GetBucketTagging per resync).
                "--resource-tags=",
                "--log-format",
                "json",
                "--reconcile-default-max-concurrent-syncs",
                str(syncs),
            ]
            if resync is not None:
                argv += ["--reconcile-default-resync-seconds", str(resync)]
            return argv
        if self.name == "floor":
            argv = [python, "-m", "bench.baselines.floor", "--kubeconfig", str(bed.kubeconfig)]
            argv += ["--concurrency", str(concurrency)]
            if resync is not None:
                argv += ["--resync-seconds", str(resync)]
            return argv
        if self.name == "kopf":
            return [
                python,
                "-m",
                "kopf",
                "run",
                "--standalone",
                "--all-namespaces",
                "-m",
                "bench.baselines.kopf_operator",
            ]
        raise ValueError(self.name)

    def env(self, concurrency: int, resync: float | None) -> dict[str, str]:
        if self.name != "kopf":
            return {}
        return {"BENCH_CONCURRENCY": str(concurrency), "BENCH_RESYNC_SECONDS": str(resync or "")}


CARM = System("carm", "carm run (16 concurrent reconciles)")
CARM_ACK = System("carm-ack", "carm run --reconcile-default-max-concurrent-syncs 1 (ACK's default)")
FLOOR = System("floor", "the calls the job needs, same concurrency, no controller", retries=False)
KOPF = System("kopf", "the same job written with kopf (bench/baselines/kopf_operator.py)")
SYSTEMS = {s.name: s for s in (CARM, CARM_ACK, FLOOR, KOPF)}


@dataclass
class Reconcile:
    wall: float
    namespace: str
    name: str
    account: str
    ok: bool


@dataclass
class Running:
    """A started system under test: its process, log, and resource figures."""

    system: System
    proc: subprocess.Popen[bytes]
    log_path: Path
    started: float
    _log_offset: int = 0
    _reconciles: list[Reconcile] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def rss_mib(self) -> float:
        return float(psutil.Process(self.pid).memory_info().rss) / 2**20

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return self.rss_mib()

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(
                f"{self.system.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, size: int = 4000) -> str:
        return self.log_path.read_bytes()[-size:].decode(errors="replace")

    def reconciles(self) -> list[Reconcile]:
        """Every reconcile logged so far (read incrementally from the log file)."""
        with self.log_path.open("rb") as handle:
            handle.seek(self._log_offset)
            data = handle.read()
        end = data.rfind(b"\n") + 1
        self._log_offset += end
        for line in data[:end].splitlines():
            if not line.startswith(b"{"):
                continue
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            msg = entry.get("msg", "")
            if msg != "synced" and not msg.startswith("reconcile failed"):
                continue
            wall = datetime.fromisoformat(entry["time"]).timestamp()
            self._reconciles.append(
                Reconcile(
                    wall,
                    entry.get("namespace", ""),
                    entry.get("name", ""),
                    str(entry.get("account", "")),
                    msg == "synced",
                )
            )
        return self._reconciles

    async def quiesce(self, bed: TestBed, settle: float, within: float) -> float:
        """Wait until the system has logged no reconcile and made no Kubernetes write for
        `settle` seconds (trailing work after the last Bucket synced is part of the job);
        returns the seconds waited."""
        started = time.perf_counter()
        deadline = time.monotonic() + within
        last = (len(self.reconciles()), _writes(await bed.kube.request_counts()))
        while time.monotonic() < deadline:
            await asyncio.sleep(settle)
            self.check_alive()
            now = (len(self.reconciles()), _writes(await bed.kube.request_counts()))
            if now == last:
                break
            last = now
        return time.perf_counter() - started

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if it is still there after a second: every figure has been
        read by now, and kopf takes seconds to wind down thousands of timers (15 s when
        profiling, so that cProfile can write its file)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 15 if PROFILE_DIR else 1)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)


def _writes(counts: dict[str, int]) -> int:
    return sum(counts.get(verb, 0) for verb in WRITE_VERBS)


async def ensure_canary(bed: TestBed) -> None:
    """The canary's namespace (no owner annotation: the controller's own account)."""
    with contextlib.suppress(BenchError):
        await bed.create_namespace(CANARY_NAMESPACE)


async def wait_synced(bed: TestBed, running: Running, namespace: str, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        running.check_alive()
        with contextlib.suppress(BenchError):
            obj = await bed.kube.get(buckets_path(namespace, name))
            if is_synced(obj):
                return obj
        await asyncio.sleep(0.05)
    raise BenchError(f"{running.system.name}: {namespace}/{name} not synced in 90 s")


@contextlib.asynccontextmanager
async def run_system(
    bed: TestBed,
    system: System,
    *,
    concurrency: int = 16,
    resync: float | None = None,
    canary: str = CANARY,
) -> AsyncIterator[Running]:
    """Start `system`, wait until it has synced a canary Bucket, stop it on exit."""
    argv = system.command(bed, concurrency, resync)
    stamp = int(time.time() * 1000)
    log_path = bed.workdir / f"{system.name}-{stamp}.log"
    if PROFILE_DIR is not None:
        # cProfile writes its file when the process exits; every system exits cleanly on
        # SIGTERM. One file per start, read with `python -m pstats`.
        PROFILE_DIR.mkdir(parents=True, exist_ok=True)
        profile = PROFILE_DIR / f"{system.name}-{stamp}.prof"
        argv = [argv[0], "-m", "cProfile", "-o", str(profile), *argv[1:]]
    env = dict(bed.controller_env()) | system.env(concurrency, resync)
    with log_path.open("wb") as log:
        proc = await asyncio.to_thread(
            subprocess.Popen,
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_with_path(env),
            cwd=Path(__file__).resolve().parent.parent,
        )
    running = Running(system, proc, log_path, time.perf_counter())
    try:
        await ensure_canary(bed)
        await bed.create_bucket(CANARY_NAMESPACE, canary, f"{CANARY_BUCKET}-{canary}")
        await wait_synced(bed, running, CANARY_NAMESPACE, canary)
        yield running
    finally:
        await running.stop()


def _with_path(env: dict[str, str]) -> dict[str, str]:
    return dict(os.environ) | env
