"""The bucket ACL: `spec.acl` (a canned ACL) or the `spec.grant*` headers, against GetBucketAcl.

The spec speaks in PutBucketAcl's request terms (a canned ACL name, or header values such as
`uri="http://acs.amazonaws.com/groups/global/AllUsers", id="..."`), while GetBucketAcl answers
with a list of grants. Both are turned into one set of (grantee kind, grantee, permission):

- a canned ACL expands the way S3 documents it, always with the owner's FULL_CONTROL (the
  owner's canonical id comes from the GetBucketAcl answer itself);
- grant headers replace the whole ACL: the owner keeps no explicit grant unless one is listed;
- a canned ACL and grant headers cannot be combined (S3 refuses the request).

Email grantees are stored by S3 as canonical ids, so they cannot be compared one by one: the
grants with other grantees must match and the number of grants must agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from carm.resources.s3.shapes import SpecError

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"

# spec field -> (PutBucketAcl member, permission in GetBucketAcl)
GRANT_FIELDS: dict[str, tuple[str, str]] = {
    "grantFullControl": ("GrantFullControl", "FULL_CONTROL"),
    "grantRead": ("GrantRead", "READ"),
    "grantReadACP": ("GrantReadACP", "READ_ACP"),
    "grantWrite": ("GrantWrite", "WRITE"),
    "grantWriteACP": ("GrantWriteACP", "WRITE_ACP"),
}
ACL_FIELDS = ("acl", *GRANT_FIELDS)

_CANNED_EXTRA: dict[str, tuple[tuple[str, str, str], ...]] = {
    "private": (),
    "public-read": (("uri", ALL_USERS, "READ"),),
    "public-read-write": (("uri", ALL_USERS, "READ"), ("uri", ALL_USERS, "WRITE")),
    "authenticated-read": (("uri", AUTHENTICATED_USERS, "READ"),),
}
_GRANTEE = re.compile(r'\s*(id|uri|emailAddress)\s*=\s*"?([^",]+)"?\s*(?:,|$)', re.IGNORECASE)

Grant = tuple[str, str, str]  # (id | uri | emailaddress, grantee, permission)


def acl_spec(spec: Mapping[str, Any]) -> dict[str, str]:
    """The ACL part of a Bucket spec (empty when the spec does not manage the ACL)."""
    chosen = {name: spec[name] for name in ACL_FIELDS if spec.get(name)}
    if "acl" in chosen and len(chosen) > 1:
        others = ", ".join(f"spec.{name}" for name in chosen if name != "acl")
        raise SpecError("spec.acl", f"a canned ACL cannot be combined with {others}")
    for name, value in chosen.items():
        if name != "acl":
            _parse_grantees(value, f"spec.{name}")
    if "acl" in chosen and chosen["acl"] not in _CANNED_EXTRA:
        allowed = ", ".join(repr(a) for a in _CANNED_EXTRA)
        raise SpecError("spec.acl", f"{chosen['acl']!r} is not one of {allowed}")
    return chosen


def put_request(desired: Mapping[str, str]) -> dict[str, str]:
    """PutBucketAcl's arguments (besides Bucket) for the ACL part of a spec."""
    if "acl" in desired or not desired:
        return {"ACL": desired.get("acl", "private")}
    return {GRANT_FIELDS[name][0]: value for name, value in desired.items()}


def grants_of(response: Mapping[str, Any]) -> set[Grant]:
    """The grants in a GetBucketAcl answer."""
    grants: set[Grant] = set()
    for grant in response.get("Grants") or []:
        grantee = grant.get("Grantee") or {}
        kind = str(grantee.get("Type", ""))
        if kind == "CanonicalUser":
            grants.add(("id", str(grantee.get("ID", "")), str(grant.get("Permission"))))
        elif kind == "Group":
            grants.add(("uri", str(grantee.get("URI", "")), str(grant.get("Permission"))))
        elif kind == "AmazonCustomerByEmail":
            email = str(grantee.get("EmailAddress", ""))
            grants.add(("emailaddress", email, str(grant.get("Permission"))))
    return grants


def wanted_grants(desired: Mapping[str, str], owner_id: str) -> set[Grant]:
    if "acl" in desired or not desired:
        canned = desired.get("acl", "private")
        return {("id", owner_id, "FULL_CONTROL"), *_CANNED_EXTRA[canned]}
    grants: set[Grant] = set()
    for name, value in desired.items():
        permission = GRANT_FIELDS[name][1]
        for kind, grantee in _parse_grantees(value, f"spec.{name}"):
            grants.add((kind, grantee, permission))
    return grants


def acl_satisfied(desired: Mapping[str, str], response: Mapping[str, Any]) -> bool:
    owner_id = str((response.get("Owner") or {}).get("ID", ""))
    wanted, actual = wanted_grants(desired, owner_id), grants_of(response)
    by_email = {g for g in wanted if g[0] == "emailaddress"}
    if not by_email:
        return wanted == actual
    return (wanted - by_email) <= actual and len(wanted) == len(actual)


def spec_of(response: Mapping[str, Any]) -> dict[str, str]:
    """The ACL part of a spec that describes this GetBucketAcl answer (for adoption)."""
    owner_id = str((response.get("Owner") or {}).get("ID", ""))
    actual = grants_of(response)
    for canned in _CANNED_EXTRA:
        if wanted_grants({"acl": canned}, owner_id) == actual:
            return {} if canned == "private" else {"acl": canned}
    spec: dict[str, str] = {}
    for name, (_, permission) in GRANT_FIELDS.items():
        grantees = sorted((kind, who) for kind, who, perm in actual if perm == permission)
        if grantees:
            spec[name] = ", ".join(f'{_header_kind(kind)}="{who}"' for kind, who in grantees)
    return spec


def _header_kind(kind: str) -> str:
    return "emailAddress" if kind == "emailaddress" else kind


def _parse_grantees(header: str, path: str) -> list[tuple[str, str]]:
    grantees: list[tuple[str, str]] = []
    position = 0
    text = header.strip()
    while position < len(text):
        match = _GRANTEE.match(text, position)
        if match is None:
            raise SpecError(
                path,
                f'{header!r} is not a list of grantees such as id="..." or uri="..." '
                '(or emailAddress="...")',
            )
        grantees.append((match.group(1).lower(), match.group(2).strip()))
        position = match.end()
    if not grantees:
        raise SpecError(path, "lists no grantee")
    return grantees
