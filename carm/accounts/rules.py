"""The CARM rules: which account and role one resource is managed with, or why it cannot be.

Sources, strongest first (ACK's precedence; each behind ACK's feature gate):

1. **IAMRoleSelector** (`IAMRoleSelector=true`): exactly one selector matching the resource
   gives the role; the account is the role's (parsed from the ARN). More than one match is a
   Terminal error naming them all. Selectors apply whether `--enable-carm` is on or not.
2. **Team** (`TeamLevelCARM=true`): namespace annotation `services.k8s.aws/team-id` looked up in
   ConfigMap `ack-role-team-map`; the account is the role's. A team id beats the owner account.
3. **Owner account**: namespace annotation `services.k8s.aws/owner-account-id` looked up in
   ConfigMap `ack-role-account-map`. carm requires the role to live in that account (ACK would
   silently manage the resource in the role's account while reporting the annotated one).
4. No annotation: the controller's own account and credentials.

With `ServiceLevelCARM=true` a map lookup tries `<service>.<id>` before `<id>`, the service
being the resource's own (`s3` for `s3.services.k8s.aws`): one role map serves every kind.

Safety rules where ACK is silent (community #2011): an annotated namespace never falls back to
the controller's own credentials, also when the annotation names the controller's own account;
a namespace the controller has not seen yet is an error, never the own account. Every error
names the namespace, the ConfigMap or selector, the key and the value, and says whether someone
must change something (`terminal`) or it may pass (a ConfigMap not created yet).

Everything here is a pure function of its arguments: the controller (`resolver.AccountResolver`)
and `carm explain` / `carm doctor` call the same code, so they cannot disagree.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from carm.accounts.rolemap import MapKind, RoleEntry, RoleMap, RoleMapEntryError
from carm.accounts.selectors import GroupVersionKind, Labels, RoleSelector, labels_of
from carm.events import RawObject
from carm.settings import OWNER_ACCOUNT_ANNOTATION, TEAM_ID_ANNOTATION, Settings

DEFAULT_REGION_ANNOTATION = "services.k8s.aws/default-region"
ENDPOINT_URL_ANNOTATION = "services.k8s.aws/endpoint-url"
DELETION_POLICY_SUFFIX = "services.k8s.aws/deletion-policy"
"""The namespace's deletion policy annotation is `<service>.services.k8s.aws/deletion-policy`."""

ANY_KIND = GroupVersionKind("", "", "")
"""A resource of no particular kind: matches only IAMRoleSelectors without a type selector."""

ROLE_NOT_AVAILABLE = "IAM Role is not available"
"""ACK's words for a missing mapping; kept so searches and alerts written for ACK still match."""


