"""Bucket policies compared as policies, not as text.

`spec.policy` is a JSON string, and S3 hands back its own rendering of what it stored: other
whitespace and key order, a one-element list where the spec had a string, a 12-digit account
principal expanded to its root ARN. Comparing text would see drift on every reconcile (a Put
every resync, forever); comparing the canonical form below sees only real changes.

Canonical form, from IAM's own rules:
- `Statement` is a list of statements, in no particular order (order has no meaning in IAM);
- `Action`/`NotAction`/`Resource`/`NotResource` and every principal and condition value are
  sets of strings; actions and condition keys are case-insensitive, so they are lower-cased;
- an account id principal `123456789012` equals `arn:<partition>:iam::123456789012:root`;
- a missing `Version` is IAM's default, "2008-10-17".
"""

from __future__ import annotations

import re
from typing import Any

import orjson

_ACCOUNT_ID = re.compile(r"^\d{12}$")
_SET_KEYS = ("Action", "NotAction", "Resource", "NotResource")
_CASELESS_KEYS = frozenset({"Action", "NotAction"})


class PolicyError(ValueError):
    """The policy is not a JSON object with a Statement."""


def parse_policy(text: str) -> dict[str, Any]:
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise PolicyError(f"not valid JSON ({error})") from None
    if not isinstance(document, dict) or "Statement" not in document:
        raise PolicyError("a policy is a JSON object with a Statement")
    return document


def canonical_policy(text: str, partition: str = "aws") -> dict[str, Any]:
    document = parse_policy(text)
    statements = document.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    canonical = [_statement(s, partition) for s in statements or [] if isinstance(s, dict)]
    result = {k: v for k, v in document.items() if k not in {"Statement", "Version"}}
    result["Version"] = document.get("Version") or "2008-10-17"
    result["Statement"] = sorted(canonical, key=orjson.dumps)
    return result


def same_policy(desired: str, observed: str | None, partition: str = "aws") -> bool:
    """True when `observed` (S3's rendering) grants exactly what `desired` (the spec) does."""
    if observed is None:
        return False
    try:
        return canonical_policy(desired, partition) == canonical_policy(observed, partition)
    except PolicyError:
        return False


def _strings(value: Any, *, caseless: bool = False) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return sorted({(str(v).lower() if caseless else str(v)) for v in values})


def _principal(value: Any, partition: str) -> Any:
    if not isinstance(value, dict):
        return _strings(value)
    result = {}
    for kind, principals in value.items():
        names = _strings(principals)
        if kind == "AWS":
            names = sorted(
                f"arn:{partition}:iam::{name}:root" if _ACCOUNT_ID.match(name) else name
                for name in names
            )
        result[kind] = names
    return result


def _condition(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    return {
        operator: {k.lower(): _strings(v) for k, v in tests.items()}
        if isinstance(tests, dict)
        else tests
        for operator, tests in value.items()
    }


def _statement(statement: dict[str, Any], partition: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in statement.items():
        if name in _SET_KEYS:
            result[name] = _strings(value, caseless=name in _CASELESS_KEYS)
        elif name in {"Principal", "NotPrincipal"}:
            result[name] = _principal(value, partition)
        elif name == "Condition":
            result[name] = _condition(value)
        else:
            result[name] = value
    return result
