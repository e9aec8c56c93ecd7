"""Throughput of the embedded Kubernetes API server (`python -m bench kubeapi [--quick]`).

The server runs as a separate process (`carm sandbox kubeapi`), so the client below and the
server each have an event loop and a core of their own, as a controller and its API server
would. The client is aiohttp + orjson, with nothing of a Kubernetes client library in between,
so the figures are the server's and not a client's decoding costs.

Measured, in order, against one fresh server:

1. create: POST of N ConfigMaps with C requests in flight;
2. list: the N objects listed whole and in pages of 500 (`limit` + `continue`);
3. watch, live: W watchers (1, then 10) on the namespace while M objects are modified with C
   merge patches in flight; events/s is events delivered to all watchers per second, from the
   first write to the last watcher's last event;
4. watch, replay: W watchers started from the resourceVersion before those M modifications,
   so the server replays its history as fast as it can write;
5. the server's peak resident memory (VmHWM), read from /proc at the end.

Prints a table and writes the figures to bench/results/kubeapi.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

RESULTS = Path(__file__).resolve().parent / "results" / "kubeapi.json"
NAMESPACE = "bench"
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class Plan:
    objects: int
    modifications: int
    concurrency: int
    watchers: tuple[int, ...]
    list_rounds: int


FULL = Plan(objects=10_000, modifications=5_000, concurrency=64, watchers=(1, 10), list_rounds=5)
QUICK = Plan(objects=3_000, modifications=2_000, concurrency=32, watchers=(1, 10), list_rounds=5)


@dataclass
class Figure:
    name: str
    count: int
    seconds: float
    unit: str

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class Report:
    plan: Plan
    server_mode: str = "subprocess (carm sandbox kubeapi), client in this process"
    figures: list[Figure] = field(default_factory=list)
    server_peak_rss_mib: float | None = None
    server_rss_after_mib: float | None = None

    def add(self, name: str, count: int, seconds: float, unit: str) -> Figure:
        figure = Figure(name, count, seconds, unit)
        self.figures.append(figure)
        print(f"  measured: {name.strip()}", file=sys.stderr, flush=True)
        return figure


# ---------------------------------------------------------------------------------------------
# The server process


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def server_process(workdir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = _free_port()
    log = (workdir / "kubeapi.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "carm.cli",
            "sandbox",
            "kubeapi",
            "--port",
            str(port),
            "--kubeconfig",
            str(workdir / "kubeconfig"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def wait_until_serving(
    session: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API server exited with {proc.returncode}")
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"{url}/version") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the API server at {url} did not start")


def memory_mib(pid: int) -> dict[str, float]:
    """VmHWM (peak) and VmRSS (now) of a process, in MiB; empty where /proc is missing."""
    figures: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                figures[key] = int(value.split()[0]) / 1024
    return figures


# ---------------------------------------------------------------------------------------------
# Client helpers


async def expect(response: aiohttp.ClientResponse, *codes: int) -> bytes:
    body = await response.read()
    if response.status not in codes:
        raise RuntimeError(f"{response.method} {response.url}: {response.status} {body[:300]!r}")
    return body


async def bounded(concurrency: int, jobs: int, job: Callable[[int], Awaitable[None]]) -> float:
    """Runs `job(i)` for i in range(jobs) with `concurrency` in flight; returns seconds taken."""
    next_index = iter(range(jobs))

    async def worker() -> None:
        for i in next_index:
            await job(i)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, jobs)):
            group.create_task(worker())
    return time.perf_counter() - started


def config_map(i: int) -> bytes:
    return orjson.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"cm-{i:06d}",
                "labels": {"bench": "kubeapi", "shard": str(i % 10)},
            },
            "data": {"index": str(i), "payload": "x" * 200},
        }
    )


class Api:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.base = f"{url}/api/v1/namespaces/{NAMESPACE}/configmaps"
        self.url = url

    async def create_namespace(self) -> None:
        body = orjson.dumps(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        )
        async with self.session.post(
            f"{self.url}/api/v1/namespaces", data=body, headers={"Content-Type": JSON}
        ) as response:
            await expect(response, 201)

    async def create(self, i: int) -> None:
        async with self.session.post(
            self.base, data=config_map(i), headers={"Content-Type": JSON}
        ) as response:
            await expect(response, 201)

    async def modify(self, i: int, round_: int) -> None:
        patch = orjson.dumps({"data": {"round": str(round_)}})
        async with self.session.patch(
            f"{self.base}/cm-{i:06d}", data=patch, headers={"Content-Type": MERGE_PATCH}
        ) as response:
            await expect(response, 200)

    async def list(self, limit: int | None) -> tuple[int, str]:
        """Lists every object (following `continue` when paged); returns (count, listRV)."""
        count, token, version = 0, "", ""
        while True:
            params: dict[str, str] = {}
            if limit is not None:
                params["limit"] = str(limit)
            if token:
                params["continue"] = token
            async with self.session.get(self.base, params=params) as response:
                page = orjson.loads(await expect(response, 200))
            count += len(page["items"])
            version = version or page["metadata"]["resourceVersion"]
            token = page["metadata"].get("continue") or ""
            if not token:
                return count, version


class Watch:
    """One watch stream, counting the event lines it receives."""

    def __init__(self, api: Api, resource_version: str) -> None:
        self.api = api
        self.resource_version = resource_version
        self.events = 0
        self.opened = asyncio.Event()
        self.last_event_at = 0.0

    async def run(self, expected: int) -> None:
        params = {"watch": "true", "resourceVersion": self.resource_version}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
        async with self.api.session.get(self.api.base, params=params, timeout=timeout) as response:
            if response.status != 200:
                await expect(response, 200)
            self.opened.set()
            tail = b""
            async for chunk in response.content.iter_any():
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                for line in lines:
                    if b'"type":"ERROR"' in line[:40]:
                        raise RuntimeError(f"watch error: {line[:300]!r}")
                self.events += len(lines)
                if self.events >= expected:
                    self.last_event_at = time.perf_counter()
                    return
        raise RuntimeError(f"the watch ended after {self.events} of {expected} events")


# ---------------------------------------------------------------------------------------------
# The workloads


async def measure_create(api: Api, plan: Plan, report: Report) -> None:
    await api.create_namespace()
    seconds = await bounded(plan.concurrency, plan.objects, api.create)
    report.add(
        f"create ConfigMaps ({plan.concurrency} in flight)", plan.objects, seconds, "objects/s"
    )


async def measure_list(api: Api, plan: Plan, report: Report) -> None:
    for label, limit in (("unpaged", None), ("paged, limit=500", 500)):
        timings = []
        for _ in range(plan.list_rounds):
            started = time.perf_counter()
            count, _ = await api.list(limit)
            timings.append(time.perf_counter() - started)
            if count != plan.objects:
                raise RuntimeError(f"listed {count} objects, expected {plan.objects}")
        report.add(
            f"list {plan.objects} ({label}, median)",
            plan.objects,
            statistics.median(timings),
            "objects/s",
        )


async def measure_watch(api: Api, plan: Plan, report: Report, watchers: int, round_: int) -> None:
    _, start_version = await api.list(limit=1)
    watches = [Watch(api, start_version) for _ in range(watchers)]
    async with asyncio.TaskGroup() as group:
        for watch in watches:
            group.create_task(watch.run(plan.modifications))
        await asyncio.wait_for(asyncio.gather(*(w.opened.wait() for w in watches)), 10)
        started = time.perf_counter()
        writes = await bounded(
            plan.concurrency, plan.modifications, lambda i: api.modify(i % plan.objects, round_)
        )
    delivered = sum(w.events for w in watches)
    elapsed = max(w.last_event_at for w in watches) - started
    report.add(f"watch live, {watchers} watcher(s), delivered", delivered, elapsed, "events/s")
    report.add(
        f"  (merge patches while watched by {watchers})", plan.modifications, writes, "writes/s"
    )

    # The same changes again, now from the server's history as fast as it can send them.
    replays = [Watch(api, start_version) for _ in range(watchers)]
    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for watch in replays:
            group.create_task(watch.run(plan.modifications))
    elapsed = max(w.last_event_at for w in replays) - started
    report.add(
        f"watch replay, {watchers} watcher(s), delivered",
        sum(w.events for w in replays),
        elapsed,
        "events/s",
    )


async def run(plan: Plan, report: Report) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="bench-kubeapi-") as tmp,
        server_process(Path(tmp)) as (
            url,
            proc,
        ),
    ):
        connector = aiohttp.TCPConnector(limit=plan.concurrency + max(plan.watchers) * 2)
        async with aiohttp.ClientSession(connector=connector) as session:
            await wait_until_serving(session, url, proc)
            api = Api(session, url)
            await measure_create(api, plan, report)
            await measure_list(api, plan, report)
            for round_, watchers in enumerate(plan.watchers):
                await measure_watch(api, plan, report, watchers, round_)
        memory = memory_mib(proc.pid)
        report.server_peak_rss_mib = memory.get("VmHWM")
        report.server_rss_after_mib = memory.get("VmRSS")


def print_table(report: Report) -> None:
    plan = report.plan
    print()
    print(
        f"embedded kubeapi: {plan.objects} ConfigMaps, {plan.modifications} modifications, "
        f"{plan.concurrency} requests in flight; {report.server_mode}"
    )
    print(f"{'measurement':<46} {'count':>8} {'seconds':>9} {'rate':>12}  unit")
    print("-" * 90)
    for f in report.figures:
        print(f"{f.name:<46} {f.count:>8} {f.seconds:>9.3f} {f.rate:>12,.0f}  {f.unit}")
    for label, mib in (
        ("server peak RSS (VmHWM)", report.server_peak_rss_mib),
        ("server RSS at the end", report.server_rss_after_mib),
    ):
        if mib is not None:
            print(f"{label:<46} {'':>8} {'':>9} {mib:>12,.1f}  MiB")


def write_json(report: Report, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "plan": asdict(report.plan),
        "server_mode": report.server_mode,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "figures": [{**asdict(f), "rate": round(f.rate, 1)} for f in report.figures],
        "server_peak_rss_mib": report.server_peak_rss_mib,
        "server_rss_after_mib": report.server_rss_after_mib,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench kubeapi", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a smaller run (under 30 s)")
    parser.add_argument("--objects", type=int, help="ConfigMaps to create")
    parser.add_argument("--modifications", type=int, help="writes while watched")
    parser.add_argument("--concurrency", type=int, help="requests in flight")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    plan = Plan(
        objects=args.objects or plan.objects,
        modifications=min(args.modifications or plan.modifications, args.objects or plan.objects),
        concurrency=args.concurrency or plan.concurrency,
        watchers=plan.watchers,
        list_rounds=plan.list_rounds,
    )
    report = Report(plan)
    asyncio.run(run(plan, report))
    print_table(report)
    write_json(report, args.output)
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
