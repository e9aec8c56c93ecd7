"""Wiring: one task group that owns every long-lived task of the controller.

    reflectors (Namespaces, role-map ConfigMaps, IAMRoleSelectors, Buckets) --publish--> EventBus
    EventBus --> Dispatcher: caches, account resolver, work queue (in that order)
    WorkQueue --> Reconciler workers --> AccountTargets (resolver, STS credential cache,
                                         AWS client pool) --> KindManager(Bucket)

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
from collections.abc import Collection
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
from carm.bus import EventBus
from carm.clock import Clock, SystemClock
from carm.dispatch import BY_NAMESPACE, Dispatcher
from carm.events import Kind
from carm.kube.client import BUCKETS, CONFIG_MAPS, IAM_ROLE_SELECTORS, NAMESPACES, KubeClient
from carm.kube.reflector import Reflector
from carm.kube.writer import KubeResourceWriter
from carm.observability.metrics import Metrics
from carm.operations import CONTROLLER_NAME, Operations, requeue_everything, stop_on_signals
from carm.queue import WorkQueue
from carm.reconcile.loop import Reconciler, ReconcileResult
from carm.resources.engine import KindManager
from carm.resources.s3.bucket import Bucket
from carm.resources.tags import parse_resource_tags
from carm.settings import ROLE_ACCOUNT_MAP_NAME, ROLE_TEAM_MAP_NAME, Settings
from carm.store import Store, by_namespace

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
    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.metrics = Metrics()
        self.state = ControllerState()
        self.bus = EventBus()
        self.stores = {kind: Store(kind) for kind in Kind}
        self.stores[Kind.BUCKET].add_index(BY_NAMESPACE, by_namespace)
        self.queue = WorkQueue(
            clock=self.clock,
            max_concurrent=settings.max_concurrent_syncs,
            resync_seconds=settings.resync_seconds,
        )
        self.ops = Operations(settings, clock=self.clock, metrics=self.metrics, queue=self.queue)

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
                gates = settings.feature_gates
                resolver = AccountResolver(
                    identity,
                    ResolverSettings(
                        settings.enable_carm,
                        settings.system_namespace,
                        team_level=gates.team_level_carm,
                        service_level=gates.service_level_carm,
                        selectors=gates.iam_role_selector,
                    ),
                    metrics=self.metrics,
                )
                targets = AccountTargets(
                    resolver,
                    credentials,
                    pool,
                    clock=self.clock,
                    default_region=settings.aws_region,
                    session_name=default_session_name(),
                    endpoint_url=settings.aws_endpoint_url,
                    deletion_policy=settings.deletion_policy,
                )
                dispatcher = Dispatcher(
                    stores=self.stores,
                    accounts=resolver,
                    queue=self.queue,
                    lane_of=targets.lane_of,
                    role_map_name=ROLE_ACCOUNT_MAP_NAME,
                    retire_roles=lambda arns: _invalidate_all(credentials, arns),
                    team_map_name=ROLE_TEAM_MAP_NAME,
                )
                await group.start(credentials.run)
                group.start_soon(self.queue.run)
                group.start_soon(dispatcher.consume, self.bus.subscribe("dispatcher"))
                reflectors = self._reflectors(kube)
                self.ops.watch(
                    reflectors,
                    kind="Bucket",
                    objects=self.stores[Kind.BUCKET].list,
                    account_of=targets.lane_of,
                )
                for reflector in reflectors:
                    group.start_soon(reflector.run)
                for store in self.stores.values():
                    await store.wait_synced()
                reconciler = Reconciler(
                    kind="Bucket",
                    store=self.stores[Kind.BUCKET],
                    queue=self.queue,
                    targets=targets,
                    manager=KindManager(Bucket(parse_resource_tags(settings.resource_tags))),
                    writer=KubeResourceWriter(kube, BUCKETS),
                    clock=self.clock,
                    observe=self._record,
                    recorder=self.ops.event_recorder(kube, group),
                )
                self.state.ready.set()
                log.info(
                    "controller ready",
                    extra={"carm": {"account": identity.account_id, "carm": settings.enable_carm}},
                )
                task_status.started()
                # Until stopped: reconcile (while leading), then drain and release the lease.
                await self.ops.work(
                    kube,
                    partial(reconciler.run_workers, settings.max_concurrent_syncs),
                    requeue_everything(
                        self.stores[Kind.BUCKET].keys, self.queue.add, targets.lane_of
                    ),
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
        if settings.watch_namespaces:
            # One Bucket stream per namespace; each marks the Bucket cache synced on its first
            # list, so cache sync waits for all of them only through the first: acceptable,
            # because namespace mode has no cross-namespace dependencies.
            reflectors += [
                Reflector(kube, BUCKETS, Kind.BUCKET, self.bus, namespace=ns, clock=self.clock)
                for ns in settings.watch_namespaces
            ]
        else:
            reflectors.append(Reflector(kube, BUCKETS, Kind.BUCKET, self.bus, clock=self.clock))
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
        delay = 1.0
        while True:
            try:
                account_id = await assumer.caller_identity(None)
            except Exception as error:  # noqa: BLE001 - say why, wait, try again
                log.warning(
                    "cannot learn the controller's own AWS account (sts:GetCallerIdentity): "
                    "%s; retrying in %.0f s",
                    error,
                    delay,
                )
                await self.clock.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 60.0)
                continue
            identity = ControllerIdentity(account_id, partition_of_region(self.settings.aws_region))
            self.state.identity = identity
            return identity

    def _own_account(self) -> str | None:
        return self.state.identity.account_id if self.state.identity else None

    def _record(self, result: ReconcileResult) -> None:
        self.metrics.record_reconcile(
            controller=CONTROLLER_NAME,
            kind="Bucket",
            account=result.account_id,
            outcome=result.outcome,
            seconds=result.seconds,
        )
        self.state.reconciles.append(result)
        if len(self.state.reconciles) > 10_000:
            del self.state.reconciles[:5_000]


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
