"""Every managed Bucket spec field against a real moto: set it and see it in S3; change it and
see the change; change it behind carm's back and see it restored at the next resync; remove it
from the spec and see it removed in S3.

What S3 holds is read as the bucket's own account reads it (a role assumed in the account),
with plain S3 calls: the tests do not use carm's mapping to check carm's mapping. That a resync
restored a tampered value is shown by the value *and* by a new Put call counted by the
controller, so a tamper that did not take cannot pass unnoticed.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from botocore.exceptions import ClientError

from carm.kube.client import KubeClient
from carm.resources.s3.spec import MANAGED_SPEC_FIELDS
from carm.sandbox.kubeapi.server import KubeApiServer
from carm.sandbox.moto import MotoServer
from tests.integration.bucket_harness import TARGET, BucketHarness, Parts, bucket_controller

Reader = Callable[[Any, str], Awaitable[Any]]
Action = Callable[[Any, str], Awaitable[Any]]


@pytest.fixture
def parts(
    kube: KubeClient,
    kube_server: KubeApiServer,
    moto_server: MotoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Parts:
    for name, value in moto_server.controller_env().items():
        monkeypatch.setenv(name, value)
    return kube, kube_server, moto_server, tmp_path


def absent_on(*codes: str) -> Callable[[Reader], Reader]:
    """A reader that answers None when S3 says the configuration does not exist."""

    def wrap(read: Reader) -> Reader:
        async def reader(s3: Any, bucket: str) -> Any:
            try:
                return await read(s3, bucket)
            except ClientError as error:
                if error.response["Error"]["Code"] in codes:
                    return None
                raise

        return reader

    return wrap


@dataclass(frozen=True)
class FieldCase:
    id: str
    field: str
    first: Any
    second: Any
    read: Reader
    seen_first: Any
    seen_second: Any
    seen_removed: Any
    tamper: Action
    put_op: str
    base: dict[str, Any] = field(default_factory=dict)
    setup: Action | None = None


# -- readers (AWS's answers, reduced to what each case compares) --


async def versioning(s3: Any, bucket: str) -> Any:
    return (await s3.get_bucket_versioning(Bucket=bucket)).get("Status")


@absent_on("ServerSideEncryptionConfigurationNotFoundError")
async def encryption(s3: Any, bucket: str) -> Any:
    answer = await s3.get_bucket_encryption(Bucket=bucket)
    rule = answer["ServerSideEncryptionConfiguration"]["Rules"][0]
    default = rule["ApplyServerSideEncryptionByDefault"]
    return (default["SSEAlgorithm"], default.get("KMSMasterKeyID"), rule.get("BucketKeyEnabled"))


@absent_on("NoSuchPublicAccessBlockConfiguration")
async def public_access_block(s3: Any, bucket: str) -> Any:
    answer = await s3.get_public_access_block(Bucket=bucket)
    return answer["PublicAccessBlockConfiguration"]


@absent_on("NoSuchBucketPolicy")
async def policy(s3: Any, bucket: str) -> Any:
    document = json.loads((await s3.get_bucket_policy(Bucket=bucket))["Policy"])
    return [statement["Sid"] for statement in document["Statement"]]


@absent_on("NoSuchLifecycleConfiguration")
async def lifecycle(s3: Any, bucket: str) -> Any:
    rules = (await s3.get_bucket_lifecycle_configuration(Bucket=bucket))["Rules"]
    return [(r["Filter"].get("Prefix"), r["Expiration"]["Days"], r["Status"]) for r in rules]


@absent_on("NoSuchCORSConfiguration")
async def cors(s3: Any, bucket: str) -> Any:
    rules = (await s3.get_bucket_cors(Bucket=bucket))["CORSRules"]
    return [
        (sorted(r["AllowedMethods"]), r["AllowedOrigins"], r.get("MaxAgeSeconds")) for r in rules
    ]


async def logging_prefix(s3: Any, bucket: str) -> Any:
    enabled = (await s3.get_bucket_logging(Bucket=bucket)).get("LoggingEnabled")
    return None if enabled is None else (enabled["TargetBucket"], enabled["TargetPrefix"])


@absent_on("NoSuchWebsiteConfiguration")
async def website(s3: Any, bucket: str) -> Any:
    answer = await s3.get_bucket_website(Bucket=bucket)
    return (answer["IndexDocument"]["Suffix"], (answer.get("ErrorDocument") or {}).get("Key"))


@absent_on("OwnershipControlsNotFoundError")
async def ownership(s3: Any, bucket: str) -> Any:
    answer = await s3.get_bucket_ownership_controls(Bucket=bucket)
    return [rule["ObjectOwnership"] for rule in answer["OwnershipControls"]["Rules"]]


async def accelerate(s3: Any, bucket: str) -> Any:
    return (await s3.get_bucket_accelerate_configuration(Bucket=bucket)).get("Status")


async def request_payment(s3: Any, bucket: str) -> Any:
    return (await s3.get_bucket_request_payment(Bucket=bucket)).get("Payer")


async def notification(s3: Any, bucket: str) -> Any:
    answer = await s3.get_bucket_notification_configuration(Bucket=bucket)
    queues = [(q["QueueArn"], q["Events"]) for q in answer.get("QueueConfigurations") or []]
    topics = [(t["TopicArn"], t["Events"]) for t in answer.get("TopicConfigurations") or []]
    return queues + topics


@absent_on("NoSuchTagSet")
async def user_tags(s3: Any, bucket: str) -> Any:
    """The tags besides carm's default resource tags (which are checked elsewhere)."""
    tag_set = (await s3.get_bucket_tagging(Bucket=bucket))["TagSet"]
    return {t["Key"]: t["Value"] for t in tag_set if not t["Key"].startswith("services.k8s.aws/")}


