"""The reconcile loop's ordering and failure handling, with fakes for every edge."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from carm.clock import FakeClock
from carm.events import ObjectKey, RawObject
from carm.reconcile.conditions import Condition, ConditionType, condition_status
from carm.reconcile.errors import RecoverableError, TerminalError
from carm.reconcile.interfaces import AwsTarget
from carm.reconcile.loop import Reconciler

FINALIZER = "finalizers.s3.services.k8s.aws/Bucket"
KEY = ObjectKey("production", "my-bucket")


@dataclass
class Target:
    account_id: str = "111111111111"
    region: str = "us-east-1"
    partition: str = "aws"
    role_arn: str | None = "arn:aws:iam::111111111111:role/s3FullAccess"
    deletion_policy: str = "delete"
    conditions: tuple[Condition, ...] = ()

    async def client(self, service: str) -> Any:
        raise AssertionError("the fake manager makes no AWS calls")


@dataclass
class Targets:
    error: Exception | None = None
    deletion_policy: str = "delete"

    async def target_for(self, obj: RawObject) -> AwsTarget:
        if self.error is not None:
            raise self.error
        return Target(deletion_policy=self.deletion_policy)

    def lane_of(self, namespace: str) -> str:
        return "111111111111"


@dataclass
class Manager:
    finalizer: str = FINALIZER
    log: list[str] = field(default_factory=list)
    error: Exception | None = None
    store: dict[ObjectKey, RawObject] = field(default_factory=dict)

    async def sync(self, obj: RawObject, aws: AwsTarget) -> dict[str, Any]:
        # The finalizer must be on the object before anything exists in AWS.
        assert FINALIZER in self.store[KEY]["metadata"].get("finalizers", [])
        self.log.append("sync")
        if self.error is not None:
            raise self.error
        return {"ackResourceMetadata": {"ownerAccountID": aws.account_id, "region": aws.region}}

    async def delete(self, obj: RawObject, aws: AwsTarget) -> None:
        self.log.append("delete")


@dataclass
class Writer:
    store: dict[ObjectKey, RawObject]
    writes: list[str] = field(default_factory=list)

    async def set_finalizers(self, obj: RawObject, finalizers: list[str]) -> RawObject:
        self.writes.append("finalizers")
        updated = copy.deepcopy(self.store[KEY])
        updated["metadata"]["finalizers"] = finalizers
        self.store[KEY] = updated
        return updated

    async def patch_status(self, obj: RawObject, status: dict[str, Any]) -> RawObject:
        self.writes.append("status")
        updated = copy.deepcopy(self.store[KEY])
        merged = updated.setdefault("status", {})
        for name, value in status.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        self.store[KEY] = updated
        return updated


@dataclass
class Queue:
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def __aiter__(self) -> AsyncIterator[ObjectKey]:
        raise AssertionError("not used")

    def remove(self, key: ObjectKey) -> None:
        self.calls.append(("remove", key))

    def done(self, key: ObjectKey) -> None:
        self.calls.append(("done", key))

    def forget(self, key: ObjectKey) -> None:
        self.calls.append(("forget", key))

    def requeue_with_backoff(self, key: ObjectKey, at_least: float = 0.0) -> float:
        self.calls.append(("backoff", key))
        return 1.0

    def add_after(self, key: ObjectKey, delay: float, lane: str | None = None) -> None:
        self.calls.append(("after", delay))

    def set_lane(self, key: ObjectKey, lane: str) -> None:
        self.calls.append(("lane", lane))


def build(
    targets: Targets | None = None, manager_error: Exception | None = None
) -> tuple[Reconciler, dict[ObjectKey, RawObject], Manager, Writer, Queue]:
    store: dict[ObjectKey, RawObject] = {
        KEY: {
            "metadata": {"name": KEY.name, "namespace": KEY.namespace, "resourceVersion": "1"},
            "spec": {"name": "my-bucket"},
        }
    }
    manager = Manager(error=manager_error, store=store)
    writer = Writer(store)
    queue = Queue()
    reconciler = Reconciler(
        kind="Bucket",
        store=store,
        queue=queue,
        targets=targets or Targets(),
        manager=manager,
        writer=writer,
        clock=FakeClock(),
    )
    return reconciler, store, manager, writer, queue


async def test_first_reconcile_adds_finalizer_then_syncs_then_writes_status() -> None:
    reconciler, store, manager, writer, queue = build()
    result = await reconciler.reconcile(KEY)
    assert result.outcome == "success"
    assert writer.writes == ["finalizers", "status"]
    status = store[KEY]["status"]
    assert status["ackResourceMetadata"]["ownerAccountID"] == "111111111111"
    assert condition_status(status, ConditionType.RESOURCE_SYNCED) == "True"
    assert ("forget", KEY) in queue.calls
    # A second reconcile with nothing changed writes nothing.
    await reconciler.reconcile(KEY)
    assert writer.writes == ["finalizers", "status"]
    assert manager.log == ["sync", "sync"]


async def test_resolution_failure_is_a_condition_and_creates_nothing() -> None:
    error = TerminalError("namespace production: annotation is not 12 digits", reason="Bad")
    reconciler, store, manager, writer, queue = build(Targets(error=error))
    result = await reconciler.reconcile(KEY)
    assert result.outcome == "error"
    assert manager.log == []
    assert writer.writes == ["status"]  # no finalizer: nothing exists in AWS
    conditions = {c["type"]: c for c in store[KEY]["status"]["conditions"]}
    assert conditions["ACK.ResourceSynced"]["status"] == "False"
    assert conditions["ACK.Terminal"]["message"] == error.message
    assert ("backoff", KEY) in queue.calls


async def test_recoverable_then_success_clears_the_error_condition() -> None:
    reconciler, store, manager, _writer, _queue = build(
        manager_error=RecoverableError("SlowDown: throttled", reason="SlowDown")
    )
    await reconciler.reconcile(KEY)
    assert condition_status(store[KEY]["status"], ConditionType.RECOVERABLE) == "True"
    manager.error = None
    await reconciler.reconcile(KEY)
    status = store[KEY]["status"]
    assert condition_status(status, ConditionType.RECOVERABLE) is None
    assert condition_status(status, ConditionType.RESOURCE_SYNCED) == "True"


async def test_deletion_deletes_in_aws_then_removes_the_finalizer() -> None:
    reconciler, store, manager, _writer, _queue = build()
    await reconciler.reconcile(KEY)
    store[KEY]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    await reconciler.reconcile(KEY)
    assert manager.log == ["sync", "delete"]
    assert store[KEY]["metadata"]["finalizers"] == []


async def test_deleted_object_without_our_finalizer_is_left_alone() -> None:
    reconciler, store, manager, writer, _queue = build()
    store[KEY]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    result = await reconciler.reconcile(KEY)
    assert result.outcome == "skipped"
    assert manager.log == [] and writer.writes == []


async def test_retain_removes_the_finalizer_and_leaves_aws_alone() -> None:
    reconciler, store, manager, _, _ = build(Targets(deletion_policy="retain"))
    await reconciler.reconcile(KEY)
    store[KEY]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    await reconciler.reconcile(KEY)
    assert manager.log == ["sync"]
    assert store[KEY]["metadata"]["finalizers"] == []
