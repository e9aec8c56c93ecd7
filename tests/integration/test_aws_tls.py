"""The pool's AWS clients share one SSL context per CA bundle and still verify servers: against
moto (http) and a local HTTPS STS stub signed by a throwaway CA.

These tests read aiobotocore's and aiohttp's private attributes on purpose (the connector a
client made on its first request): `SharedTlsSession` hooks a private aiobotocore method, and
an upgrade that changes it must fail here rather than quietly build a context per client again.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aioboto3
import pytest
from aiobotocore.config import AioConfig
from aiohttp import web
from botocore.exceptions import SSLError

from carm.accounts.clients import AwsClientPool
from carm.accounts.credentials import AwsCredentials
from carm.accounts.tls import TlsContexts
from carm.clock import FakeClock
from carm.sandbox.moto import MotoServer
from tests.forward_proxy import ForwardProxy, forward_proxy
from tests.pki import Pki, client_common_name, serve_https, server_tls

REGION = "us-east-1"
NO_RETRIES = AioConfig(retries={"total_max_attempts": 1}, connect_timeout=5)


def credentials(n: int) -> AwsCredentials:
    return AwsCredentials(f"AKIATLSTEST{n:09d}", f"secret-{n}", None, None, "111111111111", None)


def connector_ssl(client: Any, proxy_url: str | None = None) -> ssl.SSLContext | bool:
    """The `ssl` of the aiohttp connector the client made on its first request (direct, or
    through `proxy_url`)."""
    return client._endpoint.http_session._sessions[proxy_url].connector._ssl  # type: ignore[no-any-return]


@dataclass
class StsStub:
    url: str
    callers: list[str] = field(default_factory=list)
    """Access key ids of the answered calls, in order."""
    client_certificates: list[str | None] = field(default_factory=list)
    """The common name of each call's client certificate, None without one."""


_ACCESS_KEY = re.compile(r"Credential=([^/]+)/")


@asynccontextmanager
async def sts_stub(pki: Pki, *, require_client_cert: bool = False) -> AsyncIterator[StsStub]:
    """An HTTPS server with pki's 127.0.0.1 certificate answering STS GetCallerIdentity."""
    stub = StsStub("")

    async def get_caller_identity(request: web.Request) -> web.Response:
        form = await request.post()
        assert form.get("Action") == "GetCallerIdentity"
        found = _ACCESS_KEY.search(request.headers.get("Authorization", ""))
        access_key_id = found.group(1) if found else "?"
        stub.callers.append(access_key_id)
        stub.client_certificates.append(client_common_name(request))
        return web.Response(
            content_type="text/xml",
            text=(
                '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                "<GetCallerIdentityResult>"
                f"<Arn>arn:aws:iam::111111111111:user/{access_key_id}</Arn>"
                f"<UserId>{access_key_id}</UserId><Account>111111111111</Account>"
                "</GetCallerIdentityResult>"
                "<ResponseMetadata><RequestId>tls-test</RequestId></ResponseMetadata>"
                "</GetCallerIdentityResponse>"
            ),
        )

    app = web.Application()
    app.router.add_post("/", get_caller_identity)
    async with serve_https(app, pki, require_client_cert=require_client_cert) as port:
        stub.url = f"https://127.0.0.1:{port}"
        yield stub


@pytest.fixture(autouse=True)
def default_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start from botocore's own CA bundle, whatever the environment says."""
    for name in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "AWS_CONFIG_FILE", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


async def test_every_client_of_a_pool_shares_one_ssl_context(moto_server: MotoServer) -> None:
    async with AwsClientPool(clock=FakeClock()) as pool:
        clients = []
        for n in range(3):
            for service in ("s3", "sts"):
                client = await pool.client(service, credentials(n), REGION, moto_server.url)
                clients.append(client)
        for client in clients[::2]:
            await client.list_buckets()
        for client in clients[1::2]:
            await client.get_caller_identity()

        contexts = [connector_ssl(client) for client in clients]
        assert isinstance(contexts[0], ssl.SSLContext)
        assert all(context is contexts[0] for context in contexts)
        assert contexts[0].verify_mode == ssl.CERT_REQUIRED
        assert len(pool.tls_contexts) == 1


