"""AWS clients: one aioboto3 Session; one client per credentials, region, endpoint and service.

Why one Session: a Session loads botocore's service models and its credential chain; 50
Sessions with one client each took 8.4 s and 593 MB here, one Session making 50 clients 0.26 s
and 15 MB. Credentials are therefore given per client, never per Session.

Ownership: each client lives in its own `AsyncExitStack`, held by the pool; `aclose()` closes
every one of them, so no client (and no aiohttp connection pool) outlives the pool.

Retirement: when the credential cache replaces or drops credentials, it tells the pool
(`retire`). A reconcile may still be in the middle of a call with a client built on them, so
such clients are closed only after `retire_grace_seconds`, when the pool next hands out a
client (or on `aclose`). Clients asked for later with retired credentials are retired from the
start.

TLS: the pool's clients share their SSL contexts (`TlsContexts`, carm/accounts/tls.py): one
per CA bundle and client certificate, not one per client. `client_config` keeps its options;
the pool only adds its session class to it.

Metrics: a botocore `after-call` / `after-call-error` hook on every client counts each API call
(once per call, not per retry) in ACK's `ack_outbound_api_requests_total` and, for HTTP
statuses >= 300 or calls without a response, `ack_outbound_api_requests_error_total`.
"""

from __future__ import annotations

import logging
import math
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aioboto3
import anyio

from carm.accounts.credentials import AwsCredentials
from carm.accounts.tls import TlsContexts
from carm.clock import Clock
from carm.observability.metrics import OUTBOUND_ERROR_NO_STATUS, Metrics

log = logging.getLogger("carm.accounts.clients")

AwsClient = Any
"""An aiobotocore client (untyped: aiobotocore ships no type information)."""

# ACK's op_type values, from the operation name's verb.
_OP_TYPES = (
    ("Create", "CREATE"),
    ("Delete", "DELETE"),
    ("List", "READ_MANY"),
    ("Describe", "READ_ONE"),
    ("Get", "READ_ONE"),
    ("Head", "READ_ONE"),
    ("Put", "UPDATE"),
    ("Update", "UPDATE"),
    ("Modify", "UPDATE"),
    ("Tag", "UPDATE"),
    ("Untag", "UPDATE"),
)


def op_type_of(operation_name: str) -> str:
    """ACK's op_type for an AWS operation: CREATE, READ_ONE, READ_MANY, UPDATE, DELETE, OTHER."""
    for verb, op_type in _OP_TYPES:
        if operation_name.startswith(verb):
            return op_type
    return "OTHER"


@dataclass(frozen=True, slots=True)
class _ClientKey:
    service: str
    access_key_id: str | None  # None: the controller's own credential chain
    region: str
    endpoint_url: str | None


@dataclass(eq=False, slots=True)
class _PooledClient:
    client: AwsClient
    stack: AsyncExitStack
    close_after: float | None = None
    """Monotonic deadline once its credentials are retired."""


