"""From a resource to its AWS target: account, role, credentials, region; failures become the
reconcile errors whose messages users read in the resource's conditions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from carm.accounts.clients import AwsClientPool
from carm.accounts.credentials import AssumeRoleError, AwsCredentials, CredentialCache
from carm.accounts.resolver import AccountResolver, ControllerIdentity, ResolverSettings
from carm.accounts.targets import AccountTargets
from carm.clock import FakeClock
from carm.reconcile.errors import RecoverableError, TerminalError
from carm.reconcile.interfaces import AwsTarget, TargetResolver

ROLE_B = "arn:aws:iam::111111111111:role/s3FullAccess"
ROLE_DENIED = "arn:aws:iam::222222222222:role/s3FullAccess"


class Sts:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[tuple[str, str]] = []

    async def assume_role(
        self, role_arn: str, session_name: str, duration_seconds: int, external_id: str | None
    ) -> AwsCredentials:
        self.calls.append((role_arn, session_name))
        if role_arn == ROLE_DENIED:
            raise AssumeRoleError(role_arn, "AccessDenied", "not authorized", status_code=403)
        account = role_arn.split(":")[4]
        expiration = self.clock.wall() + duration_seconds
        return AwsCredentials("ASIAFAKE0000000001", "s", "t", expiration, account, role_arn)

    async def caller_identity(self, credentials: AwsCredentials | None) -> str:
        return "000000000000"


def namespace(name: str, **annotations: str) -> dict[str, Any]:
    keys = {
        "account": "services.k8s.aws/owner-account-id",
        "region": "services.k8s.aws/default-region",
    }
    return {"metadata": {"name": name, "annotations": {keys[k]: v for k, v in annotations.items()}}}


def bucket(namespace: str, region: str | None = None) -> dict[str, Any]:
    annotations = {"services.k8s.aws/region": region} if region else {}
    return {"metadata": {"name": "logs", "namespace": namespace, "annotations": annotations}}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sts(clock: FakeClock) -> Sts:
    return Sts(clock)


@pytest.fixture
async def targets(clock: FakeClock, sts: Sts) -> AsyncIterator[AccountTargets]:
    resolver = AccountResolver(ControllerIdentity("000000000000"), ResolverSettings())
    resolver.on_role_map(
        {"data": {"111111111111": ROLE_B, "222222222222": ROLE_DENIED, "333333333333": "nope"}}
    )
    resolver.on_namespace(namespace("plain"), "plain")
    resolver.on_namespace(namespace("prod", account="111111111111", region="eu-west-1"), "prod")
    resolver.on_namespace(namespace("denied", account="222222222222"), "denied")
    resolver.on_namespace(namespace("typo", account="333333333333"), "typo")
    resolver.on_namespace(namespace("unmapped", account="444444444444"), "unmapped")
    cache = CredentialCache(sts, clock=clock)
    async with AwsClientPool(clock=clock) as pool:
        yield AccountTargets(
            resolver,
            cache,
            pool,
            clock=clock,
            default_region="us-west-2",
            session_name="carm-s3-test",
            endpoint_url="http://127.0.0.1:1",
        )


async def test_an_unannotated_namespace_targets_the_own_account_without_a_role(
    targets: AccountTargets, sts: Sts
) -> None:
    target = await targets.target_for(bucket("plain"))
    assert (target.account_id, target.role_arn, target.credentials) == ("000000000000", None, None)
    assert target.region == "us-west-2"
    assert sts.calls == []
    assert targets.lane_of("plain") == "000000000000"


async def test_an_annotated_namespace_targets_its_account_with_the_assumed_role(
    targets: AccountTargets, sts: Sts
) -> None:
    target = await targets.target_for(bucket("prod"))
    assert (target.account_id, target.role_arn, target.partition) == (
        "111111111111",
        ROLE_B,
        "aws",
    )
    assert target.credentials is not None
    assert target.credentials.account_id == "111111111111"
    assert target.region == "eu-west-1"  # the namespace's default region
    assert sts.calls == [(ROLE_B, "carm-s3-test")]
    client = await target.client("s3")
    assert client.meta.region_name == "eu-west-1"
    assert await target.client("s3") is client
    assert targets.lane_of("prod") == "111111111111"


async def test_the_resources_region_annotation_wins(targets: AccountTargets) -> None:
    target = await targets.target_for(bucket("prod", region="ap-south-1"))
    assert target.region == "ap-south-1"


async def test_a_missing_mapping_is_recoverable_and_requeued_after_15_seconds(
    targets: AccountTargets,
) -> None:
    with pytest.raises(RecoverableError) as caught:
        await targets.target_for(bucket("unmapped"))
    assert caught.value.reason == "RoleNotAvailable"
    assert caught.value.message.startswith("IAM Role is not available: ")
    assert caught.value.retry_after == 15
    assert targets.lane_of("unmapped") == ""


async def test_a_bad_role_arn_is_terminal(targets: AccountTargets) -> None:
    with pytest.raises(TerminalError) as caught:
        await targets.target_for(bucket("typo"))
    assert caught.value.reason == "InvalidRoleARN"
    assert "'nope'" in caught.value.message


async def test_a_denied_role_is_recoverable_after_the_backoff_and_names_everything(
    targets: AccountTargets, sts: Sts
) -> None:
    for _ in range(3):
        with pytest.raises(RecoverableError) as caught:
            await targets.target_for(bucket("denied"))
    assert len(sts.calls) == 1  # the failure is cached
    assert caught.value.reason == "AssumeRoleFailed"
    assert caught.value.retry_after == 5
    assert caught.value.message.startswith(
        f'namespace "denied" (owner account 222222222222): cannot assume role {ROLE_DENIED}: '
        "AccessDenied: not authorized"
    )


async def test_the_targets_satisfy_the_reconcile_interfaces(targets: AccountTargets) -> None:
    # The annotations make mypy check the structural match with carm.reconcile.interfaces.
    resolver: TargetResolver = targets
    target: AwsTarget = await resolver.target_for(bucket("prod"))
    assert (target.account_id, target.role_arn) == ("111111111111", ROLE_B)
