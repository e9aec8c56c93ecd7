"""One read of everything CARM depends on, and the resolver fed with it.

What `carm explain` and `carm doctor` look at: namespaces, ConfigMaps `ack-role-account-map` and
`ack-role-team-map` in the system namespace, IAMRoleSelectors (when their CRD is installed) and,
for the doctor, every resource of every kind served (the catalog's, `carm.tools.kinds`). The
resolver built from it is the controller's own `AccountResolver`, set up for the same kinds,
so the answer is the one the controller would give.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from carm.accounts.placement import PlacementDefaults
from carm.accounts.resolver import AccountResolver
from carm.accounts.rules import ControllerIdentity, ResolverSettings, partition_of_region
from carm.controllers import resource_ref
from carm.events import RawObject
from carm.kube.client import (
    CONFIG_MAPS,
    IAM_ROLE_SELECTORS,
    NAMESPACES,
    KubeApiError,
    KubeClient,
)
from carm.resources.kind import ResourceDescriptor
from carm.settings import ROLE_ACCOUNT_MAP_NAME, ROLE_TEAM_MAP_NAME, Settings
from carm.tools.kinds import SERVED_KINDS, typed

OWN_ACCOUNT_UNKNOWN = ""
"""The controller's own account is not known without its AWS credentials: shown in words."""


@dataclass
class ClusterSnapshot:
    namespaces: dict[str, RawObject]
    account_map: RawObject | None
    team_map: RawObject | None
    selectors: list[RawObject] | None
    """None: the IAMRoleSelector CRD is not installed (or these credentials may not list it)."""
    resources: list[RawObject] = field(default_factory=list)
    """Every resource of every kind served, each with its apiVersion and kind (only when read
    `with_resources`)."""
    kinds: tuple[ResourceDescriptor, ...] = SERVED_KINDS
    """The kinds served; the first is the one a question about a namespace is answered for."""
    missing_kinds: tuple[ResourceDescriptor, ...] = ()
    """Kinds served whose resources could not be listed: their CRD is not installed."""


async def read_cluster(
    kube: KubeClient,
    settings: Settings,
    *,
    kinds: Sequence[ResourceDescriptor] = SERVED_KINDS,
    with_resources: bool = False,
) -> ClusterSnapshot:
    if not kinds:
        raise ValueError("no resource kinds to serve: namespace questions need one")
    namespaces, _ = await kube.list_all(NAMESPACES)
    by_name = {str(ns["metadata"]["name"]): ns for ns in namespaces}
    account_map = await _get_or_none(kube, ROLE_ACCOUNT_MAP_NAME, settings.system_namespace)
    team_map = await _get_or_none(kube, ROLE_TEAM_MAP_NAME, settings.system_namespace)
    selectors: list[RawObject] | None
    try:
        selectors, _ = await kube.list_all(IAM_ROLE_SELECTORS)
    except KubeApiError as error:
        if not error.not_found and error.status != 403:
            raise
        selectors = None
    snapshot = ClusterSnapshot(by_name, account_map, team_map, selectors, kinds=tuple(kinds))
    if with_resources:
        await _read_resources(kube, snapshot)
    return snapshot


async def _read_resources(kube: KubeClient, snapshot: ClusterSnapshot) -> None:
    missing: list[ResourceDescriptor] = []
    for kind in snapshot.kinds:
        try:
            objects, _ = await kube.list_all(resource_ref(kind))
        except KubeApiError as error:
            if not error.not_found:
                raise
            missing.append(kind)
            continue
        snapshot.resources += [typed(obj, kind) for obj in objects]
    snapshot.missing_kinds = tuple(missing)


async def _get_or_none(kube: KubeClient, name: str, namespace: str) -> RawObject | None:
    try:
        return await kube.get(CONFIG_MAPS, name, namespace)
    except KubeApiError as error:
        if error.not_found:
            return None
        raise


def resolver_settings(
    settings: Settings, kinds: Sequence[ResourceDescriptor] = SERVED_KINDS
) -> ResolverSettings:
    return ResolverSettings.of(settings, (kind.type for kind in kinds))


def placement_defaults(settings: Settings) -> PlacementDefaults:
    return PlacementDefaults(
        settings.aws_region, settings.aws_endpoint_url, settings.deletion_policy
    )


def resolver_for(
    snapshot: ClusterSnapshot, settings: Settings, own_account: str = OWN_ACCOUNT_UNKNOWN
) -> AccountResolver:
    """The controller's resolver, fed with the snapshot."""
    identity = ControllerIdentity(own_account, partition_of_region(settings.aws_region))
    resolver = AccountResolver(identity, resolver_settings(settings, snapshot.kinds))
    for name, namespace in snapshot.namespaces.items():
        resolver.on_namespace(namespace, name)
    resolver.on_role_map(snapshot.account_map)
    resolver.on_team_map(snapshot.team_map)
    for selector in snapshot.selectors or ():
        resolver.on_selector(selector, str(selector["metadata"]["name"]))
    return resolver
