"""Which AWS account, and which role, a namespace's resources are managed with.

The rules (ACK CARM, tightened where ACK is silent):

- A namespace without the `services.k8s.aws/owner-account-id` annotation is managed in the
  controller's own account with the controller's own credentials (`role_arn` None).
- An annotated namespace MUST find its account in ConfigMap `ack-role-account-map`, also when
  the annotation names the controller's own account; its resources are then managed by
  assuming that role. There is no fallback to the controller's own credentials: a typo in the
  map must not create buckets in the wrong account.
- Every failure names the namespace, the account and what is wrong, and says whether the user
  must change something (`terminal`) or it may pass (e.g. the ConfigMap is not created yet).
  Callers retry both with backoff, because namespaces and the map are edited outside the
  resource.
- A namespace the controller has not seen yet resolves to a (recoverable) error, never to the
  own account: it may well be annotated.
- With CARM disabled, every namespace is managed in the controller's own account and the
  annotation is ignored.

`resolve_namespace` is the pure rule. `AccountResolver` keeps the latest namespaces and role
map fed from the event bus, and tells the caller what each change affects so that only the
resources of those namespaces are reconciled again.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from carm.accounts.rolemap import ACCOUNT_ID_PATTERN, RoleMap, RoleMapEntryError
from carm.events import RawObject
from carm.settings import OWNER_ACCOUNT_ANNOTATION, ROLE_ACCOUNT_MAP_NAME

DEFAULT_REGION_ANNOTATION = "services.k8s.aws/default-region"
ROLE_NOT_AVAILABLE = "IAM Role is not available"
"""ACK's words for a missing mapping; kept so searches and alerts written for ACK still match."""


@dataclass(frozen=True, slots=True)
class ControllerIdentity:
    """Who the controller is without assuming a role (from STS GetCallerIdentity)."""

    account_id: str
    partition: str = "aws"


@dataclass(frozen=True, slots=True)
class ResolverSettings:
    carm_enabled: bool = True
    """Resolve namespaces' owner accounts; False manages everything in the own account."""

    system_namespace: str = "ack-system"
    """Namespace of ConfigMap ack-role-account-map (named in messages)."""


@dataclass(frozen=True, slots=True)
class Resolution:
    account_id: str
    role_arn: str | None
    """The role to assume; None: act with the controller's own credentials."""
    partition: str
    source: str
    """Why this account and role, in words (for logs and events)."""


class ResolutionReason(enum.StrEnum):
    NAMESPACE_UNKNOWN = "NamespaceNotFound"
    INVALID_OWNER_ACCOUNT = "InvalidOwnerAccountID"
    ROLE_MAP_MISSING = "RoleAccountMapNotFound"
    ROLE_NOT_AVAILABLE = "RoleNotAvailable"
    INVALID_ROLE_ARN = "InvalidRoleARN"
    ROLE_ACCOUNT_MISMATCH = "RoleAccountMismatch"


@dataclass(frozen=True, slots=True)
class ResolutionError:
    reason: ResolutionReason
    message: str
    terminal: bool
    """True when someone must change the annotation or the map; False when it may pass."""
    namespace: str
    account_id: str | None


@dataclass(frozen=True, slots=True)
class NamespaceInfo:
    """What the resolver needs of a namespace: its CARM annotations."""

    owner_account_id: str | None
    default_region: str | None = None

    @classmethod
    def of(cls, obj: RawObject) -> NamespaceInfo:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        return cls(
            annotations.get(OWNER_ACCOUNT_ANNOTATION), annotations.get(DEFAULT_REGION_ANNOTATION)
        )


def resolve_namespace(
    name: str,
    namespace: NamespaceInfo | None,
    role_map: RoleMap | None,
    identity: ControllerIdentity,
    settings: ResolverSettings,
) -> Resolution | ResolutionError:
    """Apply the CARM rules to one namespace (None: not known to the controller yet)."""
    if not settings.carm_enabled:
        return Resolution(
            identity.account_id,
            None,
            identity.partition,
            "CARM is disabled: the controller's own account and credentials",
        )
    if namespace is None:
        return ResolutionError(
            ResolutionReason.NAMESPACE_UNKNOWN,
            f'namespace "{name}" is not known to the controller yet (not found or not listed '
            "yet), so its owner account cannot be resolved",
            terminal=False,
            namespace=name,
            account_id=None,
        )
    account_id = namespace.owner_account_id
    if account_id is None:
        return Resolution(
            identity.account_id,
            None,
            identity.partition,
            f'namespace "{name}" has no {OWNER_ACCOUNT_ANNOTATION} annotation: '
            f"the controller's own account {identity.account_id} and credentials",
        )
    if not ACCOUNT_ID_PATTERN.fullmatch(account_id):
        return ResolutionError(
            ResolutionReason.INVALID_OWNER_ACCOUNT,
            f'namespace "{name}" has annotation {OWNER_ACCOUNT_ANNOTATION}={account_id!r}, '
            "which is not a 12-digit AWS account id: fix the annotation",
            terminal=True,
            namespace=name,
            account_id=account_id,
        )
    return _resolve_role(name, account_id, role_map, settings)


