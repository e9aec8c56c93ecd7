"""The sub-configurations of a bucket: how each spec field is read, put and removed in S3.

Most follow one pattern (`Structure`): a Get call whose answer, converted to the spec's
spelling, is compared with the spec; a Put call that takes the spec converted to AWS's
spelling; and either a Delete call or, where S3 has none (versioning, acceleration, request
payment, logging, notifications), a Put of the value S3 starts with. The rest differ in one
way each: the policy is a JSON string compared as a policy, the ACL is a canned name or grant
headers compared as grants, tags merge the controller's defaults, object lock can be switched
on but never off.

`APPLY_ORDER` is the dependency order of the Put calls: ownership controls before the ACL
(BucketOwnerEnforced refuses ACLs), the public access block before the policy and the ACL
(it decides whether a public one is accepted), versioning before object lock and replication
(both need it Enabled). Removals run in the reverse order, before any Put.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from carm.resources.aws_errors import error_code
from carm.resources.s3 import acl as bucket_acl
from carm.resources.s3.compare import canonical, satisfied
from carm.resources.s3.crd import SPEC_SCHEMA, Schema
from carm.resources.s3.policy import PolicyError, parse_policy, same_policy
from carm.resources.s3.shapes import SpecError, from_aws, input_member, to_aws

S3Client = Any


def field_schema(name: str) -> Schema:
    schema: Schema = SPEC_SCHEMA["properties"][name]
    return schema


@dataclass(frozen=True)
class Structure:
    """A sub-configuration that is one structure in both the Get answer and the Put request."""

    name: str
    """The spec field (and the name in status.managedConfigurations)."""
    get: str
    put: str
    put_operation: str
    put_member: str
    answer_key: str | None = None
    """Where the configuration sits in the Get answer (None: the answer itself)."""
    absent_codes: frozenset[str] = frozenset()
    """Error codes of the Get call that mean "not configured"."""
    delete: str | None = None
    reset: Mapping[str, Any] | None = None
    """What removing puts, when S3 has no Delete call (the value a new bucket has)."""
    default: Mapping[str, Any] = field(default_factory=dict)
    """What S3 means when it reports nothing (request payment: the owner pays)."""

    @property
    def schema(self) -> Schema:
        return field_schema(self.name)

    def validate(self, desired: Any) -> None:
        """SpecError if `desired` is not something the Put call accepts."""
        to_aws(desired, input_member(self.put_operation, self.put_member), f"spec.{self.name}")
        canonical(desired, self.schema, f"spec.{self.name}")

    async def read(self, s3: S3Client, bucket: str) -> Any:
        try:
            answer = await getattr(s3, self.get)(Bucket=bucket)
        except ClientError as error:
            if error_code(error) in self.absent_codes:
                return None
            raise
        answer.pop("ResponseMetadata", None)
        found = answer.get(self.answer_key) if self.answer_key else answer
        return from_aws(found, self.schema)

    def satisfied(self, desired: Any, observed: Any) -> bool:
        return satisfied(desired, observed or self.default, self.schema)

    async def apply(self, s3: S3Client, bucket: str, desired: Any) -> None:
        shape = input_member(self.put_operation, self.put_member)
        request = to_aws(desired, shape, f"spec.{self.name}")
        await getattr(s3, self.put)(Bucket=bucket, **{self.put_member: request})

    async def remove(self, s3: S3Client, bucket: str) -> None:
        if self.delete is not None:
            await getattr(s3, self.delete)(Bucket=bucket)
        elif self.reset is not None:
            await self.apply(s3, bucket, dict(self.reset))

    def spec_value(self, observed: Any) -> Any:
        """The spec value that describes `observed` (None: nothing worth writing)."""
        value = canonical(observed, self.schema) if observed is not None else None
        if not value or value == canonical(dict(self.default), self.schema):
            return None
        return value


@dataclass(frozen=True)
class Policy:
    """`spec.policy`: a JSON string, compared as an IAM policy."""

    name: str = "policy"

    def validate(self, desired: Any) -> None:
        if not isinstance(desired, str):
            raise SpecError("spec.policy", "must be a JSON string")
        try:
            parse_policy(desired)
        except PolicyError as error:
            raise SpecError("spec.policy", str(error)) from None

    async def read(self, s3: S3Client, bucket: str) -> Any:
        try:
            answer = await s3.get_bucket_policy(Bucket=bucket)
        except ClientError as error:
            if error_code(error) == "NoSuchBucketPolicy":
                return None
            raise
        return answer.get("Policy")

    def satisfied(self, desired: Any, observed: Any) -> bool:
        return same_policy(str(desired), observed)

    async def apply(self, s3: S3Client, bucket: str, desired: Any) -> None:
        await s3.put_bucket_policy(Bucket=bucket, Policy=desired)

    async def remove(self, s3: S3Client, bucket: str) -> None:
        await s3.delete_bucket_policy(Bucket=bucket)

    def spec_value(self, observed: Any) -> Any:
        return observed or None


@dataclass(frozen=True)
class Acl:
    """`spec.acl` and `spec.grant*`: one GetBucketAcl, one PutBucketAcl."""

    name: str = "acl"

    def validate(self, desired: Any) -> None:
        bucket_acl.acl_spec(desired)

    async def read(self, s3: S3Client, bucket: str) -> Any:
        answer = await s3.get_bucket_acl(Bucket=bucket)
        return {"Owner": answer.get("Owner") or {}, "Grants": answer.get("Grants") or []}

    def satisfied(self, desired: Any, observed: Any) -> bool:
        return observed is not None and bucket_acl.acl_satisfied(desired, observed)

    async def apply(self, s3: S3Client, bucket: str, desired: Any) -> None:
        await s3.put_bucket_acl(Bucket=bucket, **bucket_acl.put_request(desired))

    async def remove(self, s3: S3Client, bucket: str) -> None:
        await s3.put_bucket_acl(Bucket=bucket, ACL="private")

    def spec_value(self, observed: Any) -> Any:
        return bucket_acl.spec_of(observed) if observed is not None else None


@dataclass(frozen=True)
class Tagging:
    """`spec.tagging`, merged with the controller's resource tags (the desired value is the
    merged tag set as {key: value}). Tags with the reserved `aws:` prefix are set by AWS
    services (CloudFormation, say), cannot be written and are not compared."""

    name: str = "tagging"

    def validate(self, desired: Any) -> None:
        for key in desired:
            if key.startswith("aws:"):
                raise SpecError(
                    "spec.tagging.tagSet", f"tag {key!r}: keys starting with aws: are reserved"
                )

    async def read(self, s3: S3Client, bucket: str) -> Any:
        try:
            answer = await s3.get_bucket_tagging(Bucket=bucket)
        except ClientError as error:
            if error_code(error) == "NoSuchTagSet":
                return {}
            raise
        return {str(t["Key"]): str(t.get("Value", "")) for t in answer.get("TagSet") or []}

    def satisfied(self, desired: Any, observed: Any) -> bool:
        ours = {k: v for k, v in (observed or {}).items() if not k.startswith("aws:")}
        return bool(ours == desired)

    async def apply(self, s3: S3Client, bucket: str, desired: Any) -> None:
        if not desired:
            await self.remove(s3, bucket)
            return
        tag_set = [{"Key": key, "Value": value} for key, value in desired.items()]
        await s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tag_set})

    async def remove(self, s3: S3Client, bucket: str) -> None:
        await s3.delete_bucket_tagging(Bucket=bucket)

    def spec_value(self, observed: Any) -> Any:
        tags = [
            {"key": key, "value": value}
            for key, value in (observed or {}).items()
            if not key.startswith("aws:")
        ]
        return {"tagSet": tags} if tags else None


@dataclass(frozen=True)
class ObjectLock:
    """`spec.objectLockEnabledForBucket`: set at creation, or switched on later (S3 allows it
    once versioning is Enabled); S3 never switches it off, so asking for false on a bucket that
    has it is Terminal, and removing the field from the spec just stops managing it."""

    name: str = "objectLockEnabledForBucket"

    def validate(self, desired: Any) -> None:
        if not isinstance(desired, bool):
            raise SpecError("spec.objectLockEnabledForBucket", "must be true or false")

    async def read(self, s3: S3Client, bucket: str) -> Any:
        try:
            answer = await s3.get_object_lock_configuration(Bucket=bucket)
        except ClientError as error:
            if error_code(error) == "ObjectLockConfigurationNotFoundError":
                return False
            raise
        configuration = answer.get("ObjectLockConfiguration") or {}
        return configuration.get("ObjectLockEnabled") == "Enabled"

    def satisfied(self, desired: Any, observed: Any) -> bool:
        return bool(desired) == bool(observed)

    async def apply(self, s3: S3Client, bucket: str, desired: Any) -> None:
        if not desired:
            raise ObjectLockIsPermanent(bucket)
        await s3.put_object_lock_configuration(
            Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}
        )

    async def remove(self, s3: S3Client, bucket: str) -> None:
        return None  # cannot be switched off: removing the field stops managing it

    def spec_value(self, observed: Any) -> Any:
        return True if observed else None


class ObjectLockIsPermanent(Exception):
    def __init__(self, bucket: str) -> None:
        super().__init__(
            f"spec.objectLockEnabledForBucket is false, but bucket {bucket} has object lock "
            "enabled and S3 cannot switch it off: set it to true or remove the field"
        )


SubConfig = Structure | Policy | Acl | Tagging | ObjectLock

SUBCONFIGS: dict[str, SubConfig] = {
    config.name: config
    for config in (
        Structure(
            "ownershipControls",
            get="get_bucket_ownership_controls",
            put="put_bucket_ownership_controls",
            put_operation="PutBucketOwnershipControls",
            put_member="OwnershipControls",
            answer_key="OwnershipControls",
            absent_codes=frozenset({"OwnershipControlsNotFoundError"}),
            delete="delete_bucket_ownership_controls",
        ),
        Structure(
            "publicAccessBlock",
            get="get_public_access_block",
            put="put_public_access_block",
            put_operation="PutPublicAccessBlock",
            put_member="PublicAccessBlockConfiguration",
            answer_key="PublicAccessBlockConfiguration",
            absent_codes=frozenset({"NoSuchPublicAccessBlockConfiguration"}),
            delete="delete_public_access_block",
        ),
        Acl(),
        Policy(),
        Structure(
            "versioning",
            get="get_bucket_versioning",
            put="put_bucket_versioning",
            put_operation="PutBucketVersioning",
            put_member="VersioningConfiguration",
            reset={"status": "Suspended"},
        ),
        ObjectLock(),
        Structure(
            "replication",
            get="get_bucket_replication",
            put="put_bucket_replication",
            put_operation="PutBucketReplication",
            put_member="ReplicationConfiguration",
            answer_key="ReplicationConfiguration",
            absent_codes=frozenset({"ReplicationConfigurationNotFoundError"}),
            delete="delete_bucket_replication",
        ),
        Structure(
            "encryption",
            get="get_bucket_encryption",
            put="put_bucket_encryption",
            put_operation="PutBucketEncryption",
            put_member="ServerSideEncryptionConfiguration",
            answer_key="ServerSideEncryptionConfiguration",
            absent_codes=frozenset({"ServerSideEncryptionConfigurationNotFoundError"}),
            delete="delete_bucket_encryption",
        ),
        Structure(
            "lifecycle",
            get="get_bucket_lifecycle_configuration",
            put="put_bucket_lifecycle_configuration",
            put_operation="PutBucketLifecycleConfiguration",
            put_member="LifecycleConfiguration",
            absent_codes=frozenset({"NoSuchLifecycleConfiguration"}),
            delete="delete_bucket_lifecycle",
        ),
        Structure(
            "cors",
            get="get_bucket_cors",
            put="put_bucket_cors",
            put_operation="PutBucketCors",
            put_member="CORSConfiguration",
            absent_codes=frozenset({"NoSuchCORSConfiguration"}),
            delete="delete_bucket_cors",
        ),
        Structure(
            "website",
            get="get_bucket_website",
            put="put_bucket_website",
            put_operation="PutBucketWebsite",
            put_member="WebsiteConfiguration",
            absent_codes=frozenset({"NoSuchWebsiteConfiguration"}),
            delete="delete_bucket_website",
        ),
        Structure(
            "logging",
            get="get_bucket_logging",
            put="put_bucket_logging",
            put_operation="PutBucketLogging",
            put_member="BucketLoggingStatus",
            reset={},
        ),
        Structure(
            "accelerate",
            get="get_bucket_accelerate_configuration",
            put="put_bucket_accelerate_configuration",
            put_operation="PutBucketAccelerateConfiguration",
            put_member="AccelerateConfiguration",
            reset={"status": "Suspended"},
            # S3 leaves a never-enabled acceleration undefined, even after a Put of Suspended.
            default={"status": "Suspended"},
        ),
        Structure(
            "requestPayment",
            get="get_bucket_request_payment",
            put="put_bucket_request_payment",
            put_operation="PutBucketRequestPayment",
            put_member="RequestPaymentConfiguration",
            reset={"payer": "BucketOwner"},
            default={"payer": "BucketOwner"},
        ),
        Structure(
            "notification",
            get="get_bucket_notification_configuration",
            put="put_bucket_notification_configuration",
            put_operation="PutBucketNotificationConfiguration",
            put_member="NotificationConfiguration",
            reset={},
        ),
        Tagging(),
    )
}

APPLY_ORDER: tuple[str, ...] = tuple(SUBCONFIGS)
