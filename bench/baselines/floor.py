"""The floor: exactly the calls the job needs, with the same concurrency and no controller.

`python -m bench.baselines.floor --kubeconfig PATH [--concurrency 16] [--resync-seconds S]`

What it does, and nothing more:

- at start: one list of namespaces (their owner-account annotation), one read of the role map,
  one list of Buckets; then watches Buckets and the role map;
- per account: one AssumeRole, the first time a Bucket of that account needs it (concurrent
  callers wait for it); a failure is remembered and never retried;
- per new Bucket: the finalizer write, CreateBucket, the status write;
- per Bucket that already carries carm's status (a restart over synced Buckets, a resync, a
  role re-mapped for its account): one HeadBucket with the account's current credentials;
- per Bucket of an account whose role cannot be assumed: one status write saying so.

`--concurrency` Buckets are worked on at once. Kubernetes is spoken with aiohttp + orjson, AWS
with the same aioboto3 as carm (one Session; one client per account). It prints one JSON line
per reconcile, as carm does. It is the physical limit of the test bed: a controller cannot do
the job with fewer calls, and any overhead above this is the controller's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aioboto3
import aiohttp
import orjson
import yaml
from botocore.exceptions import BotoCoreError, ClientError

from bench.baselines.ack import (
    FINALIZER,
    GROUP,
    OWNER_ANNOTATION,
    PLURAL,
    ROLE_MAP,
    VERSION,
    failed_status,
    log_reconcile,
    synced_status,
)

BUCKETS = f"/apis/{GROUP}/{VERSION}"


@dataclass(frozen=True)
class Work:
    namespace: str
    name: str


class Kube:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def get(self, path: str) -> dict[str, Any]:
        async with self.session.get(self.url + path) as response:
            body = await response.read()
            if response.status == 404:
                return {}
            response.raise_for_status()
        result: dict[str, Any] = orjson.loads(body)
        return result

    async def merge_patch(self, path: str, patch: dict[str, Any]) -> None:
        headers = {"Content-Type": "application/merge-patch+json"}
        async with self.session.patch(
            self.url + path, data=orjson.dumps(patch), headers=headers
        ) as response:
            await response.read()
            response.raise_for_status()

    async def watch(self, path: str, version: str) -> AsyncIterator[dict[str, Any]]:
        params = {"watch": "true", "resourceVersion": version}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with self.session.get(self.url + path, params=params, timeout=timeout) as response:
            response.raise_for_status()
            tail = b""
            async for chunk in response.content.iter_any():
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                for line in lines:
                    if line.strip():
                        yield orjson.loads(line)


class Accounts:
    """One AssumeRole per account (failures remembered), one S3 client per account."""

    def __init__(self, stack: AsyncExitStack, region: str, endpoint: str | None) -> None:
        self.stack = stack
        self.region = region
        self.endpoint = endpoint
        self.session = aioboto3.Session()
        self.own_account = ""
        self.namespaces: dict[str, str | None] = {}
        self.roles: dict[str, str] = {}
        self.clients: dict[str, Any] = {}
        self.failures: dict[str, str] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.sts: Any = None

    async def start(self) -> None:
        self.sts = await self.stack.enter_async_context(self._client("sts", {}))
        self.own_account = (await self.sts.get_caller_identity())["Account"]

    def _client(self, service: str, secrets: dict[str, str]) -> Any:
        where = {"region_name": self.region, "endpoint_url": self.endpoint}
        return self.session.client(service, **where, **secrets)

    def account_of(self, namespace: str) -> str:
        return self.namespaces.get(namespace) or self.own_account

    async def s3(self, account: str) -> Any:
        """The account's S3 client; raises the remembered failure of its role."""
        lock = self.locks.setdefault(account, asyncio.Lock())
        async with lock:
            if account in self.failures:
                raise PermissionError(self.failures[account])
            if account not in self.clients:
                self.clients[account] = await self._s3_for(account)
            return self.clients[account]

    async def _s3_for(self, account: str) -> Any:
        if account == self.own_account and account not in self.roles:
            return await self.stack.enter_async_context(self._client("s3", {}))
        role = self.roles.get(account)
        try:
            if role is None:
                raise PermissionError(f"no role for account {account}")
            issued = (await self.sts.assume_role(RoleArn=role, RoleSessionName="bench-floor"))[
                "Credentials"
            ]
        except (ClientError, BotoCoreError, PermissionError) as error:
            self.failures[account] = f"cannot assume role {role}: {error}"
            raise PermissionError(self.failures[account]) from error
        secrets = {
            "aws_access_key_id": issued["AccessKeyId"],
            "aws_secret_access_key": issued["SecretAccessKey"],
            "aws_session_token": issued["SessionToken"],
        }
        return await self.stack.enter_async_context(self._client("s3", secrets))

    def remap(self, roles: dict[str, str]) -> set[str]:
        """New role map: the accounts whose role changed (their clients are dropped)."""
        changed = {a for a in roles.keys() | self.roles.keys() if roles.get(a) != self.roles.get(a)}
        self.roles = roles
        for account in changed:
            self.clients.pop(account, None)
            self.failures.pop(account, None)
        return changed