class AwsClientPool:
    def __init__(
        self,
        *,
        clock: Clock,
        session: aioboto3.Session | None = None,
        metrics: Metrics | None = None,
        client_config: Any = None,
        retire_grace_seconds: float = 300.0,
    ) -> None:
        self._clock = clock
        self._session = session if session is not None else aioboto3.Session()
        self._metrics = metrics if metrics is not None else Metrics()
        self.tls_contexts = TlsContexts()
        """The SSL contexts every client of the pool shares."""
        self._client_config = self.tls_contexts.client_config(client_config)
        self._grace = retire_grace_seconds
        self._clients: dict[_ClientKey, _PooledClient] = {}
        self._retired_keys: dict[str, float] = {}  # access key id -> expiration (wall)
        self._lock = anyio.Lock()
        self._closed = False

    async def client(
        self,
        service: str,
        credentials: AwsCredentials | None,
        region: str,
        endpoint_url: str | None = None,
    ) -> AwsClient:
        """The pool's client for `service` as `credentials` (None: the controller's own chain)."""
        key = _ClientKey(
            service, credentials.access_key_id if credentials else None, region, endpoint_url
        )
        async with self._lock:
            if self._closed:
                raise RuntimeError("the AWS client pool is closed")
            await self._close_expired_retirees()
            pooled = self._clients.get(key)
            if pooled is None:
                pooled = self._clients[key] = await self._create(key, credentials)
            return pooled.client

    def retire(self, credentials: AwsCredentials) -> None:
        """`credentials` were replaced or dropped: close their clients after the grace period."""
        self._retired_keys[credentials.access_key_id] = (
            math.inf if credentials.expiration is None else credentials.expiration
        )
        deadline = self._clock.monotonic() + self._grace
        for key, pooled in self._clients.items():
            if key.access_key_id == credentials.access_key_id and pooled.close_after is None:
                pooled.close_after = deadline

    def __len__(self) -> int:
        """Open clients."""
        return len(self._clients)

    async def aclose(self) -> None:
        """Close every client. Shielded: it runs while the app is being cancelled."""
        with anyio.CancelScope(shield=True):
            async with self._lock:
                self._closed = True
                clients, self._clients = list(self._clients.values()), {}
                for pooled in clients:
                    await self._close(pooled)

    async def __aenter__(self) -> AwsClientPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- internals --

    async def _create(self, key: _ClientKey, credentials: AwsCredentials | None) -> _PooledClient:
        secrets: dict[str, str | None] = {}
        if credentials is not None:
            secrets = {
                "aws_access_key_id": credentials.access_key_id,
                "aws_secret_access_key": credentials.secret_access_key,
                "aws_session_token": credentials.session_token,
            }
        stack = AsyncExitStack()
        # Shielded: a cancellation half-way would leave an aiohttp session nobody closes.
        with anyio.CancelScope(shield=True):
            client = await stack.enter_async_context(
                self._session.client(
                    key.service,
                    region_name=key.region,
                    endpoint_url=key.endpoint_url,
                    config=self._client_config,
                    **secrets,
                )
            )
        self._count_calls(client, key.service)
        pooled = _PooledClient(client, stack)
        if credentials is not None and self._is_retired(credentials):
            pooled.close_after = self._clock.monotonic() + self._grace
        log.debug(
            "new %s client for %s in %s", key.service, credentials or "own credentials", key.region
        )
        return pooled

    def _is_retired(self, credentials: AwsCredentials) -> bool:
        now = self._clock.wall()
        # Forget retirements of credentials that expired: nobody can ask for those any more.
        for access_key_id, expiration in list(self._retired_keys.items()):
            if expiration <= now:
                del self._retired_keys[access_key_id]
        return credentials.access_key_id in self._retired_keys or (
            credentials.seconds_left(now) <= 0
        )

    async def _close_expired_retirees(self) -> None:
        now = self._clock.monotonic()
        due = [
            key
            for key, pooled in self._clients.items()
            if pooled.close_after is not None and pooled.close_after <= now
        ]
        for key in due:
            await self._close(self._clients.pop(key))

    async def _close(self, pooled: _PooledClient) -> None:
        try:
            await pooled.stack.aclose()
        except Exception:  # closing must go on for the other clients
            log.exception("closing an AWS client failed")

    def _count_calls(self, client: AwsClient, service: str) -> None:
        metrics = self._metrics

        def after_call(http_response: Any, model: Any, **_: Any) -> None:
            status = getattr(http_response, "status_code", None)
            failed = status is None or status >= 300
            metrics.record_outbound_call(
                service=service,
                op_type=op_type_of(model.name),
                op_id=model.name,
                status_code=str(status if status is not None else OUTBOUND_ERROR_NO_STATUS)
                if failed
                else None,
            )

        def after_call_error(context: Any, **kwargs: Any) -> None:
            # No response arrived (connection refused, timeout): the operation name is only
            # in the event name, e.g. "after-call-error.s3.ListBuckets".
            operation = kwargs.get("event_name", "").rsplit(".", 1)[-1] or "Unknown"
            metrics.record_outbound_call(
                service=service,
                op_type=op_type_of(operation),
                op_id=operation,
                status_code=OUTBOUND_ERROR_NO_STATUS,
            )

        client.meta.events.register("after-call", after_call)
        client.meta.events.register("after-call-error", after_call_error)
