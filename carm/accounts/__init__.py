"""AWS accounts: which account and role a namespace gets, STS credentials, AWS clients.

Data flows top to bottom:

- `rolemap`: ConfigMap ack-role-account-map -> `RoleMap` (account id -> role ARN).
- `resolver`: namespace annotation + role map -> `Resolution` (account, role) or a
  `ResolutionError` a user can act on; `AccountResolver` keeps both fed from the event bus.
- `credentials`: role -> `AwsCredentials`, cached, refreshed, single-flight (`CredentialCache`),
  over the `RoleAssumer` edge whose real implementation is `sts.StsRoleAssumer`.
- `clients`: credentials + region + service -> a shared aiobotocore client (`AwsClientPool`).
- `targets`: all of the above for one resource, as the reconcile loop's `TargetResolver`.

Nothing here talks to Kubernetes.
"""

from carm.accounts.clients import AwsClient, AwsClientPool, op_type_of
from carm.accounts.credentials import (
    AssumeRoleError,
    AwsCredentials,
    CredentialCache,
    CredentialPolicy,
    RoleAssumer,
    SessionSpec,
    default_session_name,
)
from carm.accounts.resolver import (
    AccountResolver,
    ControllerIdentity,
    NamespaceInfo,
    Resolution,
    ResolutionError,
    ResolutionReason,
    ResolverSettings,
    RoleMapChange,
    resolve_namespace,
)
from carm.accounts.rolemap import InvalidRoleArn, RoleArn, RoleMap, RoleMapEntryError
from carm.accounts.sts import StsRoleAssumer
from carm.accounts.targets import AccountTarget, AccountTargets

__all__ = [
    "AccountResolver",
    "AccountTarget",
    "AccountTargets",
    "AssumeRoleError",
    "AwsClient",
    "AwsClientPool",
    "AwsCredentials",
    "ControllerIdentity",
    "CredentialCache",
    "CredentialPolicy",
    "InvalidRoleArn",
    "NamespaceInfo",
    "Resolution",
    "ResolutionError",
    "ResolutionReason",
    "ResolverSettings",
    "RoleArn",
    "RoleAssumer",
    "RoleMap",
    "RoleMapChange",
    "RoleMapEntryError",
    "SessionSpec",
    "StsRoleAssumer",
    "default_session_name",
    "op_type_of",
    "resolve_namespace",
]
