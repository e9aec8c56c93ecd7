"""The role map: ConfigMap `ack-role-account-map` parsed into account id -> IAM role ARN.

Parsing never fails as a whole. A bad entry (a key that is not a 12-digit account id, a value
that is not an IAM role ARN) is kept as a `RoleMapEntryError` under its key, so the namespaces
of that one account report exactly what is wrong while every other account keeps working.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from carm.settings import ROLE_ACCOUNT_MAP_NAME

ACCOUNT_ID_PATTERN = re.compile(r"[0-9]{12}", re.ASCII)
"""Use with `fullmatch` (`$` would also accept a trailing newline)."""

PARTITIONS = ("aws", "aws-cn", "aws-us-gov")

# IAM: the path is "/" or "/.../" of printable ASCII (U+0021..U+007E), at most 512 characters;
# the role name is 1..64 of [A-Za-z0-9+=,.@_-].
_ROLE_ARN = re.compile(
    r"arn:(?P<partition>aws|aws-cn|aws-us-gov):iam::(?P<account>[0-9]{12}):role"
    r"(?P<path>/(?:[\x21-\x7e]*/)?)(?P<name>[\w+=,.@-]{1,64})",
    re.ASCII,
)
_MAX_PATH = 512


class InvalidRoleArn(ValueError):
    """A string that is not an IAM role ARN; the message says which part is wrong."""


@dataclass(frozen=True, slots=True)
class RoleArn:
    arn: str
    partition: str
    account_id: str
    path: str
    name: str

    @classmethod
    def parse(cls, value: str) -> RoleArn:
        match = _ROLE_ARN.fullmatch(value)
        if match is None:
            raise InvalidRoleArn(_why_not_a_role_arn(value))
        if len(match["path"]) > _MAX_PATH:
            raise InvalidRoleArn(f"the role path is longer than {_MAX_PATH} characters")
        return cls(value, match["partition"], match["account"], match["path"], match["name"])

    def __str__(self) -> str:
        return self.arn


def _why_not_a_role_arn(value: str) -> str:
    """The first thing that is wrong, in the words of the ARN format."""
    parts = value.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        return "expected arn:<partition>:iam::<12-digit account id>:role/<name>"
    _, partition, service, region, account, resource = parts
    if partition not in PARTITIONS:
        return f"unknown partition {partition!r} (expected one of {', '.join(PARTITIONS)})"
    if service != "iam":
        return f"service is {service!r}, expected 'iam'"
    if region:
        return f"IAM ARNs have no region, found {region!r}"
    if not ACCOUNT_ID_PATTERN.fullmatch(account):
        return f"account {account!r} is not a 12-digit AWS account id"
    if not resource.startswith("role/"):
        return f"resource {resource!r} is not a role (expected role/<name>)"
    return "the role name may only hold letters, digits and +=,.@_- (1 to 64 of them)"


@dataclass(frozen=True, slots=True)
class RoleMapEntryError:
    """An entry of the ConfigMap that cannot be used, and why."""

    account_id: str
    value: str
    problem: str


class RoleMap:
    """An immutable snapshot of the ConfigMap's data."""

    __slots__ = ("_errors", "_raw", "_roles")

    def __init__(
        self,
        roles: Mapping[str, RoleArn],
        errors: Mapping[str, RoleMapEntryError],
        raw: Mapping[str, str],
    ) -> None:
        self._roles = MappingProxyType(dict(roles))
        self._errors = MappingProxyType(dict(errors))
        self._raw = MappingProxyType(dict(raw))

    @classmethod
    def from_data(cls, data: Mapping[str, Any] | None) -> RoleMap:
        """Parse a ConfigMap's `data` (None: a ConfigMap without data, i.e. an empty map)."""
        roles: dict[str, RoleArn] = {}
        errors: dict[str, RoleMapEntryError] = {}
        raw: dict[str, str] = {}
        for key, value in (data or {}).items():
            text = value if isinstance(value, str) else repr(value)
            raw[key] = text
            if not ACCOUNT_ID_PATTERN.fullmatch(key):
                errors[key] = RoleMapEntryError(key, text, "the key is not a 12-digit account id")
                continue
            try:
                roles[key] = RoleArn.parse(text.strip())
            except InvalidRoleArn as error:
                errors[key] = RoleMapEntryError(key, text, f"not a valid IAM role ARN: {error}")
        return cls(roles, errors, raw)

    @classmethod
    def from_configmap(cls, configmap: Mapping[str, Any] | None) -> RoleMap | None:
        """Parse the ConfigMap object; None stays None (the ConfigMap does not exist)."""
        if configmap is None:
            return None
        return cls.from_data(configmap.get("data"))

    def lookup(self, account_id: str) -> RoleArn | RoleMapEntryError | None:
        """The role for `account_id`, the reason its entry is unusable, or None if absent."""
        return self._roles.get(account_id) or self._errors.get(account_id)

    @property
    def roles(self) -> Mapping[str, RoleArn]:
        return self._roles

    @property
    def errors(self) -> Mapping[str, RoleMapEntryError]:
        return self._errors

    def changed_accounts(self, other: RoleMap | None) -> frozenset[str]:
        """Keys whose raw value differs between the two maps (added, removed or changed)."""
        theirs = other._raw if other is not None else MappingProxyType({})
        keys = self._raw.keys() | theirs.keys()
        return frozenset(key for key in keys if self._raw.get(key) != theirs.get(key))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RoleMap) and self._raw == other._raw

    def __hash__(self) -> int:
        return hash(frozenset(self._raw.items()))

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return f"RoleMap(roles={dict(self._roles)!r}, errors={dict(self._errors)!r})"


def is_role_account_map(obj: Mapping[str, Any], system_namespace: str) -> bool:
    """Whether a ConfigMap object is the role map the controller reads."""
    meta = obj.get("metadata") or {}
    return bool(
        meta.get("name") == ROLE_ACCOUNT_MAP_NAME and meta.get("namespace") == system_namespace
    )
