"""What becomes Terminal and what Recoverable, and which specs are refused before any call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError

from carm.cli import build_parser, settings_from_args
from carm.reconcile.errors import RecoverableError, TerminalError
from carm.resources.aws_errors import classify
from carm.resources.kind import Identity
from carm.resources.s3.bucket import TERMINAL_CODES, Bucket
from carm.resources.s3.spec import desired_bucket


@dataclass
class Target:
    account_id: str = "111111111111"
    region: str = "eu-west-1"
    partition: str = "aws"
    role_arn: str | None = "arn:aws:iam::111111111111:role/s3"
    deletion_policy: str = "delete"

    async def client(self, service: str) -> Any:
        raise AssertionError("no calls")


def answer(code: str, status: int, message: str = "S3 says no") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "PutBucketPolicy",
    )


@pytest.mark.parametrize(
    ("error", "terminal", "reason"),
    [
        (answer("MalformedPolicy", 400, "Policy has invalid resource"), True, "MalformedPolicy"),
        (answer("InvalidBucketName", 400), True, "InvalidBucketName"),
        (answer("MalformedXML", 400), True, "MalformedXML"),
        (answer("InvalidBucketState", 409), True, "InvalidBucketState"),
        (answer("PermanentRedirect", 301), True, "PermanentRedirect"),
        (ParamValidationError(report="Invalid bucket name"), True, "InvalidParameter"),
        (answer("SlowDown", 503), False, "SlowDown"),
        (answer("Throttling", 400), False, "Throttling"),
        (answer("InternalError", 500), False, "InternalError"),
        (answer("RequestTimeout", 400), False, "RequestTimeout"),
        (answer("ExpiredToken", 400), False, "ExpiredToken"),
        (answer("OperationAborted", 409), False, "OperationAborted"),
        (answer("AccessDenied", 403), False, "AccessDenied"),
        (answer("NoSuchBucket", 404), False, "NoSuchBucket"),
        (EndpointConnectionError(endpoint_url="http://s3"), False, "AWSUnreachable"),
    ],
)
def test_requests_aws_judges_wrong_are_terminal_and_passing_trouble_recoverable(
    error: Exception, terminal: bool, reason: str
) -> None:
    classified = classify(error, "applying spec.policy", Target(), terminal_codes=TERMINAL_CODES)
    assert classified.terminal is terminal
    assert classified.reason == reason
    assert "applying spec.policy" in classified.message
    assert "111111111111" in classified.message and "eu-west-1" in classified.message


def test_the_message_is_aws_own_and_access_denied_names_the_role() -> None:
    classified = classify(answer("MalformedPolicy", 400, "Invalid principal"), "x", Target())
    assert classified.message.endswith("MalformedPolicy: Invalid principal")
    denied = classify(answer("AccessDenied", 403), "x", Target())
    assert "arn:aws:iam::111111111111:role/s3" in denied.message


def bucket(spec: dict[str, Any], **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": "b", "namespace": "prod", "labels": labels}, "spec": spec}


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"acl": "private", "grantRead": 'uri="x"'}, "spec.acl"),
        (
            {"objectOwnership": "ObjectWriter", "ownershipControls": {"rules": []}},
            "spec.objectOwnership",
        ),
        ({"objectOwnership": "Nobody"}, "spec.objectOwnership"),
        ({"accelerate": {"status": "On"}}, "spec.accelerate.status"),
        ({"requestPayment": {"payer": "Someone"}}, "spec.requestPayment.payer"),
        ({"policy": '{"Version": "2012-10-17"}'}, "spec.policy"),
        ({"tagging": {"tagSet": [{"key": "a"}, {"key": "a"}]}}, "spec.tagging.tagSet[1]"),
        ({"tagging": {"tagSet": [{"key": "aws:owner", "value": "x"}]}}, "spec.tagging.tagSet"),
        (
            {"lifecycle": {"rules": [{"expiration": {"date": "next tuesday"}}]}},
            "spec.lifecycle.rules[0].expiration.date",
        ),
        (
            {
                "encryption": {
                    "rules": [
                        {
                            "applyServerSideEncryptionByDefault": {
                                "sseAlgorithm": "aws:kms",
                                "kmsMasterKeyRef": {"from": {"name": "my-key"}},
                            }
                        }
                    ]
                }
            },
            "kmsMasterKeyRef",
        ),
    ],
)
def test_specs_s3_cannot_take_are_terminal_and_name_the_field(
    spec: dict[str, Any], field: str
) -> None:
    with pytest.raises(TerminalError) as raised:
        desired_bucket(bucket({"name": "b", **spec}), Target(), ())
    assert field in raised.value.message and raised.value.reason == "InvalidSpec"


def test_what_a_spec_manages() -> None:
    defaults = (("services.k8s.aws/namespace", "%K8S_NAMESPACE%"),)
    spec = {
        "name": "b",
        "objectOwnership": "ObjectWriter",
        "grantRead": 'uri="http://acs.amazonaws.com/groups/global/AllUsers"',
        "versioning": {"status": "Enabled"},
        "createBucketConfiguration": {"locationConstraint": "eu-central-1"},
        "objectLockEnabledForBucket": True,
        "inventory": [{"id": "weekly"}],
    }
    desired = desired_bucket(bucket(spec), Target(), defaults)
    assert set(desired.fields) == {
        "ownershipControls",
        "acl",
        "versioning",
        "objectLockEnabledForBucket",
        "tagging",
    }
    assert desired.fields["tagging"] == {"services.k8s.aws/namespace": "prod"}
    assert desired.fields["ownershipControls"] == {"rules": [{"objectOwnership": "ObjectWriter"}]}
    assert desired.create == {
        "region": "eu-central-1",
        "CreateBucketConfiguration": {"LocationConstraint": "eu-central-1"},
        "ObjectLockEnabledForBucket": True,
        "ObjectOwnership": "ObjectWriter",
    }
    assert desired.unmanaged == ("inventory",)
    # us-east-1 is S3's default location and may not be named as a constraint.
    east = desired_bucket(bucket({"name": "b"}), Target(region="us-east-1"), ())
    assert east.create == {"region": "us-east-1"} and east.fields == {}


class FailingReads:
    """An S3 client whose Gets answer with the given errors (and empty answers otherwise)."""

    def __init__(self, **failures: ClientError) -> None:
        self.failures = failures

    def __getattr__(self, method: str) -> Any:
        async def call(**_: Any) -> dict[str, Any]:
            if method in self.failures:
                raise self.failures[method]
            return {}

        return call


@dataclass
class ClientTarget(Target):
    s3: Any = None

    async def client(self, service: str) -> Any:
        return self.s3


async def test_a_failing_read_is_one_reconcile_error_and_terminal_ones_come_first() -> None:
    fields = ["versioning", "policy", "cors"]
    denied = ClientTarget(s3=FailingReads(get_bucket_policy=answer("AccessDenied", 403)))
    with pytest.raises(RecoverableError) as recoverable:
        await Bucket().read(Identity({"name": "b"}), fields, denied)
    assert "reading spec.policy of bucket b" in recoverable.value.message
    both = ClientTarget(
        s3=FailingReads(
            get_bucket_policy=answer("AccessDenied", 403),
            get_bucket_cors=answer("InvalidArgument", 400, "bad"),
        )
    )
    with pytest.raises(TerminalError) as terminal:
        await Bucket().read(Identity({"name": "b"}), fields, both)
    assert "spec.cors" in terminal.value.message


def test_resource_tags_flag_defaults_to_acks_and_can_be_emptied() -> None:
    def tags(*flags: str) -> tuple[str, ...]:
        args = build_parser().parse_args(["run", "--aws-region", "us-east-1", *flags])
        return settings_from_args(args).resource_tags

    assert tags() == (
        "services.k8s.aws/controller-version=%CONTROLLER_SERVICE%-%CONTROLLER_VERSION%",
        "services.k8s.aws/namespace=%K8S_NAMESPACE%",
    )
    assert tags("--resource-tags", "team=a, ns=%K8S_NAMESPACE%") == ("team=a", "ns=%K8S_NAMESPACE%")
    assert tags("--resource-tags", "") == ()
