"""Raw REST access to the Kubernetes API: dicts in, dicts out.

Design:

- kubernetes_asyncio is used only to *load configuration* (kubeconfig with tokens, client
  certificates, exec/OIDC/GCP plugins; or the in-cluster service account), into a
  `Configuration` of our own. Everything after that is plain HTTP through ONE aiohttp session
  built from that configuration, and every body is decoded with orjson. No client model objects
  are ever built: the controller handles thousands of watch events and the model layer would
  cost more than the rest of the pipeline together.
- Credentials can change while we run (exec plugins and service-account tokens expire). The
  Authorization header is computed per request from the configuration, whose in-cluster refresh
  hook re-reads the token file; kubeconfig credentials are re-loaded at most once per
  `credential_refresh_seconds` and right after a 401 (which is then retried once).
  Known limit: client certificates handed out by an exec plugin are read once, when the
  session's TLS context is built.
- No retries here besides that single 401 retry. Callers own their retry policy (the reflector
  backs off and resumes; the reconcile loop requeues), so a failure is reported at once with
  the facts needed to decide: `KubeError.retryable`, and `KubeApiError.retry_after` (the
  server's Retry-After, capped at `MAX_RETRY_AFTER`) for callers that wait before retrying.
- Watches are streamed and split into lines by hand (`WatchLineSplitter`), so an event of any
  size is handled whatever the read chunk size is; the stream is newline-terminated JSON.
"""

from __future__ import annotations

import builtins
import logging
import os
import ssl
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import quote

import aiohttp
import anyio
import orjson

from carm.clock import Clock, SystemClock
from carm.events import RawObject

log = logging.getLogger(__name__)

MAX_RETRY_AFTER: Final = 30.0
"""Longest Retry-After we report: a misbehaving server must not park a caller for hours."""

MAX_WATCH_LINE: Final = 64 * 1024 * 1024
"""Largest watch event we buffer (etcd caps objects at ~1.5 MiB; this is only a safety net)."""

USER_AGENT: Final = "carm/0.1"

RequestObserver = Callable[[str, int | None], None]
"""Called once per request with the Kubernetes verb (get, list, watch, create, update, patch,
delete) and the HTTP status, or None when no response arrived (for request metrics)."""


# --------------------------------------------------------------------------------------------
# Resource addressing


@dataclass(frozen=True, slots=True)
class ResourceRef:
    """Where a collection lives in the API: group ("" for core), version, plural, scope."""

    group: str
    version: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """URL path of the collection (all namespaces when `namespace` is None), an object or
        an object's subresource."""
        if not self.namespaced and namespace:
            raise ValueError(f"{self.plural} are cluster-scoped, got namespace {namespace!r}")
        if self.namespaced and name is not None and not namespace:
            raise ValueError(f"{self.plural} are namespaced: {name!r} needs a namespace")
        parts = ["/api/v1" if not self.group else f"/apis/{self.group}/{self.version}"]
        if namespace:
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name is not None:
            if not name:
                raise ValueError(f"empty name for {self.plural}")
            parts.append(quote(name, safe=""))
            if subresource:
                parts.append(subresource)
        return "/".join(parts)


NAMESPACES: Final = ResourceRef("", "v1", "namespaces", namespaced=False)
CONFIG_MAPS: Final = ResourceRef("", "v1", "configmaps", namespaced=True)
EVENTS: Final = ResourceRef("", "v1", "events", namespaced=True)
LEASES: Final = ResourceRef("coordination.k8s.io", "v1", "leases", namespaced=True)
BUCKETS: Final = ResourceRef("s3.services.k8s.aws", "v1alpha1", "buckets", namespaced=True)
IAM_ROLE_SELECTORS: Final = ResourceRef(
    "services.k8s.aws", "v1alpha1", "iamroleselectors", namespaced=False
)


# --------------------------------------------------------------------------------------------
# Errors


