"""HTTP in and out: one aiohttp handler that routes every Kubernetes API path to a verb.

Routing is by hand (see `routes.py`) rather than through aiohttp's router because the served
paths change whenever a CRD comes or goes. Every failure leaves as a `Status` object.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

import orjson
import yaml
from aiohttp import web
from multidict import CIMultiDict

from carm.sandbox.kubeapi import discovery, openapi, openapi_v2, protobuf, routes
from carm.sandbox.kubeapi.errors import (
    ApiError,
    bad_request,
    internal_error,
    method_not_allowed,
    path_not_found,
)
from carm.sandbox.kubeapi.faults import FaultInjector
from carm.sandbox.kubeapi.registry import Registry, ResourceType
from carm.sandbox.kubeapi.selectors import combine, field_predicate, label_predicate
from carm.sandbox.kubeapi.storage import ExpiredError, Store
from carm.sandbox.kubeapi.tables import to_table, wants_table
from carm.sandbox.kubeapi.verbs import Outcome, Verbs, WriteOptions, present, rkey
from carm.sandbox.kubeapi.watch import Watcher, WatchHub, bookmark_line, pump

log = logging.getLogger(__name__)

_FALSE = frozenset({"false", "0"})
_HEALTH_PATHS = frozenset({"/healthz", "/readyz", "/livez"})


def flag(query: Mapping[str, str], name: str) -> bool:
    """Boolean query flags as the apiserver decodes them (`Convert_Slice_string_To_bool`):
    absent, `0` or `false` (any case) is false; any other value, even an empty one, is true."""
    return name in query and query[name].lower() not in _FALSE


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | CIMultiDict[str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def error_response(error: ApiError) -> web.Response:
    return json_response(error.status(), error.code, error.headers)


def initial_events_end(rtype: ResourceType, resource_version: int) -> bytes:
    bookmark = {
        "type": "BOOKMARK",
        "object": {
            "kind": rtype.kind,
            "apiVersion": rtype.api_version,
            "metadata": {
                "resourceVersion": str(resource_version),
                "annotations": {"k8s.io/initial-events-end": "true"},
            },
        },
    }
    return orjson.dumps(bookmark) + b"\n"


class ApiHandler:
    """Serves discovery, OpenAPI, health and every resource verb."""

    def __init__(
        self,
        *,
        registry: Registry,
        store: Store,
        verbs: Verbs,
        hub: WatchHub,
        faults: FaultInjector,
        bookmark_interval: float,
        watch_queue_size: int,
    ) -> None:
        self.registry = registry
        self.store = store
        self.verbs = verbs
        self.hub = hub
        self.faults = faults
        self.bookmark_interval = bookmark_interval
        self.watch_queue_size = watch_queue_size
        self.counts: Counter[str] = Counter()

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        try:
            if self.faults.latency > 0:
                await asyncio.sleep(self.faults.latency)
            return await self._route(request)
        except ApiError as error:
            return error_response(error)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as error:  # a bug here must still answer like an apiserver
            log.exception("kubeapi: %s %s failed", request.method, request.path)
            return error_response(internal_error(repr(error)))

    # -- routing ------------------------------------------------------------------------------

    async def _route(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        static = self._static(path, request)
        if static is not None:
            return static
        target = routes.parse(path)
        if target is None:
            raise path_not_found()
        rtype = self.registry.get(target.group, target.version, target.plural)
        if rtype is None or not self._scope_fits(rtype, target):
            raise path_not_found()
        verb = self._verb(request.method, target, request.query)
        self.counts[verb] += 1
        fault = self.faults.check(verb, rtype.plural)
        if fault is not None:
            raise fault
        return await self._serve(request, verb, rtype, target)

    def _static(self, path: str, request: web.Request) -> web.StreamResponse | None:
        if request.method != "GET":
            return None
        if path in _HEALTH_PATHS or path.split("/")[1] in ("healthz", "readyz", "livez"):
            return web.Response(text="ok", content_type="text/plain")
        if path == "/version":
            return json_response(discovery.KUBE_VERSION)
        if path == "/api":
            return json_response(discovery.api_versions(request.host))
        if path == "/apis":
            return json_response(discovery.api_group_list(self.registry))
        if path == "/openapi/v2":
            return self._openapi_v2(request)
        if path == "/openapi/v3":
            return json_response(openapi.index(self.registry))
        if path.startswith("/openapi/v3/"):
            doc = openapi.document(self.registry, path[len("/openapi/v3/") :])
            if doc is None:
                raise path_not_found()
            return json_response(doc)
        segments = path.strip("/").split("/")
        if segments[0] == "apis" and len(segments) == 2:
            group = discovery.api_group(self.registry, segments[1])
            if group is None:
                raise path_not_found()
            return json_response(group)
        if (segments[0] == "api" and len(segments) == 2) or (
            segments[0] == "apis" and len(segments) == 3
        ):
            group_name = "" if segments[0] == "api" else segments[1]
            listed = discovery.api_resource_list(self.registry, group_name, segments[-1])
            if listed is None:
                raise path_not_found()
            return json_response(listed)
        return None

    def _openapi_v2(self, request: web.Request) -> web.Response:
        """JSON or protobuf by `Accept`, 406 (empty) for anything else, 304 on a matching ETag."""
        rendered = openapi_v2.render(self.registry, request.headers.get("Accept", ""))
        if rendered is None:
            return web.Response(status=406, headers={"Vary": "Accept"})
        etag = f'"{rendered.etag}"'
        headers = {"Vary": "Accept", "ETag": etag, "Content-Type": rendered.content_type}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=rendered.body, headers=headers)

    @staticmethod
    def _scope_fits(rtype: ResourceType, target: routes.Target) -> bool:
        if target.subresource is not None:
            allowed = {"status"} if rtype.has_status else set()
            if rtype.group == "" and rtype.kind == "Namespace":
                allowed.add("finalize")
            if target.subresource not in allowed:
                return False
        if rtype.namespaced:
            return target.namespace is not None or target.name is None
        return target.namespace is None

    @staticmethod
    def _verb(method: str, target: routes.Target, query: Mapping[str, str]) -> str:
        if target.name is None:
            verbs = {
                "GET": "watch" if target.watch_path or flag(query, "watch") else "list",
                "POST": "create",
                "DELETE": "deletecollection",
            }
        else:
            verbs = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
            if target.watch_path or (method == "GET" and flag(query, "watch")):
                verbs["GET"] = "watch"
        verb = verbs.get(method)
        if verb is None:
            raise method_not_allowed()
        if target.subresource == "finalize" and verb != "update":
            raise method_not_allowed()
        return verb

    # -- verbs --------------------------------------------------------------------------------

    async def _serve(
        self, request: web.Request, verb: str, rtype: ResourceType, target: routes.Target
    ) -> web.StreamResponse:
        query = request.query
        namespace = target.namespace or ""
        if verb == "get":
            assert target.name is not None
            return self._respond(request, rtype, self.verbs.get(rtype, namespace, target.name))
        if verb in ("list", "watch", "deletecollection"):
            predicate = self._predicate(rtype, target, query)
            if verb == "watch":
                return await self._watch(request, rtype, target, predicate)
            if verb == "deletecollection":
                return json_response(
                    self.verbs.delete_collection(rtype, target.namespace, predicate)
                )
            listed = self.verbs.list_collection(
                rtype,
                target.namespace,
                predicate=predicate,
                limit=self._int(query, "limit"),
                continue_token=query.get("continue", ""),
            )
            return self._respond(request, rtype, listed)
        body = await request.read()
        options = WriteOptions(
            field_validation=query.get("fieldValidation") or "Warn",
            dry_run=bool(query.getall("dryRun", [])),
            field_manager=query.get("fieldManager", ""),
            force=query.get("force", "") in ("true", "1"),
        )
        if verb == "create":
            outcome = self.verbs.create(
                rtype, namespace, self._decode(request, body, rtype.kind), options
            )
        elif verb == "update":
            assert target.name is not None
            outcome = self.verbs.update(
                rtype,
                namespace,
                target.name,
                self._decode(request, body, rtype.kind),
                options,
                target.subresource,
            )
        elif verb == "patch":
            assert target.name is not None
            outcome = self.verbs.patch(
                rtype,
                namespace,
                target.name,
                body,
                request.content_type,
                options,
                target.subresource,
            )
        else:
            assert target.name is not None
            delete_options = self._decode(request, body, "DeleteOptions") if body.strip() else {}
            if not isinstance(delete_options, dict):
                raise bad_request("DeleteOptions must be a JSON object")
            outcome = self.verbs.delete(
                rtype, namespace, target.name, delete_options, dry_run=options.dry_run
            )
        return self._outcome(request, rtype, outcome)

    def _outcome(
        self, request: web.Request, rtype: ResourceType, outcome: Outcome
    ) -> web.StreamResponse:
        headers: CIMultiDict[str] = CIMultiDict()
        for warning in outcome.warnings:
            headers.add("Warning", f'299 - "{warning.replace(chr(34), chr(92) + chr(34))}"')
        return self._respond(request, rtype, outcome.body, outcome.code, headers)

    def _respond(
        self,
        request: web.Request,
        rtype: ResourceType,
        body: dict[str, Any],
        status: int = 200,
        headers: CIMultiDict[str] | None = None,
    ) -> web.StreamResponse:
        if body.get("kind") != "Status" and wants_table(request.headers.get("Accept", "")):
            return json_response(to_table(rtype, body), status, headers)
        return json_response(body, status, headers)

    @staticmethod
    def _decode(request: web.Request, body: bytes, default_kind: str) -> Any:
        if request.content_type == protobuf.CONTENT_TYPE:
            return protobuf.decode(body, default_kind)
        try:
            if "yaml" in request.content_type:
                return yaml.safe_load(body)
            return orjson.loads(body)
        except (orjson.JSONDecodeError, yaml.YAMLError) as error:
            raise bad_request(f"the body of the request could not be decoded: {error}") from None

    @staticmethod
    def _int(query: Mapping[str, str], name: str) -> int:
        raw = query.get(name, "")
        if not raw:
            return 0
        try:
            return max(0, int(raw))
        except ValueError:
            raise bad_request(f"invalid {name}: {raw!r}") from None

    @staticmethod
    def _predicate(rtype: ResourceType, target: routes.Target, query: Mapping[str, str]) -> Any:
        extra = rtype.extra.get("field_selectors", ())
        fields = query.get("fieldSelector")
        if target.name is not None:  # a watch on one object: /watch/.../{name}
            name_selector = f"metadata.name={target.name}"
            fields = f"{fields},{name_selector}" if fields else name_selector
        return combine(label_predicate(query.get("labelSelector")), field_predicate(fields, extra))

    # -- watch --------------------------------------------------------------------------------

    async def _watch(
        self, request: web.Request, rtype: ResourceType, target: routes.Target, predicate: Any
    ) -> web.StreamResponse:
        query = request.query
        namespace = target.namespace if rtype.namespaced else None
        render = None
        if wants_table(request.headers.get("Accept", "")):

            def render(event_type: str, obj: dict[str, Any]) -> bytes:
                table = to_table(rtype, present(rtype, obj))
                return orjson.dumps({"type": event_type, "object": table}) + b"\n"

        watcher = Watcher(
            rkey(rtype), namespace, predicate, rtype.api_version, self.watch_queue_size, render
        )
        watcher.on_overflow = lambda: request.transport.abort() if request.transport else None
        version = query.get("resourceVersion", "")
        initial: list[bytes] = []
        error_line: bytes | None = None
        # No awaits from here to `hub.add`: the snapshot (or replay) and the live registration
        # see the same store state, so no change is lost or doubled in between.
        send_initial = flag(query, "sendInitialEvents")
        if version in ("", "0") or send_initial:
            for obj in self.store.iter_objects(rkey(rtype), namespace):
                if predicate is None or predicate(obj):
                    if render is not None:
                        initial.append(render("ADDED", obj))
                    else:
                        event = {"type": "ADDED", "object": present(rtype, obj)}
                        initial.append(orjson.dumps(event) + b"\n")
            if send_initial:
                # The streaming-list protocol (WatchList): a bookmark marks the end of the
                # initial state.
                initial.append(initial_events_end(rtype, self.store.resource_version))
        else:
            try:
                since = int(version)
            except ValueError:
                raise bad_request(f"invalid resource version: {version!r}") from None
            try:
                for change in self.store.changes_since(rkey(rtype), since):
                    line = watcher.line_for(change)
                    if line is not None:
                        initial.append(line)
            except ExpiredError as error:
                status = {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": str(error),
                    "reason": "Expired",
                    "code": 410,
                }
                error_line = orjson.dumps({"type": "ERROR", "object": status}) + b"\n"
        if error_line is None:
            self.hub.add(watcher)
        response = web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            if error_line is not None:
                await response.write(error_line)
            else:
                if initial:
                    await response.write(b"".join(initial))
                await pump(
                    watcher,
                    response.write,
                    duration=self._int(query, "timeoutSeconds") or None,
                    bookmark_interval=(
                        max(0.01, self.bookmark_interval)
                        if flag(query, "allowWatchBookmarks")
                        else None
                    ),
                    bookmark=lambda: bookmark_line(
                        rtype.api_version, rtype.kind, self.store.resource_version
                    ),
                )
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        finally:
            self.hub.remove(watcher)
        return response
