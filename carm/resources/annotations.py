"""ACK's per-resource annotations that change how a resource is reconciled.

- `services.k8s.aws/adoption-policy`: `adopt` takes over an AWS resource that exists and fails
  when it does not; the spec is then rewritten from what AWS has (ACK's rule: with `adopt` AWS
  is the source of truth once, at adoption). `adopt-or-create` takes the resource over when it
  exists, creates it otherwise, and makes AWS match the spec either way.
- `services.k8s.aws/adoption-fields`: a JSON object naming the AWS resource to adopt, e.g.
  `{"name": "my-bucket"}`, so that an `adopt` manifest needs no spec.
- `services.k8s.aws/read-only: "true"`: observe and report, never write to AWS (not even on
  deletion).

The deletion policy annotation is read where the other deletion-policy sources are
(`carm.accounts.targets`), not here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from carm.events import RawObject
from carm.reconcile.errors import TerminalError

ADOPTION_POLICY = "services.k8s.aws/adoption-policy"
ADOPTION_FIELDS = "services.k8s.aws/adoption-fields"
READ_ONLY = "services.k8s.aws/read-only"


class Adoption(enum.StrEnum):
    NONE = ""
    ADOPT = "adopt"
    ADOPT_OR_CREATE = "adopt-or-create"


@dataclass(frozen=True, slots=True)
class ResourcePolicy:
    adoption: Adoption = Adoption.NONE
    adoption_fields: Mapping[str, Any] = field(default_factory=dict)
    read_only: bool = False


def policy_of(obj: RawObject) -> ResourcePolicy:
    """The annotations of `obj`; a value carm cannot read is Terminal (naming it)."""
    annotations: dict[str, Any] = (obj.get("metadata") or {}).get("annotations") or {}
    return ResourcePolicy(
        _adoption(annotations.get(ADOPTION_POLICY)),
        _adoption_fields(annotations.get(ADOPTION_FIELDS)),
        _read_only(annotations.get(READ_ONLY)),
    )


def _adoption(value: Any) -> Adoption:
    text = str(value or "").strip()
    try:
        return Adoption(text)
    except ValueError:
        raise TerminalError(
            f"annotation {ADOPTION_POLICY}={text!r} is not adopt or adopt-or-create",
            reason="InvalidAnnotation",
        ) from None


def _adoption_fields(value: Any) -> Mapping[str, Any]:
    if not value:
        return {}
    try:
        fields = orjson.loads(str(value))
    except orjson.JSONDecodeError as error:
        raise TerminalError(
            f"annotation {ADOPTION_FIELDS} is not JSON ({error}): {value!r}",
            reason="InvalidAnnotation",
        ) from None
    if not isinstance(fields, dict):
        raise TerminalError(
            f'annotation {ADOPTION_FIELDS} must be a JSON object such as {{"name": "..."}}, '
            f"got {value!r}",
            reason="InvalidAnnotation",
        )
    return fields


def _read_only(value: Any) -> bool:
    text = str(value or "false").strip().lower()
    if text not in {"true", "false"}:
        raise TerminalError(
            f"annotation {READ_ONLY}={value!r} is not true or false", reason="InvalidAnnotation"
        )
    return text == "true"
