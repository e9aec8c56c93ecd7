"""A second resource kind next to the Bucket, registered and nothing else: the controller (in
process, against the embedded API and moto) watches, queues and reconciles it on its own.

`Widget` is a test-only kind whose AWS side is in memory (per account), so the test is about
the core: its CRD installed and one `ResourceKind` passed to the Controller are all it takes;
both kinds converge with their own finalizers and conditions; a Bucket and a Widget of the
same namespace/name never share a work-queue key; a namespace re-annotation requeues the
resources of both kinds; metrics are per kind; a stop drains every kind's queue.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from carm.controllers import resource_ref
from carm.events import RawObject
from carm.kube.client import BUCKETS, KubeApiError, KubeClient, ResourceRef
from carm.reconcile.errors import TerminalError
from carm.reconcile.interfaces import AwsTarget
from carm.resources.kind import Desired, Identity, Located, ResourceDescriptor, ResourceKind
from carm.resources.s3.bucket import BUCKET_KIND
from carm.sandbox.kubeapi.server import KubeApiServer
from carm.sandbox.moto import MotoServer
from carm.settings import Settings
from tests.crds import custom_resource_definition
from tests.integration.carm_harness import CarmHarness, Parts, running_controller

A, B = "111111111111", "222222222222"
ROLES = {A: f"arn:aws:iam::{A}:role/carm", B: f"arn:aws:iam::{B}:role/carm"}
OWNER = "services.k8s.aws/owner-account-id"
NAME = "shared-name"  # a Bucket and a Widget of this name live in one namespace

WIDGETS = ResourceDescriptor("widgets.services.k8s.aws", "v1alpha1", "Widget", "widgets")
WIDGET_REF: ResourceRef = resource_ref(WIDGETS)
WIDGET_CRD = custom_resource_definition(
    WIDGETS.group,
    WIDGETS.version,
    WIDGETS.kind,
    WIDGETS.plural,
    {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "color": {"type": "string"}},
            },
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    },
    status_subresource=True,
)


@dataclass
class Cloud:
    """The Widgets' AWS: fields by (account, name)."""

    widgets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    creators: dict[tuple[str, str], str | None] = field(default_factory=dict)
    """The role each widget was created with."""


class Widget:
    """Satisfies `carm.resources.kind.AwsResource`; `color` is its one sub-configuration."""

    descriptor = WIDGETS

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud

    def identify(self, obj: RawObject, adoption_fields: Mapping[str, Any]) -> Identity:
        name = (obj.get("spec") or {}).get("name") or adoption_fields.get("name")
        if not name:
            raise TerminalError("spec.name is required", reason="InvalidSpec")
        return Identity({"name": str(name)})

    def arn(self, identity: Identity, aws: AwsTarget) -> str:
        return (
            f"arn:{aws.partition}:widgets:{aws.region}:{aws.account_id}:widget/{identity['name']}"
        )

    def desired(self, obj: RawObject, identity: Identity, aws: AwsTarget) -> Desired:
        color = (obj.get("spec") or {}).get("color")
        return Desired({"color": color} if color else {})

    async def locate(self, identity: Identity, desired: Desired, aws: AwsTarget) -> Located | None:
        return Located() if (aws.account_id, identity["name"]) in self.cloud.widgets else None

    async def owned(self, identity: Identity, aws: AwsTarget) -> bool:
        return (aws.account_id, identity["name"]) in self.cloud.widgets

    async def create(self, identity: Identity, desired: Desired, aws: AwsTarget) -> None:
        self.cloud.widgets.setdefault((aws.account_id, identity["name"]), {})
        self.cloud.creators[(aws.account_id, identity["name"])] = aws.role_arn

    async def read(
        self, identity: Identity, fields: Collection[str] | None, aws: AwsTarget
    ) -> dict[str, Any]:
        stored = self.cloud.widgets[(aws.account_id, identity["name"])]
        return {name: stored.get(name) for name in (stored if fields is None else fields)}

    def differences(self, desired: Desired, observed: Mapping[str, Any]) -> list[str]:
        return [name for name, value in desired.fields.items() if observed.get(name) != value]

    async def apply(
        self,
        identity: Identity,
        desired: Desired,
        changed: Collection[str],
        removed: Collection[str],
        aws: AwsTarget,
    ) -> None:
        stored = self.cloud.widgets[(aws.account_id, identity["name"])]
        for name in removed:
            stored.pop(name, None)
        stored.update({name: desired.fields[name] for name in changed})

    def spec_of(
        self, identity: Identity, located: Located, observed: Mapping[str, Any], aws: AwsTarget
    ) -> dict[str, Any]:
        return {"name": identity["name"], **observed}

    def status_of(
        self, identity: Identity, located: Located | None, aws: AwsTarget
    ) -> dict[str, Any]:
        return {}

    async def delete(self, identity: Identity, aws: AwsTarget) -> None:
        self.cloud.widgets.pop((aws.account_id, identity["name"]), None)


