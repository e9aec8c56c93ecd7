"""One resource kind's share of the running controller: its own watch, cache, work queue and
reconcile workers, built from its registration (`carm.resources.catalog`).

This is controller-runtime's (and ACK's) model, one controller per kind in one manager:
`--reconcile-default-max-concurrent-syncs` and the resync period apply to each kind's queue,
so a kind with a thousand resources waiting cannot take the workers of another, and a key is
namespace/name within its kind (a Bucket and a Queue of one name never share a key). What the
kinds share is built once by `carm.app.Controller`: the event bus, the dispatcher, the account
resolver, the credential cache and AWS client pool, the Events writer, the lease and the
metrics registry.

The Kubernetes side of a kind (its `ResourceRef`) is derived from its descriptor here, in the
wiring: `carm.resources` knows no Kubernetes client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from carm.bus import EventBus
from carm.clock import Clock
from carm.dispatch import BY_NAMESPACE
from carm.events import Kind
from carm.kube.client import KubeClient, ResourceRef
from carm.kube.reflector import Reflector
from carm.kube.writer import KubeResourceWriter
from carm.queue import WorkQueue
from carm.reconcile.interfaces import EventRecorder, TargetResolver
from carm.reconcile.loop import Reconciler, ResultObserver
from carm.resources.engine import KindManager
from carm.resources.kind import ResourceDescriptor, ResourceKind
from carm.settings import Settings
from carm.store import Store, by_namespace


def resource_ref(descriptor: ResourceDescriptor) -> ResourceRef:
    """Where the kind's objects live in the API (ACK's kinds are all namespaced)."""
    return ResourceRef(descriptor.group, descriptor.version, descriptor.plural, namespaced=True)


class KindController:
    """The cache, work queue, watches and reconciler of one resource kind."""

    def __init__(self, registration: ResourceKind, settings: Settings, clock: Clock) -> None:
        self.registration = registration
        self.descriptor = registration.descriptor
        self.kind = Kind(self.descriptor.kind)
        self.ref = resource_ref(self.descriptor)
        self.store = Store(self.kind)
        self.store.add_index(BY_NAMESPACE, by_namespace)
        self.queue = WorkQueue(
            clock=clock,
            max_concurrent=settings.max_concurrent_syncs,
            resync_seconds=settings.resync_seconds,
        )
        self._settings = settings
        self._clock = clock

    @property
    def name(self) -> str:
        """controller-runtime's name of this controller ("bucket")."""
        return self.descriptor.controller_name

    def reflectors(self, kube: KubeClient, bus: EventBus) -> list[Reflector]:
        namespaces = self._settings.watch_namespaces
        if not namespaces:
            return [Reflector(kube, self.ref, self.kind, bus, clock=self._clock)]
        # One stream per namespace; each marks the cache synced on its first list, so cache
        # sync waits for all of them only through the first: acceptable, because namespace mode
        # has no cross-namespace dependencies.
        return [
            Reflector(kube, self.ref, self.kind, bus, namespace=ns, clock=self._clock)
            for ns in namespaces
        ]

    def reconciler(
        self,
        kube: KubeClient,
        targets: TargetResolver,
        *,
        observe: ResultObserver,
        recorder: EventRecorder | None,
    ) -> Reconciler:
        return Reconciler(
            kind=self.descriptor.kind,
            store=self.store,
            queue=self.queue,
            targets=targets,
            manager=KindManager(self.registration.build(self._settings)),
            writer=KubeResourceWriter(kube, self.ref),
            clock=self._clock,
            observe=observe,
            recorder=recorder,
        )

    def requeue_everything(self, lane_of: Callable[[str], str]) -> None:
        """A new leader's first act: queue every cached object in its account's lane."""
        for key in self.store:
            self.queue.add(key, lane_of(key.namespace))


def requeue_everything(
    controllers: Iterable[KindController], lane_of: Callable[[str], str]
) -> Callable[[], None]:
    """Every kind's `requeue_everything`, as one callable for `Operations.work`."""
    kinds = tuple(controllers)

    def requeue() -> None:
        for controller in kinds:
            controller.requeue_everything(lane_of)

    return requeue
