"""RBAC for the sandbox: an authorizing proxy in front of the embedded API server.

The embedded server trusts every request (its kubeconfig has no user). To run carm "with only
the permissions that the RBAC grants", a test puts `AuthorizingProxy` between carm and the
server: it authenticates every request as one ServiceAccount, authorizes it with Kubernetes'
RBAC rules (read from the ClusterRoles, Roles and bindings actually stored in the server, i.e.
what `kubectl apply -k deploy/` created), forwards what is allowed (watch streams included)
and answers the rest `403 Forbidden` with the apiserver's Status and message. Every decision is
recorded, so a test can also show that no rule goes unused.

RBAC semantics implemented (those of the rbac.authorization.k8s.io/v1 authorizer):
- a ClusterRoleBinding grants its ClusterRole everywhere; a RoleBinding grants its Role or
  ClusterRole in the binding's namespace only;
- subjects: the ServiceAccount by name and namespace, and the groups `system:serviceaccounts`,
  `system:serviceaccounts:<namespace>`, `system:authenticated`;
- a rule matches when verb, API group and resource (`plural` or `plural/subresource`) match,
  `*` matching anything, and `resourceNames` (when given) contains the object's name (so it
  never matches create, list or watch of a collection);
- non-resource paths: discovery and health (`/api`, `/apis`, `/version`, `/openapi`, `/healthz`
  ...) are allowed for every authenticated user, as the default `system:discovery` role does.
Not implemented: aggregated ClusterRoles, impersonation, `nonResourceURLs` of custom roles.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from carm.sandbox.kubeapi.routes import parse

_DISCOVERY_PREFIXES = ("/api", "/apis", "/version", "/openapi", "/healthz", "/livez", "/readyz")
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"}
)


@dataclass(frozen=True, slots=True)
class Request:
    """A request's authorization attributes, as the apiserver derives them."""

    verb: str
    group: str
    resource: str  # plural, "" for non-resource requests
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""

    @property
    def is_resource(self) -> bool:
        return bool(self.resource)

    @property
    def resource_path(self) -> str:
        """`plural` or `plural/subresource`, as RBAC rules name it."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def describe(self) -> str:
        where = f" in namespace {self.namespace!r}" if self.namespace else ""
        group = self.group or "core"
        return f"{self.verb} {self.resource_path} ({group}){where}"

    @classmethod
    def of(cls, method: str, path: str, query: Mapping[str, str]) -> Request:
        target = parse(path)
        if target is None:
            return cls(verb=method.lower(), group="", resource="", path=path)
        watching = target.watch_path or query.get("watch", "").lower() in ("true", "1")
        if target.name is None:
            verbs = {"GET": "watch" if watching else "list", "POST": "create"}
            verbs["DELETE"] = "deletecollection"
        else:
            verbs = {"GET": "watch" if watching else "get", "PUT": "update", "PATCH": "patch"}
            verbs["DELETE"] = "delete"
        return cls(
            verb=verbs.get(method, method.lower()),
            group=target.group,
            resource=target.plural,
            subresource=target.subresource or "",
            namespace=target.namespace or "",
            name=target.name or "",
            path=path,
        )


@dataclass(frozen=True, slots=True)
class Rule:
    """One PolicyRule of a Role or ClusterRole."""

    api_groups: frozenset[str]
    resources: frozenset[str]
    verbs: frozenset[str]
    resource_names: frozenset[str] = frozenset()

    @classmethod
    def of(cls, rule: Mapping[str, Any]) -> Rule:
        return cls(
            frozenset(rule.get("apiGroups") or ()),
            frozenset(rule.get("resources") or ()),
            frozenset(rule.get("verbs") or ()),
            frozenset(rule.get("resourceNames") or ()),
        )

    def allows(self, request: Request) -> bool:
        return (
            _matches(self.verbs, request.verb)
            and _matches(self.api_groups, request.group)
            and (
                _matches(self.resources, request.resource_path)
                or (bool(request.subresource) and f"*/{request.subresource}" in self.resources)
            )
            and (not self.resource_names or request.name in self.resource_names)
        )


def _matches(allowed: frozenset[str], value: str) -> bool:
    return "*" in allowed or value in allowed


@dataclass(frozen=True, slots=True)
class Grant:
    """A rule granted through one binding: everywhere (namespace None) or in one namespace."""

    rule: Rule
    namespace: str | None
    source: str  # e.g. "ClusterRole/ack-s3-controller via ClusterRoleBinding/ack-s3-controller"

    def allows(self, request: Request) -> bool:
        if self.namespace is not None and request.namespace != self.namespace:
            return False
        return self.rule.allows(request)


def grants_for_service_account(
    rbac_objects: Iterable[Mapping[str, Any]], namespace: str, name: str
) -> list[Grant]:
    """Every rule the ServiceAccount `namespace/name` holds, from RBAC objects as the API
    returns them (ClusterRoles, Roles, ClusterRoleBindings, RoleBindings, in any order)."""
    objects = list(rbac_objects)
    roles: dict[tuple[str, str, str], list[Rule]] = {}
    for obj in objects:
        kind, meta = obj.get("kind"), obj.get("metadata") or {}
        if kind in ("ClusterRole", "Role"):
            key = (str(kind), str(meta.get("namespace") or ""), str(meta.get("name")))
            roles[key] = [Rule.of(rule) for rule in obj.get("rules") or ()]
    groups = {
        "system:serviceaccounts",
        f"system:serviceaccounts:{namespace}",
        "system:authenticated",
    }
    grants: list[Grant] = []
    for obj in objects:
        kind, meta = obj.get("kind"), obj.get("metadata") or {}
        if kind not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        if not any(_is_subject(s, namespace, name, groups) for s in obj.get("subjects") or ()):
            continue
        ref = obj.get("roleRef") or {}
        binding_ns = str(meta.get("namespace") or "") if kind == "RoleBinding" else ""
        role_ns = binding_ns if ref.get("kind") == "Role" else ""
        rules = roles.get((str(ref.get("kind")), role_ns, str(ref.get("name"))), [])
        source = f"{ref.get('kind')}/{ref.get('name')} via {kind}/{meta.get('name')}"
        scope = binding_ns or None
        grants += [Grant(rule, scope, source) for rule in rules]
    return grants


def _is_subject(subject: Mapping[str, Any], namespace: str, name: str, groups: set[str]) -> bool:
    if subject.get("kind") == "ServiceAccount":
        return bool(subject.get("name") == name and subject.get("namespace") == namespace)
    return subject.get("kind") == "Group" and subject.get("name") in groups


@dataclass(slots=True)
class Decision:
    request: Request
    allowed: bool
    grant: Grant | None


@dataclass(slots=True)
class Authorizer:
    grants: list[Grant]
    user: str
    decisions: list[Decision] = field(default_factory=list)

    def decide(self, request: Request) -> Decision:
        if not request.is_resource:
            allowed = request.verb == "get" and request.path.startswith(_DISCOVERY_PREFIXES)
            decision = Decision(request, allowed, None)
        else:
            grant = next((g for g in self.grants if g.allows(request)), None)
            decision = Decision(request, grant is not None, grant)
        self.decisions.append(decision)
        return decision

    @property
    def denied(self) -> list[Request]:
        return [d.request for d in self.decisions if not d.allowed]

    def unused_grants(self) -> list[tuple[Grant, str]]:
        """(grant, verb) pairs of the granted rules that no allowed request used: each verb of
        each rule must have been needed at least once."""
        used: set[tuple[int, str]] = set()
        for decision in self.decisions:
            if decision.grant is not None:
                used.add((id(decision.grant), decision.request.verb))
        unused = []
        for grant in self.grants:
            for verb in sorted(grant.rule.verbs):
                if (id(grant), verb) not in used:
                    unused.append((grant, verb))
        return unused

    def forbidden(self, request: Request) -> web.Response:
        group = request.group
        scope = (
            f' in the namespace "{request.namespace}"'
            if request.namespace
            else " at the cluster scope"
        )
        message = (
            f'{request.resource_path} "{request.name}" is forbidden: User "{self.user}" cannot '
            f'{request.verb} resource "{request.resource_path}" in API group "{group}"{scope}'
        )
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "Forbidden",
            "details": {"name": request.name, "group": group, "kind": request.resource},
            "code": 403,
        }
        return web.Response(body=orjson.dumps(status), status=403, content_type="application/json")


Delay = Callable[[Request], float]
"""Seconds to hold an allowed request before forwarding it (0: none), for tests that need a
request in flight at a chosen moment (e.g. a reconcile while the controller is stopping)."""


class AuthorizingProxy:
    """Forwards the requests `authorizer` allows to `upstream` (an http:// API server URL)."""

    def __init__(
        self,
        upstream: str,
        authorizer: Authorizer,
        host: str = "127.0.0.1",
        delay: Delay | None = None,
    ) -> None:
        self._upstream = upstream.rstrip("/")
        self.authorizer = authorizer
        self.delay = delay
        self._host = host
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[AuthorizingProxy]:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1)
        await runner.setup()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
            self._session = session
            try:
                site = web.TCPSite(runner, self._host, 0)
                await site.start()
                self.url = f"http://{self._host}:{runner.addresses[0][1]}"
                yield self
            finally:
                await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        attributes = Request.of(request.method, request.path, request.query)
        decision = self.authorizer.decide(attributes)
        if not decision.allowed:
            return self.authorizer.forbidden(attributes)
        if self.delay is not None and (hold := self.delay(attributes)) > 0:
            await asyncio.sleep(hold)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        body = await request.read()
        assert self._session is not None, "serve the proxy with `async with proxy.running()`"
        async with self._session.request(
            request.method,
            self._upstream + request.path_qs,
            headers=headers,
            data=body or None,
            allow_redirects=False,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            for key, value in upstream.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    response.headers[key] = value
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response


def allow_all(user: str = "system:admin") -> Authorizer:
    """An authorizer that grants everything (for tests that only want the proxy's delay)."""
    everything = Rule(frozenset("*"), frozenset("*"), frozenset("*"))
    return Authorizer([Grant(everything, None, "allow-all")], user)
