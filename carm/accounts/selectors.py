"""IAMRoleSelector (`services.k8s.aws/v1alpha1`, cluster-scoped): which role a resource uses.

ACK's matching rules, kept exactly:

- the three selector kinds are ANDed: `namespaceSelector`, `resourceTypeSelector`,
  `resourceLabelSelector`; an empty (or absent) one matches everything;
- `namespaceSelector.names` is a list ORed over names; `namespaceSelector.labelSelector
  .matchLabels` must all match the namespace's labels, and both parts must hold when both are set;
- `resourceTypeSelector` is a list ORed over entries; in an entry an empty group, version or kind
  is a wildcard, the others must equal the resource's;
- `resourceLabelSelector.matchLabels` must all match the resource's labels.

Where carm differs, on purpose:

- More than one matching selector is an error naming them all (ACK requeues forever with an
  empty status), decided by the resolver.
- A selector that fails validation (ACK's checks: a role ARN, no empty or duplicate names, no
  empty label keys, no empty or duplicate resource types) is *not* ignored: it still matches
  by what it says, and a resource it matches gets a Terminal condition naming the selector and
  the problem. Ignoring it would send those resources to the role maps, i.e. possibly to
  another account than the one its author meant: failing closed is the safe side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from carm.accounts.rolemap import InvalidRoleArn, RoleArn, RoleEntry

SELECTOR_KIND = "IAMRoleSelector"

Labels = tuple[tuple[str, str], ...]
"""Sorted label pairs: hashable and comparable."""


@dataclass(frozen=True, slots=True, order=True)
class GroupVersionKind:
    group: str
    version: str
    kind: str

    def __str__(self) -> str:
        return f"{self.group}/{self.version}, Kind={self.kind}"

    @property
    def service(self) -> str:
        """ACK's service alias: the group's first label (`s3` of `s3.services.k8s.aws`). It
        prefixes service-level role-map keys and the namespace's deletion-policy annotation."""
        return self.group.partition(".")[0]

    @classmethod
    def of(cls, obj: Mapping[str, Any], default: GroupVersionKind) -> GroupVersionKind:
        """The object's apiVersion and kind; `default` for what it lacks (list items may)."""
        api_version = obj.get("apiVersion")
        kind = obj.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            return default
        group, _, version = api_version.rpartition("/")
        return cls(group, version, kind)


def labels_of(obj: Mapping[str, Any] | None) -> Labels:
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


def _subset(wanted: Labels, have: Labels) -> bool:
    present = dict(have)
    return all(key in present and present[key] == value for key, value in wanted)


@dataclass(frozen=True, slots=True)
class RoleSelector:
    """One IAMRoleSelector, parsed leniently: `problems` lists what fails validation."""

    name: str
    arn: str
    role: RoleEntry | None
    """None when spec.arn is not an IAM role ARN (then `problems` says why)."""
    namespace_names: frozenset[str] = frozenset()
    namespace_labels: Labels = ()
    resource_types: tuple[GroupVersionKind, ...] = ()
    resource_labels: Labels = ()
    problems: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> RoleSelector:
        name = str((obj.get("metadata") or {}).get("name") or "")
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        assert isinstance(spec, dict)
        problems: list[str] = []
        arn = spec.get("arn")
        role = None
        if not isinstance(arn, str) or not arn:
            problems.append("spec.arn is required: the ARN of the IAM role to assume")
            arn = "" if not isinstance(arn, str) else arn
        else:
            try:
                role = RoleEntry(RoleArn.parse(arn.strip()))
            except InvalidRoleArn as error:
                problems.append(f"spec.arn {arn!r} is not an IAM role ARN: {error}")
        ns_selector = _mapping(spec.get("namespaceSelector"), "spec.namespaceSelector", problems)
        names = _names(ns_selector.get("names"), problems)
        ns_labels = _match_labels(
            ns_selector.get("labelSelector"), "spec.namespaceSelector.labelSelector", problems
        )
        types = _resource_types(spec.get("resourceTypeSelector"), problems)
        resource_labels = _match_labels(
            spec.get("resourceLabelSelector"), "spec.resourceLabelSelector", problems
        )
        return cls(name, arn, role, names, ns_labels, types, resource_labels, tuple(problems))

    @property
    def valid(self) -> bool:
        return not self.problems

    def matches_namespace(self, namespace: str, namespace_labels: Labels) -> bool:
        if self.namespace_names and namespace not in self.namespace_names:
            return False
        return _subset(self.namespace_labels, namespace_labels)

    def matches_type(self, gvk: GroupVersionKind) -> bool:
        if not self.resource_types:
            return True
        return any(
            (not t.group or t.group == gvk.group)
            and (not t.version or t.version == gvk.version)
            and (not t.kind or t.kind == gvk.kind)
            for t in self.resource_types
        )

    def matches(
        self,
        namespace: str,
        namespace_labels: Labels,
        gvk: GroupVersionKind,
        resource_labels: Labels,
    ) -> bool:
        return (
            self.matches_namespace(namespace, namespace_labels)
            and self.matches_type(gvk)
            and _subset(self.resource_labels, resource_labels)
        )


def _mapping(value: Any, where: str, problems: list[str]) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where} must be an object")
        return {}
    return value


def _names(value: Any, problems: list[str]) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        problems.append("spec.namespaceSelector.names must be a list of namespace names")
        return frozenset()
    if "" in value:
        problems.append("spec.namespaceSelector.names holds an empty name")
    duplicates = sorted({n for n in value if value.count(n) > 1})
    if duplicates:
        problems.append(f"spec.namespaceSelector.names repeats {', '.join(duplicates)}")
    return frozenset(value)


def _match_labels(value: Any, where: str, problems: list[str]) -> Labels:
    selector = _mapping(value, where, problems)
    labels = selector.get("matchLabels")
    if labels is None:
        return ()
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        problems.append(f"{where}.matchLabels must map label keys to string values")
        return ()
    if "" in labels:
        problems.append(f"{where}.matchLabels has an empty label key")
    return tuple(sorted(labels.items()))


def _resource_types(value: Any, problems: list[str]) -> tuple[GroupVersionKind, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        problems.append("spec.resourceTypeSelector must be a list of {group, version, kind}")
        return ()
    types: list[GroupVersionKind] = []
    for index, entry in enumerate(value):
        gvk = GroupVersionKind(
            str(entry.get("group") or ""),
            str(entry.get("version") or ""),
            str(entry.get("kind") or ""),
        )
        if not (gvk.group or gvk.version or gvk.kind):
            problems.append(
                f"spec.resourceTypeSelector[{index}] names none of group, version or kind"
            )
        elif gvk in types:
            problems.append(f"spec.resourceTypeSelector[{index}] repeats an earlier entry")
        types.append(gvk)
    return tuple(types)