async def acl(s3: Any, bucket: str) -> Any:
    answer = await s3.get_bucket_acl(Bucket=bucket)
    owner = answer["Owner"]["ID"]
    grants = set()
    for grant in answer["Grants"]:
        grantee = grant["Grantee"]
        who = "owner" if grantee.get("ID") == owner else grantee.get("URI", grantee.get("ID"))
        grants.add((str(who).rsplit("/", 1)[-1], grant["Permission"]))
    return grants


@absent_on("ReplicationConfigurationNotFoundError")
async def replication(s3: Any, bucket: str) -> Any:
    rules = (await s3.get_bucket_replication(Bucket=bucket))["ReplicationConfiguration"]["Rules"]
    return [(r["Priority"], r["Destination"]["Bucket"]) for r in rules]


# -- tampering, as someone in the console would --


def call(method: str, **arguments: Any) -> Action:
    async def action(s3: Any, bucket: str) -> Any:
        return await getattr(s3, method)(Bucket=bucket, **arguments)

    return action


def sid_policy(bucket: str, *sids: str) -> str:
    statements = [
        {
            "Sid": sid,
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:DeleteObject",
            "Resource": f"arn:aws:s3:::{bucket}/{sid}/*",
        }
        for sid in sids
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


async def make_log_target(s3: Any, bucket: str) -> None:
    # S3 delivers logs only to a bucket that grants the log-delivery group write access.
    await s3.create_bucket(Bucket="carm-log-target")
    await s3.put_bucket_acl(Bucket="carm-log-target", ACL="log-delivery-write")


async def make_replica(s3: Any, bucket: str) -> None:
    await s3.create_bucket(Bucket="carm-replica")
    await s3.put_bucket_versioning(
        Bucket="carm-replica", VersioningConfiguration={"Status": "Enabled"}
    )


def replication_spec(priority: int) -> dict[str, Any]:
    return {
        "role": f"arn:aws:iam::{TARGET}:role/replication",
        "rules": [
            {
                "id": "to-replica",
                "priority": priority,
                "status": "Enabled",
                "filter": {"prefix": ""},
                "deleteMarkerReplication": {"status": "Disabled"},
                "destination": {"bucket": "arn:aws:s3:::carm-replica"},
            }
        ],
    }


KMS_KEY = f"arn:aws:kms:us-east-1:{TARGET}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
QUEUE = f"arn:aws:sqs:us-east-1:{TARGET}:bucket-events"
TOPIC = f"arn:aws:sns:us-east-1:{TARGET}:bucket-events"
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"

CASES = [
    FieldCase(
        "versioning",
        "versioning",
        {"status": "Suspended"},
        {"status": "Enabled"},
        versioning,
        "Suspended",
        "Enabled",
        "Suspended",  # S3 has no way back to "never versioned": removing suspends it
        call("put_bucket_versioning", VersioningConfiguration={"Status": "Suspended"}),
        "PutBucketVersioning",
    ),
    FieldCase(
        "encryption",
        "encryption",
        {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]},
        {
            "rules": [
                {
                    "applyServerSideEncryptionByDefault": {
                        "sseAlgorithm": "aws:kms",
                        "kmsMasterKeyID": KMS_KEY,
                    },
                    "bucketKeyEnabled": True,
                }
            ]
        },
        encryption,
        ("AES256", None, False),
        ("aws:kms", KMS_KEY, True),
        None,
        call(
            "put_bucket_encryption",
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        ),
        "PutBucketEncryption",
    ),
    FieldCase(
        "public-access-block",
        "publicAccessBlock",
        {
            "blockPublicACLs": True,
            "blockPublicPolicy": True,
            "ignorePublicACLs": True,
            "restrictPublicBuckets": True,
        },
        {"blockPublicACLs": True, "ignorePublicACLs": True},
        public_access_block,
        {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        },
        {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": False,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": False,
        },
        None,
        call("delete_public_access_block"),
        "PutPublicAccessBlock",
    ),
    FieldCase(
        "policy",
        "policy",
        sid_policy("f-policy", "KeepLogs"),
        sid_policy("f-policy", "KeepLogs", "KeepAudit"),
        policy,
        ["KeepLogs"],
        ["KeepLogs", "KeepAudit"],
        None,
        call("put_bucket_policy", Policy=sid_policy("f-policy", "Intruder")),
        "PutBucketPolicy",
    ),
    FieldCase(
        "lifecycle",
        "lifecycle",
        {
            "rules": [
                {
                    "id": "expire-logs",
                    "status": "Enabled",
                    "filter": {"prefix": "logs/"},
                    "expiration": {"days": 30},
                }
            ]
        },
        {
            "rules": [
                {
                    "id": "expire-logs",
                    "status": "Enabled",
                    "filter": {"prefix": "logs/"},
                    "expiration": {"days": 90},
                },
                {
                    "id": "expire-tmp",
                    "status": "Disabled",
                    "filter": {"prefix": "tmp/"},
                    "expiration": {"days": 1},
                },
            ]
        },
        lifecycle,
        [("logs/", 30, "Enabled")],
        [("logs/", 90, "Enabled"), ("tmp/", 1, "Disabled")],
        None,
        call("delete_bucket_lifecycle"),
        "PutBucketLifecycleConfiguration",
    ),
    FieldCase(
        "cors",
        "cors",
        {"corsRules": [{"allowedMethods": ["GET"], "allowedOrigins": ["*"]}]},
        {
            "corsRules": [
                {
                    "allowedMethods": ["PUT", "GET"],
                    "allowedOrigins": ["https://example.com"],
                    "maxAgeSeconds": 300,
                }
            ]
        },
        cors,
        [(["GET"], ["*"], None)],
        [(["GET", "PUT"], ["https://example.com"], 300)],
        None,
        call("delete_bucket_cors"),
        "PutBucketCors",
    ),
    FieldCase(
        "logging",
        "logging",
        {"loggingEnabled": {"targetBucket": "carm-log-target", "targetPrefix": "a/"}},
        {"loggingEnabled": {"targetBucket": "carm-log-target", "targetPrefix": "b/"}},
        logging_prefix,
        ("carm-log-target", "a/"),
        ("carm-log-target", "b/"),
        None,
        call("put_bucket_logging", BucketLoggingStatus={}),
        "PutBucketLogging",
        setup=make_log_target,
    ),
    FieldCase(
        "website",
        "website",
        {"indexDocument": {"suffix": "index.html"}},
        {"indexDocument": {"suffix": "home.html"}, "errorDocument": {"key": "oops.html"}},
        website,
        ("index.html", None),
        ("home.html", "oops.html"),
        None,
        call("delete_bucket_website"),
        "PutBucketWebsite",
    ),
    FieldCase(
        "ownership-controls",
        "ownershipControls",
        {"rules": [{"objectOwnership": "ObjectWriter"}]},
        {"rules": [{"objectOwnership": "BucketOwnerPreferred"}]},
        ownership,
        ["ObjectWriter"],
        ["BucketOwnerPreferred"],
        None,
        call("delete_bucket_ownership_controls"),
        "PutBucketOwnershipControls",
    ),
    FieldCase(
        "object-ownership",
        "objectOwnership",
        "ObjectWriter",
        "BucketOwnerEnforced",
        ownership,
        ["ObjectWriter"],
        ["BucketOwnerEnforced"],
        None,
        call(
            "put_bucket_ownership_controls",
            OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]},
        ),
        "PutBucketOwnershipControls",
    ),
    FieldCase(
        "accelerate",
        "accelerate",
        {"status": "Suspended"},
        {"status": "Enabled"},
        accelerate,
        None,  # S3 leaves never-enabled acceleration undefined, which means suspended
        "Enabled",
        "Suspended",  # no DeleteBucketAccelerateConfiguration: removing suspends it
        call(
            "put_bucket_accelerate_configuration", AccelerateConfiguration={"Status": "Suspended"}
        ),
        "PutBucketAccelerateConfiguration",
    ),
    FieldCase(
        "notification",
        "notification",
        {"queueConfigurations": [{"queueARN": QUEUE, "events": ["s3:ObjectCreated:*"]}]},
        {"topicConfigurations": [{"topicARN": TOPIC, "events": ["s3:ObjectRemoved:*"]}]},
        notification,
        [(QUEUE, ["s3:ObjectCreated:*"])],
        [(TOPIC, ["s3:ObjectRemoved:*"])],
        [],
        call("put_bucket_notification_configuration", NotificationConfiguration={}),
        "PutBucketNotificationConfiguration",
    ),
    FieldCase(
        "tagging",
        "tagging",
        {"tagSet": [{"key": "team", "value": "payments"}]},
        {"tagSet": [{"key": "team", "value": "ledger"}, {"key": "env", "value": "prod"}]},
        user_tags,
        {"team": "payments"},
        {"team": "ledger", "env": "prod"},
        {},  # carm's default resource tags stay
        call("put_bucket_tagging", Tagging={"TagSet": [{"Key": "intruder", "Value": "1"}]}),
        "PutBucketTagging",
    ),
    FieldCase(
        "acl",
        "acl",
        "public-read",
        "authenticated-read",
        acl,
        {("owner", "FULL_CONTROL"), ("AllUsers", "READ")},
        {("owner", "FULL_CONTROL"), ("AuthenticatedUsers", "READ")},
        {("owner", "FULL_CONTROL")},
        call("put_bucket_acl", ACL="public-read-write"),
        "PutBucketAcl",
    ),
    *(
        FieldCase(
            f"grant-{permission.lower().replace('_', '-')}",
            field_name,
            f'{kind}="{first}"',
            # One grantee per header: moto 5.2.5's GetBucketAcl shows only the first grantee of
            # a header that lists several (S3 lists each).
            f'{kind}="{second}"',
            acl,
            {(first.rsplit("/", 1)[-1], permission)},
            {(second.rsplit("/", 1)[-1], permission)},
            {("owner", "FULL_CONTROL")},
            call("put_bucket_acl", ACL="private"),
            "PutBucketAcl",
        )
        for field_name, permission, kind, first, second in (
            ("grantRead", "READ", "uri", ALL_USERS, AUTHENTICATED_USERS),
            ("grantWrite", "WRITE", "uri", ALL_USERS, AUTHENTICATED_USERS),
            ("grantReadACP", "READ_ACP", "uri", ALL_USERS, AUTHENTICATED_USERS),
            ("grantWriteACP", "WRITE_ACP", "uri", AUTHENTICATED_USERS, ALL_USERS),
            ("grantFullControl", "FULL_CONTROL", "id", "1111aaaa", "2222bbbb"),
        )
    ),
    FieldCase(
        "replication",
        "replication",
        replication_spec(1),
        replication_spec(2),
        replication,
        [(1, "arn:aws:s3:::carm-replica")],
        [(2, "arn:aws:s3:::carm-replica")],
        None,
        call("delete_bucket_replication"),
        "PutBucketReplication",
        base={"versioning": {"status": "Enabled"}},
        setup=make_replica,
    ),
    FieldCase(
        "request-payment",
        "requestPayment",
        {"payer": "BucketOwner"},
        {"payer": "Requester"},
        request_payment,
        "BucketOwner",
        "Requester",
        "BucketOwner",  # no DeleteBucketRequestPayment: removing puts the owner back
        call("put_bucket_request_payment", RequestPaymentConfiguration={"Payer": "BucketOwner"}),
        "PutBucketRequestPayment",
    ),
]


