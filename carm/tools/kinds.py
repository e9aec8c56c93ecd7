"""The resource kinds the tools serve, and how a user names one.

The tools serve what the controller serves: the catalog's kinds (`SERVED_KINDS`). Each tool
function takes them as an argument, defaulting to the catalog, so a kind added to the catalog
needs no edit here, and tests can pass a kind of their own.

`carm explain` takes KIND/NAME as kubectl does: the kind's singular or plural name, alone or
qualified by its API group (`bucket`, `buckets.s3.services.k8s.aws`) or by version and group
(`buckets.v1alpha1.s3.services.k8s.aws`), in any case.

Objects read from the API get their apiVersion and kind set when they lack them (list items
may): the resolver reads them (service-level role-map keys, IAMRoleSelectors by type), and so
does placement (the namespace's `<service>.services.k8s.aws/deletion-policy`).
"""

from __future__ import annotations

from collections.abc import Sequence

from carm.events import RawObject
from carm.resources.catalog import RESOURCE_KINDS
from carm.resources.kind import ResourceDescriptor

SERVED_KINDS: tuple[ResourceDescriptor, ...] = tuple(kind.descriptor for kind in RESOURCE_KINDS)

ANY_NAME = "*"
"""The name of the example resource a namespace-level question is answered for."""


def names_of(descriptor: ResourceDescriptor) -> frozenset[str]:
    """Every name kubectl accepts for the kind, in lower case."""
    group, version = descriptor.group, descriptor.version
    names: set[str] = set()
    for name in (descriptor.kind.lower(), descriptor.plural.lower()):
        names |= {name, f"{name}.{group}", f"{name}.{version}.{group}"}
    return frozenset(names)


def kind_named(name: str, kinds: Sequence[ResourceDescriptor]) -> ResourceDescriptor | None:
    """The served kind `name` names, or None."""
    wanted = name.lower()
    return next((kind for kind in kinds if wanted in names_of(kind)), None)


def served_kinds_in_words(kinds: Sequence[ResourceDescriptor]) -> str:
    """E.g. "bucket (buckets.s3.services.k8s.aws)": for messages naming what carm serves."""
    return ", ".join(f"{kind.kind.lower()} ({kind.plural}.{kind.group})" for kind in kinds)


def typed(obj: RawObject, kind: ResourceDescriptor) -> RawObject:
    """`obj` with its apiVersion and kind set, if it lacked them."""
    obj.setdefault("apiVersion", kind.api_version)
    obj.setdefault("kind", kind.kind)
    return obj


def any_resource(kind: ResourceDescriptor, namespace: str) -> RawObject:
    """A resource of `kind` in `namespace` with no labels or annotations: what a question about
    the namespace as a whole is answered for."""
    return {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "metadata": {"namespace": namespace, "name": ANY_NAME},
    }
