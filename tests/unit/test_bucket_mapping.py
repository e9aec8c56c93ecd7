"""The Bucket spec's mapping to S3 and back: field names, enums, comparison, policies, ACLs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from carm.resources.crds import file_name, render
from carm.resources.s3 import acl
from carm.resources.s3.compare import satisfied
from carm.resources.s3.crd import BUCKET_CRD, SPEC_SCHEMA, Schema
from carm.resources.s3.policy import same_policy
from carm.resources.s3.shapes import SpecError, from_aws, input_member, key, to_aws
from carm.resources.s3.subconfigs import SUBCONFIGS, Structure

REPO = Path(__file__).resolve().parents[2]


def _unmapped(schema: Schema, shape: Any, path: str) -> tuple[list[str], list[str]]:
    """(schema properties with no S3 member, S3 members with no schema property)."""
    missing: list[str] = []
    extra: list[str] = []
    if schema.get("type") == "array":
        return _unmapped(schema["items"], shape.member, f"{path}[]")
    if schema.get("type") != "object":
        return missing, extra
    members = {key(name): name for name in shape.members}
    properties: dict[str, Schema] = schema.get("properties") or {}
    for name, sub in properties.items():
        member = members.get(key(name))
        if member is None:
            missing.append(f"{path}.{name}")
            continue
        more_missing, more_extra = _unmapped(sub, shape.members[member], f"{path}.{name}")
        missing += more_missing
        extra += more_extra
    known = {key(name) for name in properties}
    extra += [f"{path}.{name}" for k, name in members.items() if k not in known]
    return missing, extra


def test_every_spec_field_maps_to_an_s3_member_and_only_acks_omissions_are_left_out() -> None:
    missing: list[str] = []
    extra: list[str] = []
    for name, config in SUBCONFIGS.items():
        if isinstance(config, Structure):
            shape = input_member(config.put_operation, config.put_member)
            more_missing, more_extra = _unmapped(SPEC_SCHEMA["properties"][name], shape, name)
            missing += more_missing
            extra += more_extra
    # A Kubernetes reference, not an S3 member (carm refuses it with a clear message).
    assert missing == ["encryption.rules[].applyServerSideEncryptionByDefault.kmsMasterKeyRef"]
    # What ACK's generator ignores, so its CRD (and carm's) cannot express it.
    assert sorted(extra) == [
        "logging.loggingEnabled.TargetObjectKeyFormat",
        "notification.EventBridgeConfiguration",
        "versioning.MFADelete",
    ]


def test_acks_field_spellings_reach_s3_with_s3s_spelling() -> None:
    spec = {
        "blockPublicACLs": True,
        "ignorePublicACLs": False,
        "blockPublicPolicy": True,
        "restrictPublicBuckets": True,
    }
    shape = input_member("PutPublicAccessBlock", "PublicAccessBlockConfiguration")
    assert to_aws(spec, shape, "spec.publicAccessBlock") == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": False,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    grantee = {"type_": "Group", "uRI": "http://acs.amazonaws.com/groups/s3/LogDelivery"}
    logging = {"loggingEnabled": {"targetBucket": "b", "targetGrants": [{"grantee": grantee}]}}
    request = to_aws(logging, input_member("PutBucketLogging", "BucketLoggingStatus"), "spec")
    assert request["LoggingEnabled"]["TargetGrants"][0]["Grantee"] == {
        "Type": "Group",
        "URI": "http://acs.amazonaws.com/groups/s3/LogDelivery",
    }


def test_s3_answers_come_back_in_the_specs_spelling_without_what_acks_spec_lacks() -> None:
    answer = {
        "TopicConfigurations": [
            {"Id": "t", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Events": ["s3:ObjectCreated:*"]}
        ],
        "EventBridgeConfiguration": {},
    }
    assert from_aws(answer, SPEC_SCHEMA["properties"]["notification"]) == {
        "topicConfigurations": [
            {"id": "t", "topicARN": "arn:aws:sns:us-east-1:1:t", "events": ["s3:ObjectCreated:*"]}
        ]
    }
    lifecycle = {"Rules": [{"Expiration": {"Date": datetime(2030, 1, 1, tzinfo=UTC)}}]}
    converted = from_aws(lifecycle, SPEC_SCHEMA["properties"]["lifecycle"])
    assert converted == {"rules": [{"expiration": {"date": "2030-01-01T00:00:00Z"}}]}


def test_an_enum_value_s3_does_not_know_names_the_field_and_the_choices() -> None:
    rules = [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES-256"}}]
    shape = input_member("PutBucketEncryption", "ServerSideEncryptionConfiguration")
    with pytest.raises(SpecError) as raised:
        to_aws({"rules": rules}, shape, "spec.encryption")
    assert (
        raised.value.path
        == "spec.encryption.rules[0].applyServerSideEncryptionByDefault.sseAlgorithm"
    )
    assert "'AES-256'" in str(raised.value) and "'AES256'" in str(raised.value)


@pytest.mark.parametrize(
    ("field", "desired", "observed", "same"),
    [
        # S3's defaults are not drift.
        (
            "encryption",
            {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]},
            {
                "rules": [
                    {
                        "applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"},
                        "bucketKeyEnabled": False,
                    }
                ]
            },
            True,
        ),
        # Ids S3 assigned to rules the spec left unnamed are not drift; a named one is.
        (
            "lifecycle",
            {"rules": [{"status": "Enabled", "filter": {"prefix": "a/"}}]},
            {"rules": [{"id": "Zm9v", "status": "Enabled", "filter": {"prefix": "a/"}}]},
            True,
        ),
        (
            "lifecycle",
            {"rules": [{"id": "mine", "status": "Enabled"}]},
            {"rules": [{"id": "other", "status": "Enabled"}]},
            False,
        ),
        # Sets of strings in any order; lists of rules in order (first match wins).
        (
            "cors",
            {"corsRules": [{"allowedMethods": ["GET", "PUT"], "allowedOrigins": ["*"]}]},
            {"corsRules": [{"allowedMethods": ["PUT", "GET"], "allowedOrigins": ["*"]}]},
            True,
        ),
        (
            "website",
            {"routingRules": [{"redirect": {"hostName": "a"}}, {"redirect": {"hostName": "b"}}]},
            {"routingRules": [{"redirect": {"hostName": "b"}}, {"redirect": {"hostName": "a"}}]},
            False,
        ),
        # Date-times as instants.
        (
            "lifecycle",
            {"rules": [{"expiration": {"date": "2030-01-01T00:00:00.000+00:00"}}]},
            {"rules": [{"expiration": {"date": "2030-01-01T00:00:00Z"}}]},
            True,
        ),
        # An extra rule added outside carm is drift.
        (
            "cors",
            {"corsRules": [{"allowedMethods": ["GET"], "allowedOrigins": ["*"]}]},
            {
                "corsRules": [
                    {"allowedMethods": ["GET"], "allowedOrigins": ["*"]},
                    {"allowedMethods": ["DELETE"], "allowedOrigins": ["*"]},
                ]
            },
            False,
        ),
    ],
)
def test_comparison_sees_real_changes_only(
    field: str, desired: Any, observed: Any, same: bool
) -> None:
    assert satisfied(desired, observed, SPEC_SCHEMA["properties"][field]) is same


def test_never_enabled_acceleration_is_suspended_acceleration() -> None:
    accelerate = SUBCONFIGS["accelerate"]
    assert accelerate.satisfied({"status": "Suspended"}, None)
    assert not accelerate.satisfied({"status": "Enabled"}, None)
    assert accelerate.spec_value({"status": "Suspended"}) is None  # nothing to adopt


def _policy(**statement: Any) -> str:
    base = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "r"}
    return json.dumps({"Version": "2012-10-17", "Statement": [base | statement]})


@pytest.mark.parametrize(
    ("desired", "observed", "same"),
    [
        (_policy(), _policy(), True),
        # S3's rendering: other spacing, lists for strings, a dict for a single statement.
        (
            _policy(),
            json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": {
                        "Resource": ["r"],
                        "Action": ["s3:GetObject"],
                        "Principal": "*",
                        "Effect": "Allow",
                    },
                },
                indent=2,
            ),
            True,
        ),
        # Actions are case-insensitive; resources are not.
        (_policy(Action="s3:getobject"), _policy(), True),
        (_policy(Resource="R"), _policy(), False),
        # An account id is its root principal.
        (
            _policy(Principal={"AWS": "111111111111"}),
            _policy(Principal={"AWS": ["arn:aws:iam::111111111111:root"]}),
            True,
        ),
        # Statement order has no meaning; content does.
        (
            json.dumps({"Statement": [{"Sid": "a"}, {"Sid": "b"}]}),
            json.dumps({"Version": "2008-10-17", "Statement": [{"Sid": "b"}, {"Sid": "a"}]}),
            True,
        ),
        (_policy(Effect="Deny"), _policy(), False),
        (_policy(), None, False),
    ],
)
def test_policies_are_compared_as_policies(desired: str, observed: str | None, same: bool) -> None:
    assert same_policy(desired, observed) is same


OWNER = "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a"


def _acl_answer(*grants: tuple[str, str, str]) -> dict[str, Any]:
    def grantee(kind: str, who: str) -> dict[str, str]:
        if kind == "id":
            return {"Type": "CanonicalUser", "ID": who}
        return {"Type": "Group", "URI": who}

    return {
        "Owner": {"ID": OWNER},
        "Grants": [{"Grantee": grantee(k, w), "Permission": p} for k, w, p in grants],
    }


def test_canned_acls_and_grant_headers_compare_with_getbucketacl() -> None:
    public_read = _acl_answer(("id", OWNER, "FULL_CONTROL"), ("uri", acl.ALL_USERS, "READ"))
    assert acl.acl_satisfied({"acl": "public-read"}, public_read)
    assert not acl.acl_satisfied({"acl": "private"}, public_read)
    assert acl.acl_satisfied({}, _acl_answer(("id", OWNER, "FULL_CONTROL")))  # removed: private
    header = {"grantRead": f'uri="{acl.ALL_USERS}"', "grantFullControl": f'id="{OWNER}"'}
    assert acl.acl_satisfied(header, public_read)
    assert acl.put_request(header) == {
        "GrantRead": f'uri="{acl.ALL_USERS}"',
        "GrantFullControl": f'id="{OWNER}"',
    }
    # What adoption writes back describes the same ACL.
    assert acl.spec_of(public_read) == {"acl": "public-read"}
    odd = _acl_answer(("uri", acl.AUTHENTICATED_USERS, "WRITE"))
    assert acl.acl_satisfied(acl.spec_of(odd), odd)


def test_acl_spec_errors_name_the_field() -> None:
    with pytest.raises(SpecError, match=r"cannot be combined with spec\.grantRead"):
        acl.acl_spec({"acl": "private", "grantRead": 'uri="x"'})
    with pytest.raises(SpecError, match=r"spec\.grantWrite"):
        acl.acl_spec({"grantWrite": "everyone"})
    with pytest.raises(SpecError, match="'public'"):
        acl.acl_spec({"acl": "public"})


def test_deploy_crds_file_is_generated_from_the_code() -> None:
    path = REPO / "deploy" / "crds" / file_name(BUCKET_CRD)
    assert path.read_text() == render(BUCKET_CRD), "run: python -m carm.resources.crds deploy/crds"


def test_an_ack_bucket_manifest_uses_only_fields_of_the_crd() -> None:
    """Every spec field ACK's s3-controller defines is in the schema (so the API server keeps
    them and `kubectl apply` with strict field validation accepts them)."""
    acks_fields = {
        "accelerate", "acl", "analytics", "cors", "createBucketConfiguration", "encryption",
        "grantFullControl", "grantRead", "grantReadACP", "grantWrite", "grantWriteACP",
        "intelligentTiering", "inventory", "lifecycle", "logging", "metrics", "name",
        "notification", "objectLockEnabledForBucket", "objectOwnership", "ownershipControls",
        "policy", "publicAccessBlock", "replication", "requestPayment", "tagging", "versioning",
        "website",
    }  # fmt: skip
    assert set(SPEC_SCHEMA["properties"]) == acks_fields
    rendered = yaml.safe_load(render(BUCKET_CRD))
    version = rendered["spec"]["versions"][0]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["ACCOUNT"] == ".status.ackResourceMetadata.ownerAccountID"
    assert version["schema"]["openAPIV3Schema"]["properties"]["spec"]["required"] == ["name"]
