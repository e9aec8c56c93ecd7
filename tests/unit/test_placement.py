"""Region, endpoint and deletion policy with ACK's precedence and their sources; values carm will
not guess and drift are Terminal problems that name the value and where it came from."""

from __future__ import annotations

from typing import Any

import pytest

from carm.accounts.placement import (
    Placement,
    PlacementDefaults,
    PlacementError,
    account_drift,
    placement_of,
)
from carm.accounts.rules import NamespaceInfo, Resolution

DEFAULTS = PlacementDefaults("us-west-2", None, "delete")


def bucket(
    annotations: dict[str, str] | None = None, status: dict[str, str] | None = None
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "s3.services.k8s.aws/v1alpha1",
        "kind": "Bucket",
        "metadata": {"namespace": "prod", "name": "logs", "annotations": annotations or {}},
    }
    if status is not None:
        obj["status"] = {"ackResourceMetadata": status}
    return obj


def placed(obj: dict[str, Any], ns: NamespaceInfo | None = None) -> Placement:
    result = placement_of(obj, ns, DEFAULTS)
    assert isinstance(result, Placement), result
    return result


def problem(obj: dict[str, Any], ns: NamespaceInfo | None = None) -> PlacementError:
    result = placement_of(obj, ns, DEFAULTS)
    assert isinstance(result, PlacementError), result
    return result


NS = NamespaceInfo(
    "111111111111",
    default_region="eu-west-1",
    endpoint_url="http://s3.internal:9000",
    deletion_policies=(("s3", "retain"),),
)


def test_flags_apply_when_nothing_is_annotated() -> None:
    result = placed(bucket(), NamespaceInfo(None))
    assert (result.region, result.region_source) == ("us-west-2", "--aws-region")
    assert (result.endpoint_url, result.endpoint_source) == (None, "the AWS default endpoint")
    assert (result.deletion_policy, result.deletion_policy_source) == (
        "delete",
        "--deletion-policy",
    )


def test_the_namespace_beats_the_flags() -> None:
    result = placed(bucket(), NS)
    assert (result.region, result.region_source) == (
        "eu-west-1",
        "namespace annotation services.k8s.aws/default-region",
    )
    assert result.endpoint_url == "http://s3.internal:9000"
    assert result.endpoint_source == "namespace annotation services.k8s.aws/endpoint-url"
    assert (result.deletion_policy, result.deletion_policy_source) == (
        "retain",
        "namespace annotation s3.services.k8s.aws/deletion-policy",
    )


def test_the_resource_beats_the_namespace() -> None:
    obj = bucket(
        {"services.k8s.aws/region": "ap-south-1", "services.k8s.aws/deletion-policy": "delete"}
    )
    result = placed(obj, NS)
    assert (result.region, result.deletion_policy) == ("ap-south-1", "delete")
    assert result.deletion_policy_source == "annotation services.k8s.aws/deletion-policy"


def test_the_namespace_deletion_policy_is_read_for_the_resource_own_service() -> None:
    namespace = NamespaceInfo.of(
        {
            "metadata": {
                "name": "prod",
                "annotations": {
                    "sqs.services.k8s.aws/deletion-policy": "retain",
                    "services.k8s.aws/deletion-policy": "retain",  # a resource's, not a namespace's
                },
            }
        }
    )
    assert namespace.deletion_policies == (("sqs", "retain"),)
    the_bucket = placed(bucket(), namespace)
    assert (the_bucket.deletion_policy, the_bucket.deletion_policy_source) == (
        "delete",
        "--deletion-policy",
    )
    queue = {
        "apiVersion": "sqs.services.k8s.aws/v1alpha1",
        "kind": "Queue",
        "metadata": {"namespace": "prod", "name": "jobs"},
    }
    the_queue = placed(queue, namespace)
    assert (the_queue.deletion_policy, the_queue.deletion_policy_source) == (
        "retain",
        "namespace annotation sqs.services.k8s.aws/deletion-policy",
    )


def test_the_recorded_region_beats_everything_and_a_changed_default_is_only_advice() -> None:
    obj = bucket(status={"region": "us-east-1", "ownerAccountID": "111111111111"})
    result = placed(obj, NS)
    assert (result.region, result.region_source) == (
        "us-east-1",
        "status.ackResourceMetadata.region",
    )
    assert result.advisories == (
        "namespace annotation services.k8s.aws/default-region now says region eu-west-1; this "
        "resource stays in us-east-1, where it was created (status.ackResourceMetadata.region)",
    )


def test_a_region_annotation_that_contradicts_the_recorded_region_is_drift() -> None:
    obj = bucket({"services.k8s.aws/region": "eu-west-1"}, status={"region": "us-east-1"})
    error = problem(obj)
    assert error.reason == "RegionDrift"
    assert "created in region us-east-1" in error.message and "now says eu-west-1" in error.message


@pytest.mark.parametrize(
    ("annotations", "ns", "reason", "quoted"),
    [
        ({"services.k8s.aws/deletion-policy": "Retain"}, None, "InvalidDeletionPolicy", "'Retain'"),
        (
            {},
            NamespaceInfo(None, deletion_policies=(("s3", "keep"),)),
            "InvalidDeletionPolicy",
            "'keep' (from namespace annotation s3.services.k8s.aws/deletion-policy)",
        ),
        ({"services.k8s.aws/region": "mars-1"}, None, "InvalidRegion", "'mars-1'"),
        ({}, NamespaceInfo(None, endpoint_url="s3.local"), "InvalidEndpointURL", "'s3.local'"),
    ],
)
def test_values_carm_will_not_guess_are_terminal_and_quoted(
    annotations: dict[str, str], ns: NamespaceInfo | None, reason: str, quoted: str
) -> None:
    error = problem(bucket(annotations), ns)
    assert error.reason == reason
    assert quoted in error.message and "Bucket prod/logs" in error.message


def test_account_drift_names_both_accounts() -> None:
    now = Resolution("222222222222", "arn:aws:iam::222222222222:role/x", "aws", "re-annotated")
    assert account_drift(bucket(status={"ownerAccountID": "222222222222"}), now) is None
    assert account_drift(bucket(), now) is None  # never created: nothing to drift from
    message = account_drift(bucket(status={"ownerAccountID": "111111111111"}), now)
    assert message is not None
    assert "created in account 111111111111" in message
    assert "now resolves to account 222222222222" in message
    assert "no AWS call" in message
