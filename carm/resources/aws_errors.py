"""AWS errors as reconcile errors: Terminal when the request itself is wrong, else Recoverable.

The line is drawn by what a retry of the same request can achieve:

- Terminal: botocore's own parameter validation; HTTP 400 and other 4xx answers that judge
  the request (InvalidBucketName, MalformedXML, MalformedPolicy, InvalidTag, ...), and the
  codes a kind names itself. The message is AWS's, prefixed with what carm was doing and
  where, so the condition says what to fix.
- Recoverable: throttling (whatever its status: S3 says SlowDown with 503, others
  Throttling with 400), 5xx, timeouts, expired credentials, conflicts that pass
  (OperationAborted), AccessDenied (a policy can be fixed without touching the resource), and
  failures without any answer (an unreachable endpoint). The reconcile loop retries them with
  per-key exponential backoff.
"""

from __future__ import annotations

from collections.abc import Collection

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from carm.reconcile.errors import ReconcileError, RecoverableError, TerminalError
from carm.reconcile.interfaces import AwsTarget

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "SlowDown",
        "PriorRequestNotComplete",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "OperationAborted",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "InternalError",
        "ServiceUnavailable",
    }
)
ACCESS_CODES = frozenset({"AccessDenied", "AccessDeniedException", "AllAccessDisabled"})


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def http_status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def describe(error: ClientError) -> str:
    """AWS's own words: `Code: Message`."""
    details = error.response.get("Error", {})
    return f"{details.get('Code', 'Error')}: {details.get('Message') or str(error)}"


def classify(
    error: Exception,
    doing: str,
    aws: AwsTarget,
    *,
    terminal_codes: Collection[str] = (),
) -> ReconcileError:
    """`error` (raised by an AWS call made while `doing`) as a reconcile error."""
    where = f"{doing} in account {aws.account_id}, region {aws.region}"
    if isinstance(error, ParamValidationError):
        return TerminalError(f"{where}: {error}", reason="InvalidParameter")
    if isinstance(error, ClientError):
        return _classify_answer(error, where, aws, terminal_codes)
    if isinstance(error, BotoCoreError):
        return RecoverableError(f"{where}: {error}", reason="AWSUnreachable")
    return RecoverableError(f"{where}: {type(error).__name__}: {error}", reason="InternalError")


def _classify_answer(
    error: ClientError, where: str, aws: AwsTarget, terminal_codes: Collection[str]
) -> ReconcileError:
    code, status = error_code(error), http_status(error)
    message = f"{where}: {describe(error)}"
    reason = code or f"HTTP{status}"
    if code in THROTTLING_CODES or code in TRANSIENT_CODES or status == 429 or status >= 500:
        return RecoverableError(message, reason=reason)
    if code in ACCESS_CODES or status == 403:
        role = aws.role_arn or "the controller's own identity"
        return RecoverableError(f"{message} (acting as {role})", reason="AccessDenied")
    if code in terminal_codes or (400 <= status < 500 and status not in {404, 408, 409}):
        return TerminalError(message, reason=reason)
    if 300 <= status < 400:  # PermanentRedirect: the bucket lives in another region
        return TerminalError(message, reason=reason)
    return RecoverableError(message, reason=reason)
