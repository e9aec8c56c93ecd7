"""The test bed every workload runs on: the embedded Kubernetes API and a moto server.

Both run as processes of their own, apart from the benchmark client (this process) and from
the system under test, so that no two of them share an event loop or a GIL:

- the Kubernetes API is `python -m carm.cli sandbox kubeapi` (carm's embedded server); the
  Bucket CRD and the system namespace are installed through its HTTP API, as a cluster admin
  would;
- AWS is carm's `MotoServer` (a `moto_server` subprocess whose controller identity is account
  000000000000; assumed roles act in their own accounts).

What the bench observes from outside the system under test:

- Kubernetes requests by verb, from the embedded server's `GET /_sandbox/requests`;
- AWS requests by operation, from moto's request recorder (`/moto-api/recorder/...`), switched
  on only for measured windows, so set-up and verification calls are not counted. Each
  recorded request is classified by the service in its SigV4 credential scope and, for STS,
  by the `Action` of its form body (the role ARN gives the account).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioboto3
import aiohttp
import orjson

from carm.resources.s3.crd import BUCKET_CRD
from carm.sandbox.moto import INSPECTOR_ROLE, MotoServer

SYSTEM_NAMESPACE = "ack-system"
ROLE_MAP = "ack-role-account-map"
OWNER_ANNOTATION = "services.k8s.aws/owner-account-id"
SYNCED = "ACK.ResourceSynced"
BUCKETS_API = "/apis/s3.services.k8s.aws/v1alpha1"
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_CREDENTIAL_SERVICE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/")


class BenchError(RuntimeError):
    """The test bed or a system under test did not behave; the message says how."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def buckets_path(namespace: str | None = None, name: str | None = None) -> str:
    path = BUCKETS_API + (f"/namespaces/{namespace}" if namespace else "") + "/buckets"
    return path + (f"/{name}" if name else "")


def is_synced(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == SYNCED and c.get("status") == "True" for c in conditions)


