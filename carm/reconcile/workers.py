"""Who reconciles when, and how reconciling stops: the work phase of the controller.

`Workers.run()` runs the reconcile workers while this replica may reconcile and returns once
a requested stop has drained them:

- **Without leader election** the workers run from the start.
- **With leader election** they run only during a term (while this replica holds the lease;
  see carm.kube.lease). A lost lease cancels the term: reconciles in flight are cancelled,
  nothing new starts, and the replica campaigns again. Each new term first queues every
  cached object, because another leader may have changed things (or left them half done)
  in the meantime; the queue de-duplicates, so keys already waiting cost nothing.
- **Stop** (`stop()`, on SIGTERM): the work queue shuts down, so no worker takes a new key;
  reconciles in flight get `grace_seconds` to finish and are then cancelled; the term ends,
  which makes the elector release the lease, so a standby takes over at once. A replica that
  is campaigning just stops campaigning.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio

from carm.clock import Clock

log = logging.getLogger("carm.reconcile.workers")

Term = Callable[[], Awaitable[None]]


class Campaign(Protocol):
    """A leader elector (carm.kube.lease.LeaderElector)."""

    async def run(self, term: Term) -> None:
        """Run `term` while leading; return after `term` returned and the lease is released."""
        ...

    @property
    def leading(self) -> bool: ...


class DrainableQueue(Protocol):
    def shutdown(self) -> None: ...

    @property
    def in_flight(self) -> int: ...


class Workers:
    def __init__(
        self,
        *,
        run_workers: Callable[[], Awaitable[None]],
        queue: DrainableQueue,
        clock: Clock,
        grace_seconds: float,
        campaign: Campaign | None = None,
        requeue_all: Callable[[], None] | None = None,
    ) -> None:
        self._run_workers = run_workers
        self._queue = queue
        self._clock = clock
        self._grace = grace_seconds
        self._campaign = campaign
        self._requeue_all = requeue_all
        self._stop: anyio.Event | None = None
        self._stop_requested = False

    def stop(self) -> None:
        """Stop taking work; `run()` returns once in-flight reconciles finished (or the grace
        period ran out) and the lease is released. Idempotent."""
        self._stop_requested = True
        if self._stop is not None:
            self._stop.set()

    async def run(self) -> None:
        self._stop = anyio.Event()
        if self._stop_requested:
            self._stop.set()
        if self._campaign is None:
            await self._term()
            return
        async with anyio.create_task_group() as group:

            async def campaign(campaign: Campaign) -> None:
                await campaign.run(self._new_term)
                group.cancel_scope.cancel()  # released after a stop: done

            group.start_soon(campaign, self._campaign)
            await self._stop.wait()
            if not self._campaign.leading:
                # A standby (or a leader whose deadline just passed): nothing to hand over.
                group.cancel_scope.cancel()

    async def _new_term(self) -> None:
        if self._requeue_all is not None:
            self._requeue_all()
        await self._term()

    async def _term(self) -> None:
        """Run the workers until a stop has drained them."""
        assert self._stop is not None
        async with anyio.create_task_group() as group:

            async def work() -> None:
                await self._run_workers()
                group.cancel_scope.cancel()  # every worker ended: the queue shut down

            group.start_soon(work)
            await self._stop.wait()
            self._queue.shutdown()
            in_flight = self._queue.in_flight
            if in_flight:
                log.info(
                    "stopping: waiting up to %gs for %d reconciles in flight",
                    self._grace,
                    in_flight,
                )
            # If the workers end first, their task cancels this sleep with the group.
            await self._clock.sleep(self._grace)
            log.warning(
                "stopping: %d reconciles still in flight after %gs; cancelling them",
                self._queue.in_flight,
                self._grace,
            )
            group.cancel_scope.cancel()
