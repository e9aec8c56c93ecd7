"""The test forward proxy (tests/forward_proxy.py) tunnels CONNECT and refuses the rest."""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream

from tests.forward_proxy import forward_proxy
from tests.pki import Pki, server_tls


@asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 sending every byte back upper-cased; yields its port."""

    async def echo(stream: ByteStream) -> None:
        async with stream:
            async for chunk in stream:
                await stream.send(chunk.upper())

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, echo, group)
        try:
            yield listener.extra(SocketAttribute.local_port)
        finally:
            group.cancel_scope.cancel()


def unused_port() -> int:
    """A port nothing listens on: one the kernel just handed out and took back."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def ask(stream: ByteStream, request: bytes) -> tuple[bytes, BufferedByteReceiveStream]:
    await stream.send(request)
    received = BufferedByteReceiveStream(stream)
    return await received.receive_until(b"\r\n\r\n", 4096), received


async def test_connect_opens_a_tunnel_to_the_target() -> None:
    async with echo_server() as port, forward_proxy() as proxy:
        async with await anyio.connect_tcp("127.0.0.1", int(proxy.url.rsplit(":", 1)[1])) as s:
            head, received = await ask(
                s, f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
            )
            assert head.startswith(b"HTTP/1.1 200 ")
            await s.send(b"through the tunnel")
            assert await received.receive_exactly(18) == b"THROUGH THE TUNNEL"
        assert proxy.tunnels == [f"127.0.0.1:{port}"]
        assert proxy.refused == []


async def test_other_methods_and_unreachable_targets_get_no_tunnel() -> None:
    closed_port = unused_port()
    async with forward_proxy() as proxy:
        proxy_port = int(proxy.url.rsplit(":", 1)[1])
        async with await anyio.connect_tcp("127.0.0.1", proxy_port) as s:
            head, _ = await ask(s, b"GET http://example.invalid/ HTTP/1.1\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 405 ")
        async with await anyio.connect_tcp("127.0.0.1", proxy_port) as s:
            head, _ = await ask(s, f"CONNECT 127.0.0.1:{closed_port} HTTP/1.1\r\n\r\n".encode())
            assert head.startswith(b"HTTP/1.1 502 ")
        assert proxy.tunnels == []
        assert proxy.refused == ["GET http://example.invalid/ HTTP/1.1"]


async def test_an_https_proxy_tunnels_inside_its_own_tls(pki: Pki) -> None:
    server_side = server_tls(pki)
    client_side = ssl.create_default_context(cafile=str(pki.ca))
    async with echo_server() as port, forward_proxy(server_side) as proxy:
        assert proxy.url.startswith("https://127.0.0.1:")
        proxy_port = int(proxy.url.rsplit(":", 1)[1])
        async with await anyio.connect_tcp(
            "127.0.0.1", proxy_port, ssl_context=client_side, tls_standard_compatible=False
        ) as s:
            head, received = await ask(s, f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
            assert head.startswith(b"HTTP/1.1 200 ")
            await s.send(b"inside tls")
            assert await received.receive_exactly(10) == b"INSIDE TLS"
        assert proxy.tunnels == [f"127.0.0.1:{port}"]
