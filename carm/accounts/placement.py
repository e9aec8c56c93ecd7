"""Where in AWS a resource lives, besides the account: region, endpoint, deletion policy; and
drift, i.e. a resource whose recorded account or region no longer matches its configuration.

ACK's precedence, each value with the source it came from (for `carm explain`):

- region: `status.ackResourceMetadata.region` (where the resource was created), then the
  resource's annotation `services.k8s.aws/region`, then the namespace's
  `services.k8s.aws/default-region`, then `--aws-region`;
- endpoint: the namespace's `services.k8s.aws/endpoint-url`, then `--aws-endpoint-url`;
- deletion policy: the resource's `services.k8s.aws/deletion-policy`, then the namespace's
  `<service>.services.k8s.aws/deletion-policy` (`s3.` for a Bucket: the resource's own
  service), then `--deletion-policy` (default delete).

Where carm is stricter than ACK (each a Terminal condition naming the value and its source):

- a deletion policy other than `delete` or `retain` (ACK treats any other value as retain:
  a typo silently leaks the bucket);
- a region annotation that is not an AWS region name, an endpoint that is not an http(s) URL;
- drift: the resource's own region annotation names another region than the one recorded in
  its status (a bucket cannot move; ACK silently keeps using the old region). A changed
  namespace default or `--aws-region` is a default for *new* resources, so existing ones stay
  where they are and get an ACK.Advisory condition saying so;
- drift of the account: the status records another owner account than the one the resource
  resolves to now (a namespace re-annotated, a role remapped to another account). No AWS call is
  made for such a resource, not even a delete (`account_drift`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from carm.accounts.rules import (
    ANY_KIND,
    DEFAULT_REGION_ANNOTATION,
    DELETION_POLICY_SUFFIX,
    ENDPOINT_URL_ANNOTATION,
    NamespaceInfo,
    Resolution,
)
from carm.accounts.selectors import GroupVersionKind
from carm.events import RawObject
from carm.settings import DELETION_POLICIES

REGION_ANNOTATION = "services.k8s.aws/region"
DELETION_POLICY_ANNOTATION = "services.k8s.aws/deletion-policy"
STATUS_REGION = "status.ackResourceMetadata.region"
STATUS_ACCOUNT = "status.ackResourceMetadata.ownerAccountID"

REGION_PATTERN = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]+", re.ASCII)
"""Every AWS region name: us-east-1, us-gov-west-1, cn-north-1, ap-southeast-3, il-central-1."""


@dataclass(frozen=True, slots=True)
class PlacementDefaults:
    """The controller's flags: what applies when no annotation says otherwise."""

    region: str
    endpoint_url: str | None = None
    deletion_policy: str = "delete"


@dataclass(frozen=True, slots=True)
class Placement:
    region: str
    region_source: str
    endpoint_url: str | None
    endpoint_source: str
    deletion_policy: str
    deletion_policy_source: str
    advisories: tuple[str, ...] = ()
    """Things the user should know that do not stop the reconcile (ACK.Advisory)."""


@dataclass(frozen=True, slots=True)
class PlacementError:
    """A Terminal problem with the region, endpoint or deletion policy of a resource."""

    reason: str
    message: str


def _where(obj: RawObject) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind') or 'resource'} {meta.get('namespace')}/{meta.get('name')}"


def deletion_policy_of(
    obj: RawObject, namespace: NamespaceInfo | None, defaults: PlacementDefaults
) -> tuple[str, str] | PlacementError:
    """(deletion policy, its source), or a Terminal problem naming a value carm will not guess."""
    annotations: dict[str, Any] = (obj.get("metadata") or {}).get("annotations") or {}
    ns = namespace or NamespaceInfo(None)
    service = GroupVersionKind.of(obj, ANY_KIND).service
    policy, source = _first(
        (annotations.get(DELETION_POLICY_ANNOTATION), f"annotation {DELETION_POLICY_ANNOTATION}"),
        (
            ns.deletion_policy(service),
            f"namespace annotation {service}.{DELETION_POLICY_SUFFIX}",
        ),
        (defaults.deletion_policy, "--deletion-policy"),
    )
    if policy not in DELETION_POLICIES:
        return PlacementError(
            "InvalidDeletionPolicy",
            f"{_where(obj)}: deletion policy {policy!r} (from {source}) is neither 'delete' nor "
            "'retain'; carm will not guess (ACK would silently retain): fix the value",
        )
    return str(policy), source