async def test_a_private_ca_is_trusted_only_through_aws_ca_bundle(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        sts_stub(pki) as stub,
        AwsClientPool(clock=FakeClock(), client_config=NO_RETRIES) as pool,
    ):
        untrusting = await pool.client("sts", credentials(0), REGION, stub.url)
        with pytest.raises(SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusting.get_caller_identity()

        monkeypatch.setenv("AWS_CA_BUNDLE", str(pki.ca))  # read when a client is made
        trusting = [await pool.client("sts", credentials(n), REGION, stub.url) for n in (1, 2)]
        identities = [await client.get_caller_identity() for client in trusting]

        assert [identity["UserId"] for identity in identities] == [
            credentials(1).access_key_id,
            credentials(2).access_key_id,
        ]
        assert stub.callers == [credentials(1).access_key_id, credentials(2).access_key_id]
        shared = connector_ssl(trusting[0])
        assert connector_ssl(trusting[1]) is shared
        assert connector_ssl(untrusting) is not shared  # one context per CA bundle
        assert len(pool.tls_contexts) == 2


async def test_the_certificate_must_name_the_endpoint_host(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pki's certificate names 127.0.0.1 only: through "localhost" it is trusted but names
    another host, which botocore refuses (aiobotocore's own contexts would not)."""
    monkeypatch.setenv("AWS_CA_BUNDLE", str(pki.ca))
    async with (
        sts_stub(pki) as stub,
        AwsClientPool(clock=FakeClock(), client_config=NO_RETRIES) as pool,
    ):
        by_name = stub.url.replace("127.0.0.1", "localhost")
        misnamed = await pool.client("sts", credentials(1), REGION, by_name)
        with pytest.raises(SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            await misnamed.get_caller_identity()
        named = await pool.client("sts", credentials(2), REGION, stub.url)
        await named.get_caller_identity()
        assert stub.callers == [credentials(2).access_key_id]


async def test_a_client_certificate_is_presented_from_the_shared_context(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_CA_BUNDLE", str(pki.ca))
    with_certificate = AioConfig(
        retries={"max_attempts": 1}, client_cert=(str(pki.client_cert), str(pki.client_key))
    )
    async with (
        sts_stub(pki, require_client_cert=True) as stub,
        AwsClientPool(clock=FakeClock(), client_config=with_certificate) as pool,
    ):
        clients = [await pool.client("sts", credentials(n), REGION, stub.url) for n in (1, 2)]
        for client in clients:
            await client.get_caller_identity()

        assert stub.client_certificates == ["carm", "carm"]
        assert connector_ssl(clients[0]) is connector_ssl(clients[1])


def unverified_sts_client(contexts: TlsContexts, endpoint_url: str) -> Any:
    """An STS client made with `verify=False` and the shared contexts' config (its async
    context manager), as a user who turns verification off would make it."""
    return aioboto3.Session().client(
        "sts",
        region_name=REGION,
        endpoint_url=endpoint_url,
        verify=False,
        config=contexts.client_config(NO_RETRIES),
        aws_access_key_id=credentials(1).access_key_id,
        aws_secret_access_key="secret",
    )


async def test_verify_false_still_skips_verification(pki: Pki) -> None:
    contexts = TlsContexts()
    async with (
        sts_stub(pki) as stub,
        unverified_sts_client(contexts, stub.url) as client,
    ):
        identity = await client.get_caller_identity()

        assert identity["UserId"] == credentials(1).access_key_id
        assert connector_ssl(client) is False
        assert len(contexts) == 0


@asynccontextmanager
async def https_proxy_env(
    monkeypatch: pytest.MonkeyPatch, tls: ssl.SSLContext | None = None
) -> AsyncIterator[ForwardProxy]:
    """A forward proxy that clients made inside take from `HTTPS_PROXY` (botocore reads the
    variables when a client is made); NO_PROXY, which exempts 127.0.0.1 here, is cleared."""
    async with forward_proxy(tls) as proxy:
        for name in ("NO_PROXY", "no_proxy", "https_proxy", "HTTP_PROXY", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        yield proxy


async def test_through_a_proxy_the_aws_endpoint_is_verified_as_without_one(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        sts_stub(pki) as stub,
        https_proxy_env(monkeypatch) as proxy,
        AwsClientPool(clock=FakeClock(), client_config=NO_RETRIES) as pool,
    ):
        target = stub.url.removeprefix("https://")
        untrusting = await pool.client("sts", credentials(0), REGION, stub.url)
        with pytest.raises(SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusting.get_caller_identity()
        assert proxy.tunnels == [target], "the request went through the proxy"

        monkeypatch.setenv("AWS_CA_BUNDLE", str(pki.ca))
        trusting = [await pool.client("sts", credentials(n), REGION, stub.url) for n in (1, 2)]
        for client in trusting:
            await client.get_caller_identity()
        misnamed = await pool.client(
            "sts", credentials(3), REGION, stub.url.replace("127.0.0.1", "localhost")
        )
        with pytest.raises(SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            await misnamed.get_caller_identity()

        assert stub.callers == [credentials(1).access_key_id, credentials(2).access_key_id]
        assert proxy.tunnels == [target] * 3 + [target.replace("127.0.0.1", "localhost")]
        shared = connector_ssl(trusting[0], proxy.url)
        assert connector_ssl(trusting[1], proxy.url) is shared
        assert connector_ssl(misnamed, proxy.url) is shared
        assert len(pool.tls_contexts) == 2


async def test_a_proxy_with_its_own_ca_still_needs_the_endpoints_host_name(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiobotocore's context for a proxy with `proxy_ca_bundle` checks host names only when
    the proxy's address is a name; this proxy's is 127.0.0.1."""
    monkeypatch.setenv("AWS_CA_BUNDLE", str(pki.ca))
    proxy_ca = AioConfig(
        retries={"total_max_attempts": 1}, proxies_config={"proxy_ca_bundle": str(pki.ca)}
    )
    async with (
        sts_stub(pki) as stub,
        https_proxy_env(monkeypatch) as proxy,
        AwsClientPool(clock=FakeClock(), client_config=proxy_ca) as pool,
    ):
        misnamed = await pool.client(
            "sts", credentials(1), REGION, stub.url.replace("127.0.0.1", "localhost")
        )
        with pytest.raises(SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            await misnamed.get_caller_identity()
        named = await pool.client("sts", credentials(2), REGION, stub.url)
        await named.get_caller_identity()

        assert stub.callers == [credentials(2).access_key_id]
        assert len(proxy.tunnels) == 2
        assert len(pool.tls_contexts) == 0, "left to aiobotocore's own context"


async def test_an_https_proxy_is_verified_with_the_endpoints_ca_bundle(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiohttp has one SSL context per connector: for an https:// proxy it verifies the proxy
    with the same one as the AWS endpoint behind it."""
    proxy_tls = server_tls(pki)
    async with (
        sts_stub(pki) as stub,
        https_proxy_env(monkeypatch, proxy_tls) as proxy,
        AwsClientPool(clock=FakeClock(), client_config=NO_RETRIES) as pool,
    ):
        untrusting = await pool.client("sts", credentials(0), REGION, stub.url)
        with pytest.raises(SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusting.get_caller_identity()
        assert proxy.tunnels == [], "refused at the proxy's own certificate"

        monkeypatch.setenv("AWS_CA_BUNDLE", str(pki.ca))
        trusting = await pool.client("sts", credentials(1), REGION, stub.url)
        await trusting.get_caller_identity()

        assert stub.callers == [credentials(1).access_key_id]
        assert proxy.tunnels == [stub.url.removeprefix("https://")]


async def test_verify_false_through_a_proxy_still_skips_verification(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    contexts = TlsContexts()
    async with (
        sts_stub(pki) as stub,
        https_proxy_env(monkeypatch) as proxy,
        unverified_sts_client(contexts, stub.url) as client,
    ):
        identity = await client.get_caller_identity()

        assert identity["UserId"] == credentials(1).access_key_id
        assert proxy.tunnels == [stub.url.removeprefix("https://")]
        assert connector_ssl(client, proxy.url) is False
        assert len(contexts) == 0
