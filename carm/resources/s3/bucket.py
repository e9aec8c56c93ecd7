"""The S3 Bucket kind: its AWS side behind the `ResourceManager` interface.

Cost per reconcile: a bucket that carm has created before (status carries its ARN) is read with
one HeadBucket; only a missing bucket costs a CreateBucket. Ownership is settled at creation:
S3 bucket names are global, and CreateBucket answers BucketAlreadyExists when another account
owns the name (then the resource is Terminal, never adopted silently). HeadBucket passes
ExpectedBucketOwner, so a real S3 refuses to confirm a bucket some other account re-created.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from carm.events import RawObject
from carm.reconcile.errors import RecoverableError, TerminalError
from carm.reconcile.interfaces import AwsTarget
from carm.resources.s3.crd import GROUP, KIND

FINALIZER = f"finalizers.{GROUP}/{KIND}"

# AWS error codes that mean the request itself is wrong: retrying the same spec cannot help.
_INVALID_REQUEST_CODES = frozenset(
    {
        "InvalidBucketName",
        "InvalidLocationConstraint",
        "IllegalLocationConstraintException",
        "MalformedXML",
        "InvalidArgument",
        "InvalidRequest",
    }
)


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _status_code(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _describe(error: ClientError) -> str:
    details = error.response.get("Error", {})
    return f"{details.get('Code', 'Error')}: {details.get('Message', str(error))}"


class BucketManager:
    """Creates, reads and deletes S3 buckets in the account the namespace resolved to."""

    finalizer = FINALIZER

    async def sync(self, obj: RawObject, aws: AwsTarget) -> dict[str, Any]:
        name = _bucket_name(obj)
        recorded = ((obj.get("status") or {}).get("ackResourceMetadata") or {}).get("arn")
        arn = f"arn:{aws.partition}:s3:::{name}"
        if recorded and recorded != arn:
            raise TerminalError(
                f"spec.name is immutable: this resource manages the bucket {recorded}, "
                f"but spec.name now says {name!r}; set it back or create a new Bucket",
                reason="ImmutableField",
            )
        s3 = await aws.client("s3")
        if not recorded or not await self._exists(s3, name, aws):
            await self._create(s3, obj, name, aws)
        return {
            "ackResourceMetadata": {
                "arn": arn,
                "ownerAccountID": aws.account_id,
                "region": aws.region,
                "partition": aws.partition,
            },
            "location": f"/{name}",
        }

    async def delete(self, obj: RawObject, aws: AwsTarget) -> None:
        name = _bucket_name(obj)
        s3 = await aws.client("s3")
        try:
            await s3.delete_bucket(Bucket=name, ExpectedBucketOwner=aws.account_id)
        except ClientError as error:
            code = _error_code(error)
            if code == "NoSuchBucket":
                return
            if code == "BucketNotEmpty":
                raise RecoverableError(
                    f"bucket {name} in account {aws.account_id} is not empty: empty it and "
                    "carm deletes it at the next retry (carm never deletes objects)",
                    reason="BucketNotEmpty",
                ) from error
            raise _classify(error, f"deleting bucket {name}", aws) from error

    async def _exists(self, s3: Any, name: str, aws: AwsTarget) -> bool:
        try:
            await s3.head_bucket(Bucket=name, ExpectedBucketOwner=aws.account_id)
        except ClientError as error:
            if _status_code(error) == 404 or _error_code(error) in {"404", "NoSuchBucket"}:
                return False
            if _status_code(error) == 403:
                raise TerminalError(
                    f"bucket {name} is not owned by account {aws.account_id} (S3 refused "
                    "HeadBucket with ExpectedBucketOwner): it was deleted and re-created "
                    "elsewhere, or the role lacks s3:ListBucket",
                    reason="BucketOwnedElsewhere",
                ) from error
            raise _classify(error, f"reading bucket {name}", aws) from error
        return True

    async def _create(self, s3: Any, obj: RawObject, name: str, aws: AwsTarget) -> None:
        request: dict[str, Any] = {"Bucket": name}
        location = (obj["spec"].get("createBucketConfiguration") or {}).get("locationConstraint")
        location = location or (None if aws.region == "us-east-1" else aws.region)
        if location:
            request["CreateBucketConfiguration"] = {"LocationConstraint": location}
        try:
            await s3.create_bucket(**request)
        except ClientError as error:
            code = _error_code(error)
            if code == "BucketAlreadyOwnedByYou":
                return
            if code == "BucketAlreadyExists":
                raise TerminalError(
                    f"bucket name {name!r} is taken by another AWS account (bucket names are "
                    f"global); account {aws.account_id} cannot create or manage it: choose "
                    "another spec.name",
                    reason="BucketAlreadyExists",
                ) from error
            raise _classify(error, f"creating bucket {name}", aws) from error


def _bucket_name(obj: RawObject) -> str:
    name = (obj.get("spec") or {}).get("name")
    if not isinstance(name, str) or not name:
        raise TerminalError("spec.name is required: the name of the bucket", reason="InvalidSpec")
    return name


def _classify(error: ClientError, doing: str, aws: AwsTarget) -> Exception:
    """Terminal for requests AWS rejects as invalid, Recoverable for everything else."""
    where = f"in account {aws.account_id}, region {aws.region}"
    message = f"{doing} {where}: {_describe(error)}"
    code = _error_code(error)
    if code in _INVALID_REQUEST_CODES:
        return TerminalError(message, reason=code)
    if code in {"AccessDenied", "AllAccessDisabled"}:
        role = aws.role_arn or "the controller's own identity"
        return RecoverableError(f"{message} (acting as {role})", reason="AccessDenied")
    return RecoverableError(message, reason=code or "AWSError")
