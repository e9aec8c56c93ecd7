"""From a resource to its AWS target: account, role, credentials, region; failures become the
reconcile errors whose messages users read in the resource's conditions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from carm.accounts.clients import AwsClientPool
from carm.accounts.credentials import (
    AssumeRoleError,
    AwsCredentials,
    CredentialCache,
    SessionSpec,
)
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
        self.specs: list[SessionSpec] = []
        self.acts_in: str | None = None
        """When set, GetCallerIdentity reports this account for assumed credentials."""

    async def assume_role(self, spec: SessionSpec) -> AwsCredentials:
        role_arn = spec.role_arn
        self.calls.append((role_arn, spec.session_name))
        self.specs.append(spec)
        if role_arn == ROLE_DENIED:
            raise AssumeRoleError(role_arn, "AccessDenied", "not authorized", status_code=403)
        account = role_arn.split(":")[4]
        expiration = self.clock.wall() + spec.duration_seconds
        return AwsCredentials("ASIAFAKE0000000001", "s", "t", expiration, account, role_arn)

    async def caller_identity(self, credentials: AwsCredentials | None) -> str:
        if credentials is None:
            return "000000000000"
        return self.acts_in or credentials.account_id


def namespace(name: str, **annotations: str) -> dict[str, Any]:
    keys = {
        "account": "services.k8s.aws/owner-account-id",
        "region": "services.k8s.aws/default-region",
    }
    return {"metadata": {"name": name, "annotations": {keys[k]: v for k, v in annotations.items()}}}


def bucket(namespace: str, region: str | None = None) -> dict[str, Any]:
    annotations = {"services.k8s.aws/region": region} if region else {}
    return {
        "apiVersion": "s3.services.k8s.aws/v1alpha1",
        "kind": "Bucket",
        "metadata": {"name": "logs", "namespace": namespace, "annotations": annotations},
    }


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


async def test_retries_of_a_denied_role_keep_one_message_so_status_is_not_rewritten(
    targets: AccountTargets, sts: Sts, clock: FakeClock
) -> None:
    messages = []
    for _ in range(2):
        with pytest.raises(RecoverableError) as caught:
            await targets.target_for(bucket("denied"))
        messages.append(caught.value.message)
        await clock.advance(60)  # past the backoff: the next get calls STS again, and fails again
    assert len(sts.calls) == 2
    assert messages[0] == messages[1]
    assert "next attempt" not in messages[0]  # when is retry_after's job, not the message's


async def test_the_targets_satisfy_the_reconcile_interfaces(targets: AccountTargets) -> None:
    # The annotations make mypy check the structural match with carm.reconcile.interfaces.
    resolver: TargetResolver = targets
    target: AwsTarget = await resolver.target_for(bucket("prod"))
    assert (target.account_id, target.role_arn) == ("111111111111", ROLE_B)


# -- richer entries, verification, drift, placement, selectors --

ROLE_RICH = "arn:aws:iam::555555555555:role/rich"
RICH_ENTRY = (
    '{"roleARN": "' + ROLE_RICH + '", "externalID": "ext-123", "sessionDurationSeconds": 1800, '
    '"sourceIdentity": "carm-prod", "sessionTags": {"team": "a"}}'
)


@pytest.fixture
async def rich(clock: FakeClock, sts: Sts) -> AsyncIterator[AccountTargets]:
    settings = ResolverSettings(selectors=True)
    resolver = AccountResolver(ControllerIdentity("000000000000"), settings)
    resolver.on_role_map({"data": {"555555555555": RICH_ENTRY, "111111111111": ROLE_B}})
    resolver.on_namespace(namespace("rich", account="555555555555"), "rich")
    ns = namespace("prod", account="111111111111")
    ns["metadata"]["annotations"] |= {
        "services.k8s.aws/endpoint-url": "http://127.0.0.1:4566",
        "s3.services.k8s.aws/deletion-policy": "retain",
    }
    resolver.on_namespace(ns, "prod")
    resolver.on_selector(
        {
            "metadata": {"name": "labelled"},
            "spec": {
                "arn": "arn:aws:iam::666666666666:role/selected",
                "resourceLabelSelector": {"matchLabels": {"carm": "selected"}},
            },
        },
        "labelled",
    )
    async with AwsClientPool(clock=clock) as pool:
        yield AccountTargets(
            resolver,
            CredentialCache(sts, clock=clock),
            pool,
            clock=clock,
            default_region="us-west-2",
            session_name="carm-s3-test",
        )


async def test_a_json_entry_assumes_the_role_with_its_session_options(
    rich: AccountTargets, sts: Sts
) -> None:
    target = await rich.target_for(bucket("rich"))
    assert target.role_arn == ROLE_RICH
    assert sts.specs == [
        SessionSpec(ROLE_RICH, "carm-s3-test", "ext-123", 1800, "carm-prod", (("team", "a"),))
    ]


async def test_credentials_that_act_in_another_account_are_terminal_and_never_used(
    rich: AccountTargets, sts: Sts
) -> None:
    sts.acts_in = "999999999999"
    for _ in range(2):
        with pytest.raises(TerminalError) as caught:
            await rich.target_for(bucket("prod"))
    assert len(sts.calls) == 1  # cached with its backoff like any failure
    assert caught.value.reason == "CredentialsAccountMismatch"
    assert "act in account 999999999999" in caught.value.message
    assert "in account 111111111111" in caught.value.message


async def test_the_namespace_sets_endpoint_and_deletion_policy(rich: AccountTargets) -> None:
    target = await rich.target_for(bucket("prod"))
    assert target.deletion_policy == "retain"
    client = await target.client("s3")
    assert client.meta.endpoint_url == "http://127.0.0.1:4566"


async def test_an_invalid_deletion_policy_is_terminal_before_any_sts_call(
    rich: AccountTargets, sts: Sts
) -> None:
    obj = bucket("prod")
    obj["metadata"]["annotations"]["services.k8s.aws/deletion-policy"] = "Retain"
    with pytest.raises(TerminalError) as caught:
        await rich.target_for(obj)
    assert caught.value.reason == "InvalidDeletionPolicy" and "'Retain'" in caught.value.message
    assert sts.calls == []


async def test_account_drift_is_terminal_before_any_sts_call(
    rich: AccountTargets, sts: Sts
) -> None:
    obj = bucket("prod")
    obj["status"] = {"ackResourceMetadata": {"ownerAccountID": "555555555555"}}
    with pytest.raises(TerminalError) as caught:
        await rich.target_for(obj)
    assert caught.value.reason == "AccountDrift"
    assert sts.calls == []


async def test_the_iam_role_selected_condition_says_which_selector_or_why_none(
    rich: AccountTargets,
) -> None:
    obj = bucket("prod")
    obj["metadata"]["labels"] = {"carm": "selected"}
    selected = await rich.target_for(obj)
    assert (selected.account_id, selected.role_arn) == (
        "666666666666",
        "arn:aws:iam::666666666666:role/selected",
    )
    (condition,) = selected.conditions
    assert (condition.type.value, condition.status, condition.reason) == (
        "ACK.IAMRoleSelected",
        True,
        "Selected",
    )
    assert 'IAMRoleSelector "labelled"' in condition.message
    (unselected,) = (await rich.target_for(bucket("prod"))).conditions
    assert (unselected.status, unselected.reason) == (False, "NoSelectorMatched")


async def test_a_denied_selected_role_still_says_it_was_selected(
    clock: FakeClock, sts: Sts
) -> None:
    resolver = AccountResolver(ControllerIdentity("000000000000"), ResolverSettings(selectors=True))
    resolver.on_namespace(namespace("any"), "any")
    resolver.on_selector({"metadata": {"name": "all"}, "spec": {"arn": ROLE_DENIED}}, "all")
    async with AwsClientPool(clock=clock) as pool:
        targets = AccountTargets(
            resolver,
            CredentialCache(sts, clock=clock),
            pool,
            clock=clock,
            default_region="us-west-2",
            session_name="carm-s3-test",
        )
        with pytest.raises(RecoverableError) as caught:
            await targets.target_for(bucket("any"))
    assert caught.value.message.startswith(
        'namespace "any" (IAMRoleSelector "all", account 222222222222): cannot assume role '
        f"{ROLE_DENIED}: AccessDenied"
    )
    assert [c.reason for c in caught.value.conditions] == ["Selected"]


class ThrottledSts(Sts):
    async def assume_role(self, spec: SessionSpec) -> AwsCredentials:
        self.calls.append((spec.role_arn, spec.session_name))
        await anyio.lowlevel.checkpoint()  # the others pile up behind this one call
        raise AssumeRoleError(spec.role_arn, "Throttling", "Rate exceeded", status_code=400)


async def test_throttling_costs_one_call_for_every_waiting_resource_then_backs_off(
    clock: FakeClock,
) -> None:
    sts = ThrottledSts(clock)
    resolver = AccountResolver(ControllerIdentity("000000000000"), ResolverSettings())
    resolver.on_role_map({"data": {"111111111111": ROLE_B}})
    for index in range(20):
        resolver.on_namespace(namespace(f"ns-{index}", account="111111111111"), f"ns-{index}")
    errors: list[RecoverableError] = []
    async with AwsClientPool(clock=clock) as pool:
        targets = AccountTargets(
            resolver,
            CredentialCache(sts, clock=clock),
            pool,
            clock=clock,
            default_region="us-west-2",
            session_name="carm-s3-test",
        )

        async def reconcile(ns: str) -> None:
            with pytest.raises(RecoverableError) as caught:
                await targets.target_for(bucket(ns))
            errors.append(caught.value)

        async with anyio.create_task_group() as group:
            for index in range(20):
                for _ in range(10):
                    group.start_soon(reconcile, f"ns-{index}")
        assert len(sts.calls) == 1  # 200 reconciles of 20 namespaces: one STS call
        await clock.advance(4.9)
        await reconcile("ns-0")
        assert len(sts.calls) == 1  # still backing off
    assert len(errors) == 201
    assert all(ROLE_B in e.message and "Throttling: Rate exceeded" in e.message for e in errors)
    assert {e.retry_after for e in errors[:200]} == {5.0}
