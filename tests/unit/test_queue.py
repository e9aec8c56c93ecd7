"""The work queue on a fake clock: de-duplication, one worker per key, backoff, timers, resync,
the global and per-lane limits, fairness across accounts, shutdown."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carm.backoff import Backoff, proportional_jitter
from carm.clock import FakeClock
from carm.events import ObjectKey
from carm.queue import QueueShutDown, WorkQueue

LOGS = ObjectKey("team-a", "logs")
MEDIA = ObjectKey("team-a", "media")
ACCOUNT_A = "111111111111"
ACCOUNT_B = "222222222222"


def take_all(queue: WorkQueue) -> list[ObjectKey]:
    """Every key a worker could take right now."""
    taken: list[ObjectKey] = []
    while True:
        try:
            taken.append(queue.get_nowait())
        except anyio.WouldBlock:
            return taken


@asynccontextmanager
async def running(queue: WorkQueue) -> AsyncIterator[WorkQueue]:
    """The queue with its timer task, shut down (and the task ended) on exit."""
    async with anyio.create_task_group() as group:
        group.start_soon(queue.run)
        await anyio.lowlevel.checkpoint()
        yield queue
        queue.shutdown()


# -- de-duplication and one worker per key -------------------------------------------------


def test_adding_a_waiting_key_again_changes_nothing() -> None:
    queue = WorkQueue(clock=FakeClock())
    for _ in range(3):
        queue.add(LOGS)

    assert queue.depth == 1
    assert queue.adds_total == 1
    assert take_all(queue) == [LOGS]


def test_a_key_changed_while_in_flight_runs_again_once_after_done() -> None:
    queue = WorkQueue(clock=FakeClock())
    queue.add(LOGS)
    assert queue.get_nowait() == LOGS

    for _ in range(5):
        queue.add(LOGS)
    queue.add(MEDIA)
    assert take_all(queue) == [MEDIA]  # never a second worker on LOGS

    queue.done(LOGS)
    assert take_all(queue) == [LOGS]  # once, however many adds came in
    queue.done(LOGS)
    queue.done(MEDIA)
    assert take_all(queue) == []


def test_done_for_a_key_no_worker_holds_is_a_bug() -> None:
    queue = WorkQueue(clock=FakeClock())
    queue.add(LOGS)
    with pytest.raises(ValueError, match="team-a/logs"):
        queue.done(LOGS)


# -- backoff, timers, resync ---------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_and_forget_resets_it() -> None:
    queue = WorkQueue(clock=FakeClock(), backoff=Backoff(base=0.5, cap=300.0))
    delays = [queue.requeue_with_backoff(LOGS) for _ in range(12)]

    assert delays == [0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert queue.failures(LOGS) == 12
    assert queue.retries_total == 12
    assert queue.requeue_with_backoff(MEDIA) == 0.5  # per key

    queue.forget(LOGS)
    assert queue.requeue_with_backoff(LOGS) == 0.5


def test_backoff_survives_absurd_failure_counts() -> None:
    assert Backoff(base=0.5, cap=300.0).delay(10_000) == 300.0


def test_jitter_is_injectable_and_only_lengthens() -> None:
    backoff = Backoff(base=1.0, cap=60.0, jitter=proportional_jitter(0.1, random.Random(7)))
    delays = [backoff.delay(3) for _ in range(50)]

    assert all(4.0 <= delay <= 4.4 for delay in delays)
    assert len(set(delays)) > 1
    again = Backoff(base=1.0, cap=60.0, jitter=proportional_jitter(0.1, random.Random(7)))
    assert [again.delay(3) for _ in range(50)] == delays  # seeded: deterministic


def test_a_retry_after_longer_than_the_backoff_wins() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock)

    assert queue.requeue_with_backoff(LOGS, at_least=30.0) == 30.0
    assert queue.due_in(LOGS) == 30.0


async def test_a_failed_key_comes_back_after_its_backoff() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock, resync_seconds=None)
    async with running(queue):
        queue.add(LOGS)
        for expected in [0.5, 1.0, 2.0]:
            assert queue.get_nowait() == LOGS
            assert queue.requeue_with_backoff(LOGS) == expected
            queue.done(LOGS)
            await clock.advance(expected - 0.01)
            assert take_all(queue) == []
            await clock.advance(0.01)
            assert queue.depth == 1

        assert queue.get_nowait() == LOGS
        queue.forget(LOGS)  # success
        queue.done(LOGS)
        await clock.advance(3600)
        assert take_all(queue) == []
        assert queue.failures(LOGS) == 0


async def test_add_after_fires_at_the_earliest_requested_time() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    async with running(queue):
        queue.add_after(LOGS, 10)
        queue.add_after(LOGS, 30)  # later: does not postpone
        queue.add_after(MEDIA, 30)
        queue.add_after(MEDIA, 5)  # earlier: moves it forward
        assert queue.scheduled == 2

        await clock.advance(4.9)
        assert take_all(queue) == []
        await clock.advance(0.1)
        assert take_all(queue) == [MEDIA]
        await clock.advance(5)
        assert take_all(queue) == [LOGS]
        await clock.advance(60)
        assert queue.depth == 0  # the superseded 30 s timers never fire


async def test_add_now_replaces_a_pending_delay() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock, resync_seconds=None)
    async with running(queue):
        queue.add_after(LOGS, 10)
        queue.add(LOGS)
        assert take_all(queue) == [LOGS]
        queue.done(LOGS)
        await clock.advance(20)
        assert take_all(queue) == []
        assert queue.adds_total == 1


async def test_a_timer_firing_while_the_key_is_in_flight_waits_for_done() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock, resync_seconds=None)
    async with running(queue):
        queue.add(LOGS)
        assert queue.get_nowait() == LOGS
        queue.add_after(LOGS, 1)
        await clock.advance(2)
        assert take_all(queue) == []

        queue.done(LOGS)
        assert take_all(queue) == [LOGS]


async def test_every_key_is_resynced_after_the_resync_period() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock, resync_seconds=36_000)
    async with running(queue):
        queue.add(LOGS)
        assert queue.get_nowait() == LOGS
        queue.done(LOGS)
        assert queue.due_in(LOGS) == 36_000

        await clock.advance(35_999)
        assert take_all(queue) == []
        await clock.advance(1)
        assert take_all(queue) == [LOGS]

        # A watch event resets the period: the resync counts from the last reconcile.
        queue.done(LOGS)
        await clock.advance(10_000)
        queue.add(LOGS)
        assert queue.get_nowait() == LOGS
        queue.done(LOGS)
        await clock.advance(35_999)
        assert take_all(queue) == []
        await clock.advance(1)
        assert take_all(queue) == [LOGS]


async def test_resync_can_be_turned_off() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock, resync_seconds=None)
    async with running(queue):
        queue.add(LOGS)
        queue.done(queue.get_nowait())
        await clock.advance(100_000)
        assert take_all(queue) == []
        assert queue.scheduled == 0


async def test_remove_drops_pending_delays_and_what_a_worker_would_schedule() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    async with running(queue):
        queue.add_after(LOGS, 5)
        queue.add(MEDIA)
        assert queue.get_nowait() == MEDIA
        queue.add(MEDIA)  # changed while in flight...
        queue.requeue_with_backoff(MEDIA)

        queue.remove(LOGS)
        queue.remove(MEDIA)  # ...then deleted
        queue.done(MEDIA)
        await clock.advance(100_000)
        assert take_all(queue) == []
        assert queue.scheduled == 0
        assert queue.failures(MEDIA) == 0

        queue.add(LOGS)  # re-created
        assert take_all(queue) == [LOGS]


def test_remove_takes_a_ready_key_out_of_its_lane() -> None:
    queue = WorkQueue(clock=FakeClock())
    queue.add(LOGS, lane=ACCOUNT_A)
    queue.add(MEDIA, lane=ACCOUNT_A)
    queue.remove(LOGS)

    assert queue.depth_by_lane() == {ACCOUNT_A: 1}
    assert take_all(queue) == [MEDIA]


async def test_timers_stay_few_when_resyncs_are_replaced_over_and_over() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    keys = [ObjectKey("team-a", f"b{i}") for i in range(10)]
    async with running(queue):
        for _ in range(1_000):
            for key in keys:
                queue.add(key)
            for key in take_all(queue):
                queue.done(key)  # each done replaces the key's 10 h resync timer
        assert queue.scheduled == 10
        # Memory is bounded by live timers, not by how often they were replaced.
        assert len(queue._timers) <= 2 * 10 + 64 + 1
        await clock.advance(36_000)
        assert sorted(take_all(queue)) == keys


# -- limits and fairness -------------------------------------------------------------------


async def test_the_queue_never_hands_out_more_than_max_concurrent() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock, max_concurrent=4, resync_seconds=None)
    keys = [ObjectKey(f"ns-{i % 5}", f"b{i}") for i in range(50)]
    for index, key in enumerate(keys):
        queue.add(key, lane=f"account-{index % 5}")
    peak = 0
    processed: list[ObjectKey] = []

    async def worker() -> None:
        nonlocal peak
        async for key in queue:
            peak = max(peak, queue.in_flight)
            await clock.sleep(1)
            processed.append(key)
            queue.done(key)

    async with anyio.create_task_group() as group:
        for _ in range(32):  # far more workers than the limit
            group.start_soon(worker)
        await clock.settle()
        assert queue.in_flight == 4
        for _ in range(13):
            await clock.advance(1)
        queue.shutdown()

    assert peak == 4
    assert sorted(processed) == sorted(keys)


def test_one_lane_cannot_take_every_slot() -> None:
    queue = WorkQueue(clock=FakeClock(), max_concurrent=16)
    assert queue.max_per_lane == 12
    for i in range(1_000):
        queue.add(ObjectKey("busy", f"b{i}"), lane=ACCOUNT_A)

    assert len(take_all(queue)) == 12  # four slots stay free although 988 keys wait
    assert queue.in_flight_by_lane() == {ACCOUNT_A: 12}
    queue.add(LOGS, lane=ACCOUNT_B)
    assert take_all(queue) == [LOGS]


async def test_a_small_account_is_served_while_a_big_slow_one_is_busy() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock, max_concurrent=16, resync_seconds=None)
    big = [ObjectKey("big", f"b{i}") for i in range(1_000)]
    small = [ObjectKey("small", f"s{i}") for i in range(10)]
    for key in big:
        queue.add(key, lane=ACCOUNT_A)
    for key in small:  # added last, behind a thousand keys
        queue.add(key, lane=ACCOUNT_B)
    started: dict[ObjectKey, float] = {}
    peak_big = 0

    async def worker() -> None:
        nonlocal peak_big
        async for key in queue:
            started[key] = clock.monotonic() - 1_000.0
            peak_big = max(peak_big, queue.in_flight_by_lane().get(ACCOUNT_A, 0))
            await clock.sleep(10 if key.namespace == "big" else 1)  # account A is throttled
            queue.done(key)

    async with anyio.create_task_group() as group:
        for _ in range(16):
            group.start_soon(worker)
        await clock.advance(5)
        # Every small-account key started within a second, long before the first big one
        # finished; the big account never had more than its lane allows.
        assert max(started[key] for key in small) <= 1.0
        assert peak_big == 12
        group.cancel_scope.cancel()


def test_lanes_take_turns() -> None:
    queue = WorkQueue(clock=FakeClock(), max_concurrent=100, max_per_lane=100)
    for i in range(3):
        queue.add(ObjectKey("a", f"a{i}"), lane="A")
    for i in range(3):
        queue.add(ObjectKey("b", f"b{i}"), lane="B")
    queue.add(ObjectKey("c", "c0"), lane="C")

    assert [str(key) for key in take_all(queue)] == [
        "a/a0",
        "b/b0",
        "c/c0",
        "a/a1",
        "b/b1",
        "a/a2",
        "b/b2",
    ]


def test_a_key_moves_to_its_new_lane() -> None:
    queue = WorkQueue(clock=FakeClock(), max_concurrent=4, max_per_lane=1)
    queue.add(LOGS)
    assert queue.lane(LOGS) == ""
    queue.add(MEDIA, lane=ACCOUNT_A)
    queue.set_lane(LOGS, ACCOUNT_A)  # resolved while waiting
    assert queue.depth_by_lane() == {ACCOUNT_A: 2}

    assert take_all(queue) == [MEDIA]  # one per lane: LOGS waits behind MEDIA in lane A
    queue.set_lane(LOGS, ACCOUNT_B)
    assert take_all(queue) == [LOGS]
    assert queue.in_flight_by_lane() == {ACCOUNT_A: 1, ACCOUNT_B: 1}

    queue.add(LOGS, lane=ACCOUNT_A)  # changes lane while in flight: counts where it started
    queue.done(LOGS)
    assert queue.in_flight_by_lane() == {ACCOUNT_A: 1}
    assert queue.depth_by_lane() == {ACCOUNT_A: 1}


async def test_a_waiting_worker_wakes_when_a_lane_frees_a_slot() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock, max_concurrent=4, max_per_lane=1)
    queue.add(LOGS, lane=ACCOUNT_A)
    queue.add(MEDIA, lane=ACCOUNT_A)
    assert queue.get_nowait() == LOGS
    taken: list[ObjectKey] = []

    async def worker() -> None:
        taken.append(await queue.get())

    async with anyio.create_task_group() as group:
        group.start_soon(worker)
        await clock.settle()
        assert taken == []
        queue.done(LOGS)
    assert taken == [MEDIA]


# -- metrics hooks -------------------------------------------------------------------------


async def test_on_dequeue_reports_the_virtual_time_each_key_waited() -> None:
    clock = FakeClock()
    waits: list[tuple[str, float]] = []
    queue = WorkQueue(clock=clock, on_dequeue=lambda lane, waited: waits.append((lane, waited)))
    async with running(queue):
        queue.add(LOGS, lane=ACCOUNT_A)
        await clock.advance(3)
        queue.add_after(MEDIA, 2, lane=ACCOUNT_B)
        await clock.advance(5)  # MEDIA became ready 3 s ago, LOGS 8 s ago
        assert sorted(take_all(queue)) == [LOGS, MEDIA]

    assert sorted(waits) == [(ACCOUNT_A, 8.0), (ACCOUNT_B, 3.0)]


def test_a_failing_hook_loses_no_key(caplog: pytest.LogCaptureFixture) -> None:
    def broken(lane: str, waited: float) -> None:
        raise RuntimeError("metrics backend down")

    queue = WorkQueue(clock=FakeClock(), on_dequeue=broken)
    queue.add(LOGS)

    assert queue.get_nowait() == LOGS
    assert "on_dequeue" in caplog.text
    queue.done(LOGS)


# -- shutdown ------------------------------------------------------------------------------


async def test_shutdown_releases_waiting_workers_and_lets_in_flight_work_finish() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    queue.add(LOGS)
    finished: list[ObjectKey] = []
    exited = 0

    async def worker() -> None:
        nonlocal exited
        async for key in queue:
            await clock.sleep(5)
            finished.append(key)
            queue.done(key)
        exited += 1

    async with anyio.create_task_group() as group:
        group.start_soon(queue.run)
        for _ in range(3):
            group.start_soon(worker)
        await clock.settle()
        assert queue.in_flight == 1

        queue.shutdown()
        queue.add(MEDIA)  # ignored from now on
        await clock.settle()
        assert exited == 2  # the idle workers are gone at once
        await clock.advance(5)
        await queue.wait_idle()

    assert finished == [LOGS]
    assert exited == 3
    with pytest.raises(QueueShutDown):
        await queue.get()


async def test_run_refuses_a_second_timer_task() -> None:
    queue = WorkQueue(clock=FakeClock())
    async with running(queue):
        with pytest.raises(RuntimeError, match="already running"):
            await queue.run()


@pytest.mark.parametrize(
    "kwargs",
    [{"max_concurrent": 0}, {"max_per_lane": 0}, {"resync_seconds": 0.0}],
)
def test_nonsense_limits_are_refused(kwargs: dict[str, int | float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        WorkQueue(clock=FakeClock(), **kwargs)  # type: ignore[arg-type]


# -- invariants under any sequence of operations -------------------------------------------

KEYS = [ObjectKey("ns", name) for name in "abcde"]
LANES = ["A", "B", ""]
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from(KEYS), st.sampled_from([*LANES, None])),
        st.tuples(st.just("add_after"), st.sampled_from(KEYS), st.sampled_from([0.0, 0.3, 2.0])),
        st.tuples(st.just("set_lane"), st.sampled_from(KEYS), st.sampled_from(LANES)),
        st.tuples(st.just("remove"), st.sampled_from(KEYS), st.none()),
        # Taking is weighted up so that the limits are actually reached.
        *[st.tuples(st.just("take"), st.none(), st.none())] * 3,
        st.tuples(st.just("finish"), st.integers(0, 3), st.sampled_from(["ok", "fail"])),
        st.tuples(st.just("advance"), st.none(), st.sampled_from([0.1, 0.5, 3.0])),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(operations)
def test_invariants_hold_for_any_sequence_of_operations(
    script: list[tuple[str, object, object]],
) -> None:
    """Whatever happens: never two workers on a key, never more than the limits in flight,
    never a run nobody asked for, and every key asked for (and not removed) runs eventually."""

    async def scenario() -> None:
        clock = FakeClock()
        queue = WorkQueue(
            clock=clock,
            max_concurrent=3,
            max_per_lane=2,
            resync_seconds=None,
            backoff=Backoff(base=0.5, cap=4.0),
        )
        holding: list[ObjectKey] = []  # keys workers hold, oldest first
        wanted: set[ObjectKey] = set()  # asked for since their last run

        def take() -> None:
            key = queue.get_nowait()
            assert key not in holding
            assert key in wanted
            wanted.discard(key)
            holding.append(key)

        def finish(index: int, outcome: object) -> None:
            key = holding.pop(index % len(holding))
            if outcome == "fail":
                queue.requeue_with_backoff(key)
                wanted.add(key)
            else:
                queue.forget(key)
            queue.done(key)

        async with running(queue):
            for op, arg, extra in script:
                if op == "add":
                    assert isinstance(arg, ObjectKey)
                    queue.add(arg, lane=extra if isinstance(extra, str) else None)
                    wanted.add(arg)
                elif op == "add_after":
                    assert isinstance(arg, ObjectKey) and isinstance(extra, float)
                    queue.add_after(arg, extra)
                    wanted.add(arg)
                elif op == "set_lane":
                    assert isinstance(arg, ObjectKey) and isinstance(extra, str)
                    queue.set_lane(arg, extra)
                elif op == "remove":
                    assert isinstance(arg, ObjectKey)
                    queue.remove(arg)
                    wanted.discard(arg)
                elif op == "take":
                    with suppress(anyio.WouldBlock):
                        take()
                elif op == "finish" and holding:
                    assert isinstance(arg, int)
                    finish(arg, extra)
                elif op == "advance":
                    assert isinstance(extra, float)
                    await clock.advance(extra)
                assert queue.in_flight == len(holding) <= 3
                assert all(count <= 2 for count in queue.in_flight_by_lane().values())

            # Drain: every worker finishes successfully; time passes beyond every timer.
            for _ in range(50):
                while holding:
                    finish(0, "ok")
                try:
                    while True:
                        take()
                except anyio.WouldBlock:
                    pass
                await clock.advance(5.0)
            while holding:
                finish(0, "ok")
            assert wanted == set()
            assert queue.depth == queue.scheduled == queue.in_flight == 0

    anyio.run(scenario)
