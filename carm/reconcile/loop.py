"""The generic reconcile loop: workers take keys from the work queue and drive one object each.

One reconcile of one object, in order:
1. read the object from the cache (a deleted object needs nothing more);
2. resolve its AWS target (account, role, credentials, region); a failure becomes a condition;
3. when it is being deleted: delete in AWS, then remove carm's finalizer;
4. otherwise: add the finalizer *before* anything exists in AWS, so nothing can leak; then let
   the resource manager make AWS match the spec;
5. write the spec if the manager hands one back (`adopt` rewrites it from AWS), then status
   (ackResourceMetadata and conditions), skipping writes that change nothing.
Failures requeue the key with per-key backoff; success schedules the periodic resync.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from carm.clock import Clock
from carm.events import ObjectKey, RawObject
from carm.reconcile.conditions import Condition, ConditionType, merge_conditions
from carm.reconcile.errors import ReconcileError, RecoverableError
from carm.reconcile.interfaces import (
    AwsTarget,
    EventRecorder,
    ObjectGone,
    ResourceManager,
    ResourceWriter,
    SyncOutcome,
    TargetResolver,
    WriteConflict,
)

log = logging.getLogger("carm.reconcile")

_ERROR_CONDITIONS = frozenset({ConditionType.TERMINAL, ConditionType.RECOVERABLE})
# Set by the target resolution (AwsTarget.conditions, ReconcileError.conditions): dropped from
# the status when a reconcile no longer reports them (the selector was deleted, the advice holds
# no more).
_TARGET_CONDITIONS = frozenset({ConditionType.IAM_ROLE_SELECTED, ConditionType.ADVISORY})


class ObjectSource(Protocol):
    def get(self, key: ObjectKey) -> RawObject | None: ...


class WorkSource(Protocol):
    def __aiter__(self) -> AsyncIterator[ObjectKey]:
        """Keys to reconcile; iteration ends when the queue shuts down."""
        ...

    def done(self, key: ObjectKey) -> None: ...

    def forget(self, key: ObjectKey) -> None: ...

    def requeue_with_backoff(self, key: ObjectKey, at_least: float = 0.0) -> float: ...

    def add_after(self, key: ObjectKey, delay: float, lane: str | None = None) -> None: ...

    def set_lane(self, key: ObjectKey, lane: str) -> None: ...

    def remove(self, key: ObjectKey) -> None: ...


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """What one reconcile did, for metrics and logs."""

    key: ObjectKey
    account_id: str
    outcome: str  # "success", "error", "requeue" or "skipped"
    seconds: float
    role_arn: str | None = None
    """The role the reconcile acted as (None: the controller's own identity, or unresolved)."""
    kind: str = ""
    """The kind reconciled (keys are unique per kind only)."""


ResultObserver = Callable[[ReconcileResult], None]


class Reconciler:
    def __init__(
        self,
        *,
        kind: str,
        store: ObjectSource,
        queue: WorkSource,
        targets: TargetResolver,
        manager: ResourceManager,
        writer: ResourceWriter,
        clock: Clock,
        observe: ResultObserver | None = None,
        recorder: EventRecorder | None = None,
    ) -> None:
        self._kind = kind
        self._store = store
        self._queue = queue
        self._targets = targets
        self._manager = manager
        self._writer = writer
        self._clock = clock
        self._observe = observe
        self._events = _SyncEvents(kind, recorder)

    async def run_workers(self, count: int) -> None:
        """Run `count` workers until cancelled (the work queue enforces the global limit)."""
        async with anyio.create_task_group() as group:
            for _ in range(count):
                group.start_soon(self._work)

    async def _work(self) -> None:
        async for key in self._queue:
            try:
                await self.reconcile(key)
            finally:
                self._queue.done(key)

    async def reconcile(self, key: ObjectKey) -> ReconcileResult:
        started = self._clock.monotonic()
        account_id, outcome, role_arn = "", "success", None
        obj = self._store.get(key)
        if obj is None:
            self._queue.remove(key)  # deleted: no resync, no backoff left behind
            self._events.forget(key)
            outcome = "skipped"
        else:
            account_id, outcome, role_arn = await self._reconcile_object(key, obj)
        result = ReconcileResult(
            key, account_id, outcome, self._clock.monotonic() - started, role_arn, self._kind
        )
        if self._observe is not None:
            self._observe(result)
        return result

    async def _reconcile_object(
        self, key: ObjectKey, obj: RawObject
    ) -> tuple[str, str, str | None]:
        meta = obj.get("metadata") or {}
        finalizers: list[str] = list(meta.get("finalizers") or [])
        ours = self._manager.finalizer in finalizers
        deleting = bool(meta.get("deletionTimestamp"))
        if deleting and not ours:
            return "", "skipped", None
        account_id, role_arn = "", None
        target_conditions: list[Condition] = []
        context: dict[str, Any] = {
            "kind": self._kind,
            "namespace": key.namespace,
            "name": key.name,
            # Every reconcile line names account and region, also when resolution fails.
            "account": self._targets.lane_of(key.namespace),
            "region": "",
        }
        try:
            aws = await self._targets.target_for(obj)
            account_id, role_arn = aws.account_id, aws.role_arn
            target_conditions = list(aws.conditions)
            self._queue.set_lane(key, account_id)
            context |= {"account": account_id, "region": aws.region, "role": role_arn}
            if deleting:
                await self._delete(obj, aws, finalizers)
                log.info("deleted", extra={"carm": context})
                self._events.deleted(key, obj, aws)
                self._queue.forget(key)
                return account_id, "success", role_arn
            if not ours:
                obj = await self._writer.set_finalizers(obj, [*finalizers, self._manager.finalizer])
            outcome = await self._manager.sync(obj, aws)
            if not isinstance(outcome, SyncOutcome):
                outcome = SyncOutcome(outcome)
            if outcome.spec is not None:
                obj = await self._writer.replace_spec(obj, outcome.spec)
            conditions = [*_synced_conditions(), *target_conditions, *outcome.conditions]
            await self._write_status(obj, outcome.status, _one_per_type(conditions))
            self._events.synced(key, obj, outcome.status, aws)
        except (WriteConflict, ObjectGone):
            # The cache is behind the server; the watch brings the newer object soon.
            self._queue.add_after(key, 0.5)
            return account_id, "requeue", role_arn
        except ReconcileError as error:
            await self._report_failure(key, obj, error, context, target_conditions)
            return account_id, "error", role_arn
        except Exception as error:
            log.exception("reconcile failed", extra={"carm": context})
            wrapped = RecoverableError(f"{type(error).__name__}: {error}", reason="InternalError")
            await self._report_failure(key, obj, wrapped, context, target_conditions)
            return account_id, "error", role_arn
        log.info("synced", extra={"carm": context})
        self._queue.forget(key)
        return account_id, "success", role_arn

    async def _delete(self, obj: RawObject, aws: AwsTarget, finalizers: list[str]) -> None:
        if aws.deletion_policy != "retain":
            await self._manager.delete(obj, aws)
        remaining = [f for f in finalizers if f != self._manager.finalizer]
        await self._writer.set_finalizers(obj, remaining)

    async def _report_failure(
        self,
        key: ObjectKey,
        obj: RawObject,
        error: ReconcileError,
        context: dict[str, Any],
        target_conditions: list[Condition],
    ) -> None:
        retry_after = getattr(error, "retry_after", None) or 0.0
        delay = self._queue.requeue_with_backoff(key, at_least=retry_after)
        log.warning(
            "reconcile failed: %s",
            error.message,
            extra={"carm": context | {"terminal": error.terminal, "retry_in": delay}},
        )
        if error.terminal:
            self._events.terminal(obj, error)
        # On a conflict the requeue above retries with the newer object.
        with contextlib.suppress(WriteConflict, ObjectGone):
            conditions = [*_failure_conditions(error), *error.conditions, *target_conditions]
            await self._write_status(obj, {}, conditions)

    async def _write_status(
        self, obj: RawObject, fields: dict[str, Any], conditions: list[Condition]
    ) -> None:
        current: dict[str, Any] = obj.get("status") or {}
        drop = (_ERROR_CONDITIONS | _TARGET_CONDITIONS) - {c.type for c in conditions}
        wanted = dict(current) | fields
        wanted["conditions"] = merge_conditions(
            current.get("conditions"), conditions, drop=drop, now=self._clock.wall()
        )
        if wanted != current:
            await self._writer.patch_status(obj, _status_patch(current, wanted))


def _status_patch(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """A merge patch from `current` to `wanted` (top-level fields; lists replace wholesale)."""
    patch: dict[str, Any] = {k: v for k, v in wanted.items() if current.get(k) != v}
    for gone in current.keys() - wanted.keys():
        patch[gone] = None
    return patch


def _one_per_type(conditions: list[Condition]) -> list[Condition]:
    """The last condition of each type wins; Advisory messages from several sources (the
    target, the resource kind) are all kept."""
    by_type: dict[ConditionType, Condition] = {}
    for condition in conditions:
        previous = by_type.get(condition.type)
        if previous is not None and condition.type is ConditionType.ADVISORY:
            message = f"{previous.message}; {condition.message}"
            condition = Condition(condition.type, True, condition.reason, message)
        by_type[condition.type] = condition
    return list(by_type.values())


def _synced_conditions() -> list[Condition]:
    return [
        Condition(ConditionType.RESOURCE_SYNCED, True, message="Resource synced successfully"),
        Condition(ConditionType.READY, True),
    ]


def _failure_conditions(error: ReconcileError) -> list[Condition]:
    flag = ConditionType.TERMINAL if error.terminal else ConditionType.RECOVERABLE
    return [
        Condition(ConditionType.RESOURCE_SYNCED, False, error.reason, error.message),
        Condition(ConditionType.READY, False, error.reason, error.message),
        Condition(flag, True, error.reason, error.message),
    ]


class _SyncEvents:
    """Which reconciles become Kubernetes Events, as `kubectl describe` users expect: the AWS
    resource created, updated (a spec change synced) or deleted, and terminal errors.

    "Created" is a first sync of an object whose status did not record an AWS resource yet.
    "Updated" is a sync of a generation other than the one this process last synced; the
    generations live only in memory, so a spec change made while no replica ran is synced
    without an "Updated" event. Resyncs that change nothing record nothing.
    """

    def __init__(self, kind: str, recorder: EventRecorder | None) -> None:
        self._kind = kind
        self._recorder = recorder
        self._generations: dict[ObjectKey, object] = {}

    def synced(
        self, key: ObjectKey, obj: RawObject, fields: dict[str, Any], aws: AwsTarget
    ) -> None:
        generation = (obj.get("metadata") or {}).get("generation")
        previous = self._generations.get(key)
        self._generations[key] = generation
        where = f"in AWS account {aws.account_id} ({aws.region})"
        if not (obj.get("status") or {}).get("ackResourceMetadata") and fields.get(
            "ackResourceMetadata"
        ):
            self._record(obj, "Normal", "Created", f"{self._kind} created {where}")
        elif previous is not None and previous != generation:
            self._record(obj, "Normal", "Updated", f"spec (generation {generation}) synced {where}")

    def deleted(self, key: ObjectKey, obj: RawObject, aws: AwsTarget) -> None:
        self.forget(key)
        if aws.deletion_policy == "retain":
            message = f"deletion policy retain: the AWS resource stays in account {aws.account_id}"
            self._record(obj, "Normal", "Retained", message)
        else:
            message = f"{self._kind} deleted in AWS account {aws.account_id} ({aws.region})"
            self._record(obj, "Normal", "Deleted", message)

    def terminal(self, obj: RawObject, error: ReconcileError) -> None:
        self._record(obj, "Warning", error.reason, error.message)

    def forget(self, key: ObjectKey) -> None:
        self._generations.pop(key, None)

    def _record(self, obj: RawObject, type_: str, reason: str, message: str) -> None:
        if self._recorder is not None:
            self._recorder.record(obj, type_, reason, message)
