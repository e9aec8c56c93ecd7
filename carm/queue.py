"""The reconcile work queue: which object to reconcile next, and when.

API (what the dispatcher, the reconcile loop and the app call)
--------------------------------------------------------------
    queue = WorkQueue(clock=clock, max_concurrent=16, resync_seconds=36_000)
    tg.start_soon(queue.run)                   # owns the timers of delayed keys
    queue.add(key, lane=account_id)            # reconcile soon (watch event, new mapping)
    queue.add_after(key, seconds, lane=None)   # reconcile later (requeue-after)
    queue.set_lane(key, account_id)            # the key's account became known / changed
    queue.remove(key)                          # the object is gone: forget everything
    key = await queue.get()                    # a worker takes a key (QueueShutDown at the end)
    queue.forget(key)                          # ...succeeded: reset its backoff
    queue.requeue_with_backoff(key)            # ...failed: retry after 0.5 s, 1 s, 2 s ... 5 min
    queue.requeue_with_backoff(key, at_least=retry_after)   # ...throttled: not before then
    queue.done(key)                            # always, in `finally`: release the key
    queue.shutdown()                           # get() raises QueueShutDown; done() still works
    async for key in queue: ...                # a worker loop that ends at shutdown

Design
------
*One pending run per key.* A key is in at most one of: ready (waiting in its lane for a
worker), in flight (a worker has it), or idle; independently it may have one timer (a due time
for a later run). Adding a ready key is a no-op (it may change lanes); adding a key with a timer
replaces the timer with "now"; `add_after` keeps the earlier of the old and new due times. When
a worker takes a key its timer is dropped: the reconcile about to run sees the latest state, and
its outcome schedules the next run (`done` schedules the resync, `requeue_with_backoff` or
`add_after` something sooner).

*Never two workers on one key.* A key added while in flight is only marked dirty; `done`
puts it back into its lane once, however many adds came in meanwhile. Timers that fire while
the key is in flight do the same. The reconcile that follows reads the cache, so nothing is
lost by collapsing the adds.

*Resync.* When `done` finds nothing else pending for a live key, it sets the key's timer to
`resync_seconds` from now (ACK resyncs every 10 h). A removed key gets none.

*Lanes and fairness.* Every key has a lane: the AWS account id its object resolved to ("" while
unknown). Ready keys wait in one FIFO per lane; `get` takes lanes round-robin and skips a lane
that already has `max_per_lane` keys in flight, so an account with a thousand keys waiting (or
whose calls are throttled and slow) cannot take every worker from the others. The queue itself
enforces `max_concurrent` keys in flight in total: the number of workers does not matter.

*Timers* are a heap of (due, seq, key) with lazy deletion: rescheduling or dropping a timer only
updates `_due`, and heap entries that no longer match it are skipped when they surface. The heap
is rebuilt when stale entries outnumber live ones, so it stays O(live timers) even when 10 h
resync timers are replaced by every watch event. `run()` is the one task that sleeps on the
injected clock until the earliest due time; scheduling an earlier one cancels its sleep (a
cancel scope, no extra task). Without `run()` delayed keys never become ready.

*Shutdown* is immediate: `get` raises `QueueShutDown` even if keys are ready (the next leader
or process re-lists and reconciles everything anyway); keys in flight finish and `done` works;
`wait_idle()` waits for them. Adds after shutdown are ignored.

Everything but `get`, `run` and `wait_idle` is synchronous and O(1) or O(log n) (set_lane and
a lane's last key leaving are O(number of lanes)), so reflector callbacks may call it freely.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import anyio
import anyio.lowlevel

from carm.backoff import Backoff
from carm.clock import Clock
from carm.events import ObjectKey

__all__ = [
    "UNRESOLVED_LANE",
    "DequeueHook",
    "QueueShutDown",
    "WorkQueue",
]

log = logging.getLogger("carm.queue")

UNRESOLVED_LANE = ""
"""The lane of keys whose account is not known (yet)."""

# Clocks may wake a sleeper a hair early (asyncio rounds to its clock resolution; float sums
# differ in the last bit): treat timers this close to now as due rather than sleeping again.
_DUE_TOLERANCE = 1e-6

DequeueHook = Callable[[str, float], None]
"""Called with (lane, seconds the key waited ready) each time a worker takes a key."""


class QueueShutDown(Exception):
    """The work queue was shut down: the worker should exit."""


@dataclass(slots=True)
class _Flight:
    """A key a worker holds."""

    lane: str  # the lane it was taken from, for the per-lane in-flight count
    dirty_since: float | None = None  # added again while in flight: when (for queue duration)
    removed: bool = False  # removed while in flight: done() must not schedule anything


class WorkQueue:
    """Keys waiting to be reconciled, fair across lanes (accounts). See the module docstring."""

    def __init__(
        self,
        *,
        clock: Clock,
        max_concurrent: int = 16,
        max_per_lane: int | None = None,
        resync_seconds: float | None = 36_000.0,
        backoff: Backoff | None = None,
        on_dequeue: DequeueHook | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
        if max_per_lane is None:
            max_per_lane = max(1, max_concurrent * 3 // 4)
        if max_per_lane < 1:
            raise ValueError(f"max_per_lane must be at least 1, got {max_per_lane}")
        if resync_seconds is not None and resync_seconds <= 0:
            raise ValueError(f"resync_seconds must be positive or None, got {resync_seconds}")
        self.max_concurrent = max_concurrent
        self.max_per_lane = max_per_lane
        self.resync_seconds = resync_seconds
        self.backoff = backoff or Backoff(base=0.5, cap=300.0)
        self.on_dequeue = on_dequeue
        self._clock = clock

        self._lanes: dict[ObjectKey, str] = {}
        self._ready: dict[str, OrderedDict[ObjectKey, float]] = {}  # lane → key → ready since
        self._ready_lane: dict[ObjectKey, str] = {}  # the lane a ready key waits in
        self._turns: deque[str] = deque()  # lanes with ready keys, in round-robin order
        self._in_flight: dict[ObjectKey, _Flight] = {}
        self._in_flight_by_lane: Counter[str] = Counter()
        self._due: dict[ObjectKey, tuple[float, int]] = {}  # key → (due time, seq) of its timer
        self._timers: list[tuple[float, int, ObjectKey]] = []  # heap, may hold stale entries
        self._seq = itertools.count()
        self._failures: dict[ObjectKey, int] = {}

        self._shut_down = False
        self._running = False
        # Broadcast "something changed" to waiting get()/wait_idle(); created lazily because
        # an anyio.Event needs a running event loop and the queue may be built before one.
        self._changed: anyio.Event | None = None
        self._timer_scope: anyio.CancelScope | None = None
        self._timer_deadline = math.inf

        self.adds_total = 0
        """Keys that became ready, or dirty while in flight (de-duplicated adds do not count)."""
        self.retries_total = 0
        """Calls of requeue_with_backoff."""

    # -- adding -----------------------------------------------------------------------------

    def add(self, key: ObjectKey, lane: str | None = None) -> None:
        """Reconcile `key` as soon as a worker and its lane allow; `lane` updates its lane."""
        if self._shut_down:
            return
        if lane is not None:
            self.set_lane(key, lane)
        self._drop_timer(key)  # running now supersedes any later run
        self._make_ready(key, since=self._clock.monotonic())

    def add_after(self, key: ObjectKey, delay: float, lane: str | None = None) -> None:
        """Reconcile `key` in `delay` seconds, unless something earlier is already pending."""
        if self._shut_down:
            return
        if delay <= 0:
            self.add(key, lane)
            return
        if lane is not None:
            self.set_lane(key, lane)
        flight = self._in_flight.get(key)
        if flight is not None:
            flight.removed = False
            if flight.dirty_since is not None:
                return  # it runs again right after done()
        if key in self._ready_lane:
            return
        self._schedule(key, self._clock.monotonic() + delay)

    def set_lane(self, key: ObjectKey, lane: str) -> None:
        """Record the account `key` belongs to; a ready key moves to the back of that lane."""
        self._lanes[key] = lane
        current = self._ready_lane.get(key)
        if current is not None and current != lane:
            since = self._take_ready(key, current)
            self._put_ready(key, lane, since)
            self._notify()  # the new lane may have room where the old one had none

    def requeue_with_backoff(self, key: ObjectKey, at_least: float = 0.0) -> float:
        """Count a failure of `key` and retry it after its backoff (or `at_least` if longer,
        e.g. a Retry-After from AWS). Returns the delay chosen."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        self.retries_total += 1
        delay = max(self.backoff.delay(failures), at_least)
        self.add_after(key, delay)
        return delay

    def forget(self, key: ObjectKey) -> None:
        """`key` succeeded: its next failure starts from the base delay again."""
        self._failures.pop(key, None)

    def remove(self, key: ObjectKey) -> None:
        """Drop `key` entirely (its object was deleted): ready entry, timer, backoff and lane.

        A worker holding it finishes, and then nothing is scheduled. A later add revives it.
        """
        self._lanes.pop(key, None)
        self._failures.pop(key, None)
        self._drop_timer(key)
        lane = self._ready_lane.get(key)
        if lane is not None:
            self._take_ready(key, lane)
        flight = self._in_flight.get(key)
        if flight is not None:
            flight.removed = True
            flight.dirty_since = None

    # -- taking -----------------------------------------------------------------------------

    async def get(self) -> ObjectKey:
        """Wait for a key this worker may reconcile; QueueShutDown after shutdown()."""
        await anyio.lowlevel.checkpoint()
        while True:
            try:
                return self.get_nowait()
            except anyio.WouldBlock:
                await self._wait_for_change()

    def get_nowait(self) -> ObjectKey:
        """A key if one may be taken now, else `anyio.WouldBlock`; QueueShutDown after
        shutdown()."""
        if self._shut_down:
            raise QueueShutDown
        if len(self._in_flight) >= self.max_concurrent:
            raise anyio.WouldBlock
        for _ in range(len(self._turns)):
            lane = self._turns[0]
            self._turns.rotate(-1)  # whatever happens, the next get starts at the next lane
            if self._in_flight_by_lane[lane] < self.max_per_lane:
                return self._start(lane)
        raise anyio.WouldBlock

    def done(self, key: ObjectKey) -> None:
        """The worker finished `key` (successfully or not): release it, schedule what's next."""
        flight = self._in_flight.pop(key, None)
        if flight is None:
            raise ValueError(f"done({key}) but no worker holds {key}")
        self._in_flight_by_lane[flight.lane] -= 1
        if not self._in_flight_by_lane[flight.lane]:
            del self._in_flight_by_lane[flight.lane]
        if not (flight.removed or self._shut_down):
            if flight.dirty_since is not None:
                self._put_ready(key, self._lane_of(key), flight.dirty_since)
            elif key not in self._due and self.resync_seconds is not None:
                self._schedule(key, self._clock.monotonic() + self.resync_seconds)
        self._notify()

    def _start(self, lane: str) -> ObjectKey:
        """Take the oldest ready key of `lane` and hand it to a worker."""
        waiting = self._ready[lane]
        key, since = waiting.popitem(last=False)
        del self._ready_lane[key]
        if not waiting:
            del self._ready[lane]
            self._turns.pop()  # get_nowait() just rotated this lane to the end
        self._drop_timer(key)
        self._in_flight[key] = _Flight(lane)
        self._in_flight_by_lane[lane] += 1
        if self.on_dequeue is not None:
            try:
                self.on_dequeue(lane, self._clock.monotonic() - since)
            except Exception:
                # The key is already in flight: raising would lose it (no worker gets it).
                log.exception("the work queue's on_dequeue hook failed")
        return key

    # -- timers -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Make delayed keys ready when they are due; returns after shutdown(). Run exactly one,
        in the owner's task group."""
        if self._running:
            raise RuntimeError("WorkQueue.run() is already running")
        self._running = True
        try:
            while not self._shut_down:
                now = self._clock.monotonic()
                self._fire_due(now)
                deadline = self._next_due()
                with anyio.CancelScope() as scope:
                    self._timer_scope, self._timer_deadline = scope, deadline
                    try:
                        if deadline == math.inf:
                            await anyio.sleep_forever()
                        else:
                            await self._clock.sleep(deadline - now)
                    finally:
                        self._timer_scope, self._timer_deadline = None, math.inf
        finally:
            self._running = False

    def _schedule(self, key: ObjectKey, due: float) -> None:
        """Give `key` a timer at `due`, unless it already has an earlier one."""
        current = self._due.get(key)
        if current is not None and current[0] <= due:
            return
        seq = next(self._seq)
        self._due[key] = (due, seq)
        heapq.heappush(self._timers, (due, seq, key))
        self._compact_timers()
        if due < self._timer_deadline and self._timer_scope is not None:
            self._timer_scope.cancel()  # run() sleeps too long: wake it to sleep less

    def _drop_timer(self, key: ObjectKey) -> None:
        if self._due.pop(key, None) is not None:
            self._compact_timers()

    def _compact_timers(self) -> None:
        # Rebuilding costs O(n) and happens after at least n/2 stale entries: amortised O(1).
        if len(self._timers) > 2 * len(self._due) + 64:
            self._timers = [(due, seq, key) for key, (due, seq) in self._due.items()]
            heapq.heapify(self._timers)

    def _next_due(self) -> float:
        while self._timers:
            due, seq, key = self._timers[0]
            if self._due.get(key) == (due, seq):
                return due
            heapq.heappop(self._timers)
        return math.inf

    def _fire_due(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now + _DUE_TOLERANCE:
            due, seq, key = heapq.heappop(self._timers)
            if self._due.get(key) == (due, seq):
                del self._due[key]
                self._make_ready(key, since=due)

    # -- state helpers ----------------------------------------------------------------------

    def _lane_of(self, key: ObjectKey) -> str:
        return self._lanes.get(key, UNRESOLVED_LANE)

    def _make_ready(self, key: ObjectKey, since: float) -> None:
        flight = self._in_flight.get(key)
        if flight is not None:
            flight.removed = False
            if flight.dirty_since is None:
                flight.dirty_since = since
                self.adds_total += 1
        elif key not in self._ready_lane:
            self._put_ready(key, self._lane_of(key), since)
            self.adds_total += 1

    def _put_ready(self, key: ObjectKey, lane: str, since: float) -> None:
        waiting = self._ready.get(lane)
        if waiting is None:
            waiting = self._ready[lane] = OrderedDict()
            self._turns.append(lane)
        waiting[key] = since
        self._ready_lane[key] = lane
        self._notify()

    def _take_ready(self, key: ObjectKey, lane: str) -> float:
        """Take a ready key out of its lane (not to a worker); returns when it became ready."""
        waiting = self._ready[lane]
        since = waiting.pop(key)
        del self._ready_lane[key]
        if not waiting:
            del self._ready[lane]
            self._turns.remove(lane)
        return since

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _wait_for_change(self) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    # -- lifecycle --------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Make get() raise QueueShutDown (now and in every waiting worker) and stop run()."""
        self._shut_down = True
        self._notify()
        if self._timer_scope is not None:
            self._timer_scope.cancel()

    @property
    def is_shut_down(self) -> bool:
        return self._shut_down

    async def wait_idle(self) -> None:
        """Wait until no worker holds a key (after shutdown(): until in-flight work finished)."""
        await anyio.lowlevel.checkpoint()
        while self._in_flight:
            await self._wait_for_change()

    def __aiter__(self) -> AsyncIterator[ObjectKey]:
        return self

    async def __anext__(self) -> ObjectKey:
        try:
            return await self.get()
        except QueueShutDown:
            raise StopAsyncIteration from None

    # -- introspection (metrics) ------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Keys ready and waiting for a worker (not in flight, not on a timer)."""
        return len(self._ready_lane)

    def depth_by_lane(self) -> dict[str, int]:
        return {lane: len(waiting) for lane, waiting in self._ready.items()}

    @property
    def in_flight(self) -> int:
        """Keys a worker holds now."""
        return len(self._in_flight)

    def in_flight_by_lane(self) -> dict[str, int]:
        return dict(self._in_flight_by_lane)

    @property
    def scheduled(self) -> int:
        """Keys with a timer (requeue-after, backoff or resync)."""
        return len(self._due)

    def due_in(self, key: ObjectKey) -> float | None:
        """Seconds until `key`'s timer fires, None if it has none."""
        entry = self._due.get(key)
        return None if entry is None else entry[0] - self._clock.monotonic()

    def failures(self, key: ObjectKey) -> int:
        """Consecutive failures of `key` since its last forget()."""
        return self._failures.get(key, 0)

    def lane(self, key: ObjectKey) -> str:
        """The lane `key` is scheduled in."""
        return self._lane_of(key)
