"""The resource types the embedded API server serves, built-in and from CRDs.

Discovery, OpenAPI and routing all read this one registry, so a CRD's kinds appear everywhere
the moment it is created (and vanish when it is deleted).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    list_kind: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = (
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )
    has_status: bool = False
    # openAPIV3Schema of a CRD version; for built-in kinds, a structural stand-in for the Go type
    # (see builtins.py). None means "keep every field".
    schema: dict[str, Any] | None = None
    printer_columns: tuple[dict[str, Any], ...] = ()
    # True for kinds that come from a CustomResourceDefinition.
    custom: bool = False
    # Kinds that get strategic-merge patch (built-in kinds only, as on the real server).
    strategic_merge: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def list_kind_name(self) -> str:
        return self.list_kind or f"{self.kind}List"


class Registry:
    """Served types, indexed by (group, version, plural) and by (apiVersion, kind)."""

    def __init__(self) -> None:
        self._by_plural: dict[tuple[str, str, str], ResourceType] = {}
        self.generation = 0  # bumped on every change, for discovery and OpenAPI hashes

    def add(self, rtype: ResourceType) -> None:
        self._by_plural[(rtype.group, rtype.version, rtype.plural)] = rtype
        self.generation += 1

    def remove(self, group: str, version: str, plural: str) -> None:
        if self._by_plural.pop((group, version, plural), None) is not None:
            self.generation += 1

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_plural.get((group, version, plural))

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(list(self._by_plural.values()))

    def group_versions(self) -> dict[str, list[str]]:
        """Group name to its served versions (core group under "")."""
        groups: dict[str, list[str]] = {}
        for rtype in self._by_plural.values():
            versions = groups.setdefault(rtype.group, [])
            if rtype.version not in versions:
                versions.append(rtype.version)
        return groups
