"""The dispatcher with every CARM source: a team-map or IAMRoleSelector event re-queues exactly
the Buckets whose resolution it changes, in their new account's lane, and retires old roles."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from carm.accounts.resolver import AccountResolver
from carm.accounts.rules import ControllerIdentity, Resolution, ResolverSettings
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

TEAM_ROLE = "arn:aws:iam::222222222222:role/team-a"
TEAM_ROLE_2 = "arn:aws:iam::222222222222:role/team-a-v2"
SELECTED = "arn:aws:iam::333333333333:role/selected"


class RecordingQueue:
    def __init__(self) -> None:
        self.added: list[tuple[ObjectKey, str | None]] = []

    def add(self, key: ObjectKey, lane: str | None = None) -> None:
        self.added.append((key, lane))

    def remove(self, key: ObjectKey) -> None:
        pass


def obj(
    name: str,
    namespace: str = "",
    rv: str = "1",
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    **extra: Any,
) -> RawObject:
    meta: dict[str, Any] = {"name": name, "resourceVersion": rv}
    if namespace:
        meta["namespace"] = namespace
    meta["annotations"] = annotations or {}
    meta["labels"] = labels or {}
    return {"metadata": meta, **extra}


def build() -> tuple[Dispatcher, RecordingQueue, list[str]]:
    stores = {kind: Store(kind) for kind in (*INFRASTRUCTURE_KINDS, BUCKET)}
    stores[BUCKET].add_index(BY_NAMESPACE, by_namespace)
    resolver = AccountResolver(
        ControllerIdentity("000000000000"), ResolverSettings(team_level=True, selectors=True)
    )
    queue = RecordingQueue()
    retired: list[str] = []

    def lane_of(ns: str) -> str:
        resolution = resolver.resolve(ns)
        return resolution.account_id if isinstance(resolution, Resolution) else ""

    def retire(arns: Collection[str]) -> None:
        retired.extend(arns)

    dispatcher = Dispatcher(
        stores=stores,
        accounts=resolver,
        queues={BUCKET: queue},
        lane_of=lane_of,
        role_map_name="ack-role-account-map",
        team_map_name="ack-role-team-map",
        retire_roles=retire,
    )
    team_map = obj("ack-role-team-map", "ack-system", data={"team-a": TEAM_ROLE})
    events = [
        WatchEvent(Kind.CONFIG_MAP, EventType.ADDED, team_map),
        WatchEvent(
            Kind.NAMESPACE,
            EventType.ADDED,
            obj("a", annotations={"services.k8s.aws/team-id": "team-a"}),
        ),
        WatchEvent(Kind.NAMESPACE, EventType.ADDED, obj("plain")),
    ]
    for event in events:
        dispatcher.handle(event)
    for kind in stores:
        dispatcher.handle(SyncedEvent(kind))
    buckets = [
        obj("x", "a", spec={"name": "x"}),
        obj("y", "plain", spec={"name": "y"}),
        obj("z", "plain", labels={"pick": "me"}, spec={"name": "z"}),
    ]
    for bucket in buckets:
        dispatcher.handle(WatchEvent(BUCKET, EventType.ADDED, bucket))
    queue.added.clear()
    return dispatcher, queue, retired


def test_a_team_map_edit_requeues_the_teams_buckets_and_retires_the_old_role() -> None:
    dispatcher, queue, retired = build()
    edited = obj("ack-role-team-map", "ack-system", rv="2", data={"team-a": TEAM_ROLE_2})
    dispatcher.handle(WatchEvent(Kind.CONFIG_MAP, EventType.MODIFIED, edited))
    assert queue.added == [(ObjectKey("a", "x"), "222222222222")]
    assert retired == [TEAM_ROLE]


def test_a_selector_requeues_only_the_buckets_it_matches() -> None:
    dispatcher, queue, retired = build()
    selector = obj(
        "pick",
        rv="3",
        spec={"arn": SELECTED, "resourceLabelSelector": {"matchLabels": {"pick": "me"}}},
    )
    dispatcher.handle(WatchEvent(Kind.IAM_ROLE_SELECTOR, EventType.ADDED, selector))
    assert [key for key, _ in queue.added] == [ObjectKey("plain", "z")]
    queue.added.clear()
    dispatcher.handle(WatchEvent(Kind.IAM_ROLE_SELECTOR, EventType.DELETED, selector))
    assert [key for key, _ in queue.added] == [ObjectKey("plain", "z")]
    assert retired == [SELECTED]
