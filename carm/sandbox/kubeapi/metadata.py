"""Object metadata the server owns: uid, timestamps, generated names, generation, name rules."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from typing import Any

# The fields of ObjectMeta a client may send; anything else is an unknown field.
OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)

# Fields the server sets and clients cannot change by writing the object.
SERVER_OWNED_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds")

_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # as the apiserver: no vowels, no 0/1/3
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


def now_rfc3339() -> str:
    """Seconds-precision UTC timestamp, as the apiserver writes creationTimestamp."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def new_uid() -> str:
    return str(uuid.uuid4())


def generated_name(prefix: str) -> str:
    """`generateName` plus a random 5-character suffix (the prefix is cut to keep 63 chars)."""
    suffix = "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))
    return prefix[: 63 - 5] + suffix


def name_problem(name: str, *, label: bool) -> str | None:
    """Why `name` is not a valid object name (DNS-1123 label or subdomain), or None."""
    if label:
        if len(name) > 63:
            return "must be no more than 63 characters"
        if not _DNS1123_LABEL.match(name):
            return (
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                "or '-', and must start and end with an alphanumeric character (e.g. 'my-name',"
                "  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            )
        return None
    if len(name) > 253:
        return "must be no more than 253 characters"
    if not _DNS1123_SUBDOMAIN.match(name):
        return (
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character (e.g. "
            "'example.com', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        )
    return None


_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def _key_problem(key: str) -> str | None:
    """Why `key` is not a qualified name (`[prefix/]name`, as label and annotation keys)."""
    prefix, _, name = key.rpartition("/")
    if prefix and name_problem(prefix, label=False):
        return "prefix part " + (name_problem(prefix, label=False) or "")
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not _NAME_PART.match(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
            "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        )
    return None


def meta_problems(meta: dict[str, Any]) -> list[dict[str, str]]:
    """Invalid label keys and values and annotation keys, as 422 causes."""
    causes: list[dict[str, str]] = []

    def invalid(field: str, value: str, why: str) -> None:
        causes.append(
            {
                "reason": "FieldValueInvalid",
                "field": field,
                "message": f'Invalid value: "{value}": {why}',
            }
        )

    for key, value in (meta.get("labels") or {}).items():
        problem = _key_problem(key)
        if problem:
            invalid("metadata.labels", key, problem)
        if len(value) > 63:
            invalid("metadata.labels", value, "must be no more than 63 characters")
        elif not _LABEL_VALUE.match(value):
            invalid(
                "metadata.labels",
                value,
                "a valid label must be an empty string or consist of alphanumeric characters, "
                "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
                "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            )
    for key in meta.get("annotations") or {}:
        problem = _key_problem(key)
        if problem:
            invalid("metadata.annotations", key, problem)
    return causes


def spec_changed(old: dict[str, Any], new: dict[str, Any], *, status_is_separate: bool) -> bool:
    """Whether a write changes anything that bumps `metadata.generation`.

    As for custom resources on the real server: everything but `metadata`, and but `status`
    when the kind has a status subresource.
    """
    skipped = {"metadata", "status"} if status_is_separate else {"metadata"}
    keys = (set(old) | set(new)) - skipped
    return any(old.get(key) != new.get(key) for key in keys)
