"""The /metrics endpoint (and later /healthz, /readyz), served by aiohttp on the app's loop."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.abc
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST


def parse_addr(addr: str) -> tuple[str, int]:
    """'host:port' (host may be empty for all interfaces) to (host, port)."""
    host, _, port = addr.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"expected host:port, got {addr!r}")
    return host or "0.0.0.0", int(port)


async def serve_metrics(
    addr: str,
    render: Callable[[], bytes],
    *,
    task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `render()` at /metrics until cancelled; reports the bound 'host:port' when up."""

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        host, port = parse_addr(addr)
        site = web.TCPSite(runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
        task_status.started(f"{host}:{bound}")
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
