"""The role maps: ConfigMaps `ack-role-account-map` and `ack-role-team-map` parsed into roles.

Keys. In the account map a key is a 12-digit account id; in the team map a team id. Either may
carry a service prefix, `s3.<id>` (ACK's ServiceLevelCARM: one ConfigMap shared by several
controllers, each trying `<its service>.<id>` before `<id>`). Keys of other services
(`dynamodb.111111111111`) are valid: the map is shared, carm simply never reads them.

Values. Either a role ARN, exactly as ACK reads it, or a JSON object that adds what ACK cannot
express (community issues #2175 and #2933):

    {"roleARN": "arn:aws:iam::111111111111:role/s3", "externalID": "...",
     "sessionDurationSeconds": 3600, "sourceIdentity": "...", "sessionTags": {"team": "a"}}

Parsing never fails as a whole. A bad entry is kept as a `RoleMapEntryError` under its key, so
the namespaces that use that one key report exactly what is wrong (a Terminal condition naming
the ConfigMap, the key, the value and the problem) while every other key keeps working.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson

from carm.settings import ROLE_ACCOUNT_MAP_NAME, ROLE_TEAM_MAP_NAME

ACCOUNT_ID_PATTERN = re.compile(r"[0-9]{12}", re.ASCII)
"""Use with `fullmatch` (`$` would also accept a trailing newline)."""

TEAM_ID_PATTERN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?", re.ASCII)
"""A team id: 1-63 letters, digits, `.`, `_`, `-`, starting and ending alphanumeric (a valid
ConfigMap key and annotation value)."""

SERVICE_ALIAS_PATTERN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*", re.ASCII)

PARTITIONS = ("aws", "aws-cn", "aws-us-gov")

# IAM: the path is "/" or "/.../" of printable ASCII (U+0021..U+007E), at most 512 characters;
# the role name is 1..64 of [A-Za-z0-9+=,.@_-].
_ROLE_ARN = re.compile(
    r"arn:(?P<partition>aws|aws-cn|aws-us-gov):iam::(?P<account>[0-9]{12}):role"
    r"(?P<path>/(?:[\x21-\x7e]*/)?)(?P<name>[\w+=,.@-]{1,64})",
    re.ASCII,
)
_MAX_PATH = 512

# STS' limits on AssumeRole parameters (checked here so a bad entry is reported per key before
# any call; botocore would reject it only at call time, for every resource of the account).
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)
_SOURCE_IDENTITY = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
MIN_SESSION_SECONDS = 900
MAX_SESSION_SECONDS = 43_200
_MAX_SESSION_TAGS = 50

_JSON_FIELDS = ("roleARN", "externalID", "sessionDurationSeconds", "sourceIdentity", "sessionTags")


class InvalidRoleArn(ValueError):
    """A string that is not an IAM role ARN; the message says which part is wrong."""


class InvalidRoleEntry(ValueError):
    """A role-map value that cannot be used; the message says which part is wrong."""


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
class RoleEntry:
    """A role and how to assume it: one value of a role map (or an IAMRoleSelector's ARN)."""

    role: RoleArn
    external_id: str | None = None
    session_duration_seconds: int | None = None
    """None: the controller's default session length."""
    source_identity: str | None = None
    session_tags: tuple[tuple[str, str], ...] = ()
    """Sorted (key, value) pairs: hashable, and equal maps compare equal."""

    @property
    def arn(self) -> str:
        return self.role.arn

    @property
    def account_id(self) -> str:
        return self.role.account_id

    @property
    def partition(self) -> str:
        return self.role.partition

    @classmethod
    def parse(cls, value: str) -> RoleEntry:
        """A role ARN (ACK's format) or a JSON object; raises `InvalidRoleEntry`."""
        text = value.strip()
        if not text.startswith("{"):
            try:
                return cls(RoleArn.parse(text))
            except InvalidRoleArn as error:
                raise InvalidRoleEntry(f"not a valid IAM role ARN: {error}") from None
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError as error:
            raise InvalidRoleEntry(f"not valid JSON: {error}") from None
        return cls._from_json(document)

    @classmethod
    def _from_json(cls, document: Any) -> RoleEntry:
        if not isinstance(document, dict):
            raise InvalidRoleEntry("a JSON value must be an object")
        unknown = sorted(set(document) - set(_JSON_FIELDS))
        if unknown:
            raise InvalidRoleEntry(
                f"unknown field(s) {', '.join(map(repr, unknown))} "
                f"(accepted: {', '.join(_JSON_FIELDS)})"
            )
        arn = document.get("roleARN")
        if not isinstance(arn, str):
            raise InvalidRoleEntry("roleARN is required and must be a string")
        try:
            role = RoleArn.parse(arn.strip())
        except InvalidRoleArn as error:
            raise InvalidRoleEntry(
                f"roleARN {arn!r} is not a valid IAM role ARN: {error}"
            ) from None
        return cls(
            role,
            _external_id(document.get("externalID")),
            _duration(document.get("sessionDurationSeconds")),
            _source_identity(document.get("sourceIdentity")),
            _session_tags(document.get("sessionTags")),
        )

    def describe(self) -> str:
        """The role and the session options that are set, for messages and `carm explain`."""
        extras = []
        if self.external_id is not None:
            extras.append("an external id")
        if self.session_duration_seconds is not None:
            extras.append(f"{self.session_duration_seconds} s sessions")
        if self.source_identity is not None:
            extras.append(f"source identity {self.source_identity!r}")
        if self.session_tags:
            extras.append("session tags " + ",".join(k for k, _ in self.session_tags))
        return self.arn + (f" (with {', '.join(extras)})" if extras else "")


def _external_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _EXTERNAL_ID.fullmatch(value):
        raise InvalidRoleEntry(
            "externalID must be 2 to 1224 characters of letters, digits and +=,.@:/-"
        )
    return value


def _duration(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRoleEntry(f"sessionDurationSeconds must be a whole number, got {value!r}")
    if not MIN_SESSION_SECONDS <= value <= MAX_SESSION_SECONDS:
        raise InvalidRoleEntry(
            f"sessionDurationSeconds must be {MIN_SESSION_SECONDS}..{MAX_SESSION_SECONDS} "
            f"(STS' limits), got {value}"
        )
    return value


def _source_identity(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _SOURCE_IDENTITY.fullmatch(value):
        raise InvalidRoleEntry(
            "sourceIdentity must be 2 to 64 characters of letters, digits and +=,.@-"
        )
    return value


def _session_tags(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise InvalidRoleEntry("sessionTags must be an object of tag keys to string values")
    if len(value) > _MAX_SESSION_TAGS:
        raise InvalidRoleEntry(f"sessionTags may hold at most {_MAX_SESSION_TAGS} tags")
    for key, tag in value.items():
        if not 1 <= len(key) <= 128 or key.lower().startswith("aws:"):
            raise InvalidRoleEntry(
                f"session tag key {key!r} must be 1 to 128 characters, not starting with 'aws:'"
            )
        if not isinstance(tag, str) or len(tag) > 256:
            raise InvalidRoleEntry(f"session tag {key!r} needs a string value of <= 256 chars")
    return tuple(sorted(value.items()))


class MapKind(enum.Enum):
    """Which of ACK's two role maps, with the rule for its keys."""

    ACCOUNT = ROLE_ACCOUNT_MAP_NAME
    TEAM = ROLE_TEAM_MAP_NAME

    @property
    def configmap_name(self) -> str:
        return str(self.value)

    def valid_id(self, value: str) -> bool:
        pattern = ACCOUNT_ID_PATTERN if self is MapKind.ACCOUNT else TEAM_ID_PATTERN
        return pattern.fullmatch(value) is not None

    def key_problem(self, key: str) -> str | None:
        """Why `key` cannot be a key of this map, or None when it can."""
        if self.valid_id(key):
            return None
        service, dot, rest = key.partition(".")
        if dot and SERVICE_ALIAS_PATTERN.fullmatch(service) and self.valid_id(rest):
            return None
        if self is MapKind.ACCOUNT:
            return (
                "the key is not a 12-digit account id (or <service>.<account id>, "
                "e.g. s3.111111111111)"
            )
        return (
            "the key is not a team id (1-63 letters, digits, '.', '_' or '-', starting and "
            "ending with a letter or digit)"
        )


@dataclass(frozen=True, slots=True)
class RoleMapEntryError:
    """An entry of the ConfigMap that cannot be used, and why."""

    key: str
    value: str
    problem: str


@dataclass(frozen=True, slots=True)
class RoleMapHit:
    """What a lookup found: the key that matched and its role (or why it is unusable)."""

    key: str
    entry: RoleEntry | RoleMapEntryError


class RoleMap:
    """An immutable snapshot of one role-map ConfigMap's data."""

    __slots__ = ("_errors", "_raw", "_roles", "kind")

    def __init__(
        self,
        roles: Mapping[str, RoleEntry],
        errors: Mapping[str, RoleMapEntryError],
        raw: Mapping[str, str],
        kind: MapKind = MapKind.ACCOUNT,
    ) -> None:
        self._roles = MappingProxyType(dict(roles))
        self._errors = MappingProxyType(dict(errors))
        self._raw = MappingProxyType(dict(raw))
        self.kind = kind

    @classmethod
    def from_data(cls, data: Mapping[str, Any] | None, kind: MapKind = MapKind.ACCOUNT) -> RoleMap:
        """Parse a ConfigMap's `data` (None: a ConfigMap without data, i.e. an empty map)."""
        roles: dict[str, RoleEntry] = {}
        errors: dict[str, RoleMapEntryError] = {}
        raw: dict[str, str] = {}
        for key, value in (data or {}).items():
            text = value if isinstance(value, str) else repr(value)
            raw[key] = text
            problem = kind.key_problem(key)
            if problem is not None:
                errors[key] = RoleMapEntryError(key, text, problem)
                continue
            try:
                roles[key] = RoleEntry.parse(text)
            except InvalidRoleEntry as error:
                errors[key] = RoleMapEntryError(key, text, str(error))
        return cls(roles, errors, raw, kind)

    @classmethod
    def from_configmap(
        cls, configmap: Mapping[str, Any] | None, kind: MapKind = MapKind.ACCOUNT
    ) -> RoleMap | None:
        """Parse the ConfigMap object; None stays None (the ConfigMap does not exist)."""
        if configmap is None:
            return None
        return cls.from_data(configmap.get("data"), kind)

    def lookup(self, id_: str, service: str | None = None) -> RoleMapHit | None:
        """The entry for `id_`: `<service>.<id_>` first when `service` is given, then `<id_>`."""
        keys = [f"{service}.{id_}", id_] if service else [id_]
        for key in keys:
            entry = self._roles.get(key) or self._errors.get(key)
            if entry is not None:
                return RoleMapHit(key, entry)
        return None

    @property
    def roles(self) -> Mapping[str, RoleEntry]:
        return self._roles

    @property
    def errors(self) -> Mapping[str, RoleMapEntryError]:
        return self._errors

    @property
    def raw(self) -> Mapping[str, str]:
        return self._raw

    def changed_keys(self, other: RoleMap | None) -> frozenset[str]:
        """Keys whose raw value differs between the two maps (added, removed or changed)."""
        theirs = other._raw if other is not None else MappingProxyType({})
        keys = self._raw.keys() | theirs.keys()
        return frozenset(key for key in keys if self._raw.get(key) != theirs.get(key))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RoleMap) and self.kind is other.kind and self._raw == other._raw

    def __hash__(self) -> int:
        return hash((self.kind, frozenset(self._raw.items())))

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return (
            f"RoleMap({self.kind.configmap_name}, roles={dict(self._roles)!r}, "
            f"errors={dict(self._errors)!r})"
        )


def is_role_account_map(obj: Mapping[str, Any], system_namespace: str) -> bool:
    """Whether a ConfigMap object is the role map the controller reads."""
    meta = obj.get("metadata") or {}
    return bool(
        meta.get("name") == ROLE_ACCOUNT_MAP_NAME and meta.get("namespace") == system_namespace
    )
