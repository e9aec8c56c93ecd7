"""The controller in-process against the embedded API and a real moto server, with helpers to
edit Bucket specs and to look at (and tamper with) the buckets as their AWS account does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioboto3
import anyio
from botocore.exceptions import ClientError

from carm.app import Controller
from carm.events import ObjectKey
from carm.kube.client import BUCKETS, CONFIG_MAPS, NAMESPACES, KubeClient
from carm.sandbox.kubeapi.server import KubeApiServer
from carm.sandbox.moto import MotoServer
from carm.settings import Settings

TARGET = "111111111111"
ROLE = f"arn:aws:iam::{TARGET}:role/s3FullAccess"
NAMESPACE = "prod"

Parts = tuple[KubeClient, KubeApiServer, MotoServer, Path]


@dataclass
class BucketHarness:
    kube: KubeClient
    moto: MotoServer
    controller: Controller
    stack: AsyncExitStack
    _clients: dict[str, Any] = field(default_factory=dict)

    # -- Kubernetes side --

    async def create(
        self, name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None
    ) -> None:
        body: dict[str, Any] = {
            "apiVersion": "s3.services.k8s.aws/v1alpha1",
            "kind": "Bucket",
            "metadata": {"name": name, "namespace": NAMESPACE, "annotations": annotations or {}},
        }
        if spec:
            body["spec"] = spec
        await self.kube.create(BUCKETS, body)

    async def get(self, name: str) -> dict[str, Any]:
        return dict(await self.kube.get(BUCKETS, name, NAMESPACE))

    async def set_field(self, name: str, field_name: str, value: Any) -> None:
        """Replace one spec field as `kubectl edit` would (a JSON patch `add` replaces)."""
        operation = {"op": "add", "path": f"/spec/{field_name}", "value": value}
        await self.kube.json_patch(BUCKETS, name, [operation], NAMESPACE)

    async def remove_field(self, name: str, field_name: str) -> None:
        operation = {"op": "remove", "path": f"/spec/{field_name}"}
        await self.kube.json_patch(BUCKETS, name, [operation], NAMESPACE)

    async def condition(self, name: str, kind: str, within: float = 15.0) -> dict[str, Any]:
        """Wait until the Bucket has condition `kind` True (for its latest generation)."""
        with anyio.fail_after(within):
            while True:
                obj = await self.get(name)
                for condition in (obj.get("status") or {}).get("conditions") or []:
                    if condition["type"] == kind and condition["status"] == "True":
                        return dict(condition)
                await anyio.sleep(0.05)

    async def synced(self, name: str, within: float = 15.0) -> dict[str, Any]:
        return await self.condition(name, "ACK.ResourceSynced", within)

    # -- AWS side, as the bucket's account sees it --

    async def s3(self, account: str = TARGET) -> Any:
        """An S3 client acting in `account` (through a role assumed there, as a user would)."""
        if account not in self._clients:
            session = aioboto3.Session()
            own = self.moto.controller_credentials
            where = {"region_name": "us-east-1", "endpoint_url": self.moto.url}
            async with session.client(
                "sts",
                aws_access_key_id=own.access_key_id,
                aws_secret_access_key=own.secret_access_key,
                **where,
            ) as sts:
                issued = (
                    await sts.assume_role(
                        RoleArn=f"arn:aws:iam::{account}:role/test-inspector",
                        RoleSessionName="test-inspector",
                    )
                )["Credentials"]
            self._clients[account] = await self.stack.enter_async_context(
                session.client(
                    "s3",
                    aws_access_key_id=issued["AccessKeyId"],
                    aws_secret_access_key=issued["SecretAccessKey"],
                    aws_session_token=issued["SessionToken"],
                    **where,
                )
            )
        return self._clients[account]

    async def eventually(
        self, check: Callable[[], Awaitable[Any]], expected: Any, within: float = 15.0
    ) -> None:
        """Wait until `await check()` returns `expected`; fail with the last value seen."""
        seen: Any = None
        try:
            with anyio.fail_after(within):
                while True:
                    try:
                        seen = await check()
                    except ClientError as error:  # e.g. NoSuchBucket: not created yet
                        seen = error
                    if seen == expected:
                        return
                    await anyio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"expected {expected!r}, still {seen!r}") from None

    # -- the controller's own view --

    def s3_calls(self, *op_ids: str) -> float:
        """AWS S3 calls counted by the controller (`ack_outbound_api_requests_total`)."""
        total = 0.0
        for metric in self.controller.metrics.registry.collect():
            if metric.name != "ack_outbound_api_requests":
                continue
            for sample in metric.samples:
                if not sample.name.endswith("_total") or sample.labels.get("service") != "s3":
                    continue
                if not op_ids or sample.labels.get("op_id") in op_ids:
                    total += sample.value
        return total

    def reconciles_of(self, name: str) -> int:
        key = ObjectKey(NAMESPACE, name)
        return sum(
            1 for r in self.controller.state.reconciles if r.key == key and r.outcome == "success"
        )


@asynccontextmanager
async def bucket_controller(
    parts: Parts, *, resync_seconds: float = 36_000.0, **settings: Any
) -> AsyncIterator[BucketHarness]:
    """The controller running in this task's task group, with namespace `prod` mapped to
    account 111111111111."""
    kube, kube_server, moto, tmp_path = parts
    kubeconfig = tmp_path / "controller-kubeconfig"
    kube_server.write_kubeconfig(kubeconfig)
    controller = Controller(
        Settings(
            kubeconfig=str(kubeconfig),
            aws_region="us-east-1",
            aws_endpoint_url=moto.url,
            system_namespace="ack-system",
            metrics_addr="",
            healthz_addr="",
            resync_seconds=resync_seconds,
            **settings,
        )
    )
    await kube.create(
        CONFIG_MAPS,
        {
            "metadata": {"name": "ack-role-account-map", "namespace": "ack-system"},
            "data": {TARGET: ROLE},
        },
    )
    await kube.create(
        NAMESPACES,
        {
            "metadata": {
                "name": NAMESPACE,
                "annotations": {"services.k8s.aws/owner-account-id": TARGET},
            }
        },
    )
    async with AsyncExitStack() as stack, anyio.create_task_group() as group:
        await group.start(controller.run)
        yield BucketHarness(kube, moto, controller, stack)
        group.cancel_scope.cancel()
