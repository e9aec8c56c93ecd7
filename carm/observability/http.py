"""The HTTP endpoints: /metrics on one address, /healthz and /readyz on another (as ACK and
controller-runtime serve them), each an aiohttp app on the controller's event loop.

Each server is a task of the app's task group: `task_status.started("host:port")` reports the
bound address (port 0 picks a free one, so several replicas can run on one machine), and
cancellation closes the listener.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from carm.observability.health import HealthChecks


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
    await _serve(app, addr, task_status)


async def serve_health(
    addr: str,
    checks: HealthChecks,
    *,
    task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve /healthz (liveness) and /readyz (readiness) until cancelled: 200 when every check
    passes, else 503; the JSON body says which check fails and why."""

    def endpoint(liveness: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(_: web.Request) -> web.Response:
            report = checks.liveness() if liveness else checks.readiness()
            return web.Response(
                body=orjson.dumps(report.body(), option=orjson.OPT_INDENT_2),
                status=200 if report.ok else 503,
                content_type="application/json",
            )

        return handle

    app = web.Application()
    app.router.add_get("/healthz", endpoint(liveness=True))
    app.router.add_get("/readyz", endpoint(liveness=False))
    await _serve(app, addr, task_status)


async def _serve(app: web.Application, addr: str, task_status: anyio.abc.TaskStatus[str]) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        host, port = parse_addr(addr)
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        task_status.started(f"{host}:{bound}")
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
