"""The controller in-process against the embedded API and a real moto server, configured with
CARM flags (feature gates, deletion policy), plus helpers for the CARM inputs: namespaces with
annotations and labels, the two role-map ConfigMaps, IAMRoleSelectors, Buckets, conditions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio

from carm.app import Controller
from carm.events import ObjectKey
from carm.featuregates import FeatureGates
from carm.kube.client import (
    BUCKETS,
    CONFIG_MAPS,
    IAM_ROLE_SELECTORS,
    NAMESPACES,
    KubeApiError,
    KubeClient,
)
from carm.reconcile.loop import ReconcileResult
from carm.resources.catalog import RESOURCE_KINDS
from carm.resources.iamroleselector_crd import IAM_ROLE_SELECTOR_CRD
from carm.resources.kind import ResourceKind
from carm.sandbox.kubeapi.server import KubeApiServer
from carm.sandbox.moto import MotoServer
from carm.settings import Settings

Parts = tuple[KubeClient, KubeApiServer, MotoServer, Path]
SYSTEM = "ack-system"


@dataclass
class CarmHarness:
    kube: KubeClient
    moto: MotoServer
    controller: Controller

    # -- inputs --

    async def namespace(
        self,
        name: str,
        annotations: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        body = {
            "metadata": {"name": name, "annotations": annotations or {}, "labels": labels or {}}
        }
        await self.kube.create(NAMESPACES, body)

    async def annotate_namespace(self, name: str, annotations: dict[str, str | None]) -> None:
        await self.kube.merge_patch(NAMESPACES, name, {"metadata": {"annotations": annotations}})

    async def configmap(self, name: str, data: dict[str, str] | None) -> None:
        """Create, replace the data of, or (None) delete ConfigMap `name` in ack-system."""
        try:
            await self.kube.get(CONFIG_MAPS, name, SYSTEM)
        except KubeApiError as error:
            assert error.not_found
            if data is not None:
                body = {"metadata": {"name": name, "namespace": SYSTEM}, "data": data}
                await self.kube.create(CONFIG_MAPS, body)
            return
        if data is None:
            await self.kube.delete(CONFIG_MAPS, name, SYSTEM)
        else:
            body = {"metadata": {"name": name, "namespace": SYSTEM}, "data": data}
            await self.kube.replace(CONFIG_MAPS, body, SYSTEM)

    async def role_map(self, data: dict[str, str] | None) -> None:
        await self.configmap("ack-role-account-map", data)

    async def selector(self, name: str, spec: dict[str, Any]) -> None:
        body = {
            "apiVersion": "services.k8s.aws/v1alpha1",
            "kind": "IAMRoleSelector",
            "metadata": {"name": name},
            "spec": spec,
        }
        await self.kube.create(IAM_ROLE_SELECTORS, body)

    async def bucket(
        self,
        namespace: str,
        name: str,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> None:
        await self.kube.create(
            BUCKETS,
            {
                "apiVersion": "s3.services.k8s.aws/v1alpha1",
                "kind": "Bucket",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": labels or {},
                    "annotations": annotations or {},
                },
                "spec": {"name": name},
            },
        )

    # -- outcomes --

    async def condition(
        self, namespace: str, name: str, kind: str, within: float = 15.0, status: str = "True"
    ) -> dict[str, Any]:
        """Wait until the Bucket has condition `kind` with `status`; return it."""
        with anyio.fail_after(within):
            while True:
                obj = await self.kube.get(BUCKETS, name, namespace)
                for condition in (obj.get("status") or {}).get("conditions") or []:
                    if condition["type"] == kind and condition["status"] == status:
                        return dict(condition)
                await anyio.sleep(0.05)

    async def gone(self, namespace: str, name: str, within: float = 5.0) -> None:
        """Wait until the Bucket no longer exists in Kubernetes (its finalizers removed)."""
        with anyio.fail_after(within):
            while True:
                try:
                    await self.kube.get(BUCKETS, name, namespace)
                except KubeApiError as error:
                    if error.not_found:
                        return
                    raise
                await anyio.sleep(0.05)

    async def settle(self, quiet: float = 0.3, within: float = 30.0) -> None:
        """Wait until no reconcile has happened for `quiet` seconds."""
        with anyio.fail_after(within):
            seen = -1
            while seen != len(self.controller.state.reconciles):
                seen = len(self.controller.state.reconciles)
                await anyio.sleep(quiet)

    def reconciles_since(self, mark: int) -> list[ReconcileResult]:
        return self.controller.state.reconciles[mark:]

    def metric(self, name: str, **labels: str) -> float:
        return self.controller.metrics.registry.get_sample_value(name, labels) or 0.0


def keys(namespace: str, names: list[str]) -> set[ObjectKey]:
    return {ObjectKey(namespace, name) for name in names}


@asynccontextmanager
async def running_controller(
    parts: Parts,
    gates: str = "",
    kinds: Iterable[ResourceKind] = RESOURCE_KINDS,
    **settings: Any,
) -> AsyncIterator[CarmHarness]:
    """The controller, configured like `carm run --feature-gates <gates> ...` and managing
    `kinds`, running in this task's task group (fixtures cannot own task groups across setup
    and teardown)."""
    kube, kube_server, moto, tmp_path = parts
    kube_server.install_crd(IAM_ROLE_SELECTOR_CRD)
    kubeconfig = tmp_path / "controller-kubeconfig"
    kube_server.write_kubeconfig(kubeconfig)
    base = Settings(
        kubeconfig=str(kubeconfig),
        aws_region="us-east-1",
        aws_endpoint_url=moto.url,
        system_namespace=SYSTEM,
        metrics_addr="",
        feature_gates=FeatureGates.parse(gates),
    )
    controller = Controller(replace(base, **settings), kinds=kinds)
    async with anyio.create_task_group() as group:
        await group.start(controller.run)
        yield CarmHarness(kube, moto, controller)
        group.cancel_scope.cancel()
