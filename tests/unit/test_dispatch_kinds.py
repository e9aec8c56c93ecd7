"""The dispatcher with two resource kinds: each kind's events go to its own work queue (so a
Bucket and a Queue of one name never share a key), and a change of the CARM inputs requeues the
affected resources of every kind, judged per resource (an IAMRoleSelector may select by kind)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from carm.accounts.resolver import AccountResolver
from carm.accounts.rules import ControllerIdentity, Resolution, ResolverSettings
from carm.dispatch import BY_NAMESPACE, Dispatcher
from carm.events import INFRASTRUCTURE_KINDS, EventType, Kind, ObjectKey, RawObject, WatchEvent
from carm.store import Store, by_namespace

BUCKET, QUEUE = Kind("Bucket"), Kind("Queue")
ROLE_A = "arn:aws:iam::111111111111:role/a"
ROLE_B = "arn:aws:iam::222222222222:role/b"
SELECTED = "arn:aws:iam::333333333333:role/queues"


class RecordingQueue:
    def __init__(self) -> None:
        self.added: list[tuple[ObjectKey, str | None]] = []
        self.removed: list[ObjectKey] = []

    def add(self, key: ObjectKey, lane: str | None = None) -> None:
        self.added.append((key, lane))

    def remove(self, key: ObjectKey) -> None:
        self.removed.append(key)


def meta(name: str, namespace: str = "", rv: str = "1", **annotations: str) -> dict[str, Any]:
    found: dict[str, Any] = {"name": name, "resourceVersion": rv, "annotations": annotations}
    if namespace:
        found["namespace"] = namespace
    return found


def resource(kind: Kind, namespace: str, name: str) -> RawObject:
    group = "s3" if kind == BUCKET else "sqs"
    return {
        "apiVersion": f"{group}.services.k8s.aws/v1alpha1",
        "kind": str(kind),
        "metadata": meta(name, namespace),
        "spec": {"name": name},
    }


def owned_by(name: str, account: str, rv: str) -> RawObject:
    return {"metadata": meta(name, rv=rv, **{"services.k8s.aws/owner-account-id": account})}


def build() -> tuple[Dispatcher, dict[Kind, RecordingQueue], list[str]]:
    stores = {kind: Store(kind) for kind in (*INFRASTRUCTURE_KINDS, BUCKET, QUEUE)}
    queues = {BUCKET: RecordingQueue(), QUEUE: RecordingQueue()}
    for kind in queues:
        stores[kind].add_index(BY_NAMESPACE, by_namespace)
    resolver = AccountResolver(ControllerIdentity("000000000000"), ResolverSettings(selectors=True))
    retired: list[str] = []

    def lane_of(ns: str) -> str:
        resolution = resolver.resolve(ns)
        return resolution.account_id if isinstance(resolution, Resolution) else ""

    def retire(arns: Collection[str]) -> None:
        retired.extend(arns)

    dispatcher = Dispatcher(
        stores=stores,
        accounts=resolver,
        queues=queues,
        lane_of=lane_of,
        role_map_name="ack-role-account-map",
        retire_roles=retire,
    )
    role_map = {
        "metadata": meta("ack-role-account-map", "ack-system"),
        "data": {"111111111111": ROLE_A, "222222222222": ROLE_B},
    }
    dispatcher.handle(WatchEvent(Kind.CONFIG_MAP, EventType.ADDED, role_map))
    dispatcher.handle(
        WatchEvent(Kind.NAMESPACE, EventType.ADDED, owned_by("a", "111111111111", "1"))
    )
    for kind in queues:
        for name in ("orders", f"only-{kind.lower()}"):
            dispatcher.handle(WatchEvent(kind, EventType.ADDED, resource(kind, "a", name)))
    return dispatcher, queues, retired


def keys(queue: RecordingQueue) -> list[tuple[ObjectKey, str | None]]:
    added = list(queue.added)
    queue.added.clear()
    return added


def test_each_kind_is_queued_in_its_own_queue_even_under_one_name() -> None:
    _, queues, _ = build()
    assert keys(queues[BUCKET]) == [
        (ObjectKey("a", "orders"), "111111111111"),
        (ObjectKey("a", "only-bucket"), "111111111111"),
    ]
    assert keys(queues[QUEUE]) == [
        (ObjectKey("a", "orders"), "111111111111"),
        (ObjectKey("a", "only-queue"), "111111111111"),
    ]


def test_deleting_one_kinds_object_leaves_the_other_kinds_namesake_alone() -> None:
    dispatcher, queues, _ = build()
    dispatcher.handle(WatchEvent(QUEUE, EventType.DELETED, resource(QUEUE, "a", "orders")))
    assert queues[QUEUE].removed == [ObjectKey("a", "orders")]
    assert queues[BUCKET].removed == []


def test_a_reannotated_namespace_requeues_every_kind_in_the_new_lane() -> None:
    dispatcher, queues, _ = build()
    for queue in queues.values():
        keys(queue)
    dispatcher.handle(
        WatchEvent(Kind.NAMESPACE, EventType.MODIFIED, owned_by("a", "222222222222", "2"))
    )
    for kind, queue in queues.items():
        assert sorted(keys(queue)) == [
            (ObjectKey("a", "only-" + kind.lower()), "222222222222"),
            (ObjectKey("a", "orders"), "222222222222"),
        ]


def test_a_selector_of_one_resource_type_requeues_only_that_kind() -> None:
    dispatcher, queues, _ = build()
    for queue in queues.values():
        keys(queue)
    selector = {
        "metadata": meta("queues-only", rv="3"),
        "spec": {
            "arn": SELECTED,
            "resourceTypeSelector": [{"group": "sqs.services.k8s.aws", "kind": "Queue"}],
        },
    }
    dispatcher.handle(WatchEvent(Kind.IAM_ROLE_SELECTOR, EventType.ADDED, selector))
    assert sorted(key for key, _ in keys(queues[QUEUE])) == [
        ObjectKey("a", "only-queue"),
        ObjectKey("a", "orders"),
    ]
    assert keys(queues[BUCKET]) == []
