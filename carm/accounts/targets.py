"""Where and as whom a resource is managed: the reconcile loop's `TargetResolver`.

For one object, in this order, and stopping at the first problem so that nothing reaches AWS
that should not:

1. resolution (`AccountResolver`): account and role from IAMRoleSelectors, the team map or the
   account map; an error becomes a Terminal or Recoverable condition;
2. drift (`placement.account_drift`): a resource whose status records another account than it
   resolves to now is Terminal, before any AWS call, deletes included;
3. placement (`placement.placement_of`): region, endpoint and deletion policy with ACK's
   precedence; a bad value or a region drift is Terminal;
4. credentials (`CredentialCache`): AssumeRole with the role's session options, verified with
   GetCallerIdentity; a failure is Recoverable with the role and AWS' error code and is backed
   off per role (one AssumeRole per interval however many resources wait for it); credentials
   acting in another account than the role's are Terminal;
5. the target: clients for that account, region and endpoint (`AwsClientPool`), plus the
   conditions the resolution adds (ACK.IAMRoleSelected, ACK.Advisory).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from carm.accounts.clients import AwsClient, AwsClientPool
from carm.accounts.credentials import AssumeRoleError, AwsCredentials, CredentialCache, SessionSpec
from carm.accounts.placement import (
    REGION_ANNOTATION,
    PlacementDefaults,
    PlacementError,
    account_drift,
    placement_of,
)
from carm.accounts.resolver import AccountResolver, Resolution, ResolutionError, ResolutionReason
from carm.clock import Clock
from carm.events import ObjectKey, RawObject
from carm.reconcile.conditions import Condition, ConditionType
from carm.reconcile.errors import ReconcileError, RecoverableError, TerminalError

__all__ = [
    "REGION_ANNOTATION",
    "ROLE_NOT_AVAILABLE_REQUEUE_SECONDS",
    "AccountTarget",
    "AccountTargets",
    "selection_conditions",
]

ROLE_NOT_AVAILABLE_REQUEUE_SECONDS = 15.0
"""ACK requeues a resource whose account has no role after 15 s."""


@dataclass(frozen=True, slots=True)
class AccountTarget:
    """Satisfies `carm.reconcile.interfaces.AwsTarget`."""

    account_id: str
    region: str
    partition: str
    role_arn: str | None
    credentials: AwsCredentials | None
    _pool: AwsClientPool = field(repr=False)
    _endpoint_url: str | None = field(repr=False)
    deletion_policy: str = "delete"
    """"delete" or "retain": what deleting the Kubernetes resource does in AWS."""
    conditions: tuple[Condition, ...] = ()
    """ACK.IAMRoleSelected and ACK.Advisory conditions the resolution adds."""

    async def client(self, service: str) -> AwsClient:
        return await self._pool.client(service, self.credentials, self.region, self._endpoint_url)


class AccountTargets:
    """Satisfies `carm.reconcile.interfaces.TargetResolver`."""

    def __init__(
        self,
        resolver: AccountResolver,
        credentials: CredentialCache,
        pool: AwsClientPool,
        *,
        clock: Clock,
        default_region: str,
        session_name: str,
        endpoint_url: str | None = None,
        duration_seconds: int = 3600,
        deletion_policy: str = "delete",
    ) -> None:
        self._resolver = resolver
        self._credentials = credentials
        self._pool = pool
        self._clock = clock
        self._session_name = session_name
        self._duration_seconds = duration_seconds
        self._defaults = PlacementDefaults(default_region, endpoint_url, deletion_policy)

    @property
    def defaults(self) -> PlacementDefaults:
        return self._defaults

    async def target_for(self, obj: RawObject) -> AccountTarget:
        namespace = ObjectKey.of(obj).namespace
        outcome = self._resolver.resolve(namespace, obj)
        conditions = selection_conditions(outcome, selectors_on=self._resolver.settings.selectors)
        if isinstance(outcome, ResolutionError):
            raise _resolution_error(outcome, conditions)
        drift = account_drift(obj, outcome)
        if drift is not None:
            raise TerminalError(drift, reason="AccountDrift", conditions=conditions)
        placement = placement_of(obj, self._resolver.namespace(namespace), self._defaults)
        if isinstance(placement, PlacementError):
            raise TerminalError(placement.message, reason=placement.reason, conditions=conditions)
        conditions += tuple(
            Condition(ConditionType.ADVISORY, True, "RegionDefaultChanged", advice)
            for advice in placement.advisories
        )
        credentials = await self._credentials_for(namespace, outcome, conditions)
        return AccountTarget(
            outcome.account_id,
            placement.region,
            outcome.partition,
            outcome.role_arn,
            credentials,
            self._pool,
            placement.endpoint_url,
            placement.deletion_policy,
            conditions,
        )

    def lane_of(self, namespace: str) -> str:
        resolution = self._resolver.resolve(namespace)
        return resolution.account_id if isinstance(resolution, Resolution) else ""

    def session_spec(self, resolution: Resolution) -> SessionSpec | None:
        """What to assume for `resolution` (None: the controller's own credentials)."""
        role = resolution.role
        if role is None:
            return None
        return SessionSpec(
            role.arn,
            self._session_name,
            role.external_id,
            role.session_duration_seconds or self._duration_seconds,
            role.source_identity,
            role.session_tags,
        )

    async def _credentials_for(
        self, namespace: str, resolution: Resolution, conditions: tuple[Condition, ...]
    ) -> AwsCredentials | None:
        spec = self.session_spec(resolution)
        if spec is None:
            return None
        try:
            return await self._credentials.get(spec)
        except AssumeRoleError as error:
            message = f'namespace "{namespace}" ({_how(resolution)}): {error.summary}'
            if error.terminal:
                raise TerminalError(message, reason=error.code, conditions=conditions) from error
            retry_after = None
            if error.retry_at is not None:
                retry_after = max(0.0, error.retry_at - self._clock.wall())
            raise RecoverableError(
                message, reason="AssumeRoleFailed", retry_after=retry_after, conditions=conditions
            ) from error


def _how(resolution: Resolution) -> str:
    if resolution.selector is not None:
        return f'IAMRoleSelector "{resolution.selector}", account {resolution.account_id}'
    if resolution.team_id is not None:
        return f'team "{resolution.team_id}", account {resolution.account_id}'
    return f"owner account {resolution.account_id}"


def selection_conditions(
    outcome: Resolution | ResolutionError, *, selectors_on: bool
) -> tuple[Condition, ...]:
    """ACK.IAMRoleSelected, written whenever the IAMRoleSelector gate is on: True naming the
    selector that chose the role, False saying why none did."""
    if not selectors_on:
        return ()
    kind = ConditionType.IAM_ROLE_SELECTED
    if isinstance(outcome, Resolution):
        if outcome.selector is not None:
            message = f'IAMRoleSelector "{outcome.selector}" selected role {outcome.role_arn}'
            return (Condition(kind, True, "Selected", message),)
        return (
            Condition(
                kind, False, "NoSelectorMatched", f"no IAMRoleSelector matches: {_how(outcome)}"
            ),
        )
    if outcome.selectors:
        return (Condition(kind, False, outcome.reason.value, outcome.message),)
    return ()


def _resolution_error(error: ResolutionError, conditions: tuple[Condition, ...]) -> ReconcileError:
    if error.terminal:
        return TerminalError(error.message, reason=error.reason.value, conditions=conditions)
    retry_after = None
    if error.reason in (
        ResolutionReason.ROLE_NOT_AVAILABLE,
        ResolutionReason.ROLE_MAP_MISSING,
        ResolutionReason.TEAM_MAP_MISSING,
    ):
        retry_after = ROLE_NOT_AVAILABLE_REQUEUE_SECONDS
    return RecoverableError(
        error.message, reason=error.reason.value, retry_after=retry_after, conditions=conditions
    )
