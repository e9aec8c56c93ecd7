"""Shared SSL contexts: one per CA bundle and client certificate, rebuilt when a file changes;
the pool's config keeps the caller's options; a proxy without TLS settings gets the shared
context; the unusual cases behave as aiobotocore, with host names checked.

(Requests through real clients, and the verification itself: tests/integration/test_aws_tls.py.)
"""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.httpsession import AIOHTTPSession
from botocore.config import Config
from cryptography import x509

from carm.accounts.tls import SharedTlsSession, TlsContexts, TlsFiles
from tests.pki import Pki, make_pki

PROXY = "http://proxy.invalid:3128"


def serial_of(certificate: Path) -> int:
    return int(x509.load_pem_x509_certificate(certificate.read_bytes()).serial_number)


def trusted_serials(context: ssl.SSLContext) -> list[int]:
    return [int(str(ca["serialNumber"]), 16) for ca in context.get_ca_certs()]


def test_one_context_per_files_rebuilt_when_a_file_changes(pki: Pki, tmp_path: Path) -> None:
    contexts = TlsContexts()
    bundle = tmp_path / "bundle.pem"
    shutil.copy(pki.ca, bundle)
    files = TlsFiles(str(bundle), None, None)
    with_client_cert = TlsFiles(str(bundle), str(pki.client_cert), str(pki.client_key))

    first = contexts.context_for(files)
    assert contexts.context_for(TlsFiles(str(bundle), None, None)) is first
    assert contexts.context_for(with_client_cert) is not first
    assert first.verify_mode == ssl.CERT_REQUIRED
    assert trusted_serials(first) == [serial_of(pki.ca)]

    other = make_pki(tmp_path)
    bundle.write_bytes(other.ca.read_bytes())  # the bundle is replaced on disk
    rotated = contexts.context_for(files)
    assert trusted_serials(rotated) == [serial_of(other.ca)]
    assert contexts.context_for(files) is rotated
    assert len(contexts) == 2

    bundle.unlink()
    with pytest.raises(FileNotFoundError):
        contexts.context_for(files)


def test_the_callers_options_are_kept_and_the_session_class_added() -> None:
    contexts = TlsContexts()
    callers = AioConfig(
        retries={"max_attempts": 1}, connect_timeout=2, connector_args={"force_close": True}
    )
    merged = contexts.client_config(callers)
    assert merged.http_session_cls is contexts.session_class
    assert merged.retries == {"max_attempts": 1}
    assert merged.connect_timeout == 2
    assert merged.connector_args["force_close"] is True

    plain = contexts.client_config(Config(read_timeout=7, max_pool_connections=3))
    assert isinstance(plain, AioConfig)
    assert plain.http_session_cls is contexts.session_class
    assert (plain.read_timeout, plain.max_pool_connections) == (7, 3)

    assert contexts.client_config(None).http_session_cls is contexts.session_class


def test_a_callers_own_session_class_is_left_alone() -> None:
    class CallersSession(AIOHTTPSession):  # type: ignore[misc]
        pass

    callers = AioConfig(http_session_cls=CallersSession)
    assert TlsContexts().client_config(callers) is callers


@pytest.mark.parametrize(
    ("verify", "proxy_ca", "proxy_url"),
    [(False, False, None), (False, False, PROXY), (True, True, PROXY)],
    ids=["verify off", "verify off through a proxy", "proxy with its own CA"],
)
async def test_unusual_cases_get_aiobotocores_own_connector(
    pki: Pki, verify: bool, proxy_ca: bool, proxy_url: str | None
) -> None:
    options: dict[str, Any] = {"verify": verify, "proxies": {"https": PROXY}, "timeout": 5}
    if proxy_ca:
        options["proxies_config"] = {"proxy_ca_bundle": str(pki.ca)}
    contexts = TlsContexts()
    ours: aiohttp.TCPConnector = SharedTlsSession(
        tls_contexts=contexts, **options
    )._create_connector(proxy_url)
    theirs: aiohttp.TCPConnector = AIOHTTPSession(**options)._create_connector(proxy_url)
    try:
        our_ssl, their_ssl = ours._ssl, theirs._ssl
        assert type(our_ssl) is type(their_ssl)
        if isinstance(our_ssl, ssl.SSLContext) and isinstance(their_ssl, ssl.SSLContext):
            assert our_ssl.get_ca_certs() == their_ssl.get_ca_certs()
            assert our_ssl.check_hostname == their_ssl.check_hostname
        assert ours.limit == theirs.limit
        assert len(contexts) == 0, "nothing shared"
    finally:
        await ours.close()
        await theirs.close()


async def test_through_a_proxy_without_tls_settings_the_shared_context_serves(pki: Pki) -> None:
    """aiobotocore would give this connector `ssl=False`: aiohttp would then not verify the
    AWS endpoint at the other end of the proxy's tunnel."""
    contexts = TlsContexts()
    session = SharedTlsSession(tls_contexts=contexts, verify=str(pki.ca), proxies={"https": PROXY})
    connector: aiohttp.TCPConnector = session._create_connector(PROXY)
    try:
        assert connector._ssl is contexts.context_for(TlsFiles(str(pki.ca), None, None))
        assert trusted_serials(connector._ssl) == [serial_of(pki.ca)]
        assert connector._ssl.check_hostname
    finally:
        await connector.close()


async def test_a_proxy_at_an_ip_address_with_its_own_ca_still_gets_host_names_checked(
    pki: Pki,
) -> None:
    proxy = "http://192.0.2.10:3128"
    options: dict[str, Any] = {
        "proxies": {"https": proxy},
        "proxies_config": {"proxy_ca_bundle": str(pki.ca)},
    }
    ours: aiohttp.TCPConnector = SharedTlsSession(
        tls_contexts=TlsContexts(), **options
    )._create_connector(proxy)
    theirs: aiohttp.TCPConnector = AIOHTTPSession(**options)._create_connector(proxy)
    try:
        assert isinstance(ours._ssl, ssl.SSLContext)
        assert isinstance(theirs._ssl, ssl.SSLContext)
        assert ours._ssl.get_ca_certs() == theirs._ssl.get_ca_certs()
        assert serial_of(pki.ca) in trusted_serials(ours._ssl)
        assert (ours._ssl.check_hostname, theirs._ssl.check_hostname) == (True, False)
    finally:
        await ours.close()
        await theirs.close()


async def test_an_unreadable_ca_bundle_fails_as_aiobotocore_fails(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    shared = SharedTlsSession(tls_contexts=TlsContexts(), verify=missing)
    stock = AIOHTTPSession(verify=missing)
    with pytest.raises(FileNotFoundError) as ours:
        shared._create_connector(None)
    with pytest.raises(FileNotFoundError) as theirs:
        stock._create_connector(None)
    assert str(ours.value) == str(theirs.value)
