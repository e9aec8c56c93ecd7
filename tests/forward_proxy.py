"""A minimal HTTP CONNECT forward proxy on 127.0.0.1, for tests of clients behind a proxy.

It answers `CONNECT host:port` by opening a TCP connection to host:port, replying
`200 Connection established` and piping bytes both ways until either side closes; anything else
gets a 405. It never looks into the tunnel, as a corporate proxy that does not intercept TLS,
so the client's TLS session runs end to end with the target. Given an SSL context it is an
HTTPS proxy: clients speak TLS to the proxy, and their TLS to the target runs inside it.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.tls import TLSListener

_MAX_HEAD = 16 * 1024
"""Request line and headers larger than this are refused (the stream is closed)."""


@dataclass
class ForwardProxy:
    url: str
    """`http://127.0.0.1:port`, or `https://...` for a proxy spoken to over TLS."""
    tunnels: list[str] = field(default_factory=list)
    """The `host:port` of every tunnel opened, in order."""
    refused: list[str] = field(default_factory=list)
    """The request line of every request that was not a CONNECT."""


@asynccontextmanager
async def forward_proxy(tls: ssl.SSLContext | None = None) -> AsyncIterator[ForwardProxy]:
    """A running proxy (HTTPS with `tls`), stopped with its open tunnels on exit."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(SocketAttribute.local_port)
    proxy = ForwardProxy(f"{'https' if tls else 'http'}://127.0.0.1:{port}")

    async def serve_one(client: ByteStream) -> None:
        async with client:
            await _serve_connect(proxy, client)

    serving = TLSListener(listener, tls, standard_compatible=False) if tls else listener
    async with serving, anyio.create_task_group() as group:
        group.start_soon(serving.serve, serve_one, group)
        try:
            yield proxy
        finally:
            group.cancel_scope.cancel()


async def _serve_connect(proxy: ForwardProxy, client: ByteStream) -> None:
    received = BufferedByteReceiveStream(client)
    try:
        head = await received.receive_until(b"\r\n\r\n", _MAX_HEAD)
    except (anyio.EndOfStream, anyio.IncompleteRead, anyio.DelimiterNotFound):
        return
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    method, _, rest = request_line.partition(" ")
    target = rest.partition(" ")[0]
    host, _, port = target.rpartition(":")
    if method != "CONNECT" or not host or not port.isdigit():
        proxy.refused.append(request_line)
        await client.send(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
        return
    try:
        upstream = await anyio.connect_tcp(host.strip("[]"), int(port))
    except OSError:
        await client.send(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        return
    async with upstream, anyio.create_task_group() as pipes:
        proxy.tunnels.append(target)
        await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
        pipes.start_soon(_pipe, received, upstream, pipes.cancel_scope)
        pipes.start_soon(_pipe, upstream, client, pipes.cancel_scope)


async def _pipe(
    source: BufferedByteReceiveStream | ByteStream, sink: ByteStream, tunnel: anyio.CancelScope
) -> None:
    """Copy until `source` ends, then close the whole tunnel: TLS streams cannot half-close,
    and the protocols tested here (HTTP/1.1 over TLS) never need it."""
    try:
        while True:
            await sink.send(await source.receive())
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass
    finally:
        tunnel.cancel()