async def check_field(harness: BucketHarness, s3: Any, case: FieldCase) -> None:
    """The four steps for one field, on a bucket of its own."""
    assert case.seen_removed != case.seen_second and case.seen_first != case.seen_second
    name = f"f-{case.id}"
    if case.setup is not None:
        await case.setup(s3, name)

    async def seen() -> Any:
        return await case.read(s3, name)

    await harness.create(name, {"name": name, **case.base, case.field: case.first})
    await harness.eventually(seen, case.seen_first)

    await harness.set_field(name, case.field, case.second)
    await harness.eventually(seen, case.seen_second)

    puts = harness.s3_calls(case.put_op)
    await case.tamper(s3, name)
    await harness.eventually(seen, case.seen_second)
    await harness.eventually(lambda: _more(harness.s3_calls(case.put_op), puts), True)

    await harness.remove_field(name, case.field)
    await harness.eventually(seen, case.seen_removed)
    await harness.synced(name)


async def test_every_managed_field_is_set_changed_restored_and_removed(parts: Parts) -> None:
    """All cases at once against one controller (a few seconds, not one controller start per
    field). Cases whose drift check counts the same Put call run one after the other, so a
    Put made for one case cannot pass for another's."""
    failures: dict[str, str] = {}
    by_put: dict[str, list[FieldCase]] = {}
    for case in CASES:
        by_put.setdefault(case.put_op, []).append(case)

    async with bucket_controller(parts, resync_seconds=0.5) as harness:
        s3 = await harness.s3(TARGET)

        async def run(cases: list[FieldCase]) -> None:
            for case in cases:
                try:
                    await check_field(harness, s3, case)
                except Exception as error:  # noqa: BLE001 - reported per field below
                    failures[case.id] = f"{type(error).__name__}: {error}"

        async with anyio.create_task_group() as group:
            for cases in by_put.values():
                group.start_soon(run, cases)
    assert not failures, failures
    # Tested on its own: objectLockEnabledForBucket (switched on, never off: test_bucket.py).
    tested = {case.field for case in CASES} | {"objectLockEnabledForBucket"}
    assert tested == set(MANAGED_SPEC_FIELDS)


async def _more(now: float, before: float) -> bool:
    return now > before
