"""Accounts against a real moto server: the controller is account 000000000000, assumed roles act
in their own accounts, buckets land in the right account, denials are cached with backoff."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import pytest

from carm.accounts.clients import AwsClientPool
from carm.accounts.credentials import AssumeRoleError, CredentialCache, SessionSpec
from carm.accounts.sts import StsRoleAssumer
from carm.clock import FakeClock
from carm.observability.metrics import Metrics
from carm.sandbox.moto import MotoServer

REGION = "us-east-1"
ROLE_B = "arn:aws:iam::111111111111:role/s3FullAccess"
ROLE_C = "arn:aws:iam::222222222222:role/s3FullAccess"


@dataclass
class Accounts:
    moto: MotoServer
    clock: FakeClock
    metrics: Metrics
    pool: AwsClientPool
    sts: StsRoleAssumer
    cache: CredentialCache

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def accounts(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Accounts]:
    # The controller's own credentials come from the default chain, as in a pod.
    for name, value in moto_server.controller_env().items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # Real network, virtual time for backoff and refresh; wall time matches moto's.
    clock = FakeClock(start=0.0, wall_offset=time.time())
    metrics = Metrics()
    async with AwsClientPool(clock=clock, metrics=metrics) as pool:
        sts = StsRoleAssumer(pool, region=REGION, endpoint_url=moto_server.url)
        cache = CredentialCache(sts, clock=clock, metrics=metrics)
        cache.add_listener(pool.retire)
        yield Accounts(moto_server, clock, metrics, pool, sts, cache)


def spec(role_arn: str) -> SessionSpec:
    return SessionSpec(role_arn, "carm-s3-integration")


async def test_the_controller_is_000000000000_and_assumed_roles_act_in_their_account(
    accounts: Accounts,
) -> None:
    assert await accounts.sts.caller_identity(None) == "000000000000"

    credentials = await accounts.cache.get(spec(ROLE_B))
    assert credentials.account_id == "111111111111"
    assert credentials.role_arn == ROLE_B
    assert credentials.seconds_left(accounts.clock.wall()) == pytest.approx(3600, abs=5)
    assert await accounts.sts.caller_identity(credentials) == "111111111111"


async def test_a_bucket_created_with_assumed_credentials_belongs_to_the_roles_account(
    accounts: Accounts,
) -> None:
    credentials = await accounts.cache.get(spec(ROLE_B))
    s3_b = await accounts.pool.client("s3", credentials, REGION, accounts.moto.url)
    await s3_b.create_bucket(Bucket="carm-it-team-b")
    s3_own = await accounts.pool.client("s3", None, REGION, accounts.moto.url)
    await s3_own.create_bucket(Bucket="carm-it-controller")

    assert await accounts.moto.list_bucket_names("111111111111") == ["carm-it-team-b"]
    assert await accounts.moto.list_bucket_names("000000000000") == ["carm-it-controller"]
    assert (
        accounts.sample(
            "ack_outbound_api_requests_total", service="s3", op_type="CREATE", op_id="CreateBucket"
        )
        == 2
    )


async def test_access_denied_is_reported_with_its_code_and_cached_with_backoff(
    accounts: Accounts,
) -> None:
    accounts.moto.deny_assume_role(ROLE_C)
    accounts.moto.set_iam_enforcement(True)

    with pytest.raises(AssumeRoleError) as caught:
        await accounts.cache.get(spec(ROLE_C))
    denied = caught.value
    assert (denied.role_arn, denied.code, denied.status_code) == (ROLE_C, "AccessDenied", 403)
    assert "carm-controller is not authorized to perform: sts:AssumeRole" in denied.message
    assert denied.retry_at == pytest.approx(accounts.clock.wall() + 5)

    for _ in range(20):  # many resources of the account: no further STS calls
        with pytest.raises(AssumeRoleError):
            await accounts.cache.get(spec(ROLE_C))

    def assume_role_calls() -> float:
        return accounts.sample(
            "ack_outbound_api_requests_total", service="sts", op_type="OTHER", op_id="AssumeRole"
        )

    assert assume_role_calls() == 1
    assert (
        accounts.sample(
            "ack_outbound_api_requests_error_total",
            service="sts",
            op_id="AssumeRole",
            status_code="403",
        )
        == 1
    )
    assert (
        accounts.sample("carm_sts_assume_role_total", account="222222222222", result="error") == 1
    )

    await accounts.clock.advance(5)
    with pytest.raises(AssumeRoleError) as again:
        await accounts.cache.get(spec(ROLE_C))
    assert assume_role_calls() == 2
    assert again.value.retry_at == pytest.approx(accounts.clock.wall() + 10)

    # The controller may still assume roles it is not denied.
    assert (await accounts.cache.get(spec(ROLE_B))).account_id == "111111111111"


async def test_twenty_accounts_cost_twenty_assume_roles(accounts: Accounts) -> None:
    roles = [f"arn:aws:iam::{100000000000 + n:012d}:role/s3FullAccess" for n in range(20)]

    async def reconcile(role_arn: str) -> None:
        credentials = await accounts.cache.get(spec(role_arn))
        assert credentials.account_id == role_arn.split(":")[4]

    async with anyio.create_task_group() as group:
        for _ in range(10):  # ten resources per account, reconciled at once
            for role_arn in roles:
                group.start_soon(reconcile, role_arn)

    successes = sum(
        accounts.sample("carm_sts_assume_role_total", account=role.split(":")[4], result="success")
        for role in roles
    )
    assert successes == 20
    assert (
        accounts.sample(
            "ack_outbound_api_requests_total", service="sts", op_type="OTHER", op_id="AssumeRole"
        )
        == 20
    )
    assert b"carm_sts_assume_role_total{" in accounts.metrics.render()


async def test_reset_wipes_state_but_keeps_the_controllers_key(moto_server: MotoServer) -> None:
    before = moto_server.controller_credentials
    await moto_server.list_bucket_names("111111111111")
    moto_server.create_role("111111111111", "s3FullAccess")
    moto_server.reset()
    assert moto_server.controller_credentials == before
    assert await moto_server.list_bucket_names("111111111111") == []


async def test_moto_account_id_in_our_environment_does_not_reach_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MOTO_ACCOUNT_ID", "000000000000")
    clock = FakeClock(start=0.0, wall_offset=time.time())
    async with MotoServer() as moto, AwsClientPool(clock=clock) as pool:
        sts = StsRoleAssumer(
            pool, region=REGION, endpoint_url=moto.url, base_credentials=moto.controller_credentials
        )
        credentials = await sts.assume_role(SessionSpec(ROLE_B, "carm-s3-integration", None, 900))
        # With MOTO_ACCOUNT_ID on the server, this would say 000000000000.
        assert await sts.caller_identity(credentials) == "111111111111"
        assert await sts.caller_identity(moto.controller_credentials) == "000000000000"
