"""Wiring: one task group that owns every long-lived task of the controller.

    reflectors (Namespaces, role-map ConfigMaps, IAMRoleSelectors, each resource kind)
        --publish--> EventBus
    EventBus --> Dispatcher: caches, account resolver, the kind's work queue (in that order)
    per kind: WorkQueue --> Reconciler workers --> AccountTargets (resolver, STS credential
              cache, AWS client pool: shared) --> KindManager(Bucket, ...)

The resource kinds are `carm.resources.catalog.RESOURCE_KINDS` (a parameter, for tests); each
gets a `carm.controllers.KindController`: its own watch, cache, work queue and reconciler.

Start-up order: serve /metrics and the probes, learn the controller's own account
(GetCallerIdentity, retried with backoff rather than crash-looping), start the watches, wait
until every cache holds its first full list (so no resource is judged against a namespace or
role map not seen yet), then start the workers (with leader election: while holding the lease).
Shutdown (carm.operations): a stop request drains the workers and releases the lease, then the
task group is cancelled: every task ends with it, the AWS client pool and the Kubernetes session
are closed by their context managers. Cancelling `run()` from outside skips the draining.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Collection, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial

import anyio
import anyio.abc

from carm.accounts.clients import AwsClientPool
from carm.accounts.credentials import CredentialCache, default_session_name
from carm.accounts.resolver import AccountResolver, ControllerIdentity, ResolverSettings
from carm.accounts.rules import partition_of_region
from carm.accounts.sts import StsRoleAssumer
from carm.accounts.targets import AccountTargets
from carm.backoff import exponential_delay
from carm.bus import EventBus
from carm.clock import Clock, SystemClock
from carm.controllers import KindController, requeue_everything
from carm.dispatch import Dispatcher
from carm.events import INFRASTRUCTURE_KINDS, Kind
from carm.kube.client import CONFIG_MAPS, IAM_ROLE_SELECTORS, NAMESPACES, KubeClient
from carm.kube.reflector import Reflector
from carm.observability.metrics import Metrics
from carm.operations import Operations, stop_on_signals
from carm.queue import WorkQueue
from carm.reconcile.loop import Reconciler, ReconcileResult
from carm.resources.catalog import RESOURCE_KINDS, check_catalog
from carm.resources.kind import ResourceDescriptor, ResourceKind
from carm.settings import ROLE_ACCOUNT_MAP_NAME, ROLE_TEAM_MAP_NAME, Settings
from carm.store import Store

log = logging.getLogger("carm.app")


@dataclass
class ControllerState:
    """What the outside (sandbox, tests, health checks) may observe of a running controller."""

    identity: ControllerIdentity | None = None
    metrics_addr: str | None = None
    healthz_addr: str | None = None
    ready: anyio.Event = field(default_factory=anyio.Event)
    """Set when every cache is synced and the workers run."""
    reconciles: list[ReconcileResult] = field(default_factory=list)
    """The most recent reconcile results (bounded), for tests and debugging."""


class Controller:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        kinds: Iterable[ResourceKind] = RESOURCE_KINDS,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.metrics = Metrics()
        self.state = ControllerState()
        self.bus = EventBus()
        self.kind_controllers = [
            KindController(registration, settings, self.clock)
            for registration in check_catalog(kinds)
        ]
        self.stores: dict[Kind, Store] = {kind: Store(kind) for kind in INFRASTRUCTURE_KINDS}
        self.stores |= {c.kind: c.store for c in self.kind_controllers}
        self.queues: dict[Kind, WorkQueue] = {c.kind: c.queue for c in self.kind_controllers}
        """Each resource kind's work queue."""
        self.ops = Operations(
            settings,
            clock=self.clock,
            metrics=self.metrics,
            queues={c.name: c.queue for c in self.kind_controllers},
        )

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled; `task_status.started()` once the controller is ready."""
        settings = self.settings
        async with AsyncExitStack() as stack:
            kube = await stack.enter_async_context(await KubeClient.from_env(settings.kubeconfig))
            pool = await stack.enter_async_context(
                AwsClientPool(clock=self.clock, metrics=self.metrics)
            )
            assumer = StsRoleAssumer(
                pool, region=settings.aws_region, endpoint_url=settings.aws_endpoint_url
            )
            async with anyio.create_task_group() as group:
                await self.ops.start_servers(group, self.state, self.stores, self._own_account)
                identity = await self._discover_identity(assumer)
                credentials = CredentialCache(assumer, clock=self.clock, metrics=self.metrics)
                credentials.add_listener(pool.retire)
                descriptors = [c.descriptor for c in self.kind_controllers]
                resolver = AccountResolver(
                    identity,
                    ResolverSettings.of(settings, (d.type for d in descriptors)),
                    metrics=self.metrics,
                )
                targets = AccountTargets(
                    resolver,
                    credentials,
                    pool,
                    clock=self.clock,
                    default_region=settings.aws_region,
                    session_name=default_session_name(d.service for d in descriptors),
                    endpoint_url=settings.aws_endpoint_url,
                    deletion_policy=settings.deletion_policy,
                )
                dispatcher = Dispatcher(
                    stores=self.stores,
                    accounts=resolver,
                    queues=self.queues,
                    lane_of=targets.lane_of,
                    role_map_name=ROLE_ACCOUNT_MAP_NAME,
                    retire_roles=lambda arns: _invalidate_all(credentials, arns),
                    team_map_name=ROLE_TEAM_MAP_NAME,
                )
                await group.start(credentials.run)
                for queue in self.queues.values():
                    group.start_soon(queue.run)
                group.start_soon(dispatcher.consume, self.bus.subscribe("dispatcher"))
                reflectors = self._reflectors(kube)
                self.ops.watch(
                    reflectors,
                    resources={c.descriptor.kind: c.store.list for c in self.kind_controllers},
                    account_of=targets.lane_of,
                )
                for reflector in reflectors:
                    group.start_soon(reflector.run)
                for store in self.stores.values():
                    await store.wait_synced()
                recorder = self.ops.event_recorder(kube, group)
                reconcilers = [
                    controller.reconciler(
                        kube,
                        targets,
                        observe=partial(self._record, controller.descriptor),
                        recorder=recorder,
                    )
                    for controller in self.kind_controllers
                ]
                self.state.ready.set()
                log.info(
                    "controller ready",
                    extra={"carm": {"account": identity.account_id, "carm": settings.enable_carm}},
                )
                task_status.started()
                # Until stopped: reconcile (while leading), then drain and release the lease.
                await self.ops.work(
                    kube,
                    partial(_run_workers, reconcilers, settings.max_concurrent_syncs),
                    requeue_everything(self.kind_controllers, targets.lane_of),
                )
                group.cancel_scope.cancel()

    def _reflectors(self, kube: KubeClient) -> list[Reflector]:
        settings = self.settings
        reflectors = [
            Reflector(kube, NAMESPACES, Kind.NAMESPACE, self.bus, clock=self.clock),
            Reflector(
                kube,
                CONFIG_MAPS,
                Kind.CONFIG_MAP,
                self.bus,
                namespace=settings.system_namespace,
                clock=self.clock,
            ),
        ]
        for controller in self.kind_controllers:
            reflectors += controller.reflectors(kube, self.bus)
        if settings.feature_gates.iam_role_selector:
            reflectors.append(
                Reflector(
                    kube, IAM_ROLE_SELECTORS, Kind.IAM_ROLE_SELECTOR, self.bus, clock=self.clock
                )
            )
        else:
            # Not watched (the CRD may not even be installed): nothing to wait for.
            self.stores[Kind.IAM_ROLE_SELECTOR].mark_synced()
        return reflectors

    async def _discover_identity(self, assumer: StsRoleAssumer) -> ControllerIdentity:
        failures = 0
        while True:
            try:
                account_id = await assumer.caller_identity(None)
            except Exception as error:  # noqa: BLE001 - say why, wait, try again
                failures += 1
                delay = exponential_delay(failures, base=1.0, cap=60.0)
                log.warning(
                    "cannot learn the controller's own AWS account (sts:GetCallerIdentity): "
                    "%s; retrying in %.0f s",
                    error,
                    delay,
                )
                await self.clock.sleep(delay * random.uniform(0.8, 1.2))
                continue
            identity = ControllerIdentity(account_id, partition_of_region(self.settings.aws_region))
            self.state.identity = identity
            return identity

    def _own_account(self) -> str | None:
        return self.state.identity.account_id if self.state.identity else None

    def _record(self, descriptor: ResourceDescriptor, result: ReconcileResult) -> None:
        self.metrics.record_reconcile(
            controller=descriptor.controller_name,
            kind=descriptor.kind,
            account=result.account_id,
            outcome=result.outcome,
            seconds=result.seconds,
        )
        self.state.reconciles.append(result)
        if len(self.state.reconciles) > 10_000:
            del self.state.reconciles[:5_000]


async def _run_workers(reconcilers: Iterable[Reconciler], count: int) -> None:
    """`count` workers per kind (ACK's `--reconcile-default-max-concurrent-syncs` is per
    controller); returns when every kind's queue has shut down."""
    async with anyio.create_task_group() as group:
        for reconciler in reconcilers:
            group.start_soon(reconciler.run_workers, count)


def _invalidate_all(credentials: CredentialCache, role_arns: Collection[str]) -> None:
    for role_arn in role_arns:
        credentials.invalidate(role_arn)


def run_controller(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT, then stop gracefully (see carm.operations); returns the exit
    code: 0 after a graceful stop (a second signal exits at once with 1)."""

    async def main() -> None:
        controller = Controller(settings)
        async with anyio.create_task_group() as group:
            group.start_soon(stop_on_signals, controller.ops)
            await controller.run()
            group.cancel_scope.cancel()

    anyio.run(main)
    return 0
