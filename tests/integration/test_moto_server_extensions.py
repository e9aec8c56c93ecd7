"""The sandbox's moto server answers S3's `?requestPayment` (carm.sandbox.moto_server) as AWS
does, over HTTP with real aioboto3 clients, and its other bucket operations still work."""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import aioboto3
import anyio
import pytest
from botocore.exceptions import ClientError

from carm.sandbox.moto import MotoServer

ACCOUNT_A = "111111111111"
ACCOUNT_B = "222222222222"

S3In = Callable[..., Awaitable[Any]]


@pytest.fixture
async def s3_in(moto_server: MotoServer) -> AsyncIterator[S3In]:
    """`await s3_in(account, role=...)`: an S3 client acting in `account` through a role
    assumed there (moto maps the keys AssumeRole issues to the role's account)."""
    session = aioboto3.Session()
    own = moto_server.controller_credentials
    where = {"region_name": moto_server.region, "endpoint_url": moto_server.url}
    async with AsyncExitStack() as stack:
        sts = await stack.enter_async_context(
            session.client(
                "sts",
                aws_access_key_id=own.access_key_id,
                aws_secret_access_key=own.secret_access_key,
                **where,
            )
        )

        async def client(account: str, role: str = "inspector") -> Any:
            issued = (
                await sts.assume_role(
                    RoleArn=f"arn:aws:iam::{account}:role/{role}", RoleSessionName="test"
                )
            )["Credentials"]
            return await stack.enter_async_context(
                session.client(
                    "s3",
                    aws_access_key_id=issued["AccessKeyId"],
                    aws_secret_access_key=issued["SecretAccessKey"],
                    aws_session_token=issued["SessionToken"],
                    **where,
                )
            )

        yield client


async def payer(s3: Any, bucket: str) -> str:
    return str((await s3.get_bucket_request_payment(Bucket=bucket))["Payer"])


async def set_payer(s3: Any, bucket: str, who: str) -> None:
    await s3.put_bucket_request_payment(Bucket=bucket, RequestPaymentConfiguration={"Payer": who})


async def test_the_owner_pays_until_requester_pays_is_put(s3_in: S3In) -> None:
    s3 = await s3_in(ACCOUNT_A)
    await s3.create_bucket(Bucket="rp-toggle")
    assert await payer(s3, "rp-toggle") == "BucketOwner"

    await set_payer(s3, "rp-toggle", "Requester")
    assert await payer(s3, "rp-toggle") == "Requester"

    await set_payer(s3, "rp-toggle", "BucketOwner")
    assert await payer(s3, "rp-toggle") == "BucketOwner"


async def test_get_answers_the_document_of_aws_api_reference(s3_in: S3In) -> None:
    """The raw body, as AWS's API reference shows it (botocore's parser would forgive more)."""
    s3 = await s3_in(ACCOUNT_A)
    await s3.create_bucket(Bucket="rp-document")
    await set_payer(s3, "rp-document", "Requester")
    bodies: list[bytes] = []
    s3.meta.events.register("before-parse.s3.GetBucketRequestPayment", keep_raw(bodies))
    await payer(s3, "rp-document")
    assert len(bodies) == 1
    expected = b'<RequestPaymentConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    assert expected in bodies[0]
    assert b"<Payer>Requester</Payer></RequestPaymentConfiguration>" in bodies[0]


def keep_raw(bodies: list[bytes]) -> Callable[..., None]:
    def keep(response_dict: dict[str, Any], **_: Any) -> None:
        bodies.append(bytes(response_dict["body"]))

    return keep


async def test_the_payer_belongs_to_its_bucket_in_its_account(s3_in: S3In) -> None:
    a = await s3_in(ACCOUNT_A)
    b = await s3_in(ACCOUNT_B)
    await a.create_bucket(Bucket="rp-of-a")
    await b.create_bucket(Bucket="rp-of-b")

    await set_payer(a, "rp-of-a", "Requester")

    assert await payer(a, "rp-of-a") == "Requester"
    assert await payer(b, "rp-of-b") == "BucketOwner"
    assert [bucket["Name"] for bucket in (await a.list_buckets())["Buckets"]] == ["rp-of-a"]
    assert [bucket["Name"] for bucket in (await b.list_buckets())["Buckets"]] == ["rp-of-b"]


