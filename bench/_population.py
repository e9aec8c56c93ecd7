"""Accounts, namespaces and Buckets of a workload, and the watch that times their syncing.

Namespace `fan-NNN` belongs to account `2000000000AA` (namespaces are dealt to accounts in
turn) and Bucket `b-JJJJJ` goes to namespace `JJJJJ mod N`, so every account holds the same
share. Each account maps to role `arn:aws:iam::<account>:role/carm-bench` in
ack-role-account-map.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from bench._testbed import TestBed, buckets_path, is_synced


def account_id(index: int) -> str:
    return f"2000000000{index:02d}"


def role_arn(account: str, name: str = "carm-bench") -> str:
    return f"arn:aws:iam::{account}:role/{name}"


@dataclass(frozen=True)
class BucketRef:
    namespace: str
    name: str
    bucket_name: str
    account: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass
class Population:
    accounts: list[str]
    namespace_account: dict[str, str]
    buckets: list[BucketRef]

    def of_account(self, account: str) -> list[BucketRef]:
        return [b for b in self.buckets if b.account == account]

    def roles(self, name: str = "carm-bench") -> dict[str, str]:
        return {a: role_arn(a, name) for a in self.accounts}

    def expected_names(self) -> dict[str, set[str]]:
        names: dict[str, set[str]] = defaultdict(set)
        for bucket in self.buckets:
            names[bucket.account].add(bucket.bucket_name)
        return names


def plan_population(
    buckets: int, namespaces: int, accounts: int, *, prefix: str = "fan", first_account: int = 0
) -> Population:
    ids = [account_id(first_account + i) for i in range(accounts)]
    ns_account = {f"{prefix}-{i:03d}": ids[i % accounts] for i in range(namespaces)}
    names = list(ns_account)
    refs = [
        BucketRef(
            names[j % namespaces],
            f"b-{j:05d}",
            f"bench-{prefix}-{j:05d}",
            ns_account[names[j % namespaces]],
        )
        for j in range(buckets)
    ]
    return Population(ids, ns_account, refs)


async def create_namespaces(bed: TestBed, population: Population) -> None:
    await bed.put_role_map(population.roles())

    def job(namespace: str, account: str) -> Callable[[], Awaitable[None]]:
        return lambda: bed.create_namespace(namespace, account)

    await bounded(32, [job(ns, a) for ns, a in population.namespace_account.items()])


async def bounded(limit: int, jobs: list[Callable[[], Awaitable[None]]]) -> None:
    """Run the jobs with at most `limit` in flight."""
    pending = iter(jobs)

    async def worker() -> None:
        for job in pending:
            await job()

    async with asyncio.TaskGroup() as group:
        for _ in range(min(limit, len(jobs))):
            group.create_task(worker())


async def create_buckets(
    bed: TestBed, buckets: list[BucketRef], created: dict[tuple[str, str], float], in_flight: int
) -> None:
    """Create the Bucket objects, `in_flight` at a time; note when each create returned."""

    def job(ref: BucketRef) -> Callable[[], Awaitable[None]]:
        async def create() -> None:
            await bed.create_bucket(ref.namespace, ref.name, ref.bucket_name)
            created[ref.key] = time.perf_counter()

        return create

    await bounded(in_flight, [job(ref) for ref in buckets])


@dataclass
class SyncedTracker:
    """Watches every Bucket and notes when each first shows ACK.ResourceSynced=True."""

    bed: TestBed
    synced: dict[tuple[str, str], float] = field(default_factory=dict)
    failed: set[tuple[str, str]] = field(default_factory=set)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, resource_version: str) -> None:
        async for event in self.bed.kube.watch(buckets_path(), resource_version):
            obj = event.get("object") or {}
            meta = obj.get("metadata") or {}
            key = (meta.get("namespace", ""), meta.get("name", ""))
            if is_synced(obj):
                self.synced.setdefault(key, time.perf_counter())
            elif (obj.get("status") or {}).get("conditions"):
                self.failed.add(key)
            self._changed.set()

    async def wait_for(
        self, keys: set[tuple[str, str]], within: float, *, or_failed: bool = False
    ) -> bool:
        """True once every key is synced (or, with `or_failed`, shows a failure); False after
        `within` seconds."""
        deadline = time.monotonic() + within
        while not keys <= (self.synced.keys() | (self.failed if or_failed else set())):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
        return True


@contextlib.asynccontextmanager
async def tracking(bed: TestBed) -> AsyncIterator[SyncedTracker]:
    """A `SyncedTracker` watching from now on, stopped on exit."""
    _, version = await bed.list_buckets()
    tracker = SyncedTracker(bed)
    task = asyncio.create_task(tracker.run(version))
    try:
        yield tracker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
