"""One SSL context per CA bundle for all of a pool's AWS clients, instead of one per client.

Why: aiobotocore gives every client its own aiohttp connector, built on the client's first
request by `AIOHTTPSession._create_connector`, and each connector gets a fresh SSL context
into which the whole CA bundle is parsed: 16 to 18 ms of CPU and about 0.8 MB per client
here, even when the endpoint is plain http (moto). With two clients per account (S3 and the
verifying STS) that was 12 % of carm's CPU in the fan-out benchmark (bench/RESULTS.md). Making
40 clients with one request each against moto took 27 ms of CPU per client before, 7 after.

What is shared: the SSL context for one (CA bundle, client certificate, client key), built as
aiobotocore builds it (`create_urllib3_context`, then the client certificate, then the CA
bundle), plus a host-name check aiobotocore lacks (see `TlsFiles.build`), on the first request
that needs it, and rebuilt when one of those files changes on
disk (a rotated bundle or certificate reaches new clients, as it did when every client read
the files itself; `SSLKEYLOGFILE`, read when a context is built, is now read once).
`TlsContexts` holds them; `AwsClientPool` owns one and gives its session class to every
client through aiobotocore's `AioConfig(http_session_cls=...)` option. The aiohttp connector
itself (its connection pool, limit and `connector_args`) stays per client.

Through a proxy (`HTTPS_PROXY`, or botocore's `proxies`) without proxy TLS settings the same
shared context serves. aiobotocore would build that connector with `ssl=False`, and aiohttp
applies a connector's `ssl` to the TLS session with the AWS endpoint inside the proxy's
CONNECT tunnel: nothing would be verified, and whoever runs the proxy could read the signed
requests and the credentials STS returns. aiohttp 3.14 has no separate setting for TLS to an
https:// proxy either (no `proxy_ssl`): the proxy's own TLS uses the connector's context too,
so an https:// proxy must present a certificate from the same CA bundle naming its host
(`AWS_CA_BUNDLE` can add the proxy's CA), and a client certificate is offered to it as well.

What is not shared: everything aiobotocore does differently from the plain case is left to
aiobotocore itself (`SharedTlsSession` calls the inherited method): `verify=False` (no
verification, `ssl=False`, with or without a proxy), a proxy with `proxy_ca_bundle` or
`proxy_client_cert`, a `connector_args["ssl_context"]`, a `verify` that is neither True nor a
path, CA or certificate files that cannot be read (aiobotocore raises its own error). For a
proxy with TLS settings aiobotocore builds one context per client holding the proxy's CA and
certificate and then the AWS CA bundle and client certificate, so the AWS endpoint is verified
through the tunnel; as aiohttp uses it on both legs, the endpoint is also trusted when signed
by the proxy's CA, and the last certificate loaded is offered to both. carm adds one thing:
the host-name check, which aiobotocore turns on only when the proxy's host is a name, not an
IP address (`SharedTlsSession._setup_proxy_ssl_context`).

The seam is private: `_create_connector(proxy_url)`, `_setup_proxy_ssl_context(proxy_url)`
and the attributes they read (`_verify`, `_cert_file`, `_key_file`, `_max_pool_connections`,
`_connector_args`, `_proxy_config`) are aiobotocore internals, and constraints.txt pins
aiobotocore for that reason. tests/integration/test_aws_tls.py makes real requests, directly
and through a CONNECT proxy (tests/forward_proxy.py), and checks that every client's connector
holds the one shared context and that a custom CA and the host name are still required and
honoured; tests/unit/test_tls.py compares the cases left to aiobotocore with its own
connector. An upgrade that renames or reshapes the hooks fails there instead of silently going
back to a context per client, or to no verification behind a proxy.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.endpoint import DEFAULT_HTTP_SESSION_CLS
from aiobotocore.httpsession import AIOHTTPSession
from botocore.httpsession import create_urllib3_context, get_cert_path

_FileVersion = tuple[int, int, int] | None
"""(inode, size, mtime in ns) of a file, None for no file."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """What an SSL context for AWS endpoints is made of."""

    ca_bundle: str
    """The CA bundle path (`AWS_CA_BUNDLE`, `verify=path`, or botocore's default bundle)."""
    client_cert: str | None
    """The client certificate (`Config(client_cert=...)`), None for none."""
    client_key: str | None
    """The client certificate's key when it is not in `client_cert`."""

    def versions(self) -> tuple[_FileVersion, ...]:
        """The files' identities on disk now; raises OSError when one cannot be read."""
        return tuple(
            _version_of(path) for path in (self.ca_bundle, self.client_cert, self.client_key)
        )

    def build(self) -> ssl.SSLContext:
        """A context made the way `AIOHTTPSession._create_connector` makes it, except that it
        checks the server's host name: botocore's context leaves that to urllib3, which
        aiohttp is not, so aiobotocore's own contexts accept any trusted certificate for any
        host. carm checks it, as botocore (and ACK's Go SDK) do."""
        context: ssl.SSLContext = create_urllib3_context()
        context.check_hostname = True
        if self.client_cert:
            context.load_cert_chain(self.client_cert, self.client_key)
        context.load_verify_locations(self.ca_bundle, None, None)
        return context


def _version_of(path: str | None) -> _FileVersion:
    if path is None:
        return None
    status = os.stat(path)
    return (status.st_ino, status.st_size, status.st_mtime_ns)


class TlsContexts:
    """The SSL contexts shared by the AWS clients of one pool, one per `TlsFiles`."""

    def __init__(self) -> None:
        self._contexts: dict[TlsFiles, tuple[tuple[_FileVersion, ...], ssl.SSLContext]] = {}
        self.session_class: Callable[..., AIOHTTPSession] = functools.partial(
            SharedTlsSession, tls_contexts=self
        )
        """What `AioConfig(http_session_cls=...)` takes: makes `SharedTlsSession`s on these."""

    def context_for(self, files: TlsFiles) -> ssl.SSLContext:
        """The shared context for `files`, built now if there is none or a file changed."""
        versions = files.versions()
        cached = self._contexts.get(files)
        if cached is not None and cached[0] == versions:
            return cached[1]
        context = files.build()
        self._contexts[files] = (versions, context)
        return context

    def __len__(self) -> int:
        """Contexts held."""
        return len(self._contexts)

    def client_config(self, config: Any = None) -> Any:
        """`config` (a botocore `Config`, an `AioConfig` or None) with this session class.

        A caller's own `http_session_cls` (e.g. aiobotocore's httpx session) is kept: the
        config is returned unchanged.
        """
        if config is None:
            return AioConfig(http_session_cls=self.session_class)
        if isinstance(config, AioConfig):
            if config.http_session_cls is not DEFAULT_HTTP_SESSION_CLS:
                return config
            connector_args = config.connector_args
        else:
            connector_args = None
        # `AioConfig.merge` keeps the options and connector_args but not http_session_cls.
        merged = AioConfig(connector_args=connector_args).merge(config)
        merged.http_session_cls = self.session_class
        return merged


class SharedTlsSession(AIOHTTPSession):  # type: ignore[misc]  # aiobotocore is untyped
    """aiobotocore's aiohttp session, taking its SSL context from a `TlsContexts`."""

    def __init__(self, *, tls_contexts: TlsContexts, **options: Any) -> None:
        super().__init__(**options)
        self._tls_contexts = tls_contexts

    def _create_connector(self, proxy_url: str | None) -> aiohttp.TCPConnector:
        files = self._plain_tls_files(proxy_url)
        context = None
        if files is not None:
            try:
                context = self._tls_contexts.context_for(files)
            except OSError:  # unreadable files: aiobotocore reports them its own way
                context = None
        if context is None:
            connector: aiohttp.TCPConnector = super()._create_connector(proxy_url)
            return connector
        return aiohttp.TCPConnector(
            limit=self._max_pool_connections, ssl=context, **self._connector_args
        )

    def _setup_proxy_ssl_context(self, proxy_url: str) -> ssl.SSLContext | None:
        """aiobotocore's context for a proxy with `proxy_ca_bundle` or `proxy_client_cert`,
        checking host names even when the proxy's host is an IP address (aiobotocore checks
        them only for a named proxy): aiohttp verifies the AWS endpoint behind the proxy with
        this same context, and without the check any certificate the bundle trusts would do."""
        context: ssl.SSLContext | None = super()._setup_proxy_ssl_context(proxy_url)
        if context is not None:
            context.check_hostname = True
        return context

    def _plain_tls_files(self, proxy_url: str | None) -> TlsFiles | None:
        """The files of a verified connection, direct or through a proxy without TLS settings
        of its own; None for the cases left to aiobotocore."""
        verify = self._verify
        if proxy_url and self._has_proxy_tls_settings():
            return None
        if "ssl_context" in self._connector_args:
            return None
        if verify is not True and not (isinstance(verify, str) and verify):
            return None
        cert_file, key_file = self._cert_file, self._key_file
        if not (cert_file is None or isinstance(cert_file, str)) or not (
            key_file is None or isinstance(key_file, str)
        ):
            return None
        return TlsFiles(get_cert_path(verify), cert_file, key_file)

    def _has_proxy_tls_settings(self) -> bool:
        settings = self._proxy_config.settings
        return (
            settings.get("proxy_ca_bundle") is not None
            or settings.get("proxy_client_cert") is not None
        )