def _resolve_role(
    name: str, account_id: str, role_map: RoleMap | None, settings: ResolverSettings
) -> Resolution | ResolutionError:
    where = f"ConfigMap {settings.system_namespace}/{ROLE_ACCOUNT_MAP_NAME}"
    who = f'namespace "{name}" is annotated with owner account {account_id}'

    def error(reason: ResolutionReason, message: str, *, terminal: bool) -> ResolutionError:
        return ResolutionError(reason, message, terminal, name, account_id)

    if role_map is None:
        return error(
            ResolutionReason.ROLE_MAP_MISSING,
            f"{where} not found; {who}, which needs a role ARN for that account in it",
            terminal=False,
        )
    entry = role_map.lookup(account_id)
    if entry is None:
        return error(
            ResolutionReason.ROLE_NOT_AVAILABLE,
            f"{ROLE_NOT_AVAILABLE}: {who}, but {where} has no role ARN for account {account_id}",
            terminal=False,
        )
    if isinstance(entry, RoleMapEntryError):
        return error(
            ResolutionReason.INVALID_ROLE_ARN,
            f"{who}, but {where} maps it to {entry.value!r}, which is {entry.problem}",
            terminal=True,
        )
    if entry.account_id != account_id:
        return error(
            ResolutionReason.ROLE_ACCOUNT_MISMATCH,
            f"{who}, but {where} maps it to role {entry.arn}, which belongs to account "
            f"{entry.account_id}: the role must be in the annotated account",
            terminal=True,
        )
    return Resolution(account_id, entry.arn, entry.partition, f"{who}: assume role {entry.arn}")


@dataclass(frozen=True, slots=True)
class RoleMapChange:
    """What a new version of the role map affects."""

    accounts: frozenset[str]
    """Account ids whose entry was added, removed or changed."""
    namespaces: frozenset[str]
    """Known namespaces whose resolution may now differ: reconcile their resources."""
    retired_role_arns: frozenset[str]
    """Role ARNs no longer mapped for an account they were mapped for: drop their credentials."""


class AccountResolver:
    """The latest namespaces and role map, and the resolution of any namespace against them.

    Fed by the event bus (`on_namespace`, `on_role_map`); read by the reconcile workers
    (`resolve`). No I/O, no locks: everything runs on the event loop between awaits.
    """

    def __init__(self, identity: ControllerIdentity, settings: ResolverSettings) -> None:
        self._identity = identity
        self._settings = settings
        self._namespaces: dict[str, NamespaceInfo] = {}
        self._role_map: RoleMap | None = None

    @property
    def identity(self) -> ControllerIdentity:
        return self._identity

    @property
    def role_map(self) -> RoleMap | None:
        return self._role_map

    def namespace(self, name: str) -> NamespaceInfo | None:
        return self._namespaces.get(name)

    def on_namespace(self, obj: RawObject | None, name: str) -> frozenset[str]:
        """A namespace was added, changed (`obj`) or deleted (None): the namespaces affected."""
        before = self._namespaces.get(name)
        if obj is None:
            self._namespaces.pop(name, None)
            after = None
        else:
            after = NamespaceInfo.of(obj)
            self._namespaces[name] = after
        return frozenset({name}) if before != after else frozenset()

    def on_role_map(self, configmap: RawObject | None) -> RoleMapChange:
        """The role map ConfigMap was added, changed (`configmap`) or deleted (None)."""
        before = self._role_map
        after = RoleMap.from_configmap(configmap)
        self._role_map = after
        if after is None:
            accounts = before.changed_accounts(None) if before is not None else frozenset()
        else:
            accounts = after.changed_accounts(before)
        if (before is None) != (after is None):
            # The ConfigMap appeared or vanished: every annotated namespace's error or role
            # changes, also for accounts that neither version maps.
            namespaces = self._annotated_namespaces(None)
        else:
            namespaces = self._annotated_namespaces(accounts)
        return RoleMapChange(accounts, namespaces, _retired_roles(before, after, accounts))

    def resolve(self, namespace: str) -> Resolution | ResolutionError:
        return resolve_namespace(
            namespace,
            self._namespaces.get(namespace),
            self._role_map,
            self._identity,
            self._settings,
        )

    def namespaces_of(self, accounts: Iterable[str]) -> frozenset[str]:
        """Known namespaces annotated with one of `accounts`."""
        return self._annotated_namespaces(frozenset(accounts))

    def _annotated_namespaces(self, accounts: frozenset[str] | None) -> frozenset[str]:
        return frozenset(
            name
            for name, info in self._namespaces.items()
            if info.owner_account_id is not None
            and (accounts is None or info.owner_account_id in accounts)
        )


def _retired_roles(
    before: RoleMap | None, after: RoleMap | None, accounts: frozenset[str]
) -> frozenset[str]:
    if before is None:
        return frozenset()
    still_mapped = {role.arn for role in after.roles.values()} if after is not None else set()
    return frozenset(
        role.arn
        for account, role in before.roles.items()
        if account in accounts and role.arn not in still_mapped
    )
