"""The Bucket kind against a real moto, in-process: create-time fields, the steady-state cost,
tags, errors, adoption, read-only and deletion."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from botocore.exceptions import ClientError

from carm.kube.client import BUCKETS, KubeClient
from carm.sandbox.kubeapi.server import KubeApiServer
from carm.sandbox.moto import MotoServer
from tests.integration.bucket_harness import (
    NAMESPACE,
    TARGET,
    BucketHarness,
    Parts,
    bucket_controller,
)

OTHER = "222222222222"


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


async def names_of(harness: BucketHarness, account: str) -> set[str]:
    return set(await harness.moto.list_bucket_names(account))


async def object_lock(s3: Any, bucket: str) -> str | None:
    try:
        answer = await s3.get_object_lock_configuration(Bucket=bucket)
    except ClientError as error:
        if error.response["Error"]["Code"] == "ObjectLockConfigurationNotFoundError":
            return None
        raise
    return str(answer["ObjectLockConfiguration"]["ObjectLockEnabled"])


async def tags_of(s3: Any, bucket: str) -> dict[str, str]:
    answer = await s3.get_bucket_tagging(Bucket=bucket)
    return {t["Key"]: t["Value"] for t in answer["TagSet"]}


# -- fields fixed at creation --


async def test_spec_name_cannot_change(parts: Parts) -> None:
    async with bucket_controller(parts) as harness:
        await harness.create("named", {"name": "first-name"})
        await harness.synced("named")
        await harness.set_field("named", "name", "second-name")
        condition = await harness.condition("named", "ACK.Terminal")
        assert "first-name" in condition["message"] and "second-name" in condition["message"]
        assert condition["reason"] == "ImmutableField"
        buckets = await names_of(harness, TARGET)
        assert "first-name" in buckets and "second-name" not in buckets


async def test_location_constraint_is_set_at_creation_and_cannot_change(parts: Parts) -> None:
    async with bucket_controller(parts) as harness:
        s3 = await harness.s3()
        spec = {
            "name": "in-ireland",
            "createBucketConfiguration": {"locationConstraint": "eu-west-1"},
        }
        await harness.create("in-ireland", spec)
        await harness.synced("in-ireland")
        location = await s3.get_bucket_location(Bucket="in-ireland")
        assert location["LocationConstraint"] == "eu-west-1"

        await harness.set_field(
            "in-ireland", "createBucketConfiguration", {"locationConstraint": "eu-central-1"}
        )
        condition = await harness.condition("in-ireland", "ACK.Terminal")
        assert "eu-west-1" in condition["message"] and "eu-central-1" in condition["message"]

        # Removed, the spec means the namespace's region (us-east-1): still not where it is.
        await harness.remove_field("in-ireland", "createBucketConfiguration")
        await harness.eventually(
            lambda: _terminal_mentions(harness, "in-ireland", "us-east-1"), True
        )
        assert (await s3.get_bucket_location(Bucket="in-ireland"))["LocationConstraint"] == (
            "eu-west-1"
        )


async def _terminal_mentions(harness: BucketHarness, name: str, text: str) -> bool:
    obj = await harness.get(name)
    for condition in obj.get("status", {}).get("conditions", []):
        if condition["type"] == "ACK.Terminal" and text in condition.get("message", ""):
            return True
    return False


async def test_object_lock_is_switched_on_but_never_off(parts: Parts) -> None:
    async with bucket_controller(parts) as harness:
        s3 = await harness.s3()
        # Set at creation.
        await harness.create("locked", {"name": "locked", "objectLockEnabledForBucket": True})
        await harness.synced("locked")
        assert await object_lock(s3, "locked") == "Enabled"
        # Added later (S3 needs versioning Enabled first; carm puts versioning before it).
        await harness.create("lock-later", {"name": "lock-later"})
        await harness.synced("lock-later")
        assert await object_lock(s3, "lock-later") is None
        await harness.set_field("lock-later", "versioning", {"status": "Enabled"})
        await harness.set_field("lock-later", "objectLockEnabledForBucket", True)
        await harness.eventually(lambda: object_lock(s3, "lock-later"), "Enabled")
        # Asking for false cannot be done: Terminal, and the lock stays.
        await harness.set_field("locked", "objectLockEnabledForBucket", False)
        condition = await harness.condition("locked", "ACK.Terminal")
        assert "cannot switch it off" in condition["message"]
        # Removing the field stops managing it: synced again, still locked.
        await harness.remove_field("locked", "objectLockEnabledForBucket")
        await harness.eventually(lambda: _synced_without_error(harness, "locked"), True)
        assert await object_lock(s3, "locked") == "Enabled"


async def _synced_without_error(harness: BucketHarness, name: str) -> bool:
    obj = await harness.get(name)
    types = {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])}
    return types.get("ACK.ResourceSynced") == "True" and "ACK.Terminal" not in types


# -- what a synced bucket costs --

FULL_SPEC: dict[str, Any] = {
    "versioning": {"status": "Enabled"},
    "encryption": {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]},
    "publicAccessBlock": {"blockPublicACLs": True, "blockPublicPolicy": True},
    # Written the way people write policies: S3 answers with its own rendering, and carm
    # must not take the difference for drift.
    "policy": json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": {
                "Sid": "DenyDeletes",
                "Effect": "Deny",
                "Principal": {"AWS": TARGET},
                "Action": ["s3:DeleteObject"],
                "Resource": "arn:aws:s3:::steady/*",
            },
        },
        indent=4,
    ),
    "lifecycle": {
        "rules": [{"status": "Enabled", "filter": {"prefix": "tmp/"}, "expiration": {"days": 7}}]
    },
    "cors": {"corsRules": [{"allowedMethods": ["GET", "HEAD"], "allowedOrigins": ["*"]}]},
    "website": {"indexDocument": {"suffix": "index.html"}},
    "ownershipControls": {"rules": [{"objectOwnership": "BucketOwnerPreferred"}]},
    "accelerate": {"status": "Enabled"},
    "acl": "private",
    "tagging": {"tagSet": [{"key": "team", "value": "payments"}]},
}


async def steady_cost(
    harness: BucketHarness, name: str, reconciles: int = 3
) -> tuple[float, float]:
    """(S3 calls per reconcile, Put calls in total) over `reconciles` reconciles of a synced
    bucket. With the periodic resync out of the way, each reconcile is triggered by touching
    an annotation (the same reconcile a resync runs) and counted once the controller is idle,
    so every call in the window belongs to exactly these reconciles."""
    await harness.synced(name)
    await idle(harness)
    before, puts = harness.s3_calls(), harness.s3_calls(*PUTS)
    for touch in range(reconciles):
        wanted = harness.reconciles_of(name) + 1
        annotations = {"metadata": {"annotations": {"test/touch": str(touch)}}}
        await harness.kube.merge_patch(BUCKETS, name, annotations, NAMESPACE)
        await harness.eventually(functools.partial(_reconciled, harness, name, wanted), True)
        await idle(harness)
    return (harness.s3_calls() - before) / reconciles, harness.s3_calls(*PUTS) - puts


async def _reconciled(harness: BucketHarness, name: str, times: int) -> bool:
    return harness.reconciles_of(name) >= times


async def idle(harness: BucketHarness) -> None:
    """Nothing queued or running, twice in a row (events on their way have landed)."""
    queues = harness.controller.queues.values()

    async def quiet() -> bool:
        await anyio.sleep(0.05)
        return all(queue.depth == 0 and queue.in_flight == 0 for queue in queues)

    for _ in range(2):
        await harness.eventually(quiet, True)


PUTS = tuple(
    f"Put{suffix}"
    for suffix in (
        "BucketVersioning",
        "BucketEncryption",
        "PublicAccessBlock",
        "BucketPolicy",
        "BucketLifecycleConfiguration",
        "BucketCors",
        "BucketWebsite",
        "BucketOwnershipControls",
        "BucketAccelerateConfiguration",
        "BucketAcl",
        "BucketTagging",
    )
)


async def _at_least(value: int, wanted: int) -> bool:
    return value >= wanted


async def test_a_synced_bucket_costs_one_call_plus_one_per_managed_configuration(
    parts: Parts,
) -> None:
    async with bucket_controller(parts) as harness:
        await harness.create("steady", {"name": "steady", **FULL_SPEC})
        first = await harness.synced("steady")
        # The controller counts all its calls: one bucket at a time.
        calls, puts = await steady_cost(harness, "steady")
        assert calls == 1 + len(FULL_SPEC)  # HeadBucket + one Get each
        assert puts == 0  # nothing differs, nothing is written (the policy included)
        # Reconciles that change nothing keep the conditions' transition times.
        assert await harness.synced("steady") == first
        await harness.kube.delete(BUCKETS, "steady", NAMESPACE)
        await harness.eventually(lambda: _gone(harness, "steady"), True)
        # ACK's default resource tags make tagging managed even on a bare bucket.
        await harness.create("bare", {"name": "bare"})
        calls, puts = await steady_cost(harness, "bare")
        assert (calls, puts) == (2, 0)


async def test_without_resource_tags_a_bare_bucket_costs_one_call(parts: Parts) -> None:
    async with bucket_controller(parts, resource_tags=()) as harness:
        await harness.create("bare", {"name": "bare"})
        assert await steady_cost(harness, "bare") == (1, 0)


# -- tags --


async def test_resource_tags_are_acks_defaults_and_the_spec_wins(parts: Parts) -> None:
    async with bucket_controller(parts) as harness:
        s3 = await harness.s3()
        spec = {
            "name": "tagged",
            "tagging": {"tagSet": [{"key": "services.k8s.aws/namespace", "value": "mine"}]},
        }
        await harness.create("tagged", spec)
        await harness.create("plain-tags", {"name": "plain-tags"})
        await harness.synced("tagged")
        await harness.synced("plain-tags")
        assert await tags_of(s3, "plain-tags") == {
            "services.k8s.aws/controller-version": "s3-v0.1.0",
            "services.k8s.aws/namespace": NAMESPACE,
        }
        assert (await tags_of(s3, "tagged"))["services.k8s.aws/namespace"] == "mine"


async def test_resource_tags_flag_expands_acks_variables(parts: Parts) -> None:
    tags = (
        "owner=%K8S_RESOURCE_NAME%.%K8S_NAMESPACE%",
        "kind=%K8S_RESOURCE_KIND%",
        "by=%MANAGED_BY%",
    )
    async with bucket_controller(parts, resource_tags=tags) as harness:
        await harness.create("expanded", {"name": "expanded"})
        await harness.synced("expanded")
        # %MANAGED_BY% is empty without the label: the tag is left out, as ACK does.
        assert await tags_of(await harness.s3(), "expanded") == {
            "owner": f"expanded.{NAMESPACE}",
            "kind": "Bucket",
        }


# -- errors --


async def test_aws_validation_errors_are_terminal_with_the_aws_message(parts: Parts) -> None:
    async with bucket_controller(parts) as harness:
        # A lifecycle rule without a filter: S3 (and moto) answer MalformedXML.
        rule = {"id": "no-filter", "status": "Enabled", "expiration": {"days": 1}}
        await harness.create("malformed", {"name": "malformed", "lifecycle": {"rules": [rule]}})
        condition = await harness.condition("malformed", "ACK.Terminal")
        assert condition["reason"] == "MalformedXML"
        assert "spec.lifecycle" in condition["message"] and TARGET in condition["message"]
        assert "not well-formed" in condition["message"]  # S3's own words
        # Logging into a bucket that does not let S3 deliver logs.
        logging = {"loggingEnabled": {"targetBucket": "malformed", "targetPrefix": "x/"}}
        await harness.create("no-grants", {"name": "no-grants", "logging": logging})
        condition = await harness.condition("no-grants", "ACK.Terminal")
        assert condition["reason"] == "InvalidTargetBucketForLogging"


async def test_values_s3_does_not_know_are_terminal_before_any_call(parts: Parts) -> None:
    async with bucket_controller(parts) as harness:
        await harness.create("typo", {"name": "typo", "versioning": {"status": "Enabeld"}})
        condition = await harness.condition("typo", "ACK.Terminal")
        assert "spec.versioning.status" in condition["message"]
        assert "'Enabeld'" in condition["message"] and "'Enabled'" in condition["message"]
        await harness.create("bad-policy", {"name": "bad-policy", "policy": "{not json"})
        condition = await harness.condition("bad-policy", "ACK.Terminal")
        assert "spec.policy" in condition["message"] and "JSON" in condition["message"]
        assert not {"typo", "bad-policy"} & await names_of(harness, TARGET)


async def test_a_bucket_that_is_not_empty_is_kept_until_it_is(parts: Parts) -> None:
    async with bucket_controller(parts) as harness:
        s3 = await harness.s3()
        await harness.create("full", {"name": "full"})
        await harness.synced("full")
        await s3.put_object(Bucket="full", Key="keep-me", Body=b"data")
        await harness.kube.delete(BUCKETS, "full", NAMESPACE)
        condition = await harness.condition("full", "ACK.Recoverable")
        assert condition["reason"] == "BucketNotEmpty" and "empty it" in condition["message"]
        assert "full" in await names_of(harness, TARGET)
        assert (await s3.list_objects_v2(Bucket="full"))["KeyCount"] == 1  # never emptied
        await s3.delete_object(Bucket="full", Key="keep-me")
        await harness.eventually(lambda: _gone(harness, "full"), True, within=30)
        assert "full" not in await names_of(harness, TARGET)


async def _gone(harness: BucketHarness, name: str) -> bool:
    return name not in {o["metadata"]["name"] for o in (await harness.kube.list(BUCKETS))["items"]}


# -- adoption, read-only, advisory --


async def test_adopt_takes_over_an_existing_bucket_and_writes_its_spec(parts: Parts) -> None:
    async with bucket_controller(parts) as harness:
        s3 = await harness.s3()
        await s3.create_bucket(Bucket="legacy")
        await s3.put_bucket_versioning(
            Bucket="legacy", VersioningConfiguration={"Status": "Enabled"}
        )
        await s3.put_bucket_tagging(
            Bucket="legacy", Tagging={"TagSet": [{"Key": "cost-center", "Value": "42"}]}
        )
        annotations = {
            "services.k8s.aws/adoption-policy": "adopt",
            "services.k8s.aws/adoption-fields": json.dumps({"name": "legacy"}),
        }
        await harness.create("legacy", {}, annotations)
        await harness.synced("legacy")
        obj = await harness.get("legacy")
        assert obj["spec"]["name"] == "legacy"
        assert obj["spec"]["versioning"] == {"status": "Enabled"}
        assert obj["spec"]["tagging"] == {"tagSet": [{"key": "cost-center", "value": "42"}]}
        assert obj["status"]["ackResourceMetadata"]["arn"] == "arn:aws:s3:::legacy"
        # Managed from now on: the spec's versioning is read back on every reconcile.
        await harness.eventually(lambda: _managed(harness, "legacy"), True)


async def _managed(harness: BucketHarness, name: str) -> bool:
    status = (await harness.get(name)).get("status", {})
    return "versioning" in status.get("managedConfigurations", [])


async def test_adopt_fails_when_missing_or_owned_by_another_account(parts: Parts) -> None:
    async with bucket_controller(parts) as harness:
        adopt = {"services.k8s.aws/adoption-policy": "adopt"}
        await harness.create("nowhere", {"name": "nowhere"}, adopt)
        condition = await harness.condition("nowhere", "ACK.Terminal")
        assert "does not exist" in condition["message"] and TARGET in condition["message"]
        assert "nowhere" not in await names_of(harness, TARGET)  # adopt never creates

        await (await harness.s3(OTHER)).create_bucket(Bucket="theirs")
        await harness.create("theirs", {"name": "theirs"}, adopt)
        condition = await harness.condition("theirs", "ACK.Terminal")
        assert "not owned by account" in condition["message"]
        # Deleting the resource must not delete the other account's bucket.
        await harness.kube.delete(BUCKETS, "theirs", NAMESPACE)
        await harness.eventually(lambda: _gone(harness, "theirs"), True)
        assert "theirs" in await names_of(harness, OTHER)


async def test_adopt_or_create_takes_over_and_applies_the_spec(parts: Parts) -> None:
    async with bucket_controller(parts) as harness:
        s3 = await harness.s3()
        await s3.create_bucket(Bucket="existing")
        await s3.put_bucket_versioning(
            Bucket="existing", VersioningConfiguration={"Status": "Enabled"}
        )
        annotations = {"services.k8s.aws/adoption-policy": "adopt-or-create"}
        spec = {"name": "existing", "versioning": {"status": "Suspended"}}
        await harness.create("existing", spec, annotations)
        await harness.create("fresh", {"name": "fresh"}, annotations)
        await harness.synced("existing")
        await harness.synced("fresh")
        assert (await s3.get_bucket_versioning(Bucket="existing"))["Status"] == "Suspended"
        assert "fresh" in await names_of(harness, TARGET)


async def test_read_only_reports_drift_and_never_writes(parts: Parts) -> None:
    async with bucket_controller(parts, resync_seconds=0.3) as harness:
        s3 = await harness.s3()
        await s3.create_bucket(Bucket="observed")
        read_only = {"services.k8s.aws/read-only": "true"}
        spec = {"name": "observed", "versioning": {"status": "Enabled"}}
        await harness.create("observed", spec, read_only)
        await harness.eventually(lambda: _drift_message(harness, "observed"), "spec.versioning")
        # Someone makes AWS match: synced, still without a single write.
        await s3.put_bucket_versioning(
            Bucket="observed", VersioningConfiguration={"Status": "Enabled"}
        )
        await harness.synced("observed")
        assert harness.s3_calls(*PUTS, "CreateBucket", "DeleteBucket") == 0
        # A read-only bucket that does not exist is reported, not created.
        await harness.create("absent", {"name": "absent"}, read_only)
        condition = await harness.condition("absent", "ACK.Recoverable")
        assert "never creates" in condition["message"]
        # Deleting a read-only resource leaves the bucket.
        await harness.kube.delete(BUCKETS, "observed", NAMESPACE)
        await harness.eventually(lambda: _gone(harness, "observed"), True)
        assert "observed" in await names_of(harness, TARGET)
        assert "absent" not in await names_of(harness, TARGET)


async def _drift_message(harness: BucketHarness, name: str) -> str | None:
    for condition in (await harness.get(name)).get("status", {}).get("conditions", []):
        if condition["type"] == "ACK.ResourceSynced" and condition["status"] == "False":
            message = str(condition.get("message", ""))
            return "spec.versioning" if "spec.versioning" in message else message
    return None


async def test_fields_carm_does_not_manage_are_reported_as_advisory(parts: Parts) -> None:
    async with bucket_controller(parts) as harness:
        spec = {"name": "analysed", "analytics": [{"id": "all"}]}
        await harness.create("analysed", spec)
        await harness.synced("analysed")
        condition = await harness.condition("analysed", "ACK.Advisory")
        assert "spec.analytics" in condition["message"]
        await harness.remove_field("analysed", "analytics")
        await harness.eventually(lambda: _has_advisory(harness, "analysed"), False)


async def _has_advisory(harness: BucketHarness, name: str) -> bool:
    conditions = (await harness.get(name)).get("status", {}).get("conditions", [])
    return any(c["type"] == "ACK.Advisory" for c in conditions)


async def test_a_bucket_deleted_outside_carm_is_recreated_with_its_spec_at_resync(
    parts: Parts,
) -> None:
    async with bucket_controller(parts, resync_seconds=0.3) as harness:
        s3 = await harness.s3()
        spec = {"name": "phoenix", "versioning": {"status": "Enabled"}}
        await harness.create("phoenix", spec)
        await harness.synced("phoenix")
        creates = harness.s3_calls("CreateBucket")
        await s3.delete_bucket(Bucket="phoenix")
        await harness.eventually(
            lambda: _more_than(harness.s3_calls("CreateBucket"), creates), True
        )
        await harness.eventually(lambda: _versioning(s3, "phoenix"), "Enabled")


async def _more_than(now: float, before: float) -> bool:
    return now > before


async def _versioning(s3: Any, bucket: str) -> str | None:
    status = (await s3.get_bucket_versioning(Bucket=bucket)).get("Status")
    return str(status) if status else None
