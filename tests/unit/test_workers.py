"""The work phase on a fake clock: a stop drains in-flight reconciles within the grace period
and cancels them after it; with leader election, workers run only during a term, a new term
queues every object, and a stop hands the lease over."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc

from carm.clock import FakeClock
from carm.events import ObjectKey
from carm.kube.lease import LeaderElector, LeaseTimings
from carm.queue import WorkQueue
from carm.reconcile.workers import Workers
from tests.unit.test_lease import Connection, FakeLeaseApi

KEYS = [ObjectKey("production", f"bucket-{i}") for i in range(3)]


@dataclass
class FakeReconciler:
    """Workers that take keys from the queue and 'reconcile' each for `seconds` of fake time."""

    queue: WorkQueue
    clock: FakeClock
    seconds: float = 10.0
    started: list[ObjectKey] = field(default_factory=list)
    finished: list[ObjectKey] = field(default_factory=list)
    cancelled: list[ObjectKey] = field(default_factory=list)

    async def run_workers(self, count: int = 2) -> None:
        async with anyio.create_task_group() as group:
            for _ in range(count):
                group.start_soon(self._work)

    async def _work(self) -> None:
        async for key in self.queue:
            self.started.append(key)
            try:
                await self.clock.sleep(self.seconds)
                self.finished.append(key)
            except anyio.get_cancelled_exc_class():
                self.cancelled.append(key)
                raise
            finally:
                self.queue.done(key)


@asynccontextmanager
async def running(workers: Workers) -> AsyncIterator[anyio.Event]:
    returned = anyio.Event()
    async with anyio.create_task_group() as group:

        async def run() -> None:
            await workers.run()
            returned.set()

        group.start_soon(run)
        yield returned
        group.cancel_scope.cancel()


def setup(grace: float) -> tuple[FakeClock, WorkQueue, FakeReconciler, Workers]:
    clock = FakeClock()
    queue = WorkQueue(clock=clock, max_concurrent=2, max_per_lane=2)
    reconciler = FakeReconciler(queue, clock)
    workers = Workers(
        run_workers=reconciler.run_workers, queue=queue, clock=clock, grace_seconds=grace
    )
    return clock, queue, reconciler, workers


async def test_stop_lets_in_flight_reconciles_finish_and_starts_no_new_one() -> None:
    clock, queue, reconciler, workers = setup(grace=30)
    for key in KEYS:
        queue.add(key, lane="111111111111")
    async with running(workers) as returned:
        await clock.advance(1)
        assert reconciler.started == KEYS[:2]
        workers.stop()
        await clock.advance(8.5)
        assert not returned.is_set(), "two reconciles are still in flight"
        await clock.advance(1)
        assert returned.is_set()
        assert reconciler.finished == KEYS[:2] and not reconciler.cancelled
        assert KEYS[2] not in reconciler.started, "no new reconcile after the stop"


async def test_reconciles_longer_than_the_grace_period_are_cancelled_at_its_end() -> None:
    clock, queue, reconciler, workers = setup(grace=3)
    queue.add(KEYS[0])
    async with running(workers) as returned:
        await clock.advance(1)
        workers.stop()
        await clock.advance(2.9)
        assert not returned.is_set()
        await clock.advance(0.2)
        assert returned.is_set() and reconciler.cancelled == [KEYS[0]]
        assert queue.in_flight == 0, "a cancelled reconcile still releases its key"


async def test_a_stop_before_the_work_phase_returns_at_once() -> None:
    clock, queue, reconciler, workers = setup(grace=30)
    queue.add(KEYS[0])
    workers.stop()
    async with running(workers) as returned:
        await clock.settle()
        assert returned.is_set() and reconciler.started == []


def elected(
    clock: FakeClock, api: FakeLeaseApi, identity: str
) -> tuple[WorkQueue, FakeReconciler, Workers, LeaderElector]:
    queue = WorkQueue(clock=clock, max_concurrent=2, max_per_lane=2)
    reconciler = FakeReconciler(queue, clock, seconds=1.0)
    elector = LeaderElector(
        Connection(api, clock),
        namespace="ack-system",
        identity=identity,
        clock=clock,
        timings=LeaseTimings(15, 10, 2),
    )

    def requeue_all() -> None:
        for key in KEYS:
            queue.add(key, lane="111111111111")

    workers = Workers(
        run_workers=reconciler.run_workers,
        queue=queue,
        clock=clock,
        grace_seconds=30,
        campaign=elector,
        requeue_all=requeue_all,
    )
    return queue, reconciler, workers, elector


async def test_only_the_leader_reconciles_and_a_stop_hands_over_with_all_keys_queued() -> None:
    clock, api = FakeClock(), FakeLeaseApi()
    _, leader_work, leader, _ = elected(clock, api, "leader")
    _, standby_work, standby, standby_elector = elected(clock, api, "standby")
    async with running(leader) as leader_returned, running(standby):
        await clock.advance(5)
        assert sorted(leader_work.finished) == KEYS, "a new term queues every cached object"
        assert standby_work.started == [], "a standby never reconciles"
        leader.stop()
        await clock.advance(0.1)
        assert leader_returned.is_set()
        assert api.holder is None, "the lease is released on stop"
        await clock.advance(2.0 + 3.0)  # its next poll, then three 1 s reconciles on 2 workers
        assert standby_elector.leading and sorted(standby_work.finished) == KEYS


async def test_a_standby_stops_at_once_without_touching_the_lease() -> None:
    clock, api = FakeClock(), FakeLeaseApi()
    _, _, leader, _ = elected(clock, api, "leader")
    _, standby_work, standby, _ = elected(clock, api, "standby")
    async with running(leader), running(standby) as standby_returned:
        await clock.advance(3)
        standby.stop()
        await clock.settle()
        assert standby_returned.is_set() and standby_work.started == []
        assert api.holder == "leader"
