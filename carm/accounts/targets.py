"""Where and as whom a resource is managed: the reconcile loop's `TargetResolver`.

For one object: the namespace's account and role (resolver), credentials for that role
(credential cache), the region (the object's `services.k8s.aws/region` annotation, else the
namespace's `services.k8s.aws/default-region`, else the controller's region, as in ACK), and
clients for that account and region (client pool). Failures become the reconcile errors whose
messages end up in the resource's conditions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from carm.accounts.clients import AwsClient, AwsClientPool
from carm.accounts.credentials import AssumeRoleError, AwsCredentials, CredentialCache, SessionSpec
from carm.accounts.resolver import AccountResolver, Resolution, ResolutionError, ResolutionReason
from carm.clock import Clock
from carm.events import RawObject
from carm.reconcile.errors import ReconcileError, RecoverableError, TerminalError

REGION_ANNOTATION = "services.k8s.aws/region"

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
    ) -> None:
        self._resolver = resolver
        self._credentials = credentials
        self._pool = pool
        self._clock = clock
        self._default_region = default_region
        self._session_name = session_name
        self._endpoint_url = endpoint_url
        self._duration_seconds = duration_seconds

    async def target_for(self, obj: RawObject) -> AccountTarget:
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        resolution = self._resolver.resolve(namespace)
        if isinstance(resolution, ResolutionError):
            raise _reconcile_error(resolution)
        credentials = await self._credentials_for(namespace, resolution)
        return AccountTarget(
            resolution.account_id,
            self._region_of(meta, namespace),
            resolution.partition,
            resolution.role_arn,
            credentials,
            self._pool,
            self._endpoint_url,
        )

    def lane_of(self, namespace: str) -> str:
        resolution = self._resolver.resolve(namespace)
        return resolution.account_id if isinstance(resolution, Resolution) else ""

    async def _credentials_for(
        self, namespace: str, resolution: Resolution
    ) -> AwsCredentials | None:
        if resolution.role_arn is None:
            return None
        spec = SessionSpec(resolution.role_arn, self._session_name, None, self._duration_seconds)
        try:
            return await self._credentials.get(spec)
        except AssumeRoleError as error:
            retry_after = None
            if error.retry_at is not None:
                retry_after = max(0.0, error.retry_at - self._clock.wall())
            raise RecoverableError(
                f'namespace "{namespace}" (owner account {resolution.account_id}): {error}',
                reason="AssumeRoleFailed",
                retry_after=retry_after,
            ) from error

    def _region_of(self, meta: dict[str, Any], namespace: str) -> str:
        annotations = meta.get("annotations") or {}
        info = self._resolver.namespace(namespace)
        return str(
            annotations.get(REGION_ANNOTATION)
            or (info.default_region if info is not None else None)
            or self._default_region
        )


def _reconcile_error(error: ResolutionError) -> ReconcileError:
    if error.terminal:
        return TerminalError(error.message, reason=error.reason.value)
    retry_after = None
    if error.reason in (ResolutionReason.ROLE_NOT_AVAILABLE, ResolutionReason.ROLE_MAP_MISSING):
        retry_after = ROLE_NOT_AVAILABLE_REQUEUE_SECONDS
    return RecoverableError(error.message, reason=error.reason.value, retry_after=retry_after)
