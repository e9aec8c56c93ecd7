"""Injected time.

Everything whose behaviour depends on time (backoff, TTLs, credential refresh, resync, leases)
takes a `Clock`, so tests drive it with `FakeClock` and never sleep for real.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
import anyio.lowlevel


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for intervals and deadlines)."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch (for comparing with timestamps from AWS or Kubernetes)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep on this clock's time."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that moves only when a test calls `advance`.

    Sleepers wake in deadline order as `advance` passes their deadlines; `advance` yields to the
    event loop after each wake-up so that woken tasks run before time moves further.
    """

    def __init__(self, start: float = 1_000.0, wall_offset: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_offset
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        woken = anyio.Event()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), woken))
        try:
            await woken.wait()
        finally:
            # A cancelled sleeper sleeps no more: stop counting it in `sleepers`.
            woken.set()

    @property
    def sleepers(self) -> int:
        """How many tasks sleep on this clock now."""
        return sum(1 for _, _, event in self._sleepers if not event.is_set())

    async def settle(self, rounds: int = 20) -> None:
        """Let ready tasks run without moving time."""
        for _ in range(rounds):
            await anyio.lowlevel.checkpoint()

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper whose deadline passes, in order."""
        target = self._now + seconds
        await self.settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, woken = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            woken.set()
            await self.settle()
        self._now = target
        await self.settle()


async def run_within(clock: Clock, seconds: float, work: Callable[[], Awaitable[None]]) -> bool:
    """Run `work()`, cancelling it after `seconds` on `clock`; True if it finished in time.

    anyio's `move_on_after` runs on the event loop's clock, which a `FakeClock` does not move:
    bounds that tests must drive (shutdown grace periods) use this instead.
    """
    finished = False
    async with anyio.create_task_group() as group:

        async def deadline() -> None:
            await clock.sleep(seconds)
            group.cancel_scope.cancel()

        group.start_soon(deadline)
        await work()
        finished = True
        group.cancel_scope.cancel()
    return finished