def partition_of_region(region: str) -> str:
    """The AWS partition a region belongs to (for the controller's own identity)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


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
    """Namespace of the role-map ConfigMaps (named in messages)."""

    team_level: bool = False
    """TeamLevelCARM: honour `services.k8s.aws/team-id` through `ack-role-team-map`."""

    service_level: bool = False
    """ServiceLevelCARM: try `<service>.<id>` keys before `<id>`."""

    selectors: bool = False
    """IAMRoleSelector: selectors choose the role, overriding the maps."""

    resource_types: tuple[GroupVersionKind, ...] = (ANY_KIND,)
    """The kinds the controller manages (its catalog's). A role-map change is checked against
    each, as service-level keys differ by the kind's service; the first is the kind assumed
    for a question about a namespace rather than a resource (the work queue's account lanes,
    `carm doctor`'s overview)."""

    @classmethod
    def of(cls, settings: Settings, resource_types: Iterable[GroupVersionKind]) -> ResolverSettings:
        """What the controller's flags and feature gates say, for the kinds it manages."""
        gates = settings.feature_gates
        return cls(
            settings.enable_carm,
            settings.system_namespace,
            team_level=gates.team_level_carm,
            service_level=gates.service_level_carm,
            selectors=gates.iam_role_selector,
            resource_types=tuple(resource_types) or (ANY_KIND,),
        )

    @property
    def resource_type(self) -> GroupVersionKind:
        """The kind assumed when no resource is given."""
        return self.resource_types[0] if self.resource_types else ANY_KIND


@dataclass(frozen=True, slots=True)
class NamespaceInfo:
    """What resolution and placement need of a namespace: its CARM annotations and labels."""

    owner_account_id: str | None
    default_region: str | None = None
    team_id: str | None = None
    endpoint_url: str | None = None
    deletion_policies: tuple[tuple[str, str], ...] = ()
    """(service, value) of each `<service>.services.k8s.aws/deletion-policy`, sorted."""
    labels: Labels = ()

    @classmethod
    def of(cls, obj: RawObject) -> NamespaceInfo:
        annotations: dict[str, Any] = (obj.get("metadata") or {}).get("annotations") or {}
        return cls(
            annotations.get(OWNER_ACCOUNT_ANNOTATION),
            annotations.get(DEFAULT_REGION_ANNOTATION),
            annotations.get(TEAM_ID_ANNOTATION),
            annotations.get(ENDPOINT_URL_ANNOTATION),
            _deletion_policies(annotations),
            labels_of(obj),
        )

    def deletion_policy(self, service: str) -> str | None:
        """The namespace's `<service>.services.k8s.aws/deletion-policy`, if annotated."""
        return dict(self.deletion_policies).get(service)


def _deletion_policies(annotations: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    suffix = "." + DELETION_POLICY_SUFFIX
    return tuple(
        sorted(
            (key.removesuffix(suffix), str(value))
            for key, value in annotations.items()
            if key.endswith(suffix) and len(key) > len(suffix)
        )
    )


@dataclass(frozen=True, slots=True)
class ResourceFacts:
    """What selectors match on besides the namespace: the resource's type and labels."""

    type: GroupVersionKind
    labels: Labels = ()

    @classmethod
    def of(cls, obj: RawObject | None, default_type: GroupVersionKind) -> ResourceFacts:
        if obj is None:
            return cls(default_type)
        return cls(GroupVersionKind.of(obj, default_type), labels_of(obj))


@dataclass(frozen=True, slots=True)
class Resolution:
    account_id: str
    role_arn: str | None
    """The role to assume; None: act with the controller's own credentials."""
    partition: str
    source: str
    """Why this account and role, in words (for logs, events and `carm explain`)."""
    role: RoleEntry | None = None
    """The full role-map entry (external id, session options); None with `role_arn` None."""
    account_source: str = ""
    """Where the account came from, e.g. the namespace annotation or the role's ARN."""
    role_source: str = ""
    """Where the role came from: a ConfigMap key or an IAMRoleSelector."""
    team_id: str | None = None
    selector: str | None = None
    """The IAMRoleSelector that chose the role, if one did."""


class ResolutionReason(enum.StrEnum):
    NAMESPACE_UNKNOWN = "NamespaceNotFound"
    INVALID_OWNER_ACCOUNT = "InvalidOwnerAccountID"
    INVALID_TEAM_ID = "InvalidTeamID"
    ROLE_MAP_MISSING = "RoleAccountMapNotFound"
    TEAM_MAP_MISSING = "RoleTeamMapNotFound"
    ROLE_NOT_AVAILABLE = "RoleNotAvailable"
    INVALID_ROLE_ARN = "InvalidRoleARN"
    ROLE_ACCOUNT_MISMATCH = "RoleAccountMismatch"
    SELECTOR_CONFLICT = "IAMRoleSelectorConflict"
    INVALID_SELECTOR = "InvalidIAMRoleSelector"


@dataclass(frozen=True, slots=True)
class ResolutionError:
    reason: ResolutionReason
    message: str
    terminal: bool
    """True when someone must change the annotation, map or selector; False when it may pass."""
    namespace: str
    account_id: str | None
    selectors: tuple[str, ...] = field(default=())
    """The IAMRoleSelectors involved (a conflict or an invalid selector)."""


Outcome = Resolution | ResolutionError


@dataclass(frozen=True, slots=True)
class RoleMaps:
    """The two role-map ConfigMaps as last seen (None: the ConfigMap does not exist)."""

    accounts: RoleMap | None = None
    teams: RoleMap | None = None


def resolve(
    name: str,
    namespace: NamespaceInfo | None,
    maps: RoleMaps,
    selectors: Sequence[RoleSelector],
    identity: ControllerIdentity,
    settings: ResolverSettings,
    resource: ResourceFacts | None = None,
) -> Outcome:
    """Apply the CARM rules to one resource of namespace `name` (None: namespace not seen)."""
    unknown = ResolutionError(
        ResolutionReason.NAMESPACE_UNKNOWN,
        f'namespace "{name}" is not known to the controller yet (not found or not listed '
        "yet), so its owner account cannot be resolved",
        terminal=False,
        namespace=name,
        account_id=None,
    )
    facts = resource or ResourceFacts(settings.resource_type)
    if settings.selectors:
        if namespace is None:  # its labels may decide which selector matches
            return unknown
        chosen = _by_selector(name, namespace, facts, selectors)
        if chosen is not None:
            return chosen
    if not settings.carm_enabled:
        return Resolution(
            identity.account_id,
            None,
            identity.partition,
            "CARM is disabled: the controller's own account and credentials",
            account_source="the controller's own identity (--enable-carm=false)",
        )
    if namespace is None:
        return unknown
    service = facts.type.service if settings.service_level else None
    if settings.team_level and namespace.team_id is not None:
        return _by_team(name, namespace.team_id, maps.teams, settings, service)
    account_id = namespace.owner_account_id
    if account_id is None:
        return Resolution(
            identity.account_id,
            None,
            identity.partition,
            f'namespace "{name}" has no {OWNER_ACCOUNT_ANNOTATION} annotation: the '
            f"controller's own account{f' {identity.account_id}' if identity.account_id else ''} "
            "and credentials",
            account_source="the controller's own identity (namespace not annotated)",
        )
    if not MapKind.ACCOUNT.valid_id(account_id):
        return ResolutionError(
            ResolutionReason.INVALID_OWNER_ACCOUNT,
            f'namespace "{name}" has annotation {OWNER_ACCOUNT_ANNOTATION}={account_id!r}, '
            "which is not a 12-digit AWS account id: fix the annotation",
            terminal=True,
            namespace=name,
            account_id=account_id,
        )
    return _by_account(name, account_id, maps.accounts, settings, service)


def _where(kind: MapKind, settings: ResolverSettings) -> str:
    return f"ConfigMap {settings.system_namespace}/{kind.configmap_name}"


def _by_selector(
    name: str, namespace: NamespaceInfo, facts: ResourceFacts, selectors: Sequence[RoleSelector]
) -> Outcome | None:
    matched = sorted(
        (s for s in selectors if s.matches(name, namespace.labels, facts.type, facts.labels)),
        key=lambda s: s.name,
    )
    if not matched:
        return None
    names = tuple(s.name for s in matched)
    if len(matched) > 1:
        roles = "; ".join(f"{s.name} -> {s.arn or '(no arn)'}" for s in matched)
        return ResolutionError(
            ResolutionReason.SELECTOR_CONFLICT,
            f"{len(matched)} IAMRoleSelectors match this {facts.type.kind} in namespace "
            f'"{name}" ({roles}): exactly one may match; narrow their namespaceSelector, '
            "resourceTypeSelector or resourceLabelSelector",
            terminal=True,
            namespace=name,
            account_id=None,
            selectors=names,
        )
    selector = matched[0]
    if selector.role is None or selector.problems:
        return ResolutionError(
            ResolutionReason.INVALID_SELECTOR,
            f'IAMRoleSelector "{selector.name}" matches this {facts.type.kind} in namespace '
            f'"{name}" but is invalid: {"; ".join(selector.problems)}',
            terminal=True,
            namespace=name,
            account_id=None,
            selectors=names,
        )
    role = selector.role
    return Resolution(
        role.account_id,
        role.arn,
        role.partition,
        f'IAMRoleSelector "{selector.name}" selects role {role.arn} (account {role.account_id})',
        role=role,
        account_source=f'the account of the role chosen by IAMRoleSelector "{selector.name}"',
        role_source=f'IAMRoleSelector "{selector.name}" (spec.arn)',
        selector=selector.name,
    )


def _by_team(
    name: str,
    team_id: str,
    team_map: RoleMap | None,
    settings: ResolverSettings,
    service: str | None,
) -> Outcome:
    who = f'namespace "{name}" is annotated with team {team_id!r} ({TEAM_ID_ANNOTATION})'
    where = _where(MapKind.TEAM, settings)
    if not MapKind.TEAM.valid_id(team_id):
        return ResolutionError(
            ResolutionReason.INVALID_TEAM_ID,
            f"{who}, which is not a valid team id (1-63 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit): fix the annotation",
            terminal=True,
            namespace=name,
            account_id=None,
        )

    def error(reason: ResolutionReason, message: str, terminal: bool) -> ResolutionError:
        return ResolutionError(reason, message, terminal, name, None)

    if team_map is None:
        return error(
            ResolutionReason.TEAM_MAP_MISSING,
            f"{ROLE_NOT_AVAILABLE}: {where} not found; {who}, which needs a role ARN for that "
            "team in it",
            False,
        )
    hit = team_map.lookup(team_id, service)
    if hit is None:
        return error(
            ResolutionReason.ROLE_NOT_AVAILABLE,
            f"{ROLE_NOT_AVAILABLE}: {who}, but {where} has no role for team {team_id!r}",
            False,
        )
    if isinstance(hit.entry, RoleMapEntryError):
        return error(
            ResolutionReason.INVALID_ROLE_ARN,
            f'{who}, but {where} key "{hit.key}" is {hit.entry.value!r}: {hit.entry.problem}',
            True,
        )
    role = hit.entry
    return Resolution(
        role.account_id,
        role.arn,
        role.partition,
        f"{who}: assume role {role.arn} (account {role.account_id})",
        role=role,
        account_source=f"the account of the role of team {team_id!r} ({where})",
        role_source=f'{where} key "{hit.key}"',
        team_id=team_id,
    )


def _by_account(
    name: str,
    account_id: str,
    account_map: RoleMap | None,
    settings: ResolverSettings,
    service: str | None,
) -> Outcome:
    who = f'namespace "{name}" is annotated with owner account {account_id}'
    where = _where(MapKind.ACCOUNT, settings)

    def error(reason: ResolutionReason, message: str, terminal: bool) -> ResolutionError:
        return ResolutionError(reason, message, terminal, name, account_id)

    if account_map is None:
        return error(
            ResolutionReason.ROLE_MAP_MISSING,
            f"{ROLE_NOT_AVAILABLE}: {where} not found; {who}, which needs a role ARN for that "
            "account in it",
            False,
        )
    hit = account_map.lookup(account_id, service)
    if hit is None:
        return error(
            ResolutionReason.ROLE_NOT_AVAILABLE,
            f"{ROLE_NOT_AVAILABLE}: {who}, but {where} has no role ARN for account {account_id}",
            False,
        )
    if isinstance(hit.entry, RoleMapEntryError):
        return error(
            ResolutionReason.INVALID_ROLE_ARN,
            f'{who}, but {where} key "{hit.key}" maps it to {hit.entry.value!r}: '
            f"{hit.entry.problem}",
            True,
        )
    role = hit.entry
    if role.account_id != account_id:
        return error(
            ResolutionReason.ROLE_ACCOUNT_MISMATCH,
            f'{who}, but {where} key "{hit.key}" maps it to role {role.arn}, which belongs to '
            f"account {role.account_id}: the role must be in the annotated account",
            True,
        )
    return Resolution(
        account_id,
        role.arn,
        role.partition,
        f"{who}: assume role {role.arn}",
        role=role,
        account_source=f"namespace annotation {OWNER_ACCOUNT_ANNOTATION}",
        role_source=f'{where} key "{hit.key}"',
    )


def referenced_roles(maps: RoleMaps, selectors: Sequence[RoleSelector]) -> frozenset[RoleEntry]:
    """Every usable role the maps and selectors name (to see which ones a change retires)."""
    roles: set[RoleEntry] = set()
    for role_map in (maps.accounts, maps.teams):
        if role_map is not None:
            roles.update(role_map.roles.values())
    roles.update(s.role for s in selectors if s.role is not None)
    return frozenset(roles)
