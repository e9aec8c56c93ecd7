"""The credential cache on a fake clock with a fake STS: single flight, refresh ahead of expiry,
failure backoff, invalidation, and never an expired credential."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from carm.accounts.credentials import (
    AssumeRoleError,
    AwsCredentials,
    CredentialCache,
    CredentialPolicy,
    SessionSpec,
    default_session_name,
)
from carm.accounts.rolemap import InvalidRoleArn
from carm.clock import FakeClock
from carm.observability.metrics import Metrics

ROLE_B = "arn:aws:iam::111111111111:role/s3FullAccess"
ROLE_C = "arn:aws:iam::222222222222:role/s3FullAccess"
SPEC_B = SessionSpec(ROLE_B, "carm-s3-test")
SPEC_C = SessionSpec(ROLE_C, "carm-s3-test")


class FakeAssumer:
    """STS on the fake clock: records calls; can hold them at a gate or refuse them."""

    def __init__(self, clock: FakeClock, lifetime: float = 3600.0) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.calls: list[tuple[float, str]] = []
        self.gate: anyio.Event | None = None
        self.refuse = False

    async def assume_role(self, spec: SessionSpec) -> AwsCredentials:
        role_arn = spec.role_arn
        self.calls.append((self.clock.monotonic(), role_arn))
        if self.gate is not None:
            await self.gate.wait()
        if self.refuse:
            raise AssumeRoleError(
                role_arn,
                "AccessDenied",
                "not authorized to perform: sts:AssumeRole",
                status_code=403,
            )
        n = len(self.calls)
        return AwsCredentials(
            access_key_id=f"ASIAFAKE{n:012d}",
            secret_access_key=f"secret-{n}",
            session_token=f"token-{n}",
            expiration=self.clock.wall() + self.lifetime,
            account_id=role_arn.split(":")[4],
            role_arn=role_arn,
        )

    async def caller_identity(self, credentials: AwsCredentials | None) -> str:
        return "000000000000" if credentials is None else credentials.account_id


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sts(clock: FakeClock) -> FakeAssumer:
    return FakeAssumer(clock)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def cache(sts: FakeAssumer, clock: FakeClock, metrics: Metrics) -> CredentialCache:
    return CredentialCache(sts, clock=clock, metrics=metrics)


@asynccontextmanager
async def running(cache: CredentialCache) -> AsyncIterator[CredentialCache]:
    """The cache with its refreshers owned by a task group, cancelled on exit."""
    async with anyio.create_task_group() as group:
        await group.start(cache.run)
        yield cache
        group.cancel_scope.cancel()


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_hundred_concurrent_gets_cause_one_assume_role(
    cache: CredentialCache, sts: FakeAssumer, metrics: Metrics
) -> None:
    sts.gate = anyio.Event()
    results: list[AwsCredentials] = []

    async def get() -> None:
        results.append(await cache.get(SPEC_B))

    async with anyio.create_task_group() as group:
        for _ in range(100):
            group.start_soon(get)
        await anyio.wait_all_tasks_blocked()
        assert len(sts.calls) == 1  # the other 99 wait for the one in flight
        sts.gate.set()

    assert len(sts.calls) == 1
    assert len(results) == 100
    assert {credentials.access_key_id for credentials in results} == {"ASIAFAKE000000000001"}
    assert (
        sample(metrics, "carm_sts_assume_role_total", account="111111111111", result="success") == 1
    )
    assert sample(metrics, "carm_credential_cache_misses_total", account="111111111111") == 100
    await cache.get(SPEC_B)
    assert sample(metrics, "carm_credential_cache_hits_total", account="111111111111") == 1


async def test_each_key_has_its_own_flight(cache: CredentialCache, sts: FakeAssumer) -> None:
    longer = SessionSpec(ROLE_B, "carm-s3-test", duration_seconds=7200)
    async with anyio.create_task_group() as group:
        for spec in (SPEC_B, SPEC_C, longer, SPEC_B, SPEC_C, longer):
            group.start_soon(cache.get, spec)
    assert sorted(role for _, role in sts.calls) == [ROLE_B, ROLE_B, ROLE_C]


async def test_a_waiter_takes_over_when_the_leader_is_cancelled(
    cache: CredentialCache, sts: FakeAssumer
) -> None:
    sts.gate = anyio.Event()
    got: list[AwsCredentials] = []
    leader = anyio.CancelScope()

    async def leading() -> None:
        with leader:
            await cache.get(SPEC_B)

    async def waiting() -> None:
        got.append(await cache.get(SPEC_B))

    async with anyio.create_task_group() as group:
        group.start_soon(leading)
        await anyio.wait_all_tasks_blocked()
        group.start_soon(waiting)
        await anyio.wait_all_tasks_blocked()
        assert len(sts.calls) == 1
        leader.cancel()
        await anyio.wait_all_tasks_blocked()
        assert len(sts.calls) == 2  # the waiter leads a new call instead of waiting forever
        sts.gate.set()
    assert [credentials.access_key_id for credentials in got] == ["ASIAFAKE000000000002"]


async def test_credentials_are_refreshed_ahead_of_expiry_while_gets_do_not_wait(
    cache: CredentialCache, sts: FakeAssumer, clock: FakeClock
) -> None:
    retired: list[AwsCredentials] = []
    cache.add_listener(retired.append)
    async with running(cache):
        first = await cache.get(SPEC_B)
        assert first.expiration == clock.wall() + 3600

        await clock.advance(2879)  # 80 % of 3600 s is 2880 s
        assert len(sts.calls) == 1

        sts.gate = anyio.Event()
        await clock.advance(1)
        assert len(sts.calls) == 2  # the background refresh is in flight...
        assert await cache.get(SPEC_B) is first  # ...and callers get the old ones at once
        sts.gate.set()
        await clock.settle()

        second = await cache.get(SPEC_B)
        assert second.access_key_id == "ASIAFAKE000000000002"
        assert second.expiration == clock.wall() + 3600
        assert retired == [first]


async def test_short_sessions_refresh_five_minutes_before_expiry(
    clock: FakeClock, metrics: Metrics
) -> None:
    sts = FakeAssumer(clock, lifetime=900)
    cache = CredentialCache(sts, clock=clock, metrics=metrics)
    async with running(cache):
        await cache.get(SessionSpec(ROLE_B, "carm-s3-test", duration_seconds=900))
        await clock.advance(599)
        assert len(sts.calls) == 1
        await clock.advance(1)  # min(0.8 * 900, 900 - 300) = 600
        assert [at - sts.calls[0][0] for at, _ in sts.calls] == [0, 600]
        assert sample(metrics, "carm_credential_expiry_seconds", account="111111111111") == 900


async def test_refreshers_queued_before_run_start_with_it(
    cache: CredentialCache, sts: FakeAssumer, clock: FakeClock
) -> None:
    await cache.get(SPEC_B)
    async with running(cache):
        await clock.advance(2880)
        assert len(sts.calls) == 2


async def test_a_key_nobody_uses_for_a_refresh_period_is_dropped(
    cache: CredentialCache, sts: FakeAssumer, clock: FakeClock, metrics: Metrics
) -> None:
    retired: list[AwsCredentials] = []
    cache.add_listener(retired.append)
    async with running(cache):
        await cache.get(SPEC_B)
        await clock.advance(2880)  # used since the first call: refreshed
        assert len(sts.calls) == 2
        await clock.advance(2880)  # nobody asked since: dropped, not refreshed
        assert len(sts.calls) == 2
        assert cache.cached(SPEC_B) is None
        assert [credentials.access_key_id for credentials in retired] == [
            "ASIAFAKE000000000001",
            "ASIAFAKE000000000002",
        ]
        assert (
            metrics.registry.get_sample_value(
                "carm_credential_expiry_seconds", {"account": "111111111111"}
            )
            is None
        )
        await clock.advance(36_000)
        assert len(sts.calls) == 2


async def test_failures_are_cached_with_exponential_backoff(
    cache: CredentialCache, sts: FakeAssumer, clock: FakeClock, metrics: Metrics
) -> None:
    sts.refuse = True
    start = clock.monotonic()
    errors: list[AssumeRoleError] = []
    for _ in range(1000):  # 1000 resources' reconciles spread over 10 minutes
        with pytest.raises(AssumeRoleError) as caught:
            await cache.get(SPEC_B)
        errors.append(caught.value)
        await clock.advance(0.6)

    # One call per backoff interval (5 s doubling, at most 300 s), made by the first get after
    # it ends; the gets come every 0.6 s.
    attempts = [at - start for at, _ in sts.calls]
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert len(attempts) == 7
    for gap, backoff in zip(gaps, [5, 10, 20, 40, 80, 160], strict=True):
        assert backoff <= gap < backoff + 0.6
    assert (
        sample(metrics, "carm_sts_assume_role_total", account="111111111111", result="error") == 7
    )
    first = errors[0]
    assert (first.role_arn, first.code, first.status_code) == (ROLE_B, "AccessDenied", 403)
    assert first.retry_at == pytest.approx(clock.wall() - 600 + 5)
    assert errors[8] is first  # at 4.8 s: the same cached failure, no new call
    assert f"cannot assume role {ROLE_B}: AccessDenied: not authorized" in str(first)
    assert "next attempt at 2023-11-14T22:" in str(first)


async def test_the_backoff_is_capped_and_reset_by_success(
    cache: CredentialCache, sts: FakeAssumer, clock: FakeClock
) -> None:
    sts.refuse = True
    for _ in range(10):
        with pytest.raises(AssumeRoleError):
            await cache.get(SPEC_B)
        await clock.advance(301)
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(sts.calls)]
    assert max(gaps) <= 301 + 1e-9
    sts.refuse = False
    await cache.get(SPEC_B)
    cache.invalidate(ROLE_B)
    sts.refuse = True
    calls = len(sts.calls)
    with pytest.raises(AssumeRoleError) as caught:
        await cache.get(SPEC_B)
    assert caught.value.retry_at == pytest.approx(clock.wall() + 5)
    assert len(sts.calls) == calls + 1


async def test_unexpected_exceptions_are_backed_off_too(
    cache: CredentialCache, sts: FakeAssumer, clock: FakeClock
) -> None:
    async def broken(*args: object) -> AwsCredentials:
        sts.calls.append((clock.monotonic(), ROLE_B))
        raise OSError("connection refused")

    sts.assume_role = broken  # type: ignore[method-assign,assignment]
    for _ in range(3):
        with pytest.raises(AssumeRoleError, match="OSError: connection refused"):
            await cache.get(SPEC_B)
    assert len(sts.calls) == 1


async def test_a_failed_refresh_keeps_valid_credentials_but_never_hands_out_expired_ones(
    clock: FakeClock,
) -> None:
    sts = FakeAssumer(clock, lifetime=900)
    cache = CredentialCache(sts, clock=clock, policy=CredentialPolicy(min_validity_seconds=60))
    spec = SessionSpec(ROLE_B, "carm-s3-test", duration_seconds=900)
    async with running(cache):
        first = await cache.get(spec)
        sts.refuse = True
        served, refused = 0, 0
        for _ in range(1200):
            try:
                credentials = await cache.get(spec)
            except AssumeRoleError:
                refused += 1
            else:
                assert credentials.seconds_left(clock.wall()) > 60
                served += 1
            await clock.advance(1)
        # Served until 60 s before expiry (t=840), refused from then on.
        assert served == 840
        assert refused == 1200 - 840
        assert first.expiration is not None
        sts.refuse = False
        await clock.advance(300)
        fresh = await cache.get(spec)
        assert fresh.seconds_left(clock.wall()) == 900


async def test_credentials_that_expire_too_soon_are_a_failure(clock: FakeClock) -> None:
    sts = FakeAssumer(clock, lifetime=30)
    cache = CredentialCache(sts, clock=clock)
    with pytest.raises(AssumeRoleError) as caught:
        await cache.get(SPEC_B)
    assert caught.value.code == "CredentialsExpireTooSoon"
    with pytest.raises(AssumeRoleError):
        await cache.get(SPEC_B)
    assert len(sts.calls) == 1


async def test_invalidate_drops_credentials_at_once_and_tells_listeners(
    cache: CredentialCache, sts: FakeAssumer, clock: FakeClock
) -> None:
    retired: list[AwsCredentials] = []
    cache.add_listener(retired.append)
    async with running(cache):
        first = await cache.get(SPEC_B)
        other = await cache.get(SPEC_C)
        assert cache.invalidate(ROLE_B) == 1
        assert retired == [first]
        assert cache.cached(SPEC_B) is None
        assert cache.cached(SPEC_C) is other
        second = await cache.get(SPEC_B)
        assert second != first
        assert len(sts.calls) == 3
        await clock.advance(2880)  # the dropped key's refresher is gone: one refresh per key
        assert sorted(role for _, role in sts.calls[3:]) == [ROLE_B, ROLE_C]


async def test_invalidate_during_a_call_keeps_its_result_out_of_the_cache(
    cache: CredentialCache, sts: FakeAssumer
) -> None:
    retired: list[AwsCredentials] = []
    cache.add_listener(retired.append)
    sts.gate = anyio.Event()
    got: list[AwsCredentials] = []

    async def get() -> None:
        got.append(await cache.get(SPEC_B))

    async with anyio.create_task_group() as group:
        group.start_soon(get)
        await anyio.wait_all_tasks_blocked()
        cache.invalidate(ROLE_B)
        sts.gate.set()
    # The first answer belonged to the old mapping: retired; the caller asked again.
    assert [credentials.access_key_id for credentials in retired] == ["ASIAFAKE000000000001"]
    assert [credentials.access_key_id for credentials in got] == ["ASIAFAKE000000000002"]


async def test_invalidate_forgets_the_backoff(cache: CredentialCache, sts: FakeAssumer) -> None:
    sts.refuse = True
    with pytest.raises(AssumeRoleError):
        await cache.get(SPEC_B)
    sts.refuse = False
    with pytest.raises(AssumeRoleError):
        await cache.get(SPEC_B)  # still backing off
    cache.invalidate(ROLE_B)  # e.g. the role map was fixed
    assert (await cache.get(SPEC_B)).access_key_id == "ASIAFAKE000000000002"


async def test_a_failing_listener_does_not_break_the_cache(
    cache: CredentialCache, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(credentials: AwsCredentials) -> None:
        raise RuntimeError("boom")

    seen: list[AwsCredentials] = []
    cache.add_listener(broken)
    cache.add_listener(seen.append)
    await cache.get(SPEC_B)
    cache.invalidate(ROLE_B)
    assert len(seen) == 1
    assert "credentials listener" in caplog.text


async def test_run_stops_every_refresher_when_cancelled(
    cache: CredentialCache, sts: FakeAssumer, clock: FakeClock
) -> None:
    async with running(cache):
        await cache.get(SPEC_B)
        await cache.get(SPEC_C)
    await clock.advance(10_000)
    assert len(sts.calls) == 2


def test_credentials_never_show_their_secrets() -> None:
    credentials = AwsCredentials(
        "ASIAEXAMPLEKEY123456",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "FwoGZXIvYXdzEXAMPLETOKEN",
        1_700_000_000.0,
        "111111111111",
        ROLE_B,
    )
    for text in (repr(credentials), str(credentials), f"{credentials}", repr([credentials])):
        assert "wJalr" not in text
        assert "FwoGZ" not in text
        assert "EXAMPLEKEY123456" not in text
    assert repr(credentials) == (
        "AwsCredentials(access_key_id='ASIA...3456', account_id='111111111111', "
        f"role_arn='{ROLE_B}', expiration=2023-11-14T22:13:20Z)"
    )


def test_session_specs_are_validated() -> None:
    with pytest.raises(InvalidRoleArn):
        SessionSpec("s3FullAccess", "carm-s3-test")
    with pytest.raises(ValueError, match="session name"):
        SessionSpec(ROLE_B, "x")
    with pytest.raises(ValueError, match="session name"):
        SessionSpec(ROLE_B, "carm s3")
    with pytest.raises(ValueError, match=r"duration_seconds must be 900\.\.43200"):
        SessionSpec(ROLE_B, "carm-s3-test", duration_seconds=600)


def test_the_session_name_names_the_services_and_the_pod() -> None:
    assert default_session_name(["s3"], {"POD_NAME": "ack-s3-controller-7d9f8-x2x"}) == (
        "carm-s3-ack-s3-controller-7d9f8-x2x"
    )
    assert default_session_name(["sqs", "s3", "s3"], {"POD_NAME": "carm-0"}) == (
        "carm-s3-sqs-carm-0"
    )
    assert default_session_name(["s3"], {}, hostname="host name/with:odd chars") == (
        "carm-s3-host-name-with-odd-chars"
    )
    assert len(default_session_name(["s3"], {"POD_NAME": "p" * 200})) == 64
    SessionSpec(ROLE_B, default_session_name(["s3"], {}))  # whatever the host, a valid name


class LyingAssumer(FakeAssumer):
    """STS whose assumed credentials act in another account than the role's."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.identity_calls = 0
        self.acts_in: str | None = None

    async def caller_identity(self, credentials: AwsCredentials | None) -> str:
        self.identity_calls += 1
        if credentials is not None and self.acts_in is not None:
            return self.acts_in
        return await super().caller_identity(credentials)


async def test_credentials_are_verified_once_per_assume_role_not_per_use(
    clock: FakeClock,
) -> None:
    sts = LyingAssumer(clock)
    cache = CredentialCache(sts, clock=clock)
    for _ in range(5):
        await cache.get(SPEC_B)
    assert (len(sts.calls), sts.identity_calls) == (1, 1)


async def test_credentials_in_the_wrong_account_are_retired_and_terminal(clock: FakeClock) -> None:
    sts = LyingAssumer(clock)
    sts.acts_in = "999999999999"
    cache = CredentialCache(sts, clock=clock)
    retired: list[AwsCredentials] = []
    cache.add_listener(retired.append)
    with pytest.raises(AssumeRoleError) as caught:
        await cache.get(SPEC_B)
    assert caught.value.terminal and caught.value.code == "CredentialsAccountMismatch"
    assert [c.access_key_id for c in retired] == ["ASIAFAKE000000000001"]
    assert cache.cached(SPEC_B) is None
    sts.acts_in = None  # fixed (say, the endpoint): the next attempt after the backoff works
    await clock.advance(5.0)
    assert (await cache.get(SPEC_B)).account_id == "111111111111"
