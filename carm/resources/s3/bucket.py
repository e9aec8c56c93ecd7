"""The S3 Bucket kind: its AWS side, behind the `AwsResource` interface.

Cost: a synced bucket is read with one HeadBucket plus one Get per sub-configuration its spec
manages (ACK reads ListBuckets plus about 20 Gets every time); the Gets run concurrently, so
a reconcile takes about two round trips whatever the spec holds. Only differences are put.

Ownership: S3 bucket names are global. Creating a name another account owns answers
BucketAlreadyExists (Terminal, never adopted silently); adopting or deleting a bucket carm has
not recorded as its own first checks that the namespace's account lists it (ListBuckets, as
the owner: S3 lets other accounts HeadBucket a bucket, and moto does not check
ExpectedBucketOwner). HeadBucket passes ExpectedBucketOwner, so a real S3 refuses to confirm a
bucket that some other account re-created under the same name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError

from carm.events import RawObject
from carm.reconcile.errors import ReconcileError, RecoverableError, TerminalError
from carm.reconcile.interfaces import AwsTarget
from carm.resources.annotations import policy_of
from carm.resources.aws_errors import classify, error_code, http_status
from carm.resources.kind import Desired, Identity, Located, ResourceDescriptor, ResourceKind
from carm.resources.s3.crd import BUCKET_CRD, GROUP, KIND, PLURAL, VERSION
from carm.resources.s3.spec import desired_bucket
from carm.resources.s3.subconfigs import APPLY_ORDER, SUBCONFIGS, ObjectLockIsPermanent
from carm.resources.tags import parse_resource_tags

if TYPE_CHECKING:
    from carm.settings import Settings

BUCKET = ResourceDescriptor(GROUP, VERSION, KIND, PLURAL)
FINALIZER = BUCKET.finalizer

# Codes ACK's s3-controller treats as terminal even where the HTTP status would not say so.
TERMINAL_CODES = frozenset(
    {
        "PermanentRedirect",
        "InvalidLocationConstraint",
        "MalformedXML",
        "IllegalLocationConstraintException",
        "InvalidBucketState",
    }
)


class Bucket:
    """Satisfies `carm.resources.kind.AwsResource`."""

    descriptor = BUCKET

    def __init__(self, resource_tags: Iterable[tuple[str, str]] = ()) -> None:
        self._resource_tags = tuple(resource_tags)

    # -- identity and spec --

    def identify(self, obj: RawObject, adoption_fields: Mapping[str, Any]) -> Identity:
        name = (obj.get("spec") or {}).get("name")
        adopted = adoption_fields.get("name")
        if name and adopted and name != adopted:
            raise TerminalError(
                f"spec.name {name!r} and the adoption-fields name {adopted!r} disagree; "
                "they must name the same bucket",
                reason="InvalidSpec",
            )
        name = name or adopted
        if not isinstance(name, str) or not name:
            raise TerminalError(
                "spec.name is required: the name of the bucket (or, to adopt, "
                'services.k8s.aws/adoption-fields: {"name": "..."})',
                reason="InvalidSpec",
            )
        return Identity({"name": name})

    def arn(self, identity: Identity, aws: AwsTarget) -> str:
        return f"arn:{aws.partition}:s3:::{identity['name']}"

    def desired(self, obj: RawObject, identity: Identity, aws: AwsTarget) -> Desired:
        # The controller's tags are what carm writes; a read-only bucket is compared with
        # its spec alone.
        tags = () if policy_of(obj).read_only else self._resource_tags
        return desired_bucket(obj, aws, tags)

    # -- reading --

    async def locate(self, identity: Identity, desired: Desired, aws: AwsTarget) -> Located | None:
        name = identity["name"]
        s3 = await aws.client("s3")
        try:
            answer = await s3.head_bucket(Bucket=name, ExpectedBucketOwner=aws.account_id)
        except ClientError as error:
            if http_status(error) == 404 or error_code(error) in {"404", "NoSuchBucket"}:
                return None
            if http_status(error) == 403:
                raise TerminalError(
                    f"bucket {name} is not owned by account {aws.account_id} (S3 refused "
                    "HeadBucket with ExpectedBucketOwner): it was deleted and re-created "
                    "elsewhere, or the role lacks s3:ListBucket",
                    reason="BucketOwnedElsewhere",
                ) from error
            raise self._error(error, f"reading bucket {name}", aws) from error
        except BotoCoreError as error:
            raise self._error(error, f"reading bucket {name}", aws) from error
        region = str(answer.get("BucketRegion") or aws.region)
        wanted = desired.create.get("region")
        if wanted and region != wanted:
            raise TerminalError(
                f"spec.createBucketConfiguration.locationConstraint cannot change: bucket "
                f"{name} is in {region}, but the spec asks for {wanted}; set it back, or "
                "create a new Bucket",
                reason="ImmutableField",
            )
        return Located({"region": region})

    async def owned(self, identity: Identity, aws: AwsTarget) -> bool:
        name = identity["name"]
        s3 = await aws.client("s3")
        try:
            answer = await s3.list_buckets(Prefix=name)
        except (ClientError, BotoCoreError) as error:
            doing = f"listing the buckets of account {aws.account_id}"
            raise self._error(error, doing, aws) from error
        return any(bucket.get("Name") == name for bucket in answer.get("Buckets") or [])

    async def read(
        self, identity: Identity, fields: Collection[str] | None, aws: AwsTarget
    ) -> dict[str, Any]:
        names = list(SUBCONFIGS) if fields is None else [f for f in APPLY_ORDER if f in fields]
        s3 = await aws.client("s3")
        observed: dict[str, Any] = {}
        errors: list[ReconcileError] = []

        async def read_one(field: str) -> None:
            try:
                observed[field] = await SUBCONFIGS[field].read(s3, identity["name"])
            except (ClientError, BotoCoreError) as error:
                doing = f"reading spec.{field} of bucket {identity['name']}"
                errors.append(self._error(error, doing, aws))

        # Concurrent: a reconcile costs one round trip for all its Gets, not one per Get.
        # Failures are collected rather than raised, so that the loop sees a ReconcileError
        # (not an ExceptionGroup) and one failing Get does not cancel the others half-way.
        async with anyio.create_task_group() as group:
            for field in names:
                group.start_soon(read_one, field)
        if errors:
            raise min(errors, key=lambda error: not error.terminal)  # a Terminal one first
        return observed

    def differences(self, desired: Desired, observed: Mapping[str, Any]) -> list[str]:
        return [
            name
            for name in APPLY_ORDER
            if name in desired.fields
            and not SUBCONFIGS[name].satisfied(desired.fields[name], observed.get(name))
        ]

    # -- writing --

    async def create(self, identity: Identity, desired: Desired, aws: AwsTarget) -> Located | None:
        name = identity["name"]
        request = {k: v for k, v in desired.create.items() if k != "region"}
        s3 = await aws.client("s3")
        try:
            await s3.create_bucket(Bucket=name, **request)
        except ClientError as error:
            code = error_code(error)
            if code == "BucketAlreadyOwnedByYou":
                return None  # it existed: the engine locates it to learn its region
            if code == "BucketAlreadyExists":
                raise TerminalError(
                    f"bucket name {name!r} is taken by another AWS account (bucket names are "
                    f"global); account {aws.account_id} cannot create or manage it: choose "
                    "another spec.name",
                    reason="BucketAlreadyExists",
                ) from error
            raise self._error(error, f"creating bucket {name}", aws) from error
        except BotoCoreError as error:
            raise self._error(error, f"creating bucket {name}", aws) from error
        # Created where the request asked: no HeadBucket needed to learn the region.
        return Located({"region": str(desired.create.get("region") or aws.region)})

    async def apply(
        self,
        identity: Identity,
        desired: Desired,
        changed: Collection[str],
        removed: Collection[str],
        aws: AwsTarget,
    ) -> None:
        name = identity["name"]
        s3 = await aws.client("s3")
        for field in reversed(APPLY_ORDER):
            if field in removed:
                remove = SUBCONFIGS[field].remove(s3, name)
                await self._call(remove, f"removing spec.{field}", name, aws)
        for field in APPLY_ORDER:
            if field in changed:
                write = SUBCONFIGS[field].apply(s3, name, desired.fields[field])
                await self._call(write, f"applying spec.{field}", name, aws)

    async def delete(self, identity: Identity, aws: AwsTarget) -> None:
        name = identity["name"]
        s3 = await aws.client("s3")
        try:
            await s3.delete_bucket(Bucket=name, ExpectedBucketOwner=aws.account_id)
        except ClientError as error:
            code = error_code(error)
            if code == "NoSuchBucket" or http_status(error) == 404:
                return
            if code == "BucketNotEmpty":
                raise RecoverableError(
                    f"bucket {name} in account {aws.account_id} is not empty: empty it and "
                    "carm deletes it at the next retry (carm never deletes objects)",
                    reason="BucketNotEmpty",
                ) from error
            raise self._error(error, f"deleting bucket {name}", aws) from error
        except BotoCoreError as error:
            raise self._error(error, f"deleting bucket {name}", aws) from error

    # -- adoption and status --

    def spec_of(
        self, identity: Identity, located: Located, observed: Mapping[str, Any], aws: AwsTarget
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": identity["name"]}
        region = str(located.facts.get("region") or aws.region)
        if region != aws.region:
            spec["createBucketConfiguration"] = {"locationConstraint": region}
        default_keys = {key for key, _ in self._resource_tags}
        for field in APPLY_ORDER:
            value = SUBCONFIGS[field].spec_value(observed.get(field))
            if field == "tagging" and value is not None:
                kept = [t for t in value["tagSet"] if t["key"] not in default_keys]
                value = {"tagSet": kept} if kept else None
            if value is None:
                continue
            if field == "acl":
                spec.update(value)  # acl and grant* are top-level spec fields
            else:
                spec[field] = value
        return spec

    def status_of(
        self, identity: Identity, located: Located | None, aws: AwsTarget
    ) -> dict[str, Any]:
        return {"location": f"/{identity['name']}"}

    # -- errors --

    async def _call(self, write: Awaitable[None], doing: str, name: str, aws: AwsTarget) -> None:
        try:
            await write
        except ObjectLockIsPermanent as error:
            raise TerminalError(str(error), reason="ImmutableField") from error
        except (ClientError, BotoCoreError) as error:
            raise self._error(error, f"{doing} on bucket {name}", aws) from error

    def _error(self, error: Exception, doing: str, aws: AwsTarget) -> ReconcileError:
        return classify(error, doing, aws, terminal_codes=TERMINAL_CODES)


def _build(settings: Settings) -> Bucket:
    return Bucket(parse_resource_tags(settings.resource_tags))


BUCKET_KIND = ResourceKind(BUCKET, BUCKET_CRD, _build)
"""The Bucket's registration (listed in `carm.resources.catalog.RESOURCE_KINDS`)."""
