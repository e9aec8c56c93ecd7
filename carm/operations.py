"""Running the controller in production: probes, metrics, events, leader election, graceful
shutdown and signals, wired around `carm.app.Controller`.

The controller's life, as this module shapes it:

1. **Start.** /metrics and /healthz + /readyz are served first, so the kubelet sees a live
   process (readiness failing, with the reason) while the controller learns its identity and
   lists every cache. A stop requested now cancels the start-up: nothing to drain yet.
2. **Work.** `Workers` (carm.reconcile.workers) runs the reconcile workers of every
   resource kind, gated by the lease when `--enable-leader-election` is on (one lease for the
   whole controller, as ACK has one per controller binary). Reflectors, caches and the
   dispatcher run on every replica regardless: a standby is warm.
3. **Stop** (first SIGTERM or SIGINT): no new reconciles start (every kind's work queue
   shuts down); those in flight, of any kind, get
   `--graceful-shutdown-timeout` to finish; the lease is released; queued Events are
   flushed (bounded); then every task is cancelled and the watches, the Kubernetes session and
   the AWS clients close (their context managers). The exit code is 0.
4. **A second signal** exits at once with code 1, as controller-runtime does: an operator who
   signals twice wants the process gone, whatever is in flight.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from typing import Any, Protocol

import anyio
import anyio.abc

from carm.clock import Clock, run_within
from carm.events import ObjectKey
from carm.kube.client import KubeClient
from carm.kube.events import EventRecorder
from carm.kube.lease import LEASE_NAME, LeaderElector, LeaseTimings, default_identity
from carm.observability.collectors import ObjectsSource
from carm.observability.health import (
    HealthChecks,
    Syncable,
    WatchConnection,
    WatchesConnected,
    caches_synced,
    known,
)
from carm.observability.http import serve_health, serve_metrics
from carm.observability.metrics import Metrics
from carm.queue import WorkQueue
from carm.reconcile.workers import Workers
from carm.settings import Settings

log = logging.getLogger("carm.operations")

EVENT_FLUSH_SECONDS = 2.0
"""How long a stopping controller tries to write Events still queued."""


class ServedAddresses(Protocol):
    metrics_addr: str | None
    healthz_addr: str | None


class Watched(WatchConnection, Protocol):
    """A reflector, as readiness sees it."""

    @property
    def namespace(self) -> str | None: ...

    @property
    def kind(self) -> object: ...


class Operations:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock,
        metrics: Metrics,
        queues: Mapping[str, WorkQueue],
    ) -> None:
        """`queues`: each resource kind's work queue, by its controller's name ("bucket": the
        `controller` / `name` label of controller-runtime's metrics, as in ACK)."""
        self._settings = settings
        self._clock = clock
        self._metrics = metrics
        self._queues = _AllQueues(queues.values())
        self.health = HealthChecks()
        self.identity = default_identity()
        """This replica's name in the lease and in its Events (`<pod>_<uuid>`)."""
        self.elector: LeaderElector | None = None
        self.recorder: EventRecorder | None = None
        self._workers: Workers | None = None
        self._root: anyio.CancelScope | None = None
        self.stop_requested = False
        for name, queue in queues.items():
            queue.on_dequeue = partial(metrics.record_dequeue, name)
            metrics.watch_work_queue(name, queue)

    # -- 1. start ---------------------------------------------------------------------------

    async def start_servers(
        self,
        group: anyio.abc.TaskGroup,
        served: ServedAddresses,
        caches: Mapping[Any, Syncable],
        own_account: Callable[[], str | None],
    ) -> None:
        """Serve /metrics and the probes in `group` (the controller's root task group, which a
        stop during start-up cancels); readiness waits for `caches` and `own_account`."""
        self._root = group.cancel_scope
        self.health.add_readiness(
            "caches", caches_synced({str(kind): cache for kind, cache in caches.items()})
        )
        self.health.add_readiness(
            "aws-identity",
            known(
                "own AWS account",
                own_account,
                "the controller's own AWS account is not known yet (sts:GetCallerIdentity)",
            ),
        )
        settings = self._settings
        if settings.metrics_addr:
            served.metrics_addr = await group.start(
                serve_metrics, settings.metrics_addr, self._metrics.render
            )
            log.info("serving /metrics", extra={"carm": {"addr": served.metrics_addr}})
        if settings.healthz_addr:
            served.healthz_addr = await group.start(
                serve_health, settings.healthz_addr, self.health
            )
            log.info("serving /healthz and /readyz", extra={"carm": {"addr": served.healthz_addr}})

    def watch(
        self,
        reflectors: Iterable[Watched],
        *,
        resources: Mapping[str, ObjectsSource],
        account_of: Callable[[str], str],
    ) -> None:
        """Readiness of the watch streams; resources (the cache of each kind in `resources`)
        by account and condition in /metrics."""
        streams = [(f"{r.kind} in {r.namespace or 'all namespaces'}", r) for r in reflectors]
        self.health.add_readiness("watches", WatchesConnected(streams, self._clock))
        for kind, objects in resources.items():
            self._metrics.watch_resources(
                kind, objects, lambda obj: account_of(ObjectKey.of(obj).namespace)
            )

    def event_recorder(self, kube: KubeClient, group: anyio.abc.TaskGroup) -> EventRecorder:
        """The Events writer, running in `group`."""
        self.recorder = EventRecorder(kube, clock=self._clock, instance=self.identity)
        group.start_soon(self.recorder.run)
        return self.recorder

    # -- 2. work ----------------------------------------------------------------------------

    async def work(
        self,
        kube: KubeClient,
        run_workers: Callable[[], Awaitable[None]],
        requeue_all: Callable[[], None],
    ) -> None:
        """Reconcile (while leading, with leader election) until a stop drained the workers."""
        settings = self._settings
        if settings.enable_leader_election:
            self.elector = LeaderElector(
                kube,
                namespace=settings.lease_namespace,
                identity=self.identity,
                clock=self._clock,
                timings=LeaseTimings(
                    settings.lease_duration_seconds,
                    settings.renew_deadline_seconds,
                    settings.retry_period_seconds,
                ),
                on_change=lambda leading: self._metrics.set_leader(LEASE_NAME, leading),
            )
            self._metrics.set_leader(LEASE_NAME, False)
            log.info(
                "leader election on: reconciling only while holding the lease",
                extra={"carm": {"lease": f"{settings.lease_namespace}/{LEASE_NAME}"}},
            )
        self._workers = Workers(
            run_workers=run_workers,
            queue=self._queues,
            clock=self._clock,
            grace_seconds=settings.graceful_shutdown_timeout_seconds,
            campaign=self.elector,
            requeue_all=requeue_all,
        )
        if self.stop_requested:
            self._workers.stop()
        await self._workers.run()
        if self.recorder is not None:
            await run_within(self._clock, EVENT_FLUSH_SECONDS, self.recorder.flush)
        log.info("stopped: no reconcile in flight, lease released")

    # -- 3. stop ----------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop gracefully (idempotent): drain the workers, release the lease, then end."""
        if self.stop_requested:
            return
        self.stop_requested = True
        if self._workers is not None:
            self._workers.stop()
        elif self._root is not None:
            self._root.cancel()  # still starting: nothing to drain


class _AllQueues:
    """Every kind's work queue as the one the workers drain: a stop shuts them all down, and
    the grace period waits for what is in flight in any of them."""

    def __init__(self, queues: Iterable[WorkQueue]) -> None:
        self._queues = tuple(queues)

    def shutdown(self) -> None:
        for queue in self._queues:
            queue.shutdown()

    @property
    def in_flight(self) -> int:
        return sum(queue.in_flight for queue in self._queues)


class Stoppable(Protocol):
    def request_stop(self) -> None: ...


async def stop_on_signals(target: Stoppable) -> None:
    """First SIGTERM/SIGINT: graceful stop. Second: exit at once (code 1)."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        received = 0
        async for signum in signals:
            received += 1
            name = signal.Signals(signum).name
            if received == 1:
                log.info("received %s: stopping gracefully (a second signal exits at once)", name)
                target.request_stop()
                continue
            log.warning("received %s again: exiting at once", name)
            logging.shutdown()
            sys.stderr.flush()
            os._exit(1)