class KubeApi:
    """A thin aiohttp + orjson client of the embedded API (no client library in between)."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.writes = 0
        """Writes this client made (the bench's own, subtracted from the server's counts)."""

    async def _call(
        self, method: str, path: str, body: Any = None, content_type: str = JSON
    ) -> dict[str, Any]:
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        if method != "GET":
            self.writes += 1
        async with self.session.request(
            method, self.url + path, data=data, headers=headers
        ) as response:
            raw = await response.read()
            if response.status >= 300:
                raise BenchError(f"{method} {path}: {response.status} {raw[:300]!r}")
        result: dict[str, Any] = orjson.loads(raw) if raw else {}
        return result

    async def get(self, path: str) -> dict[str, Any]:
        return await self._call("GET", path)

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", path, body)

    async def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self._call("PATCH", path, patch, MERGE_PATCH)

    async def delete(self, path: str) -> dict[str, Any]:
        return await self._call("DELETE", path)

    async def watch(self, path: str, resource_version: str) -> AsyncIterator[dict[str, Any]]:
        """Watch events (decoded) from `resource_version` until the stream ends."""
        params = {"watch": "true", "resourceVersion": resource_version}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with self.session.get(self.url + path, params=params, timeout=timeout) as response:
            if response.status != 200:
                raise BenchError(f"watch {path}: {response.status} {await response.read()!r}")
            tail = b""
            async for chunk in response.content.iter_any():
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                for line in lines:
                    if line.strip():
                        yield orjson.loads(line)

    async def request_counts(self) -> Counter[str]:
        return Counter(await self.get("/_sandbox/requests"))


@dataclass
class AwsCalls:
    """AWS requests moto received in a window, by operation (and AssumeRole by account)."""

    operations: Counter[str] = field(default_factory=Counter)
    assume_role_by_account: Counter[str] = field(default_factory=Counter)
    assume_role_by_role: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.operations.values())

    @property
    def assume_role(self) -> int:
        return self.operations["sts:AssumeRole"]


def classify_aws_request(entry: dict[str, Any]) -> tuple[str, str | None]:
    """(`service:Operation`, the role ARN for AssumeRole) of one recorded request."""
    headers = {k.lower(): v for k, v in (entry.get("headers") or {}).items()}
    match = _CREDENTIAL_SERVICE.search(headers.get("authorization", ""))
    service = match.group(1) if match else "unknown"
    method = entry.get("method", "")
    url = urllib.parse.urlsplit(entry.get("url", ""))
    if service in ("sts", "iam"):
        body = entry.get("body") or ""
        raw = base64.b64decode(body) if entry.get("body_encoded") else body.encode()
        form = urllib.parse.parse_qs(raw.decode(errors="replace"))
        action = (form.get("Action") or ["?"])[0]
        role = (form.get("RoleArn") or [None])[0] if action == "AssumeRole" else None
        return f"{service}:{action}", role
    if service == "s3":
        return f"s3:{_s3_operation(method, url.path, url.query)}", None
    return f"{service}:{method}", None


def _s3_operation(method: str, path: str, query: str) -> str:
    bucket_level = path.strip("/").count("/") == 0
    if path.strip("/") == "":
        return "ListBuckets" if method == "GET" else method
    if bucket_level and query:
        sub = query.split("=")[0].split("&")[0]
        return f"{method.capitalize()}Bucket[{sub}]"
    names = {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}
    if bucket_level and method in names:
        return names[method]
    return f"{method.capitalize()}{'Bucket' if bucket_level else 'Object'}"


class TestBed:
    """The embedded API server process, the moto server, and the bench's clients of both."""

    __test__ = False  # not a pytest class

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.recording = workdir / "moto-recording.jsonl"
        self.moto = MotoServer()
        self.kubeconfig = workdir / "kubeconfig"
        self.kube_url = ""
        self._generation = 0
        self._kube_proc: subprocess.Popen[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._kube: KubeApi | None = None

    @property
    def kube(self) -> KubeApi:
        if self._kube is None:
            raise BenchError("the test bed is not started")
        return self._kube

    def controller_env(self) -> dict[str, str]:
        """Environment of a system under test: AWS identity and endpoint, kubeconfig."""
        return self.moto.controller_env() | {
            "KUBECONFIG": str(self.kubeconfig),
            "ACK_SYSTEM_NAMESPACE": SYSTEM_NAMESPACE,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    # -- lifecycle --

    async def start(self) -> None:
        """Start moto and the Kubernetes API (at the same time: each takes ~0.5 s)."""
        with _environ(MOTO_RECORDER_FILEPATH=str(self.recording)):
            moto_started = asyncio.create_task(asyncio.to_thread(self.moto.start))
            try:
                self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128))
                await self.start_kube()
            finally:
                await moto_started

    async def stop(self) -> None:
        await self.stop_kube()
        if self._session is not None:
            await self._session.close()
            self._session = None
        await asyncio.to_thread(self.moto.stop)

    async def start_kube(self) -> None:
        """A fresh, empty Kubernetes API (new port, new kubeconfig) with the CRD installed."""
        assert self._session is not None
        self._generation += 1
        self.kubeconfig = self.workdir / f"kubeconfig-{self._generation}"
        port = free_port()
        self.kube_url = f"http://127.0.0.1:{port}"
        with (self.workdir / f"kubeapi-{self._generation}.log").open("wb") as log:
            self._kube_proc = await asyncio.to_thread(
                subprocess.Popen,
                [
                    sys.executable,
                    "-m",
                    "carm.cli",
                    "sandbox",
                    "kubeapi",
                    "--port",
                    str(port),
                    "--kubeconfig",
                    str(self.kubeconfig),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._kube = KubeApi(self._session, self.kube_url)
        await self._wait_for_kubeapi()
        await self._install()

    async def stop_kube(self) -> None:
        proc, self._kube_proc = self._kube_proc, None
        self._kube = None
        if proc is not None:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    async def _wait_for_kubeapi(self) -> None:
        deadline = time.monotonic() + 30
        assert self._kube_proc is not None and self._session is not None
        while time.monotonic() < deadline:
            if self._kube_proc.poll() is not None:
                raise BenchError(f"the API server exited with {self._kube_proc.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with self._session.get(f"{self.kube_url}/version") as response:
                    if response.status == 200 and self.kubeconfig.exists():
                        return
            await asyncio.sleep(0.05)
        raise BenchError(f"the API server at {self.kube_url} did not start")

    async def _install(self) -> None:
        await self.kube.create(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", BUCKET_CRD
        )
        await self.create_namespace(SYSTEM_NAMESPACE)
        deadline = time.monotonic() + 10
        while True:
            try:
                await self.kube.get(buckets_path())
                return
            except BenchError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)

    # -- Kubernetes helpers --

    async def create_namespace(self, name: str, account: str | None = None) -> None:
        meta: dict[str, Any] = {"name": name}
        if account is not None:
            meta["annotations"] = {OWNER_ANNOTATION: account}
        await self.kube.create("/api/v1/namespaces", {"metadata": meta})

    async def put_role_map(self, roles: dict[str, str]) -> None:
        """Create or merge-patch ConfigMap ack-role-account-map (account id -> role ARN)."""
        path = f"/api/v1/namespaces/{SYSTEM_NAMESPACE}/configmaps"
        try:
            await self.kube.merge_patch(f"{path}/{ROLE_MAP}", {"data": roles})
        except BenchError:
            await self.kube.create(path, {"metadata": {"name": ROLE_MAP}, "data": roles})

    async def create_bucket(self, namespace: str, name: str, bucket_name: str) -> None:
        body = {
            "apiVersion": "s3.services.k8s.aws/v1alpha1",
            "kind": "Bucket",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"name": bucket_name},
        }
        await self.kube.create(buckets_path(namespace), body)

    async def list_buckets(self) -> tuple[list[dict[str, Any]], str]:
        listing = await self.kube.get(buckets_path())
        return listing["items"], listing["metadata"]["resourceVersion"]

    async def count(self, path: str) -> int:
        return len((await self.kube.get(path))["items"])

    # -- AWS helpers --

    async def start_recording(self) -> None:
        await asyncio.to_thread(self._moto_post, "/moto-api/recorder/reset-recording")
        await asyncio.to_thread(self._moto_post, "/moto-api/recorder/start-recording")

    async def stop_recording(self) -> AwsCalls:
        await asyncio.to_thread(self._moto_post, "/moto-api/recorder/stop-recording")
        calls = AwsCalls()
        if not self.recording.exists():
            return calls
        for line in self.recording.read_bytes().splitlines():
            if not line.strip():
                continue
            operation, role = classify_aws_request(orjson.loads(line))
            calls.operations[operation] += 1
            if role is not None:
                calls.assume_role_by_role[role] += 1
                account = role.split(":")[4] if role.count(":") >= 5 else "?"
                calls.assume_role_by_account[account] += 1
        return calls

    def _moto_post(self, path: str) -> None:
        request = urllib.request.Request(self.moto.url + path, data=b"", method="POST")
        with _NO_PROXY.open(request, timeout=10) as response:
            response.read()

    async def bucket_names_of(self, account: str) -> set[str]:
        return set(await self.moto.list_bucket_names(account))

    async def create_aws_buckets(self, names: dict[str, list[str]], in_flight: int = 32) -> None:
        """Create buckets directly in moto, `names` by owner account (set-up, not measured):
        every account at once, `in_flight` requests in flight in all."""
        session = aioboto3.Session()
        own = self.moto.controller_credentials
        where = {"region_name": self.moto.region, "endpoint_url": self.moto.url}
        limit = asyncio.Semaphore(in_flight)
        async with session.client(
            "sts",
            aws_access_key_id=own.access_key_id,
            aws_secret_access_key=own.secret_access_key,
            **where,
        ) as sts:

            async def fill(account: str, buckets: list[str]) -> None:
                issued = (
                    await sts.assume_role(
                        RoleArn=f"arn:aws:iam::{account}:role/{INSPECTOR_ROLE}",
                        RoleSessionName="bench-setup",
                    )
                )["Credentials"]
                async with session.client(
                    "s3",
                    aws_access_key_id=issued["AccessKeyId"],
                    aws_secret_access_key=issued["SecretAccessKey"],
                    aws_session_token=issued["SessionToken"],
                    **where,
                ) as s3:

                    async def create(name: str) -> None:
                        async with limit:
                            await s3.create_bucket(Bucket=name)

                    await asyncio.gather(*(create(name) for name in buckets))

            await asyncio.gather(*(fill(account, buckets) for account, buckets in names.items()))


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables for child processes started inside the block."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.asynccontextmanager
async def test_bed(workdir: Path) -> AsyncIterator[TestBed]:
    bed = TestBed(workdir)
    try:
        await bed.start()
        yield bed
    finally:
        await bed.stop()
