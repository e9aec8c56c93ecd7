"""Resource tags: ACK's `--resource-tags`, expanded per resource and merged with the spec's.

ACK tags every AWS resource it manages with `key=value` templates from `--resource-tags`,
by default `services.k8s.aws/controller-version=%CONTROLLER_SERVICE%-%CONTROLLER_VERSION%` and
`services.k8s.aws/namespace=%K8S_NAMESPACE%`. Values may use ACK's variables:
%CONTROLLER_SERVICE%, %CONTROLLER_VERSION%, %K8S_NAMESPACE%, %K8S_RESOURCE_NAME%,
%K8S_RESOURCE_KIND% and %MANAGED_BY% (the resource's `app.kubernetes.io/managed-by` label).
As in ACK, a tag whose value expands to nothing is left out rather than written empty.

The spec's own tags win over these defaults on a key conflict: a user who writes a tag in the
spec means it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from carm import __version__

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
CONTROLLER_VERSION = f"v{__version__}"


class ResourceTagError(ValueError):
    """A `--resource-tags` entry that is not `key=value`."""


def parse_resource_tags(entries: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """`key=value` templates (as the flag takes them) as (key, value template) pairs."""
    pairs: list[tuple[str, str]] = []
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or not key.strip():
            raise ResourceTagError(
                f"--resource-tags entries are key=value, got {entry!r} "
                "(e.g. team=payments or services.k8s.aws/namespace=%K8S_NAMESPACE%)"
            )
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


@dataclass(frozen=True, slots=True)
class TagContext:
    """What the template variables expand to for one resource."""

    service: str
    namespace: str
    name: str
    kind: str
    managed_by: str = ""

    def variables(self) -> dict[str, str]:
        return {
            "%CONTROLLER_SERVICE%": self.service,
            "%CONTROLLER_VERSION%": CONTROLLER_VERSION,
            "%K8S_NAMESPACE%": self.namespace,
            "%K8S_RESOURCE_NAME%": self.name,
            "%K8S_RESOURCE_KIND%": self.kind,
            "%MANAGED_BY%": self.managed_by,
        }


def expand(templates: Iterable[tuple[str, str]], context: TagContext) -> dict[str, str]:
    """The default tags of one resource."""
    variables = context.variables()
    tags: dict[str, str] = {}
    for key, template in templates:
        value = template
        for name, replacement in variables.items():
            value = value.replace(name, replacement)
        if value:
            tags[key] = value
    return tags


def merge(defaults: Mapping[str, str], spec_tags: Mapping[str, str]) -> dict[str, str]:
    """The tags to set: the defaults, then the spec's (the spec wins on a conflict)."""
    return {**defaults, **spec_tags}
