"""AWS accounts: which account and role a resource gets, STS credentials, AWS clients.

Data flows top to bottom:

- `rolemap`: ConfigMaps ack-role-account-map / ack-role-team-map -> `RoleMap` (account or team
  id, optionally `s3.`-prefixed -> `RoleEntry`: a role ARN plus ExternalId, session length,
  SourceIdentity and session tags).
- `selectors`: IAMRoleSelector objects -> `RoleSelector` (ACK's matching rules).
- `rules`: the pure CARM rules: namespace annotations + maps + selectors -> `Resolution`
  (account, role, where each came from) or a `ResolutionError` a user can act on.
- `resolver`: `AccountResolver` keeps the rules' inputs fed from the event bus and says which
  resources each change affects.
- `placement`: region, endpoint and deletion policy with ACK's precedence; account and region
  drift.
- `credentials`: role -> `AwsCredentials`, cached, refreshed, single-flight, verified with
  GetCallerIdentity (`CredentialCache`), over the `RoleAssumer` edge whose real implementation
  is `sts.StsRoleAssumer`.
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
from carm.accounts.placement import Placement, PlacementDefaults, PlacementError, placement_of
from carm.accounts.resolver import AccountResolver, ResolutionChange, RoleMapChange
from carm.accounts.rolemap import (
    InvalidRoleArn,
    InvalidRoleEntry,
    MapKind,
    RoleArn,
    RoleEntry,
    RoleMap,
    RoleMapEntryError,
)
from carm.accounts.rules import (
    ControllerIdentity,
    NamespaceInfo,
    Resolution,
    ResolutionError,
    ResolutionReason,
    ResolverSettings,
    RoleMaps,
    resolve,
)
from carm.accounts.selectors import GroupVersionKind, RoleSelector
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
    "GroupVersionKind",
    "InvalidRoleArn",
    "InvalidRoleEntry",
    "MapKind",
    "NamespaceInfo",
    "Placement",
    "PlacementDefaults",
    "PlacementError",
    "Resolution",
    "ResolutionChange",
    "ResolutionError",
    "ResolutionReason",
    "ResolverSettings",
    "RoleArn",
    "RoleAssumer",
    "RoleEntry",
    "RoleMap",
    "RoleMapChange",
    "RoleMapEntryError",
    "RoleMaps",
    "RoleSelector",
    "SessionSpec",
    "StsRoleAssumer",
    "default_session_name",
    "op_type_of",
    "placement_of",
    "resolve",
]
