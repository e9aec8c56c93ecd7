"""Resource URL paths, parsed into what they name.

    /api/v1[/watch]/namespaces/{ns}/{plural}[/{name}[/{subresource}]]
    /api/v1[/watch]/{plural}[/{name}[/{subresource}]]
    /apis/{group}/{version}/... (the same shapes)

`/api/v1/namespaces/{name}/status` and `/finalize` are the Namespace's own subresources, not a
collection called "status" in namespace {name}.
"""

from __future__ import annotations

from dataclasses import dataclass

_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(frozen=True, slots=True)
class Target:
    group: str
    version: str
    plural: str
    namespace: str | None = None  # None: cluster-scoped, or across all namespaces
    name: str | None = None
    subresource: str | None = None
    watch_path: bool = False  # the legacy /watch/ prefix


def parse(path: str) -> Target | None:
    """The target of a resource path, None when the path names no resource (e.g. `/api/v1`)."""
    segments = [segment for segment in path.split("/") if segment]
    if len(segments) >= 3 and segments[0] == "api":
        group, version, rest = "", segments[1], segments[2:]
    elif len(segments) >= 4 and segments[0] == "apis":
        group, version, rest = segments[1], segments[2], segments[3:]
    else:
        return None
    watch_path = bool(rest) and rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    if not rest or len(rest) > 5:
        return None
    namespace: str | None = None
    is_namespace_itself = (
        group == ""
        and rest[0] == "namespaces"
        and (len(rest) <= 2 or (len(rest) == 3 and rest[2] in _NAMESPACE_SUBRESOURCES))
    )
    if rest[0] == "namespaces" and len(rest) >= 3 and not is_namespace_itself:
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        return None
    return Target(
        group=group,
        version=version,
        plural=rest[0],
        namespace=namespace,
        name=rest[1] if len(rest) > 1 else None,
        subresource=rest[2] if len(rest) > 2 else None,
        watch_path=watch_path,
    )
