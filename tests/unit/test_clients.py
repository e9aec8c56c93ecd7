"""The AWS client pool: one client per key, retirement after a grace period, nothing leaks, and
every outbound call counted in ACK's metrics."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import aioboto3
import anyio
import anyio.lowlevel
import pytest
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError, EndpointConnectionError

from carm.accounts.clients import AwsClientPool, op_type_of
from carm.accounts.credentials import AwsCredentials
from carm.clock import FakeClock
from carm.observability.metrics import Metrics


class FakeClient:
    def __init__(self, service: str, options: dict[str, Any]) -> None:
        self.service = service
        self.options = options
        self.closed = False
        self.hooks: list[tuple[str, Callable[..., Any]]] = []
        self.meta = SimpleNamespace(events=SimpleNamespace(register=self._register))

    def _register(self, event: str, handler: Callable[..., Any]) -> None:
        self.hooks.append((event, handler))


class FakeSession:
    """Stands in for aioboto3.Session: records the clients it made and whether they closed."""

    def __init__(self) -> None:
        self.made: list[FakeClient] = []

    def client(self, service: str, **options: Any) -> Any:
        @asynccontextmanager
        async def made() -> AsyncIterator[FakeClient]:
            client = FakeClient(service, options)
            self.made.append(client)
            await anyio.lowlevel.checkpoint()  # aiobotocore yields while creating a client
            try:
                yield client
            finally:
                client.closed = True

        return made()


def credentials(n: int, expiration: float | None = 1_700_010_000.0) -> AwsCredentials:
    return AwsCredentials(
        f"ASIAFAKE{n:012d}", f"secret-{n}", f"token-{n}", expiration, "111111111111", None
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def session() -> FakeSession:
    return FakeSession()


@pytest.fixture
async def pool(clock: FakeClock, session: FakeSession) -> AsyncIterator[AwsClientPool]:
    async with AwsClientPool(clock=clock, session=session, retire_grace_seconds=60) as pool:
        yield pool


async def test_one_client_per_credentials_region_endpoint_and_service(
    pool: AwsClientPool, session: FakeSession
) -> None:
    a, b = credentials(1), credentials(2)
    first = await pool.client("s3", a, "us-east-1")
    assert await pool.client("s3", a, "us-east-1") is first
    others = [
        await pool.client("s3", b, "us-east-1"),
        await pool.client("s3", a, "eu-west-1"),
        await pool.client("s3", a, "us-east-1", "http://127.0.0.1:5000"),
        await pool.client("sts", a, "us-east-1"),
        await pool.client("s3", None, "us-east-1"),
    ]
    assert len({id(client) for client in [first, *others]}) == 6
    assert len(pool) == 6
    config = first.options.pop("config")
    assert all(client.options["config"] is config for client in others)  # with the TLS contexts
    assert first.options == {
        "region_name": "us-east-1",
        "endpoint_url": None,
        "aws_access_key_id": "ASIAFAKE000000000001",
        "aws_secret_access_key": "secret-1",
        "aws_session_token": "token-1",
    }
    own = others[-1]
    assert "aws_access_key_id" not in own.options  # the default credential chain


async def test_concurrent_requests_for_one_key_make_one_client(
    pool: AwsClientPool, session: FakeSession
) -> None:
    got: list[Any] = []

    async def ask() -> None:
        got.append(await pool.client("s3", credentials(1), "us-east-1"))

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(ask)
    assert len(session.made) == 1
    assert all(client is got[0] for client in got)


async def test_retired_clients_close_after_the_grace_period(
    pool: AwsClientPool, session: FakeSession, clock: FakeClock
) -> None:
    old, new = credentials(1), credentials(2)
    old_client = await pool.client("s3", old, "us-east-1")
    pool.retire(old)
    # A reconcile that already holds the old credentials may still finish its calls.
    assert await pool.client("s3", old, "us-east-1") is old_client
    await pool.client("s3", new, "us-east-1")
    assert not old_client.closed

    await clock.advance(60)
    await pool.client("s3", new, "us-east-1")
    assert old_client.closed
    assert len(pool) == 1


async def test_clients_asked_for_with_retired_credentials_are_retired_from_the_start(
    pool: AwsClientPool, clock: FakeClock
) -> None:
    old = credentials(1)
    pool.retire(old)
    late = await pool.client("s3", old, "us-east-1")
    await clock.advance(60)
    await pool.client("sts", credentials(2), "us-east-1")
    assert late.closed


async def test_aclose_closes_every_client_and_refuses_new_ones(
    clock: FakeClock, session: FakeSession
) -> None:
    pool = AwsClientPool(clock=clock, session=session)
    for n in range(5):
        await pool.client("s3", credentials(n), "us-east-1")
    pool.retire(credentials(0))
    await pool.aclose()
    assert [client.closed for client in session.made] == [True] * 5
    assert len(pool) == 0
    with pytest.raises(RuntimeError, match="closed"):
        await pool.client("s3", None, "us-east-1")


async def test_aclose_finishes_while_being_cancelled(
    clock: FakeClock, session: FakeSession
) -> None:
    pool = AwsClientPool(clock=clock, session=session)
    await pool.client("s3", credentials(1), "us-east-1")
    with anyio.CancelScope() as scope:
        scope.cancel()
        await pool.aclose()
    assert session.made[0].closed


@pytest.mark.parametrize(
    ("operation", "op_type"),
    [
        ("CreateBucket", "CREATE"),
        ("DeleteBucketPolicy", "DELETE"),
        ("ListBuckets", "READ_MANY"),
        ("GetBucketTagging", "READ_ONE"),
        ("HeadBucket", "READ_ONE"),
        ("DescribeRegions", "READ_ONE"),
        ("PutBucketVersioning", "UPDATE"),
        ("AssumeRole", "OTHER"),
    ],
)
def test_op_type_follows_the_operation_verb(operation: str, op_type: str) -> None:
    assert op_type_of(operation) == op_type


# -- the metrics hooks, on real aiobotocore clients (no AWS: answers are stubbed) --


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_every_outbound_call_is_counted_with_acks_names(clock: FakeClock) -> None:
    metrics = Metrics()
    no_retries = AioConfig(retries={"max_attempts": 1}, connect_timeout=2)
    async with AwsClientPool(
        clock=clock, session=aioboto3.Session(), metrics=metrics, client_config=no_retries
    ) as pool:
        s3 = await pool.client(
            "s3", credentials(1), "us-east-1", f"http://127.0.0.1:{closed_port()}"
        )

        def answer(status: int, parsed: dict[str, Any]) -> Callable[..., Any]:
            def handler(**_: Any) -> tuple[Any, dict[str, Any]]:
                meta = {"HTTPStatusCode": status, "HTTPHeaders": {}}
                return SimpleNamespace(status_code=status), parsed | {"ResponseMetadata": meta}

            return handler

        ok = answer(200, {"Buckets": []})
        s3.meta.events.register("before-call.s3.ListBuckets", ok)
        await s3.list_buckets()
        await s3.list_buckets()
        missing = answer(404, {"Error": {"Code": "NoSuchBucket", "Message": "gone"}})
        s3.meta.events.register("before-call.s3.HeadBucket", missing)
        with pytest.raises(ClientError):
            await s3.head_bucket(Bucket="gone")
        with pytest.raises(EndpointConnectionError):  # nothing listens: no HTTP status at all
            await s3.create_bucket(Bucket="nowhere")

    def total(**labels: str) -> float | None:
        return metrics.registry.get_sample_value("ack_outbound_api_requests_total", labels)

    def errors(**labels: str) -> float | None:
        return metrics.registry.get_sample_value("ack_outbound_api_requests_error_total", labels)

    assert total(service="s3", op_type="READ_MANY", op_id="ListBuckets") == 2
    assert total(service="s3", op_type="READ_ONE", op_id="HeadBucket") == 1
    assert total(service="s3", op_type="CREATE", op_id="CreateBucket") == 1
    assert errors(service="s3", op_id="HeadBucket", status_code="404") == 1
    assert errors(service="s3", op_id="CreateBucket", status_code="-1") == 1
    assert errors(service="s3", op_id="ListBuckets", status_code="200") is None