def endpoint_of(
    obj: RawObject, namespace: NamespaceInfo | None, defaults: PlacementDefaults
) -> tuple[str | None, str] | PlacementError:
    """(endpoint URL or None for AWS' own, its source), or a Terminal problem."""
    ns = namespace or NamespaceInfo(None)
    endpoint, source = _first(
        (ns.endpoint_url, f"namespace annotation {ENDPOINT_URL_ANNOTATION}"),
        (defaults.endpoint_url, "--aws-endpoint-url"),
    )
    if endpoint is None:
        return None, "the AWS default endpoint"
    if not _is_http_url(endpoint):
        return PlacementError(
            "InvalidEndpointURL",
            f"{_where(obj)}: endpoint {endpoint!r} (from {source}) is not an http(s) URL",
        )
    return endpoint, source


def region_of(
    obj: RawObject, namespace: NamespaceInfo | None, defaults: PlacementDefaults
) -> tuple[str, str, tuple[str, ...]] | PlacementError:
    """(region, its source, advisories), or a Terminal problem (a bad value, region drift)."""
    annotations: dict[str, Any] = (obj.get("metadata") or {}).get("annotations") or {}
    ns = namespace or NamespaceInfo(None)
    where = _where(obj)
    own = annotations.get(REGION_ANNOTATION)
    if own is not None and not REGION_PATTERN.fullmatch(str(own)):
        return PlacementError(
            "InvalidRegion",
            f"{where}: annotation {REGION_ANNOTATION}={own!r} is not an AWS region name",
        )
    configured, configured_source = _first(
        (own, f"annotation {REGION_ANNOTATION}"),
        (ns.default_region, f"namespace annotation {DEFAULT_REGION_ANNOTATION}"),
        (defaults.region, "--aws-region"),
    )
    recorded = _recorded(obj, "region")
    if recorded is None:
        return str(configured), configured_source, ()
    if own is not None and own != recorded:
        return PlacementError(
            "RegionDrift",
            f"{where} was created in region {recorded} ({STATUS_REGION}), but its annotation "
            f"{REGION_ANNOTATION} now says {own}: a resource cannot move between regions; set "
            f"the annotation back to {recorded}, or create a new resource in {own}",
        )
    advisories: tuple[str, ...] = ()
    if configured != recorded:
        advisories = (
            f"{configured_source} now says region {configured}; this resource stays in "
            f"{recorded}, where it was created ({STATUS_REGION})",
        )
    return recorded, STATUS_REGION, advisories


def placement_of(
    obj: RawObject, namespace: NamespaceInfo | None, defaults: PlacementDefaults
) -> Placement | PlacementError:
    """The resource's full placement (region, endpoint, deletion policy), or its problem."""
    policy = deletion_policy_of(obj, namespace, defaults)
    if isinstance(policy, PlacementError):
        return policy
    endpoint = endpoint_of(obj, namespace, defaults)
    if isinstance(endpoint, PlacementError):
        return endpoint
    region = region_of(obj, namespace, defaults)
    if isinstance(region, PlacementError):
        return region
    value, source, advisories = region
    return Placement(value, source, *endpoint, *policy, advisories)


def account_drift(obj: RawObject, resolution: Resolution) -> str | None:
    """The Terminal message when the resource's status records another owner account than
    the one it resolves to now; None when there is no drift."""
    recorded = _recorded(obj, "ownerAccountID")
    if recorded is None or recorded == resolution.account_id:
        return None
    return (
        f"{_where(obj)} was created in account {recorded} ({STATUS_ACCOUNT}), but now resolves to "
        f"account {resolution.account_id} ({resolution.source}); carm makes no AWS call for it "
        f"(not even a delete) until it resolves to {recorded} again: restore the namespace's "
        "annotation or the role mapping, or remove the finalizer to let go of the resource"
    )


def _recorded(obj: RawObject, field: str) -> str | None:
    metadata = (obj.get("status") or {}).get("ackResourceMetadata") or {}
    value = metadata.get(field)
    return value if isinstance(value, str) and value else None


def _first(*candidates: tuple[str | None, str]) -> tuple[str | None, str]:
    for value, source in candidates:
        if value is not None and value != "":
            return value, source
    return None, ""


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
