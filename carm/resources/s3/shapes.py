"""Spec values (ACK's lowerCamel names) to AWS request shapes and AWS responses back.

ACK derives every Bucket spec field from an S3 API member: `blockPublicACLs` is
`BlockPublicAcls`, `kmsMasterKeyID` is `KMSMasterKeyID`, `type_` is `Type`, `uRI` is `URI`.
The two names always agree once case and underscores are ignored, so one rule maps both ways:

- `to_aws` walks the botocore input shape of the Put call, so the request has exactly the
  members S3 defines, with AWS's spelling; it also checks enum values against the API model
  (botocore itself does not), so a typo such as `status: Enabeld` is reported with the field
  path and the allowed values instead of reaching S3 (or being silently accepted by moto).
- `from_aws` walks the CRD's spec schema, so a Get response comes back with the spec's
  spelling and only the fields the spec can express (MFADelete, EventBridgeConfiguration and
  other members ACK leaves out are dropped); timestamps become RFC 3339 strings.

A test checks that every schema property finds its botocore member, so the mapping cannot
silently lose a field.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

import botocore.session

from carm.resources.s3.crd import Schema


class SpecError(ValueError):
    """A spec value S3 cannot accept; `path` is the spec field, e.g. spec.versioning.status."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


def key(name: str) -> str:
    """The name both spellings share: lower case, no underscores."""
    return name.replace("_", "").lower()


@functools.cache
def s3_model() -> Any:
    """botocore's S3 service model (loaded once; ~30 ms)."""
    return botocore.session.get_session().get_service_model("s3")


def input_member(operation: str, member: str) -> Any:
    """The botocore shape of one member of an operation's input."""
    return s3_model().operation_model(operation).input_shape.members[member]


def to_aws(value: Any, shape: Any, path: str) -> Any:
    """`value` (spec spelling) as the request member of botocore `shape` (AWS spelling)."""
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise SpecError(path, f"expected an object, got {value!r}")
        members = {key(name): name for name in shape.members}
        request: dict[str, Any] = {}
        for field, item in value.items():
            name = members.get(key(field))
            if name is None or item is None:
                continue  # not an S3 member (a Kubernetes reference, say): the caller decides
            request[name] = to_aws(item, shape.members[name], f"{path}.{field}")
        return request
    if kind == "list":
        if not isinstance(value, list):
            raise SpecError(path, f"expected a list, got {value!r}")
        return [to_aws(item, shape.member, f"{path}[{index}]") for index, item in enumerate(value)]
    if kind == "string":
        allowed = getattr(shape, "enum", None) or []
        if allowed and value not in allowed:
            raise SpecError(path, f"{value!r} is not one of {', '.join(repr(a) for a in allowed)}")
        return value
    return value


def from_aws(value: Any, schema: Schema) -> Any:
    """An AWS response member (AWS spelling) in the spec's spelling and shape."""
    if value is None:
        return None
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return None
        properties: dict[str, Schema] = schema.get("properties") or {}
        fields = {key(name): name for name in properties}
        spec: dict[str, Any] = {}
        for name, item in value.items():
            field = fields.get(key(name))
            if field is not None:
                converted = from_aws(item, properties[field])
                if converted is not None:
                    spec[field] = converted
        return spec
    if kind == "array":
        if not isinstance(value, list):
            return None
        return [from_aws(item, schema.get("items") or {}) for item in value]
    if isinstance(value, datetime):
        return rfc3339(value)
    return value


def rfc3339(moment: datetime) -> str:
    """UTC, second precision, `Z`: the one spelling comparisons use."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, path: str) -> str:
    """A spec date-time in the spelling `rfc3339` produces."""
    try:
        return rfc3339(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise SpecError(path, f"{text!r} is not an RFC 3339 date-time") from None
