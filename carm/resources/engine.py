"""Any `AwsResource` as the reconcile loop's `ResourceManager`.

One sync, for every kind alike:

1. read the annotations and the identity; an identity that no longer matches the ARN in
   status is Terminal (the identifiers are immutable: changing them would orphan the old
   resource and silently manage another);
2. validate the spec (Terminal before any AWS call);
3. read-only: locate and read, report differences, never write;
4. `adopt` (first time): locate, check ownership, read everything, and hand the spec found
   in AWS back to the loop, which writes it; the next sync manages the resource as usual;
5. otherwise create it when no ARN is recorded (an existing resource of the same account is
   taken over: that is `adopt-or-create`, and carm's default, as the core always did), or when
   a recorded one has vanished (deleted outside carm: re-created, as drift);
6. read only the sub-configurations the spec manages, put those that differ, and remove those
   the spec managed last time but no longer does (`status.managedConfigurations`).

A synced resource therefore costs one `locate` plus one read per managed sub-configuration.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from carm.events import RawObject
from carm.reconcile.conditions import Condition, ConditionType
from carm.reconcile.errors import RecoverableError, TerminalError
from carm.reconcile.interfaces import AwsTarget, SyncOutcome
from carm.resources.annotations import Adoption, ResourcePolicy, policy_of
from carm.resources.kind import AwsResource, Desired, Identity, Located

MANAGED = "managedConfigurations"
"""The status field that remembers which sub-configurations the spec managed last time."""


class KindManager:
    """Satisfies `carm.reconcile.interfaces.ResourceManager` for one kind."""

    def __init__(self, kind: AwsResource) -> None:
        self.kind = kind
        self.finalizer = kind.descriptor.finalizer

    async def sync(self, obj: RawObject, aws: AwsTarget) -> SyncOutcome:
        policy = policy_of(obj)
        identity = self.kind.identify(obj, policy.adoption_fields)
        recorded = _recorded_arn(obj)
        arn = self.kind.arn(identity, aws)
        if recorded and recorded != arn:
            raise TerminalError(
                f"the identity of a {self.kind.descriptor.kind} cannot change: this resource "
                f"manages {recorded}, but its spec now names {arn}; set it back, or create a "
                "new resource for the new one",
                reason="ImmutableField",
            )
        desired = self.kind.desired(obj, identity, aws)
        if policy.read_only:
            managed = _managed_before(obj)
            return await self._observe(policy, identity, desired, recorded, managed, aws)
        if not recorded and policy.adoption is Adoption.ADOPT:
            return await self._adopt(identity, aws)
        located = None if not recorded else await self.kind.locate(identity, desired, aws)
        if located is None:
            located = await self.kind.create(identity, desired, aws)
            if located is None:
                located = await self._locate_created(identity, desired, aws)
        observed = await self.kind.read(identity, list(desired.fields), aws)
        changed = self.kind.differences(desired, observed)
        removed = sorted(_managed_before(obj) - set(desired.fields))
        if changed or removed:
            await self.kind.apply(identity, desired, changed, removed, aws)
        return self._outcome(identity, located, desired, aws, managed=desired.fields)

    async def delete(self, obj: RawObject, aws: AwsTarget) -> None:
        policy = policy_of(obj)
        if policy.read_only:
            return  # read-only resources are never written, not even deleted
        try:
            identity = self.kind.identify(obj, policy.adoption_fields)
        except TerminalError:
            return  # a spec that never named a resource created nothing
        if not _recorded_arn(obj) and not await self._may_delete_unrecorded(policy, identity, aws):
            return
        await self.kind.delete(identity, aws)

    async def _may_delete_unrecorded(
        self, policy: ResourcePolicy, identity: Identity, aws: AwsTarget
    ) -> bool:
        """Never recorded as ours: it failed before creation, the name belongs to another
        account, or an `adopt` never completed. Deleting by name could destroy a resource carm
        never managed; only one that its account owns and carm may have created goes."""
        return policy.adoption is not Adoption.ADOPT and await self.kind.owned(identity, aws)

    # -- the paths --

    async def _observe(
        self,
        policy: ResourcePolicy,
        identity: Identity,
        desired: Desired,
        recorded: str | None,
        managed: Collection[str],
        aws: AwsTarget,
    ) -> SyncOutcome:
        kind = self.kind.descriptor.kind
        adopting = not recorded and policy.adoption is Adoption.ADOPT
        located = await self.kind.locate(identity, Desired({}) if adopting else desired, aws)
        if located is None:
            raise RecoverableError(
                f"read-only {kind} {self.kind.arn(identity, aws)} does not exist in account "
                f"{aws.account_id}, region {aws.region}; carm never creates read-only resources",
                reason="NotFound",
            )
        if not recorded:
            await self._check_owned(identity, aws)
            if adopting:
                return await self._adopted(identity, located, aws)
        observed = await self.kind.read(identity, list(desired.fields), aws)
        differing = self.kind.differences(desired, observed)
        # Observing is not managing: what carm applied before (if anything) stays recorded, so
        # that dropping read-only later removes only what carm itself had applied.
        outcome = self._outcome(identity, located, desired, aws, managed=managed)
        if not differing:
            return outcome
        fields = ", ".join(f"spec.{name}" for name in differing)
        message = (
            f"read-only: AWS differs from the spec at {fields}; carm reports this and does "
            "not write read-only resources"
        )
        drift = Condition(ConditionType.RESOURCE_SYNCED, False, "ReadOnlyDrift", message)
        return SyncOutcome(outcome.status, conditions=(*outcome.conditions, drift))

    async def _adopt(self, identity: Identity, aws: AwsTarget) -> SyncOutcome:
        # Located against an empty Desired: what AWS has is the truth here, whatever the spec
        # says (a region, say) before adoption rewrites it.
        located = await self.kind.locate(identity, Desired({}), aws)
        if located is None:
            raise TerminalError(
                f"adoption-policy adopt: {self.kind.arn(identity, aws)} does not exist in "
                f"account {aws.account_id}, region {aws.region} (adopt never creates; use "
                "adopt-or-create to create it when missing)",
                reason="AdoptionFailed",
            )
        await self._check_owned(identity, aws)
        return await self._adopted(identity, located, aws)

    async def _adopted(self, identity: Identity, located: Located, aws: AwsTarget) -> SyncOutcome:
        observed = await self.kind.read(identity, None, aws)
        spec = self.kind.spec_of(identity, located, observed, aws)
        # The spec's own validation names what the next sync will manage.
        outcome = self._outcome(identity, located, None, aws, managed=())
        return SyncOutcome(outcome.status, spec=spec, conditions=outcome.conditions)

    async def _check_owned(self, identity: Identity, aws: AwsTarget) -> None:
        if not await self.kind.owned(identity, aws):
            raise TerminalError(
                f"{self.kind.arn(identity, aws)} exists but is not owned by account "
                f"{aws.account_id} (the account of this namespace): carm does not adopt "
                "resources of other accounts",
                reason="AdoptionFailed",
            )

    async def _locate_created(
        self, identity: Identity, desired: Desired, aws: AwsTarget
    ) -> Located:
        located = await self.kind.locate(identity, desired, aws)
        if located is None:  # created a moment ago: AWS is catching up
            raise RecoverableError(
                f"{self.kind.arn(identity, aws)} was created but cannot be found yet",
                reason="NotFoundAfterCreate",
            )
        return located

    def _outcome(
        self,
        identity: Identity,
        located: Located | None,
        desired: Desired | None,
        aws: AwsTarget,
        *,
        managed: Collection[str],
    ) -> SyncOutcome:
        status: dict[str, Any] = {
            "ackResourceMetadata": {
                "arn": self.kind.arn(identity, aws),
                "ownerAccountID": aws.account_id,
                "region": aws.region,
                "partition": aws.partition,
            },
            **self.kind.status_of(identity, located, aws),
        }
        status[MANAGED] = sorted(managed)
        conditions: tuple[Condition, ...] = ()
        if desired is not None and desired.unmanaged:
            fields = ", ".join(f"spec.{name}" for name in desired.unmanaged)
            conditions = (
                Condition(
                    ConditionType.ADVISORY,
                    True,
                    "FieldNotManaged",
                    f"{fields}: accepted for ACK compatibility but not managed by carm "
                    "(nothing is applied in AWS)",
                ),
            )
        return SyncOutcome(status, conditions=conditions)


def _recorded_arn(obj: RawObject) -> str | None:
    metadata = ((obj.get("status") or {}).get("ackResourceMetadata")) or {}
    arn = metadata.get("arn")
    return str(arn) if arn else None


def _managed_before(obj: RawObject) -> set[str]:
    managed: Any = (obj.get("status") or {}).get(MANAGED) or []
    return {str(name) for name in managed} if isinstance(managed, list) else set()
