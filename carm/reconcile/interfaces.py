"""The small interfaces the reconcile loop talks to.

The loop itself does no I/O: Kubernetes writes go through a `ResourceWriter` (carm.kube), AWS
access through an `AwsTarget` handed out by a `TargetResolver` (carm.accounts), and each
resource kind lives behind a `ResourceManager` (carm.resources).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from carm.events import RawObject
from carm.reconcile.conditions import Condition


class AwsTarget(Protocol):
    """Where and as whom a resource is managed: the resolved account, region and credentials."""

    @property
    def account_id(self) -> str: ...

    @property
    def region(self) -> str: ...

    @property
    def partition(self) -> str: ...

    @property
    def deletion_policy(self) -> str:
        """ "delete" (remove the AWS resource with the Kubernetes one) or "retain" (keep it)."""
        ...

    @property
    def role_arn(self) -> str | None:
        """The role assumed for this account; None when the controller's own identity acts."""
        ...

    @property
    def conditions(self) -> Sequence[Condition]:
        """Conditions the resolution adds to the resource's status (ACK.IAMRoleSelected,
        ACK.Advisory); written with the outcome of the reconcile, whatever it is."""
        ...

    async def client(self, service: str) -> Any:
        """An AWS client for `service` in this account and region (owned by a pool)."""
        ...


class TargetResolver(Protocol):
    async def target_for(self, obj: RawObject) -> AwsTarget:
        """Resolve the account, role and region of `obj`; raise a ReconcileError if it can't."""
        ...

    def lane_of(self, namespace: str) -> str:
        """The account a namespace's resources belong to now ("" when unresolved): the lane
        the work queue schedules them in."""
        ...


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    """What a successful sync asks the loop to write besides the synced conditions."""

    status: dict[str, Any] = field(default_factory=dict)
    """Status fields to set (besides conditions)."""

    spec: dict[str, Any] | None = None
    """A new spec to write before the status (adoption writes what it found in AWS); None
    leaves the spec alone."""

    conditions: tuple[Condition, ...] = ()
    """Conditions to set as well; one of a type the loop sets by default (ResourceSynced,
    say: a read-only resource that differs from AWS) replaces the default."""


class ResourceManager(Protocol):
    """One resource kind's AWS side."""

    @property
    def finalizer(self) -> str: ...

    async def sync(self, obj: RawObject, aws: AwsTarget) -> dict[str, Any] | SyncOutcome:
        """Make AWS match the spec; return the status fields to set (besides conditions),
        or a `SyncOutcome` when there is more to write."""
        ...

    async def delete(self, obj: RawObject, aws: AwsTarget) -> None:
        """Delete the AWS resource (a resource already gone is not an error)."""
        ...


class ResourceWriter(Protocol):
    """Writes to the Kubernetes object being reconciled."""

    async def set_finalizers(self, obj: RawObject, finalizers: list[str]) -> RawObject:
        """Replace metadata.finalizers, guarded by the object's resourceVersion."""
        ...

    async def patch_status(self, obj: RawObject, status: dict[str, Any]) -> RawObject:
        """Merge-patch the status subresource."""
        ...

    async def replace_spec(self, obj: RawObject, spec: dict[str, Any]) -> RawObject:
        """Replace the whole spec, guarded by the object's resourceVersion."""
        ...


class WriteConflict(Exception):
    """The object changed since it was read; a newer watch event is on its way."""


class ObjectGone(Exception):
    """The object no longer exists in Kubernetes."""


class EventRecorder(Protocol):
    """Kubernetes Events on the resource being reconciled (carm.kube.events)."""

    def record(self, obj: RawObject, type_: str, reason: str, message: str) -> None:
        """Queue an Event on `obj` (`type_` "Normal" or "Warning"); never blocks or raises."""
        ...