class Floor:
    def __init__(self, kube: Kube, accounts: Accounts, args: argparse.Namespace) -> None:
        self.kube = kube
        self.accounts = accounts
        self.concurrency: int = args.concurrency
        self.resync: float | None = args.resync_seconds
        self.queue: asyncio.Queue[Work] = asyncio.Queue()
        self.buckets: dict[Work, dict[str, Any]] = {}
        self.loop = asyncio.get_running_loop()

    async def run(self) -> None:
        for ns in (await self.kube.get("/api/v1/namespaces"))["items"]:
            annotations = ns["metadata"].get("annotations") or {}
            self.accounts.namespaces[ns["metadata"]["name"]] = annotations.get(OWNER_ANNOTATION)
        system = os.environ.get("ACK_SYSTEM_NAMESPACE", "ack-system")
        role_map_path = f"/api/v1/namespaces/{system}/configmaps"
        role_map = await self.kube.get(f"{role_map_path}/{ROLE_MAP}")
        self.accounts.remap(dict(role_map.get("data") or {}))
        listing = await self.kube.get(f"{BUCKETS}/{PLURAL}")
        for obj in listing["items"]:
            self._add(obj)
        maps = await self.kube.get(role_map_path)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._watch_buckets(listing["metadata"]["resourceVersion"]))
            group.create_task(self._watch_role_map(role_map_path, maps["metadata"]))
            for _ in range(self.concurrency):
                group.create_task(self._worker())

    def _add(self, obj: dict[str, Any]) -> None:
        work = Work(obj["metadata"]["namespace"], obj["metadata"]["name"])
        self.buckets[work] = obj
        self.queue.put_nowait(work)

    async def _watch_buckets(self, version: str) -> None:
        async for event in self.kube.watch(f"{BUCKETS}/{PLURAL}", version):
            if event["type"] == "ADDED":
                self._add(event["object"])

    async def _watch_role_map(self, path: str, meta: dict[str, Any]) -> None:
        async for event in self.kube.watch(path, meta["resourceVersion"]):
            obj = event["object"]
            if obj["metadata"]["name"] != ROLE_MAP or event["type"] != "MODIFIED":
                continue
            changed = self.accounts.remap(dict(obj.get("data") or {}))
            for work in self.buckets:
                if self.accounts.account_of(work.namespace) in changed:
                    self.queue.put_nowait(work)

    async def _worker(self) -> None:
        while True:
            work = await self.queue.get()
            try:
                await self._reconcile(work, self.buckets[work])
            except (aiohttp.ClientError, ClientError, BotoCoreError) as error:
                account = self.accounts.account_of(work.namespace)
                log_reconcile(f"reconcile failed: {error}", work.namespace, work.name, account)
            if self.resync is not None:
                self.loop.call_later(self.resync, self.queue.put_nowait, work)

    async def _reconcile(self, work: Work, obj: dict[str, Any]) -> None:
        account = self.accounts.account_of(work.namespace)
        path = f"{BUCKETS}/namespaces/{work.namespace}/{PLURAL}/{work.name}"
        name = obj["spec"]["name"]
        try:
            s3 = await self.accounts.s3(account)
        except PermissionError as error:
            await self.kube.merge_patch(
                path + "/status", {"status": failed_status("AssumeRoleFailed", str(error))}
            )
            log_reconcile(f"reconcile failed: {error}", work.namespace, work.name, account)
            return
        if (obj.get("status") or {}).get("ackResourceMetadata"):
            await s3.head_bucket(Bucket=name)
        else:
            await self.kube.merge_patch(path, {"metadata": {"finalizers": [FINALIZER]}})
            await s3.create_bucket(Bucket=name)
            status = synced_status(name, account, self.accounts.region)
            await self.kube.merge_patch(path + "/status", {"status": status})
            obj["status"] = status
        log_reconcile("synced", work.namespace, work.name, account)


def _server_of(kubeconfig: str) -> str:
    with open(kubeconfig, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    return str(config["clusters"][0]["cluster"]["server"])


async def main_async(args: argparse.Namespace) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    region = os.environ.get("AWS_REGION", "us-east-1")
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency + 8))
        )
        accounts = Accounts(stack, region, os.environ.get("AWS_ENDPOINT_URL"))
        await accounts.start()
        floor = Floor(Kube(session, _server_of(args.kubeconfig)), accounts, args)
        running = asyncio.create_task(floor.run())
        await stopping.wait()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines.floor")
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--resync-seconds", type=float, default=None)
    asyncio.run(main_async(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
