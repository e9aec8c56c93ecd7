"""The dispatcher: caches first, then resolution, then exactly the work a change implies."""

from __future__ import annotations

from collections.abc import Collection

from carm.accounts.resolver import AccountResolver, ControllerIdentity, ResolverSettings
from carm.dispatch import BY_NAMESPACE, Dispatcher
from carm.events import (
    INFRASTRUCTURE_KINDS,
    EventType,
    Kind,
    ObjectKey,
    RawObject,
    SyncedEvent,
    WatchEvent,
)
from carm.store import Store, by_namespace

BUCKET = Kind("Bucket")

ROLE_A = "arn:aws:iam::111111111111:role/a"
ROLE_A2 = "arn:aws:iam::111111111111:role/a2"
ROLE_B = "arn:aws:iam::222222222222:role/b"


class RecordingQueue:
    def __init__(self) -> None:
        self.added: list[tuple[ObjectKey, str | None]] = []
        self.removed: list[ObjectKey] = []

    def add(self, key: ObjectKey, lane: str | None = None) -> None:
        self.added.append((key, lane))

    def remove(self, key: ObjectKey) -> None:
        self.removed.append(key)


def namespace(name: str, account: str | None, rv: str = "1") -> RawObject:
    annotations = {"services.k8s.aws/owner-account-id": account} if account else {}
    return {"metadata": {"name": name, "annotations": annotations, "resourceVersion": rv}}


def bucket(ns: str, name: str, rv: str, **extra: object) -> RawObject:
    obj: RawObject = {
        "metadata": {"name": name, "namespace": ns, "resourceVersion": rv, "generation": 1},
        "spec": {"name": name},
    }
    obj.update(extra)
    return obj


def role_map(data: dict[str, str], rv: str) -> RawObject:
    return {
        "metadata": {
            "name": "ack-role-account-map",
            "namespace": "ack-system",
            "resourceVersion": rv,
        },
        "data": data,
    }


def build() -> tuple[Dispatcher, RecordingQueue, list[str]]:
    stores = {kind: Store(kind) for kind in (*INFRASTRUCTURE_KINDS, BUCKET)}
    stores[BUCKET].add_index(BY_NAMESPACE, by_namespace)
    resolver = AccountResolver(ControllerIdentity("000000000000"), ResolverSettings())
    queue = RecordingQueue()
    retired: list[str] = []

    def lane_of(ns: str) -> str:
        resolution = resolver.resolve(ns)
        return getattr(resolution, "account_id", "") or ""

    def retire(arns: Collection[str]) -> None:
        retired.extend(arns)

    dispatcher = Dispatcher(
        stores=stores,
        accounts=resolver,
        queues={BUCKET: queue},
        lane_of=lane_of,
        role_map_name="ack-role-account-map",
        retire_roles=retire,
    )
    return dispatcher, queue, retired


def watch(kind: Kind, type_: EventType, obj: RawObject) -> WatchEvent:
    return WatchEvent(kind, type_, obj)


def populate(dispatcher: Dispatcher) -> None:
    dispatcher.handle(
        watch(
            Kind.CONFIG_MAP,
            EventType.ADDED,
            role_map({"111111111111": ROLE_A, "222222222222": ROLE_B}, "1"),
        )
    )
    dispatcher.handle(watch(Kind.NAMESPACE, EventType.ADDED, namespace("a", "111111111111")))
    dispatcher.handle(watch(Kind.NAMESPACE, EventType.ADDED, namespace("b", "222222222222")))
    for kind in (*INFRASTRUCTURE_KINDS, BUCKET):
        dispatcher.handle(SyncedEvent(kind))
    dispatcher.handle(watch(BUCKET, EventType.ADDED, bucket("a", "x", "10")))
    dispatcher.handle(watch(BUCKET, EventType.ADDED, bucket("b", "y", "11")))


def test_buckets_are_queued_in_their_accounts_lane() -> None:
    dispatcher, queue, _ = build()
    populate(dispatcher)
    assert queue.added == [
        (ObjectKey("a", "x"), "111111111111"),
        (ObjectKey("b", "y"), "222222222222"),
    ]


def test_status_only_updates_queue_nothing_but_spec_and_deletion_do() -> None:
    dispatcher, queue, _ = build()
    populate(dispatcher)
    queue.added.clear()
    dispatcher.handle(
        watch(BUCKET, EventType.MODIFIED, bucket("a", "x", "12", status={"conditions": []}))
    )
    assert queue.added == []
    changed = bucket("a", "x", "13")
    changed["spec"]["name"] = "other"
    dispatcher.handle(watch(BUCKET, EventType.MODIFIED, changed))
    deleting = bucket("a", "x", "14")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    dispatcher.handle(watch(BUCKET, EventType.MODIFIED, deleting))
    assert [key for key, _ in queue.added] == [ObjectKey("a", "x")] * 2
    dispatcher.handle(watch(BUCKET, EventType.DELETED, deleting))
    assert queue.removed == [ObjectKey("a", "x")]


def test_remapping_one_account_requeues_only_its_buckets_and_drops_old_credentials() -> None:
    dispatcher, queue, retired = build()
    populate(dispatcher)
    queue.added.clear()
    dispatcher.handle(
        watch(
            Kind.CONFIG_MAP,
            EventType.MODIFIED,
            role_map({"111111111111": ROLE_A2, "222222222222": ROLE_B}, "20"),
        )
    )
    assert queue.added == [(ObjectKey("a", "x"), "111111111111")]
    assert retired == [ROLE_A]


def test_reannotating_a_namespace_moves_its_buckets_to_the_new_lane() -> None:
    dispatcher, queue, _ = build()
    populate(dispatcher)
    queue.added.clear()
    dispatcher.handle(
        watch(Kind.NAMESPACE, EventType.MODIFIED, namespace("a", "222222222222", rv="30"))
    )
    assert queue.added == [(ObjectKey("a", "x"), "222222222222")]
    # An unrelated namespace change (same annotations) queues nothing.
    queue.added.clear()
    dispatcher.handle(
        watch(Kind.NAMESPACE, EventType.MODIFIED, namespace("b", "222222222222", rv="31"))
    )
    assert queue.added == []


def test_other_configmaps_in_the_system_namespace_are_ignored() -> None:
    dispatcher, queue, retired = build()
    populate(dispatcher)
    queue.added.clear()
    other = role_map({"111111111111": ROLE_A2}, "40")
    other["metadata"]["name"] = "something-else"
    dispatcher.handle(watch(Kind.CONFIG_MAP, EventType.ADDED, other))
    assert queue.added == [] and retired == []


def test_an_added_finalizer_queues_nothing_but_a_removed_one_does() -> None:
    """carm's own finalizer write comes back through the watch: reconciling that echo cost a
    second reconcile (an AWS read) per new Bucket. A removed finalizer may be carm's own."""
    dispatcher, queue, _ = build()
    populate(dispatcher)
    queue.added.clear()
    finalizers = ["finalizers.s3.services.k8s.aws/Bucket"]
    with_finalizer = bucket("a", "x", "12")
    with_finalizer["metadata"]["finalizers"] = finalizers
    dispatcher.handle(watch(BUCKET, EventType.MODIFIED, with_finalizer))
    assert queue.added == []
    dispatcher.handle(watch(BUCKET, EventType.MODIFIED, bucket("a", "x", "13")))
    assert [key for key, _ in queue.added] == [ObjectKey("a", "x")]
