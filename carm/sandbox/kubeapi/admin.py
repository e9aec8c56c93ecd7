"""`/_sandbox/...`: fault injection over HTTP, for tests running in another process.

    POST   /_sandbox/watches/drop                 end every open watch
    POST   /_sandbox/compact                      forget the change history (resumes get 410)
    POST   /_sandbox/faults    {"verbs": ["create"], "status": 429, "count": 3,
                                "seconds": null, "plural": "buckets"}
    DELETE /_sandbox/faults                       clear faults and latency
    POST   /_sandbox/latency   {"seconds": 0.2}
    GET    /_sandbox/requests                     request counts by verb
    POST   /_sandbox/restart   {"downtime": 0.5}  stop, wait, start again (state kept)

These paths bypass injected faults and latency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from carm.sandbox.kubeapi.errors import ApiError, bad_request, path_not_found
from carm.sandbox.kubeapi.handlers import error_response, json_response

if TYPE_CHECKING:
    from carm.sandbox.kubeapi.server import KubeApiServer

PREFIX = "/_sandbox/"


async def handle(server: KubeApiServer, request: web.Request) -> web.StreamResponse:
    try:
        return await _route(server, request)
    except ApiError as error:
        return error_response(error)


async def _json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise bad_request(f"invalid JSON: {error}") from None
    if not isinstance(body, dict):
        raise bad_request("expected a JSON object")
    return body


async def _route(server: KubeApiServer, request: web.Request) -> web.StreamResponse:
    action = (request.method, request.path[len(PREFIX) :].rstrip("/"))
    if action == ("POST", "watches/drop"):
        server.drop_watches()
    elif action == ("POST", "compact"):
        server.compact()
    elif action == ("POST", "faults"):
        body = await _json(request)
        try:
            server.inject_errors(
                verbs=body.get("verbs") or [],
                status=int(body.get("status", 500)),
                count=body.get("count"),
                seconds=body.get("seconds"),
                plural=body.get("plural"),
            )
        except (ValueError, TypeError) as error:
            raise bad_request(str(error)) from None
    elif action == ("DELETE", "faults"):
        server.clear_faults()
    elif action == ("POST", "latency"):
        server.set_latency(float((await _json(request)).get("seconds", 0.0)))
    elif action == ("GET", "requests"):
        return json_response(server.request_counts())
    elif action == ("POST", "restart"):
        server.restart_soon(float((await _json(request)).get("downtime", 0.0)))
    else:
        raise path_not_found()
    return json_response({"ok": True})
