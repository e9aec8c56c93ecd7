"""One read of everything CARM depends on, and the resolver fed with it.

What `carm explain` and `carm doctor` look at: namespaces, ConfigMaps `ack-role-account-map` and
`ack-role-team-map` in the system namespace, IAMRoleSelectors (when their CRD is installed) and,
for the doctor, every Bucket. The resolver built from it is the controller's own
`AccountResolver`, so the answer is the one the controller would give.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from carm.accounts.placement import PlacementDefaults
from carm.accounts.resolver import AccountResolver
from carm.accounts.rules import ControllerIdentity, ResolverSettings, partition_of_region
from carm.events import RawObject
from carm.kube.client import (
    BUCKETS,
    CONFIG_MAPS,
    IAM_ROLE_SELECTORS,
    NAMESPACES,
    KubeApiError,
    KubeClient,
)
from carm.settings import ROLE_ACCOUNT_MAP_NAME, ROLE_TEAM_MAP_NAME, Settings

OWN_ACCOUNT_UNKNOWN = ""
"""The controller's own account is not known without its AWS credentials: shown in words."""


@dataclass
class ClusterSnapshot:
    namespaces: dict[str, RawObject]
    account_map: RawObject | None
    team_map: RawObject | None
    selectors: list[RawObject] | None
    """None: the IAMRoleSelector CRD is not installed (or these credentials may not list it)."""
    buckets: list[RawObject] = field(default_factory=list)


async def read_cluster(
    kube: KubeClient, settings: Settings, *, with_buckets: bool = False
) -> ClusterSnapshot:
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
    buckets: list[RawObject] = []
    if with_buckets:
        try:
            buckets, _ = await kube.list_all(BUCKETS)
        except KubeApiError as error:
            if not error.not_found:
                raise
    for bucket in buckets:  # list items may lack them; messages name the kind
        bucket.setdefault("kind", "Bucket")
    return ClusterSnapshot(by_name, account_map, team_map, selectors, buckets)


async def _get_or_none(kube: KubeClient, name: str, namespace: str) -> RawObject | None:
    try:
        return await kube.get(CONFIG_MAPS, name, namespace)
    except KubeApiError as error:
        if error.not_found:
            return None
        raise


def resolver_settings(settings: Settings) -> ResolverSettings:
    gates = settings.feature_gates
    return ResolverSettings(
        settings.enable_carm,
        settings.system_namespace,
        team_level=gates.team_level_carm,
        service_level=gates.service_level_carm,
        selectors=gates.iam_role_selector,
    )


def placement_defaults(settings: Settings) -> PlacementDefaults:
    return PlacementDefaults(
        settings.aws_region, settings.aws_endpoint_url, settings.deletion_policy
    )


def resolver_for(
    snapshot: ClusterSnapshot, settings: Settings, own_account: str = OWN_ACCOUNT_UNKNOWN
) -> AccountResolver:
    """The controller's resolver, fed with the snapshot."""
    identity = ControllerIdentity(own_account, partition_of_region(settings.aws_region))
    resolver = AccountResolver(identity, resolver_settings(settings))
    for name, namespace in snapshot.namespaces.items():
        resolver.on_namespace(namespace, name)
    resolver.on_role_map(snapshot.account_map)
    resolver.on_team_map(snapshot.team_map)
    for selector in snapshot.selectors or ():
        resolver.on_selector(selector, str(selector["metadata"]["name"]))
    return resolver
