"""The account resolver: the latest CARM inputs, and what each change of them affects.

`AccountResolver` holds what the rules (`carm.accounts.rules`) read: namespaces (annotations and
labels), the two role-map ConfigMaps and the IAMRoleSelectors. It is fed from the event bus by
the dispatcher and read by the reconcile workers; no I/O and no locks, everything runs on the
event loop between awaits.

Each `on_*` method answers "which resources must be reconciled again, and which credentials
dropped?" as a `ResolutionChange`, computed by *diffing* rather than guessing:

1. candidate namespaces, cheaply: for a role-map change, the known namespaces whose map-based
   resolution differs between the old and the new map; for a namespace change, that namespace;
   for a selector change, the namespaces the old or the new selector's namespace part matches;
2. `affects(resource)`: the resource's full resolution (selectors included, which may look at
   its labels and kind) under the old inputs differs from the one under the new inputs.

So editing one account's entry re-queues exactly that account's resources and nothing else; a
namespace label no selector looks at re-queues nothing. Changes of a namespace's placement
annotations (default region, endpoint, deletion policy) re-queue all of its resources: they do
not change the resolution but the AWS target. Roles that no map or selector names any more (or
whose entry changed, e.g. a new external id) are retired: their cached credentials are dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

from carm.accounts.rolemap import MapKind, RoleMap
from carm.accounts.rules import (
    ANY_KIND,
    ROLE_NOT_AVAILABLE,
    ControllerIdentity,
    NamespaceInfo,
    Outcome,
    Resolution,
    ResolutionError,
    ResolutionReason,
    ResolverSettings,
    ResourceFacts,
    RoleMaps,
    referenced_roles,
    resolve,
)
from carm.accounts.selectors import SELECTOR_KIND, RoleSelector
from carm.events import ObjectKey, RawObject
from carm.observability.metrics import Metrics

__all__ = [
    "ROLE_NOT_AVAILABLE",
    "AccountResolver",
    "ControllerIdentity",
    "NamespaceInfo",
    "Resolution",
    "ResolutionChange",
    "ResolutionError",
    "ResolutionReason",
    "ResolverSettings",
    "RoleMapChange",
]

log = logging.getLogger("carm.accounts.resolver")

InfoOf = Callable[[str], NamespaceInfo | None]


@dataclass(frozen=True, slots=True)
class ResolutionChange:
    """What one event affects."""

    namespaces: frozenset[str]
    """Namespaces whose resources may now resolve (or be placed) differently."""
    retired_role_arns: frozenset[str] = frozenset()
    """Roles no longer named (or named with other session options): drop their credentials."""
    affects: Callable[[RawObject], bool] | None = None
    """When set, only the resources of `namespaces` for which it is True are affected."""
    keys: frozenset[str] = frozenset()
    """ConfigMap keys added, removed or changed (for logs)."""

    def __bool__(self) -> bool:
        return bool(self.namespaces or self.retired_role_arns)


RoleMapChange = ResolutionChange
"""The former name, kept for callers that import it."""

NO_CHANGE = ResolutionChange(frozenset())


def _placement(info: NamespaceInfo | None) -> tuple[object, ...]:
    if info is None:
        return (None, None, None)
    return (info.default_region, info.endpoint_url, info.deletion_policies)


class AccountResolver:
    def __init__(
        self,
        identity: ControllerIdentity,
        settings: ResolverSettings,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self._identity = identity
        self._settings = settings
        self._metrics = metrics
        self._namespaces: dict[str, NamespaceInfo] = {}
        self._maps = RoleMaps()
        self._selectors: dict[str, RoleSelector] = {}
        self._selector_list: tuple[RoleSelector, ...] = ()

    # -- reading ------------------------------------------------------------------------------

    @property
    def identity(self) -> ControllerIdentity:
        return self._identity

    @property
    def settings(self) -> ResolverSettings:
        return self._settings

    @property
    def role_map(self) -> RoleMap | None:
        """ConfigMap ack-role-account-map as last seen (None: it does not exist)."""
        return self._maps.accounts

    @property
    def team_map(self) -> RoleMap | None:
        return self._maps.teams

    @property
    def maps(self) -> RoleMaps:
        return self._maps

    @property
    def selectors(self) -> tuple[RoleSelector, ...]:
        return self._selector_list

    def namespace(self, name: str) -> NamespaceInfo | None:
        return self._namespaces.get(name)

    def namespaces(self) -> Iterator[tuple[str, NamespaceInfo]]:
        return iter(self._namespaces.items())

    def resolve(self, namespace: str, resource: RawObject | None = None) -> Outcome:
        """The resolution of `resource` (None: a resource of the default kind, no labels)."""
        facts = ResourceFacts.of(resource, self._settings.resource_type)
        return self._resolve(
            namespace, self._namespaces.get, self._maps, self._selector_list, facts
        )

    # -- feeding ------------------------------------------------------------------------------

    def on_namespace(self, obj: RawObject | None, name: str) -> ResolutionChange:
        """A namespace was added, changed (`obj`) or deleted (None)."""
        before = self._namespaces.get(name)
        after = None if obj is None else NamespaceInfo.of(obj)
        if after is None:
            self._namespaces.pop(name, None)
        else:
            self._namespaces[name] = after
        if before == after:
            return NO_CHANGE
        if _placement(before) != _placement(after):
            return ResolutionChange(frozenset({name}))

        def old_info(namespace: str) -> NamespaceInfo | None:
            return before if namespace == name else self._namespaces.get(namespace)

        affects = self._differs(old_info, self._maps, self._selector_list)
        return ResolutionChange(frozenset({name}), affects=affects)

    def on_role_map(self, configmap: RawObject | None) -> ResolutionChange:
        """ConfigMap ack-role-account-map was added, changed (`configmap`) or deleted (None)."""
        after = RoleMap.from_configmap(configmap, MapKind.ACCOUNT)
        new_maps = replace(self._maps, accounts=after)
        return self._on_maps(MapKind.ACCOUNT, new_maps, self._maps.accounts, after)

    def on_team_map(self, configmap: RawObject | None) -> ResolutionChange:
        """ConfigMap ack-role-team-map was added, changed (`configmap`) or deleted (None)."""
        after = RoleMap.from_configmap(configmap, MapKind.TEAM)
        return self._on_maps(
            MapKind.TEAM, replace(self._maps, teams=after), self._maps.teams, after
        )

    def on_selector(self, obj: RawObject | None, name: str) -> ResolutionChange:
        """An IAMRoleSelector was added, changed (`obj`) or deleted (None)."""
        old = self._selectors.get(name)
        new = None if obj is None else RoleSelector.of(obj)
        if old == new:
            return NO_CHANGE
        before_list = self._selector_list
        if new is None:
            self._selectors.pop(name, None)
        else:
            self._selectors[name] = new
        self._selector_list = tuple(self._selectors[n] for n in sorted(self._selectors))
        self._report_selector(new)
        candidates = frozenset(
            namespace
            for namespace, info in self._namespaces.items()
            if any(s.matches_namespace(namespace, info.labels) for s in (old, new) if s)
        )
        retired = self._retired(self._maps, before_list)
        if not self._settings.selectors:
            return ResolutionChange(frozenset(), retired)
        affects = self._differs(self._namespaces.get, self._maps, before_list)
        return ResolutionChange(candidates, retired, affects)

    # -- internals ----------------------------------------------------------------------------

    def _on_maps(
        self, kind: MapKind, new_maps: RoleMaps, before: RoleMap | None, after: RoleMap | None
    ) -> ResolutionChange:
        old_maps = self._maps
        self._maps = new_maps
        keys = (
            after.changed_keys(before)
            if after is not None
            else (before.changed_keys(None) if before is not None else frozenset())
        )
        self._report_map(kind, after, keys)
        if old_maps == new_maps:
            return NO_CHANGE
        # Candidates by the maps alone (cheap, one resolution per namespace); `affects` then
        # checks each resource with selectors, which may take it out of the maps' hands.
        plain = replace(self._settings, selectors=False)
        kinds = [ResourceFacts(kind) for kind in plain.resource_types or (ANY_KIND,)]
        candidates = frozenset(
            name
            for name, info in self._namespaces.items()
            if any(
                resolve(name, info, old_maps, (), self._identity, plain, kind)
                != resolve(name, info, new_maps, (), self._identity, plain, kind)
                for kind in kinds
            )
        )
        affects = self._differs(self._namespaces.get, old_maps, self._selector_list)
        return ResolutionChange(
            candidates, self._retired(old_maps, self._selector_list), affects, keys
        )

    def _report_map(self, kind: MapKind, after: RoleMap | None, keys: frozenset[str]) -> None:
        """Log each new or changed unusable entry once; keep the gauge of unusable entries."""
        name = kind.configmap_name
        if self._metrics is not None:
            count = len(after.errors) if after is not None else 0
            self._metrics.invalid_mapping_entries.labels(name).set(count)
        if after is None:
            return
        where = f"ConfigMap {self._settings.system_namespace}/{name}"
        for key in sorted(keys & after.errors.keys()):
            error = after.errors[key]
            log.warning(
                '%s key "%s" = %r cannot be used: %s', where, key, error.value, error.problem
            )

    def _report_selector(self, selector: RoleSelector | None) -> None:
        if self._metrics is not None:
            invalid = sum(1 for s in self._selector_list if s.problems)
            self._metrics.invalid_mapping_entries.labels(SELECTOR_KIND).set(invalid)
        if selector is not None and selector.problems:
            log.warning(
                'IAMRoleSelector "%s" is invalid (resources it matches get a Terminal '
                "condition): %s",
                selector.name,
                "; ".join(selector.problems),
            )

    def _retired(self, old_maps: RoleMaps, old_selectors: Iterable[RoleSelector]) -> frozenset[str]:
        before = referenced_roles(old_maps, tuple(old_selectors))
        after = referenced_roles(self._maps, self._selector_list)
        return frozenset(role.arn for role in before - after)

    def _differs(
        self, old_info: InfoOf, old_maps: RoleMaps, old_selectors: tuple[RoleSelector, ...]
    ) -> Callable[[RawObject], bool]:
        """`affects` for a change from the given old inputs to the current ones. It is called
        right away by the dispatcher, before any later event changes the current inputs."""
        new_info, new_maps, new_selectors = self._namespaces.get, self._maps, self._selector_list
        default_type = self._settings.resource_type

        def affects(obj: RawObject) -> bool:
            namespace = ObjectKey.of(obj).namespace
            facts = ResourceFacts.of(obj, default_type)
            return self._resolve(namespace, old_info, old_maps, old_selectors, facts) != (
                self._resolve(namespace, new_info, new_maps, new_selectors, facts)
            )

        return affects

    def _resolve(
        self,
        namespace: str,
        info_of: InfoOf,
        maps: RoleMaps,
        selectors: tuple[RoleSelector, ...],
        facts: ResourceFacts,
    ) -> Outcome:
        return resolve(
            namespace, info_of(namespace), maps, selectors, self._identity, self._settings, facts
        )
