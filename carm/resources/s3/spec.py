"""A Bucket spec, validated, as what carm will ask of S3 (`Desired`).

Which sub-configurations a spec manages:
- every sub-configuration field the spec sets (`versioning`, `policy`, `lifecycle`, ...);
- `acl` when `acl` or any `grant*` field is set (one GetBucketAcl covers them all);
- `ownershipControls` when it or `objectOwnership` is set: `objectOwnership` is CreateBucket's
  shorthand for one ownership rule, and is kept true afterwards the same way;
- `tagging` whenever there is a tag to set: the controller's `--resource-tags` (ACK's defaults
  are on unless the flag is emptied) merged with `spec.tagging` (the spec wins on a conflict);
- `objectLockEnabledForBucket` when set.

`analytics`, `intelligentTiering`, `inventory` and `metrics` are in ACK's schema and accepted,
but not managed: an Advisory condition says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from carm.events import RawObject
from carm.reconcile.errors import TerminalError
from carm.reconcile.interfaces import AwsTarget
from carm.resources.kind import Desired
from carm.resources.s3.acl import ACL_FIELDS, acl_spec
from carm.resources.s3.crd import KIND
from carm.resources.s3.shapes import SpecError, input_member, to_aws
from carm.resources.s3.subconfigs import SUBCONFIGS
from carm.resources.tags import MANAGED_BY_LABEL, TagContext, expand, merge

UNMANAGED = ("analytics", "intelligentTiering", "inventory", "metrics")

_PLAIN = (
    "publicAccessBlock",
    "policy",
    "versioning",
    "replication",
    "encryption",
    "lifecycle",
    "cors",
    "website",
    "logging",
    "accelerate",
    "requestPayment",
    "notification",
)


MANAGED_SPEC_FIELDS = (
    *_PLAIN,
    *ACL_FIELDS,
    "ownershipControls",
    "objectOwnership",
    "objectLockEnabledForBucket",
    "tagging",
)
"""Every spec field carm keeps true in S3 (besides name and createBucketConfiguration, which
are fixed at creation)."""


def desired_bucket(
    obj: RawObject, aws: AwsTarget, resource_tags: Iterable[tuple[str, str]]
) -> Desired:
    """The validated spec; Terminal (naming the field and value) when S3 could not take it."""
    spec: Mapping[str, Any] = obj.get("spec") or {}
    try:
        # Create options first: an objectOwnership typo is then named as the user wrote it,
        # not as the ownership rule it also becomes.
        create = _create_options(spec, aws)
        fields = _fields(spec, _default_tags(obj, resource_tags))
    except SpecError as error:
        raise TerminalError(f"invalid spec: {error}", reason="InvalidSpec") from None
    unmanaged = tuple(name for name in UNMANAGED if spec.get(name))
    return Desired(fields, create, unmanaged)


def _fields(spec: Mapping[str, Any], default_tags: Mapping[str, str]) -> dict[str, Any]:
    fields: dict[str, Any] = {name: spec[name] for name in _PLAIN if spec.get(name) is not None}
    ownership = _ownership(spec)
    if ownership is not None:
        fields["ownershipControls"] = ownership
    acl = acl_spec(spec)
    if acl:
        fields["acl"] = acl
    if spec.get("objectLockEnabledForBucket") is not None:
        fields["objectLockEnabledForBucket"] = spec["objectLockEnabledForBucket"]
    tags = merge(default_tags, _spec_tags(spec))
    if tags or spec.get("tagging") is not None:
        fields["tagging"] = tags
    _check_references(spec)
    for name, value in fields.items():
        SUBCONFIGS[name].validate(value)
    return fields


def _ownership(spec: Mapping[str, Any]) -> Any:
    controls, shorthand = spec.get("ownershipControls"), spec.get("objectOwnership")
    if shorthand is None:
        return controls
    from_shorthand = {"rules": [{"objectOwnership": shorthand}]}
    if controls is not None and controls != from_shorthand:
        raise SpecError(
            "spec.objectOwnership",
            f"{shorthand!r} contradicts spec.ownershipControls; set one of them",
        )
    return from_shorthand


def _spec_tags(spec: Mapping[str, Any]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for index, tag in enumerate((spec.get("tagging") or {}).get("tagSet") or []):
        key = str((tag or {}).get("key") or "")
        if not key:
            raise SpecError(f"spec.tagging.tagSet[{index}]", "a tag needs a key")
        if key in tags:
            raise SpecError(f"spec.tagging.tagSet[{index}]", f"tag {key!r} appears twice")
        tags[key] = str(tag.get("value") or "")
    return tags


def _default_tags(obj: RawObject, templates: Iterable[tuple[str, str]]) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    context = TagContext(
        service="s3",
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        kind=KIND,
        managed_by=str((meta.get("labels") or {}).get(MANAGED_BY_LABEL) or ""),
    )
    return expand(templates, context)


def _check_references(spec: Mapping[str, Any]) -> None:
    rules = (spec.get("encryption") or {}).get("rules") or []
    for index, rule in enumerate(rules):
        default = (rule or {}).get("applyServerSideEncryptionByDefault") or {}
        if default.get("kmsMasterKeyRef"):
            raise SpecError(
                f"spec.encryption.rules[{index}].applyServerSideEncryptionByDefault."
                "kmsMasterKeyRef",
                "carm does not resolve references to other resources; set kmsMasterKeyID to "
                "the key's ARN instead",
            )


def _create_options(spec: Mapping[str, Any], aws: AwsTarget) -> dict[str, Any]:
    """CreateBucket's arguments besides Bucket, and the region the bucket must be in."""
    constraint = (spec.get("createBucketConfiguration") or {}).get("locationConstraint")
    region = "eu-west-1" if constraint == "EU" else str(constraint or aws.region)
    options: dict[str, Any] = {"region": region}
    if region != "us-east-1":  # S3 refuses us-east-1 as a LocationConstraint
        options["CreateBucketConfiguration"] = {"LocationConstraint": constraint or region}
    if spec.get("objectLockEnabledForBucket"):
        options["ObjectLockEnabledForBucket"] = True
    if spec.get("objectOwnership"):
        shape = input_member("CreateBucket", "ObjectOwnership")
        options["ObjectOwnership"] = to_aws(spec["objectOwnership"], shape, "spec.objectOwnership")
    return options