class KubeError(Exception):
    """Any failure talking to the API server."""

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed later without anything else changing."""
        return False


class KubeConnectionError(KubeError):
    """No (complete) response: connection refused or reset, timeout, stream cut mid-event."""

    @property
    def retryable(self) -> bool:
        return True


class KubeApiError(KubeError):
    """The server answered with an error status (or a watch ERROR event carrying one)."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        body: RawObject | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body: RawObject = body or {}
        self.retry_after = retry_after

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        """409: a stale resourceVersion on update, or (see `already_exists`) a create clash."""
        return self.status == 409

    @property
    def already_exists(self) -> bool:
        return self.status == 409 and self.reason == "AlreadyExists"

    @property
    def gone(self) -> bool:
        """410: the resourceVersion asked for is older than the server's history."""
        return self.status == 410

    @property
    def invalid(self) -> bool:
        return self.status == 422

    @property
    def retryable(self) -> bool:
        return self.status == 429 or self.status >= 500

    @classmethod
    def from_status(cls, status: int, status_object: RawObject, **kw: Any) -> KubeApiError:
        """From a `Status` object (the body of an error response or of a watch ERROR event)."""
        code = status_object.get("code")
        return cls(
            code if isinstance(code, int) and code else status,
            str(status_object.get("reason") or ""),
            str(status_object.get("message") or ""),
            status_object,
            **kw,
        )


def api_error_from_response(status: int, data: bytes, headers: Mapping[str, str]) -> KubeApiError:
    retry_after = _parse_retry_after(headers.get("Retry-After"))
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        return KubeApiError.from_status(status, body, retry_after=retry_after)
    text = data[:500].decode("utf-8", "replace")
    return KubeApiError(status, "", text, None, retry_after=retry_after)


def _parse_retry_after(value: str | None) -> float | None:
    # Kubernetes sends delta-seconds; an HTTP date from some proxy is ignored rather than parsed.
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


# --------------------------------------------------------------------------------------------
# Watch stream parsing


class WatchLineSplitter:
    """Splits a byte stream into newline-terminated lines, whatever the chunk boundaries.

    Only the bytes added since the last call are searched for a newline, so a line spread over
    many chunks costs linear time.
    """

    def __init__(self, max_line: int = MAX_WATCH_LINE) -> None:
        self._buffer = bytearray()
        self._scanned = 0
        self._max_line = max_line

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        lines: list[bytes] = []
        start = 0
        while (newline := self._buffer.find(b"\n", max(start, self._scanned))) >= 0:
            line = bytes(self._buffer[start:newline]).strip()
            if line:
                lines.append(line)
            start = newline + 1
            self._scanned = start
        del self._buffer[:start]
        self._scanned = len(self._buffer)
        if len(self._buffer) > self._max_line:
            raise KubeConnectionError(f"watch event longer than {self._max_line} bytes")
        return lines

    @property
    def pending(self) -> bool:
        """Whether bytes of an unfinished line are buffered."""
        return bool(self._buffer.strip())


def decode_watch_line(line: bytes) -> tuple[str, RawObject]:
    """One watch line into (type, object); an ERROR event raises its Status as KubeApiError."""
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise KubeConnectionError(f"undecodable watch event: {line[:200]!r}") from exc
    if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
        raise KubeConnectionError(f"malformed watch event: {line[:200]!r}")
    type_ = str(event.get("type") or "")
    obj: RawObject = event["object"]
    if type_ == "ERROR":
        raise KubeApiError.from_status(500, obj)
    return type_, obj


class WatchStream:
    """One open watch request. Use as `async with client.watch(...) as events:` and then
    `async for type_, obj in events:`. Entering sends the request: an error status (e.g. 410)
    raises right there, so "entered" means the server accepted the watch. The iteration ends
    when the server closes the stream cleanly (its timeout); a cut stream raises
    KubeConnectionError and an ERROR event raises KubeApiError.
    """

    def __init__(self, open_response: Callable[[], Awaitable[aiohttp.ClientResponse]]) -> None:
        self._open_response = open_response
        self._response: aiohttp.ClientResponse | None = None
        self._splitter = WatchLineSplitter()
        self._ready: list[bytes] = []

    async def __aenter__(self) -> Self:
        self._response = await self._open_response()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._response is not None:
            # close, not release: the unread rest of an endless stream must not be drained.
            self._response.close()
            self._response = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> tuple[str, RawObject]:
        if self._response is None:
            raise RuntimeError("iterate a WatchStream inside `async with`")
        while not self._ready:
            try:
                chunk = await self._response.content.readany()
            except (aiohttp.ClientError, OSError) as exc:
                raise KubeConnectionError(f"watch stream broken: {exc!r}") from exc
            if not chunk:
                if self._splitter.pending:
                    raise KubeConnectionError("watch stream ended inside an event")
                raise StopAsyncIteration
            self._ready = self._splitter.feed(chunk)
            self._ready.reverse()  # pop() from the end in arrival order
        return decode_watch_line(self._ready.pop())