async def test_the_payer_goes_with_the_bucket(s3_in: S3In, moto_server: MotoServer) -> None:
    s3 = await s3_in(ACCOUNT_A)
    await s3.create_bucket(Bucket="rp-recreated")
    await set_payer(s3, "rp-recreated", "Requester")

    await s3.delete_bucket(Bucket="rp-recreated")
    await s3.create_bucket(Bucket="rp-recreated")
    assert await payer(s3, "rp-recreated") == "BucketOwner"

    await set_payer(s3, "rp-recreated", "Requester")
    moto_server.reset()
    s3 = await s3_in(ACCOUNT_A)  # reset forgot the roles' sessions too
    await s3.create_bucket(Bucket="rp-recreated")
    assert await payer(s3, "rp-recreated") == "BucketOwner"


async def test_a_payer_other_than_owner_or_requester_is_malformed_xml(s3_in: S3In) -> None:
    s3 = await s3_in(ACCOUNT_A)
    await s3.create_bucket(Bucket="rp-invalid")
    await set_payer(s3, "rp-invalid", "Requester")

    with pytest.raises(ClientError) as raised:
        await set_payer(s3, "rp-invalid", "Nobody")

    assert raised.value.response["Error"]["Code"] == "MalformedXML"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert await payer(s3, "rp-invalid") == "Requester"  # the rejected Put changed nothing


@pytest.mark.parametrize("operation", ["get", "put"])
async def test_a_missing_bucket_is_no_such_bucket(s3_in: S3In, operation: str) -> None:
    s3 = await s3_in(ACCOUNT_A)
    with pytest.raises(ClientError) as raised:
        if operation == "get":
            await payer(s3, "rp-missing")
        else:
            await set_payer(s3, "rp-missing", "Requester")

    assert raised.value.response["Error"]["Code"] == "NoSuchBucket"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert (await s3.list_buckets())["Buckets"] == []  # a Put did not create it either


async def test_iam_is_checked_per_operation(s3_in: S3In, moto_server: MotoServer) -> None:
    moto_server.create_role(ACCOUNT_A, "admin", actions="s3:*")
    moto_server.create_role(ACCOUNT_A, "payer-reader", actions="s3:GetBucketRequestPayment")
    admin = await s3_in(ACCOUNT_A, role="admin")
    reader = await s3_in(ACCOUNT_A, role="payer-reader")
    await admin.create_bucket(Bucket="rp-iam")
    moto_server.set_iam_enforcement(True)

    assert await payer(reader, "rp-iam") == "BucketOwner"
    with pytest.raises(ClientError) as raised:
        await set_payer(reader, "rp-iam", "Requester")
    assert raised.value.response["Error"]["Code"] == "AccessDenied"

    await set_payer(admin, "rp-iam", "Requester")
    assert await payer(reader, "rp-iam") == "Requester"


async def test_other_bucket_requests_still_reach_moto(s3_in: S3In) -> None:
    s3 = await s3_in(ACCOUNT_A)
    await s3.create_bucket(Bucket="rp-others")
    await set_payer(s3, "rp-others", "Requester")
    await s3.put_bucket_versioning(
        Bucket="rp-others", VersioningConfiguration={"Status": "Enabled"}
    )
    await s3.put_object(Bucket="rp-others", Key="logs/a.txt", Body=b"a")

    assert (await s3.get_bucket_versioning(Bucket="rp-others"))["Status"] == "Enabled"
    listing = await s3.list_objects(Bucket="rp-others")
    assert [item["Key"] for item in listing["Contents"]] == ["logs/a.txt"]
    listing_v2 = await s3.list_objects_v2(Bucket="rp-others", Prefix="logs/")
    assert [item["Key"] for item in listing_v2["Contents"]] == ["logs/a.txt"]
    assert await payer(s3, "rp-others") == "Requester"


async def test_leaving_by_cancellation_still_stops_the_server() -> None:
    """`carm sandbox` leaves its `async with MotoServer()` by cancellation on SIGTERM: the
    child must not outlive it."""
    with anyio.CancelScope() as scope:
        async with MotoServer() as moto:
            url = moto.url
            scope.cancel()
            await anyio.sleep(30)  # cancelled at once
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(OSError):
        direct.open(f"{url}/moto-api/config", timeout=2)
