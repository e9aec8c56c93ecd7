"""`KubeApiServer`: the embedded, in-memory Kubernetes API server, and its lifecycle.

State (objects, history, served kinds) lives in the server object, not in the listener, so
`stop()` followed by `start()` comes back on the same port with everything kept, which is how
tests simulate an apiserver restart. `stop()` ends every open watch first so that the aiohttp
shutdown does not wait on never-ending streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterable
from typing import Any

import yaml
from aiohttp import web

from carm.sandbox.kubeapi import admin
from carm.sandbox.kubeapi.builtins import (
    BUILTIN_TYPES,
    CUSTOM_RESOURCE_DEFINITION,
    INITIAL_NAMESPACES,
    NAMESPACE,
)
from carm.sandbox.kubeapi.errors import ApiError
from carm.sandbox.kubeapi.faults import FaultInjector
from carm.sandbox.kubeapi.handlers import ApiHandler
from carm.sandbox.kubeapi.registry import Registry
from carm.sandbox.kubeapi.storage import Store
from carm.sandbox.kubeapi.verbs import Verbs, WriteOptions, deep_copy
from carm.sandbox.kubeapi.watch import WatchHub

KUBECONFIG_CONTEXT = "carm-sandbox"


class KubeApiServer:
    """An in-memory Kubernetes API server on aiohttp, for tests, the sandbox and benchmarks."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        history_size: int = 10_000,
        bookmark_interval: float = 1.0,
        watch_queue_size: int = 10_000,
    ) -> None:
        self._host = host
        self._port = port
        self.registry = Registry()
        self.store = Store(history_size)
        self.hub = WatchHub()
        self.store.subscribe(self.hub.publish)
        self.verbs = Verbs(self.registry, self.store, on_unserved=self.hub.close_all)
        self.faults = FaultInjector()
        self.handler = ApiHandler(
            registry=self.registry,
            store=self.store,
            verbs=self.verbs,
            hub=self.hub,
            faults=self.faults,
            bookmark_interval=bookmark_interval,
            watch_queue_size=watch_queue_size,
        )
        self._runner: web.AppRunner | None = None
        self._restarting: asyncio.Task[None] | None = None
        for rtype in BUILTIN_TYPES:
            self.registry.add(rtype)
        for name in INITIAL_NAMESPACES:
            self.verbs.create(NAMESPACE, "", {"metadata": {"name": name}}, WriteOptions())

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # handler_cancellation: a watch whose client went away is cancelled at once instead of
        # lingering until its next write fails.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        address = runner.addresses[0]
        self._port = int(address[1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self.hub.close_all()
        await runner.cleanup()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith(admin.PREFIX):
            return await admin.handle(self, request)
        return await self.handler(request)

    def restart_soon(self, downtime: float) -> None:
        """Stop, stay down for `downtime` seconds, start again (for out-of-process tests)."""

        async def restart() -> None:
            await asyncio.sleep(0.05)  # let the admin request's answer leave first
            await self.stop()
            await asyncio.sleep(downtime)
            await self.start()

        if self._restarting is None or self._restarting.done():
            self._restarting = asyncio.get_running_loop().create_task(restart())

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    def write_kubeconfig(self, path: str | os.PathLike[str], *, namespace: str = "default") -> None:
        """A kubeconfig for plain http with an auth-less user, context `carm-sandbox`."""
        if not self._port:
            raise RuntimeError("start() the server (or give it a port) before writing a kubeconfig")
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": KUBECONFIG_CONTEXT, "cluster": {"server": self.url}}],
            "users": [{"name": KUBECONFIG_CONTEXT, "user": {}}],
            "contexts": [
                {
                    "name": KUBECONFIG_CONTEXT,
                    "context": {
                        "cluster": KUBECONFIG_CONTEXT,
                        "user": KUBECONFIG_CONTEXT,
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": KUBECONFIG_CONTEXT,
            "preferences": {},
        }
        with open(path, "w", encoding="utf-8") as handle:
            yaml.safe_dump(config, handle, sort_keys=False)

    # -- state and faults ---------------------------------------------------------------------

    def install_crd(self, crd: dict[str, Any]) -> None:
        """Create a CRD as through the API (or replace an existing one of that name)."""
        options = WriteOptions(field_validation="Ignore")
        try:
            self.verbs.create(CUSTOM_RESOURCE_DEFINITION, "", deep_copy(crd), options)
        except ApiError as error:
            if error.reason != "AlreadyExists":
                raise
            name = crd["metadata"]["name"]
            body = deep_copy(crd)
            body["metadata"].pop("resourceVersion", None)
            self.verbs.update(CUSTOM_RESOURCE_DEFINITION, "", name, body, options)

    def drop_watches(self) -> None:
        """End every open watch stream (clients see a clean end of stream)."""
        self.hub.close_all()

    def compact(self) -> None:
        """Forget the change history: resuming a watch from an older version gets 410."""
        self.store.compact()

    def inject_errors(
        self,
        *,
        verbs: Iterable[str],
        status: int,
        count: int | None = None,
        seconds: float | None = None,
        plural: str | None = None,
    ) -> None:
        """Answer `status` to requests of `verbs` (of `plural` only, if given)."""
        self.faults.add(verbs=verbs, status=status, count=count, seconds=seconds, plural=plural)

    def clear_faults(self) -> None:
        self.faults.clear()

    def set_latency(self, seconds: float) -> None:
        self.faults.latency = max(0.0, seconds)

    def request_counts(self) -> dict[str, int]:
        """Requests served so far, by verb (get, list, watch, create, update, patch, delete...)."""
        return dict(self.handler.counts)


@contextlib.asynccontextmanager
async def serve_kubeapi(**kwargs: Any) -> AsyncIterator[KubeApiServer]:
    """A started `KubeApiServer`, stopped on exit."""
    server = KubeApiServer(**kwargs)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
