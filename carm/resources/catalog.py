"""The resource kinds carm manages: one registration line per kind.

Everything else follows from this list: the controller watches, caches, queues and reconciles
each kind on its own (`carm.controllers`), `carm.resources.crds` renders each CRD to
deploy/crds, and the sandbox installs them. `check_catalog` refuses a list the controller
could not run: two kinds of one name (caches, events and controller-runtime's metric labels
are keyed by kind), a kind named like an infrastructure kind (Namespace, ...), or a CRD that
does not serve what its descriptor says.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from carm.events import INFRASTRUCTURE_KINDS
from carm.resources.kind import ResourceDescriptor, ResourceKind
from carm.resources.s3.bucket import BUCKET_KIND

RESOURCE_KINDS: tuple[ResourceKind, ...] = (BUCKET_KIND,)


class CatalogError(ValueError):
    """A list of resource kinds the controller cannot run."""


def check_catalog(kinds: Iterable[ResourceKind]) -> tuple[ResourceKind, ...]:
    """`kinds` as a tuple, once each registration is known to be usable."""
    checked = tuple(kinds)
    seen: dict[str, ResourceDescriptor] = {}
    for registration in checked:
        descriptor = registration.descriptor
        name = descriptor.kind
        if name in INFRASTRUCTURE_KINDS:
            raise CatalogError(
                f"resource kind {name} ({descriptor.api_version}) has the name of a kind the "
                "controller watches for account resolution"
            )
        other = seen.get(name) or seen.get(descriptor.controller_name)
        if other is not None:
            raise CatalogError(
                f"two resource kinds named {name}: {other.api_version} and "
                f"{descriptor.api_version} (caches, events and metrics are keyed by kind)"
            )
        seen[name] = seen[descriptor.controller_name] = descriptor
        problem = _crd_problem(descriptor, registration.crd)
        if problem:
            raise CatalogError(f"the CRD of {name} ({descriptor.api_version}) {problem}")
    return checked


def _crd_problem(descriptor: ResourceDescriptor, crd: dict[str, Any]) -> str | None:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    served = [v.get("name") for v in spec.get("versions") or () if v.get("served")]
    found = (spec.get("group"), names.get("kind"), names.get("plural"))
    wanted = (descriptor.group, descriptor.kind, descriptor.plural)
    if found != wanted:
        return f"has group, kind, plural {found}, its descriptor {wanted}"
    if descriptor.version not in served:
        return f"does not serve version {descriptor.version} (serves {served})"
    if spec.get("scope") != "Namespaced":
        # Accounts are resolved per namespace: a cluster-scoped kind has none.
        return f"is {spec.get('scope')}, not Namespaced"
    return None