# --------------------------------------------------------------------------------------------
# Credentials and connection settings


class _Credentials:
    """The Authorization header, kept fresh from the loaded configuration."""

    def __init__(
        self,
        configuration: Any,
        reload: Callable[[], Awaitable[None]] | None,
        clock: Clock,
        refresh_seconds: float,
    ) -> None:
        self._configuration = configuration
        self._reload = reload
        self._clock = clock
        self._refresh_seconds = refresh_seconds
        self._loaded_at = clock.monotonic()
        self._lock = anyio.Lock()

    @property
    def reloadable(self) -> bool:
        return self._reload is not None

    async def authorization(self) -> str | None:
        if self._reload is not None and (
            self._clock.monotonic() - self._loaded_at >= self._refresh_seconds
        ):
            await self.reload()
        # Runs the configuration's refresh hook (the in-cluster one re-reads the token file).
        value = await self._configuration.get_api_key_with_prefix("BearerToken")
        return str(value) if value else None

    async def reload(self) -> None:
        if self._reload is None:
            return
        async with self._lock:
            await self._reload()
            self._loaded_at = self._clock.monotonic()


def _env_proxy_for(url: str) -> str | None:
    """The proxy that $HTTPS_PROXY / $HTTP_PROXY name for `url`, unless $NO_PROXY exempts it."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname is None or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme) or None


def _ssl_context(configuration: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, keyfile=configuration.key_file)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if getattr(configuration, "disable_strict_ssl_verification", False):
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    return context


def _bool(value: bool) -> str:
    return "true" if value else "false"


# --------------------------------------------------------------------------------------------
# The client


class KubeClient:
    """Kubernetes REST calls on raw dicts, through one aiohttp session.

    Create with `from_kubeconfig`, `in_cluster` or `from_env`; close with `aclose()` (or use
    `async with`). The session is created on first use, inside the running event loop.
    """

    def __init__(
        self,
        configuration: Any,
        *,
        reload_credentials: Callable[[], Awaitable[None]] | None = None,
        on_request: RequestObserver | None = None,
        request_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        clock: Clock | None = None,
        credential_refresh_seconds: float = 60.0,
    ) -> None:
        self._configuration = configuration
        self._base_url = str(configuration.host).rstrip("/")
        self._credentials = _Credentials(
            configuration, reload_credentials, clock or SystemClock(), credential_refresh_seconds
        )
        self._on_request = on_request
        self._request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None
        self._proxy: str | None = None
        self._closed = False

    # ---- construction

    @classmethod
    async def from_kubeconfig(
        cls, path: str, context: str | None = None, **kwargs: Any
    ) -> KubeClient:
        """From a kubeconfig file (or several, joined by ':', as in $KUBECONFIG)."""
        from kubernetes_asyncio import client, config

        configuration = client.Configuration()

        async def load() -> None:
            # persist_config=False: refreshed plugin tokens must not be written into the file.
            await config.load_kube_config(
                config_file=path,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )

        await load()
        return cls(configuration, reload_credentials=load, **kwargs)

    @classmethod
    def in_cluster(cls, **kwargs: Any) -> KubeClient:
        """From the pod's service account (token file re-read as kubelet rotates it)."""
        from kubernetes_asyncio import client, config

        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]

        async def load() -> None:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]

        return cls(configuration, reload_credentials=load, **kwargs)

    @classmethod
    async def from_env(cls, kubeconfig: str | None = None, **kwargs: Any) -> KubeClient:
        """The explicit path, else $KUBECONFIG, else in-cluster, else ~/.kube/config."""
        if kubeconfig:
            return await cls.from_kubeconfig(kubeconfig, **kwargs)
        if env_path := os.environ.get("KUBECONFIG"):
            return await cls.from_kubeconfig(env_path, **kwargs)
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            return cls.in_cluster(**kwargs)
        # kubernetes_asyncio expands "~" itself.
        return await cls.from_kubeconfig("~/.kube/config", **kwargs)

    @property
    def base_url(self) -> str:
        return self._base_url

    # ---- lifecycle

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("KubeClient is closed")
        if self._session is None:
            tls = _ssl_context(self._configuration) if self._base_url.startswith("https") else None
            # Proxy variables apply, as with kubectl and client-go, but are read once here:
            # aiohttp's trust_env would also look up ~/.netrc in a thread on every request
            # (a fifth of the controller's CPU in the fan-out benchmark).
            self._proxy = self._configuration.proxy or _env_proxy_for(self._base_url)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=tls if tls is not None else True),
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            )
        return self._session

    # ---- reads

    async def get(self, ref: ResourceRef, name: str, namespace: str | None = None) -> RawObject:
        return await self._call("get", "GET", ref.path(namespace, name))

    async def list(
        self,
        ref: ResourceRef,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
        resource_version: str | None = None,
    ) -> RawObject:
        """One page of a collection, as the raw `...List` dict."""
        params: dict[str, str] = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if limit:
            params["limit"] = str(limit)
        if continue_:
            params["continue"] = continue_
        if resource_version is not None:
            params["resourceVersion"] = resource_version
        return await self._call("list", "GET", ref.path(namespace), params=params)

    async def list_all(
        self,
        ref: ResourceRef,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> tuple[builtins.list[RawObject], str]:
        """Every item, following `continue` across pages, and the list's resourceVersion.

        All pages come from one snapshot; if the continue token expires meanwhile the server
        answers 410 and the caller starts over.
        """
        items: builtins.list[RawObject] = []
        token: str | None = None
        while True:
            page = await self.list(
                ref,
                namespace,
                label_selector=label_selector,
                field_selector=field_selector,
                limit=page_size,
                continue_=token,
            )
            items.extend(page.get("items") or ())
            meta = page.get("metadata") or {}
            token = meta.get("continue") or None
            if not token:
                return items, str(meta.get("resourceVersion") or "")

    def watch(
        self,
        ref: ResourceRef,
        namespace: str | None = None,
        *,
        resource_version: str,
        allow_bookmarks: bool = True,
        timeout_seconds: int = 300,
        field_selector: str | None = None,
        label_selector: str | None = None,
    ) -> WatchStream:
        """Changes after `resource_version`, as (type, object) pairs; see `WatchStream`.

        `timeout_seconds` asks the server to end the stream cleanly after that long; the client
        gives up on a silent connection a little later than that.
        """
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": _bool(allow_bookmarks),
            "timeoutSeconds": str(timeout_seconds),
        }
        if field_selector:
            params["fieldSelector"] = field_selector
        if label_selector:
            params["labelSelector"] = label_selector
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._connect_timeout, sock_read=timeout_seconds + 15
        )
        path = ref.path(namespace)

        async def open_response() -> aiohttp.ClientResponse:
            return await self._send("watch", "GET", path, params=params, client_timeout=timeout)

        return WatchStream(open_response)

    # ---- writes

    async def create(
        self, ref: ResourceRef, body: RawObject, namespace: str | None = None
    ) -> RawObject:
        """POST; the namespace defaults to the body's metadata.namespace."""
        namespace = namespace or (body.get("metadata") or {}).get("namespace")
        return await self._call("create", "POST", ref.path(namespace), body=orjson.dumps(body))

    async def replace(
        self,
        ref: ResourceRef,
        body: RawObject,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> RawObject:
        """PUT the whole object (name and namespace from its metadata). With a
        metadata.resourceVersion this is a compare-and-swap: 409 when someone wrote first."""
        meta = body.get("metadata") or {}
        path = ref.path(
            namespace or meta.get("namespace"), str(meta.get("name") or ""), subresource
        )
        return await self._call("update", "PUT", path, body=orjson.dumps(body))

    async def merge_patch(
        self,
        ref: ResourceRef,
        name: str,
        patch: RawObject,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> RawObject:
        """JSON merge patch (RFC 7386): maps merge, lists and scalars replace, null deletes."""
        return await self._call(
            "patch",
            "PATCH",
            ref.path(namespace, name, subresource),
            body=orjson.dumps(patch),
            content_type="application/merge-patch+json",
        )

    async def json_patch(
        self,
        ref: ResourceRef,
        name: str,
        operations: builtins.list[RawObject],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> RawObject:
        """JSON patch (RFC 6902), e.g. a `test` of resourceVersion then a `remove` of one
        finalizer by index: precise edits of lists that a merge patch would replace whole."""
        return await self._call(
            "patch",
            "PATCH",
            ref.path(namespace, name, subresource),
            body=orjson.dumps(operations),
            content_type="application/json-patch+json",
        )

    async def delete(
        self,
        ref: ResourceRef,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: str | None = None,
        precondition_uid: str | None = None,
        precondition_resource_version: str | None = None,
        grace_period_seconds: int | None = None,
    ) -> RawObject:
        """DELETE; returns the object (still there with deletionTimestamp while finalizers
        remain) or a Status."""
        options: RawObject = {}
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        preconditions = {
            key: value
            for key, value in (
                ("uid", precondition_uid),
                ("resourceVersion", precondition_resource_version),
            )
            if value
        }
        if preconditions:
            options["preconditions"] = preconditions
        body = None
        if options:
            body = orjson.dumps({"apiVersion": "v1", "kind": "DeleteOptions", **options})
        return await self._call("delete", "DELETE", ref.path(namespace, name), body=body)

    # ---- plumbing

    async def _call(
        self,
        verb: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> RawObject:
        timeout = aiohttp.ClientTimeout(
            total=self._request_timeout, sock_connect=self._connect_timeout
        )
        response = await self._send(
            verb,
            method,
            path,
            params=params,
            body=body,
            content_type=content_type,
            client_timeout=timeout,
        )
        async with response:
            try:
                data = await response.read()
            except (aiohttp.ClientError, OSError) as exc:
                raise KubeConnectionError(f"{method} {path}: {exc!r}") from exc
        result = orjson.loads(data) if data else {}
        if not isinstance(result, dict):
            raise KubeConnectionError(f"{method} {path}: expected a JSON object")
        return result

    async def _send(
        self,
        verb: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
        client_timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        """Send a request; return the open response on 2xx, raise KubeError otherwise."""
        response = await self._send_once(
            verb, method, path, params, body, content_type, client_timeout
        )
        if response.status == 401 and self._credentials.reloadable:
            # The token may just have expired: load fresh credentials and try once more.
            response.close()
            await self._credentials.reload()
            response = await self._send_once(
                verb, method, path, params, body, content_type, client_timeout
            )
        if response.status >= 400:
            async with response:
                try:
                    data = await response.read()
                except (aiohttp.ClientError, OSError):
                    data = b""
            raise api_error_from_response(response.status, data, response.headers)
        return response

    async def _send_once(
        self,
        verb: str,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: bytes | None,
        content_type: str,
        client_timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        headers = {"Content-Type": content_type} if body is not None else {}
        if authorization := await self._credentials.authorization():
            headers["Authorization"] = authorization
        try:
            response = await self._get_session().request(
                method,
                self._base_url + path,
                params=params,
                data=body,
                headers=headers,
                timeout=client_timeout,
                proxy=self._proxy,
                server_hostname=self._configuration.tls_server_name or None,
            )
        except (aiohttp.ClientError, OSError) as exc:
            self._observe(verb, None)
            raise KubeConnectionError(f"{method} {self._base_url}{path}: {exc!r}") from exc
        self._observe(verb, response.status)
        return response

    def _observe(self, verb: str, status: int | None) -> None:
        if self._on_request is not None:
            self._on_request(verb, status)
