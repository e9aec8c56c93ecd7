"""Errors as the real API server reports them: `Status` objects with the real reasons and codes.

Handlers raise `ApiError`; the server turns it into a JSON `Status` body with the same HTTP code.
Messages follow the apiserver's wording so clients (and people) that match on them keep working.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from carm.sandbox.kubeapi.registry import ResourceType


class ApiError(Exception):
    """A failed request, carrying everything its `Status` body needs."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details) if details else None
        self.headers = dict(headers) if headers else {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def qualified_resource(rtype: ResourceType) -> str:
    """`configmaps` or `buckets.s3.services.k8s.aws`: how messages name a resource."""
    return f"{rtype.plural}.{rtype.group}" if rtype.group else rtype.plural


def qualified_kind(rtype: ResourceType) -> str:
    """`ConfigMap` or `Bucket.s3.services.k8s.aws`: how validation messages name a kind."""
    return f"{rtype.kind}.{rtype.group}" if rtype.group else rtype.kind


def _resource_details(rtype: ResourceType, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": rtype.plural}
    if rtype.group:
        details["group"] = rtype.group
    return details


def not_found(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified_resource(rtype)} "{name}" not found',
        details=_resource_details(rtype, name),
    )


def namespace_not_found(namespace: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'namespaces "{namespace}" not found',
        details={"name": namespace, "kind": "namespaces"},
    )


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def already_exists(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified_resource(rtype)} "{name}" already exists',
        details=_resource_details(rtype, name),
    )


def conflict(rtype: ResourceType, name: str, why: str | None = None) -> ApiError:
    why = why or (
        "the object has been modified; please apply your changes to the latest version "
        "and try again"
    )
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified_resource(rtype)} "{name}": {why}',
        details=_resource_details(rtype, name),
    )


def invalid(rtype: ResourceType, name: str, causes: Sequence[Mapping[str, str]]) -> ApiError:
    """422 Invalid; each cause has `reason`, `message` and `field` (like `spec.name`)."""
    texts = [f"{cause['field']}: {cause['message']}" for cause in causes]
    summary = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details: dict[str, Any] = {"name": name, "kind": rtype.kind, "causes": list(causes)}
    if rtype.group:
        details["group"] = rtype.group
    return ApiError(
        422,
        "Invalid",
        f'{qualified_kind(rtype)} "{name}" is invalid: {summary}',
        details=details,
    )


def forbidden(rtype: ResourceType, name: str, why: str) -> ApiError:
    return ApiError(
        403,
        "Forbidden",
        f'{qualified_resource(rtype)} "{name}" is forbidden: {why}',
        details=_resource_details(rtype, name),
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str = "the server does not allow this method") -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> ApiError:
    del content_type  # the apiserver's text does not repeat it
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
    )


def too_many_requests(retry_after: int = 1) -> ApiError:
    return ApiError(
        429,
        "TooManyRequests",
        "the server has received too many requests and has asked us to try again later",
        details={"retryAfterSeconds": retry_after},
        headers={"Retry-After": str(retry_after)},
    )


def internal_error(why: str) -> ApiError:
    return ApiError(
        500,
        "InternalError",
        f"Internal error occurred: {why}",
        details={"causes": [{"message": why}]},
    )


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def for_code(code: int, why: str = "injected fault") -> ApiError:
    """An error of the given HTTP code, with the reason the real server gives that code."""
    if code == 429:
        return too_many_requests()
    if code == 500:
        return internal_error(why)
    reasons = {
        400: "BadRequest",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        405: "MethodNotAllowed",
        409: "Conflict",
        410: "Expired",
        415: "UnsupportedMediaType",
        422: "Invalid",
        503: "ServiceUnavailable",
        504: "Timeout",
    }
    return ApiError(code, reasons.get(code, "InternalError"), why)