def widget_kind(cloud: Cloud) -> ResourceKind:
    def build(settings: Settings) -> Widget:
        return Widget(cloud)

    return ResourceKind(WIDGETS, WIDGET_CRD, build)


@pytest.fixture
def parts(
    kube: KubeClient,
    kube_server: KubeApiServer,
    moto_server: MotoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Parts:
    for name, value in moto_server.controller_env().items():
        monkeypatch.setenv(name, value)
    return kube, kube_server, moto_server, tmp_path


@asynccontextmanager
async def buckets_and_widgets(parts: Parts, cloud: Cloud) -> AsyncIterator[CarmHarness]:
    """The controller managing Buckets and Widgets, with namespace "prod" in account A."""
    parts[1].install_crd(WIDGET_CRD)
    async with running_controller(parts, kinds=(BUCKET_KIND, widget_kind(cloud))) as carm:
        await carm.role_map(ROLES)
        await carm.namespace("prod", {OWNER: A})
        await carm.bucket("prod", NAME)
        body = {
            "apiVersion": WIDGETS.api_version,
            "kind": "Widget",
            "metadata": {"name": NAME, "namespace": "prod"},
            "spec": {"name": NAME, "color": "blue"},
        }
        await carm.kube.create(WIDGET_REF, body)
        yield carm


async def widget_condition(
    kube: KubeClient, type_: str, status: str = "True", within: float = 15.0
) -> RawObject:
    """The Widget once it has condition `type_` with `status`."""
    with anyio.fail_after(within):
        while True:
            obj = await kube.get(WIDGET_REF, NAME, "prod")
            for condition in (obj.get("status") or {}).get("conditions") or []:
                if condition["type"] == type_ and condition["status"] == status:
                    return dict(obj)
            await anyio.sleep(0.05)


async def eventually(check: Callable[[], bool], within: float = 10.0) -> None:
    with anyio.fail_after(within):
        while True:
            if check():
                return
            await anyio.sleep(0.05)


async def gone(kube: KubeClient, ref: ResourceRef, within: float = 10.0) -> None:
    """Wait until prod/NAME of `ref` is gone from the API (its finalizer removed)."""
    with pytest.raises(KubeApiError) as raised:
        with anyio.fail_after(within):
            while True:
                await kube.get(ref, NAME, "prod")
                await anyio.sleep(0.05)
    assert raised.value.not_found


def condition(obj: RawObject, type_: str) -> dict[str, Any]:
    (found,) = [c for c in obj["status"]["conditions"] if c["type"] == type_]
    return dict(found)


async def test_both_kinds_converge_with_their_own_finalizers_keys_and_metrics(
    parts: Parts,
) -> None:
    cloud = Cloud()
    async with buckets_and_widgets(parts, cloud) as carm:
        await carm.condition("prod", NAME, "ACK.ResourceSynced")
        widget = await widget_condition(carm.kube, "ACK.ResourceSynced")
        bucket = await carm.kube.get(BUCKETS, NAME, "prod")
        assert NAME in await carm.moto.list_bucket_names(A)
        assert cloud.widgets == {(A, NAME): {"color": "blue"}}
        assert bucket["metadata"]["finalizers"] == ["finalizers.s3.services.k8s.aws/Bucket"]
        assert widget["metadata"]["finalizers"] == ["finalizers.widgets.services.k8s.aws/Widget"]
        assert bucket["status"]["ackResourceMetadata"]["arn"] == f"arn:aws:s3:::{NAME}"
        assert widget["status"]["ackResourceMetadata"] == {
            "arn": f"arn:aws:widgets:us-east-1:{A}:widget/{NAME}",
            "ownerAccountID": A,
            "region": "us-east-1",
            "partition": "aws",
        }
        assert condition(widget, "Ready")["status"] == "True"

        # A change of the Widget reconciles the Widget, never the Bucket of the same name.
        await carm.settle()
        mark = len(carm.controller.state.reconciles)
        await carm.kube.merge_patch(WIDGET_REF, NAME, {"spec": {"color": "red"}}, "prod")
        await eventually(lambda: cloud.widgets[(A, NAME)] == {"color": "red"})
        await carm.settle()
        assert {r.kind for r in carm.reconciles_since(mark)} == {"Widget"}

        success = {"result": "success"}
        assert carm.metric("controller_runtime_reconcile_total", controller="widget", **success)
        assert carm.metric("controller_runtime_reconcile_total", controller="bucket", **success)
        assert carm.metric("carm_resources", account=A, kind="Widget") == 1
        assert carm.metric("carm_resources", account=A, kind="Bucket") == 1

        # Deleting the Widget deletes the widget and leaves its namesake alone.
        await carm.kube.delete(WIDGET_REF, NAME, "prod")
        await eventually(lambda: not cloud.widgets)
        await gone(carm.kube, WIDGET_REF)
        assert NAME in await carm.moto.list_bucket_names(A)

        # A stop drains the work of every kind.
        carm.controller.ops.request_stop()
        queues = carm.controller.queues.values()
        await eventually(lambda: all(queue.is_shut_down for queue in queues))


async def test_reannotating_a_namespace_requeues_the_resources_of_every_kind(
    parts: Parts,
) -> None:
    """Both are synced and the resync is hours away: only the dispatcher's requeue of every
    kind can bring the new account's verdict (moved resources are Terminal) this fast."""
    cloud = Cloud()
    async with buckets_and_widgets(parts, cloud) as carm:
        await carm.condition("prod", NAME, "ACK.ResourceSynced")
        await widget_condition(carm.kube, "ACK.ResourceSynced")
        await carm.settle()
        await carm.annotate_namespace("prod", {OWNER: B})
        moved = [
            await carm.condition("prod", NAME, "ACK.Terminal", within=5.0),
            condition(
                await widget_condition(carm.kube, "ACK.Terminal", within=5.0), "ACK.Terminal"
            ),
        ]
        for terminal in moved:
            assert f"created in account {A}" in terminal["message"]
            assert f"now resolves to account {B}" in terminal["message"]
        assert set(cloud.widgets) == {(A, NAME)}


async def test_each_kind_takes_its_own_service_level_key_and_deletion_policy(
    parts: Parts,
) -> None:
    """One role map and one namespace serve two services: with ServiceLevelCARM the Widget
    (group widgets.services.k8s.aws) takes key `widgets.<id>` and the Bucket the plain key;
    the namespace's `widgets.services.k8s.aws/deletion-policy` retains Widgets only."""
    cloud = Cloud()
    widget_role = f"arn:aws:iam::{A}:role/carm-widgets"
    parts[1].install_crd(WIDGET_CRD)
    kinds = (BUCKET_KIND, widget_kind(cloud))
    async with running_controller(parts, "ServiceLevelCARM=true", kinds=kinds) as carm:
        await carm.role_map({A: ROLES[A], f"widgets.{A}": widget_role})
        await carm.namespace(
            "prod", {OWNER: A, "widgets.services.k8s.aws/deletion-policy": "retain"}
        )
        await carm.bucket("prod", NAME)
        body = {
            "apiVersion": WIDGETS.api_version,
            "kind": "Widget",
            "metadata": {"name": NAME, "namespace": "prod"},
            "spec": {"name": NAME},
        }
        await carm.kube.create(WIDGET_REF, body)
        await carm.condition("prod", NAME, "ACK.ResourceSynced")
        await widget_condition(carm.kube, "ACK.ResourceSynced")
        assert cloud.creators == {(A, NAME): widget_role}
        assert NAME in await carm.moto.list_bucket_names(A)  # made with ROLES[A], the s3 role

        await carm.kube.delete(WIDGET_REF, NAME, "prod")
        await carm.kube.delete(BUCKETS, NAME, "prod")
        await gone(carm.kube, WIDGET_REF)
        await gone(carm.kube, BUCKETS)
        assert set(cloud.widgets) == {(A, NAME)}  # retained
        assert NAME not in await carm.moto.list_bucket_names(A)  # deleted
