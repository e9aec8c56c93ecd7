"""The controller against the embedded API and a real moto server: every bad CARM input gives
the Bucket a condition that says what is wrong, and nothing is created in any account."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aioboto3
import anyio
import pytest

from carm.app import Controller
from carm.kube.client import BUCKETS, CONFIG_MAPS, NAMESPACES, KubeApiError, KubeClient
from carm.sandbox.kubeapi.server import KubeApiServer
from carm.sandbox.moto import SANDBOX_CONTROLLER_ACCOUNT_ID, MotoServer
from carm.settings import Settings

OWN = SANDBOX_CONTROLLER_ACCOUNT_ID
TARGET = "111111111111"
ROLE = f"arn:aws:iam::{TARGET}:role/s3FullAccess"


@dataclass
class Harness:
    kube: KubeClient
    moto: MotoServer
    controller: Controller

    async def namespace(self, name: str, owner: str | None) -> None:
        annotations = {"services.k8s.aws/owner-account-id": owner} if owner is not None else {}
        await self.kube.create(NAMESPACES, {"metadata": {"name": name, "annotations": annotations}})

    async def role_map(self, data: dict[str, str]) -> None:
        body = {
            "metadata": {"name": "ack-role-account-map", "namespace": "ack-system"},
            "data": data,
        }
        try:
            await self.kube.get(CONFIG_MAPS, "ack-role-account-map", "ack-system")
        except KubeApiError as error:
            assert error.not_found
            await self.kube.create(CONFIG_MAPS, body)
        else:
            await self.kube.merge_patch(
                CONFIG_MAPS, "ack-role-account-map", {"data": data}, "ack-system"
            )

    async def bucket(self, namespace: str, name: str) -> None:
        await self.kube.create(
            BUCKETS,
            {
                "apiVersion": "s3.services.k8s.aws/v1alpha1",
                "kind": "Bucket",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"name": name},
            },
        )

    async def condition(
        self, namespace: str, name: str, kind: str, within: float = 15.0
    ) -> dict[str, Any]:
        """Wait until the Bucket has condition `kind` with status True; return it."""
        with anyio.fail_after(within):
            while True:
                obj = await self.kube.get(BUCKETS, name, namespace)
                for condition in (obj.get("status") or {}).get("conditions") or []:
                    if condition["type"] == kind and condition["status"] == "True":
                        return dict(condition)
                await anyio.sleep(0.05)

    async def synced_false_message(self, namespace: str, name: str) -> str:
        obj = await self.kube.get(BUCKETS, name, namespace)
        for condition in obj["status"]["conditions"]:
            if condition["type"] == "ACK.ResourceSynced":
                assert condition["status"] == "False"
                return str(condition["message"])
        raise AssertionError("no ACK.ResourceSynced condition")

    async def buckets_anywhere(self, *accounts: str) -> set[str]:
        found: set[str] = set()
        for account in accounts:
            found |= set(await self.moto.list_bucket_names(account))
        return found


@asynccontextmanager
async def running_controller(
    kube: KubeClient, kube_server: KubeApiServer, moto: MotoServer, tmp_path: Path
) -> AsyncIterator[Harness]:
    """The controller running in this task's task group (fixtures cannot own task groups:
    pytest-asyncio sets them up and tears them down in different tasks)."""
    kubeconfig = tmp_path / "controller-kubeconfig"
    kube_server.write_kubeconfig(kubeconfig)
    settings = Settings(
        kubeconfig=str(kubeconfig),
        aws_region="us-east-1",
        aws_endpoint_url=moto.url,
        system_namespace="ack-system",
        metrics_addr="127.0.0.1:0",
    )
    controller = Controller(settings)
    async with anyio.create_task_group() as group:
        await group.start(controller.run)
        yield Harness(kube, moto, controller)
        group.cancel_scope.cancel()


@pytest.fixture
def harness_parts(
    kube: KubeClient,
    kube_server: KubeApiServer,
    moto_server: MotoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[KubeClient, KubeApiServer, MotoServer, Path]:
    for name, value in moto_server.controller_env().items():
        monkeypatch.setenv(name, value)
    return kube, kube_server, moto_server, tmp_path


Parts = tuple[KubeClient, KubeApiServer, MotoServer, Path]


async def test_missing_configmap_is_recoverable_and_names_it(harness_parts: Parts) -> None:
    async with running_controller(*harness_parts) as harness:
        await harness.namespace("prod", TARGET)
        await harness.bucket("prod", "no-map-bucket")
        condition = await harness.condition("prod", "no-map-bucket", "ACK.Recoverable")
        assert "ack-role-account-map" in condition["message"]
        assert "prod" in condition["message"] and TARGET in condition["message"]
        assert condition["message"] == await harness.synced_false_message("prod", "no-map-bucket")
        assert "no-map-bucket" not in await harness.buckets_anywhere(OWN, TARGET)


async def test_missing_key_is_recoverable_with_acks_words(harness_parts: Parts) -> None:
    async with running_controller(*harness_parts) as harness:
        await harness.role_map({"222222222222": "arn:aws:iam::222222222222:role/other"})
        await harness.namespace("prod", TARGET)
        await harness.bucket("prod", "no-key-bucket")
        condition = await harness.condition("prod", "no-key-bucket", "ACK.Recoverable")
        assert "IAM Role is not available" in condition["message"]
        assert "prod" in condition["message"] and TARGET in condition["message"]
        assert "no-key-bucket" not in await harness.buckets_anywhere(OWN, TARGET, "222222222222")


async def test_annotation_not_twelve_digits_is_terminal(harness_parts: Parts) -> None:
    async with running_controller(*harness_parts) as harness:
        await harness.role_map({TARGET: ROLE})
        await harness.namespace("typo", "11111111111x")
        await harness.bucket("typo", "typo-bucket")
        condition = await harness.condition("typo", "typo-bucket", "ACK.Terminal")
        assert "11111111111x" in condition["message"] and "typo" in condition["message"]
        assert "typo-bucket" not in await harness.buckets_anywhere(OWN, TARGET)


async def test_value_that_is_not_a_role_arn_is_terminal(harness_parts: Parts) -> None:
    async with running_controller(*harness_parts) as harness:
        await harness.role_map({TARGET: "arn:aws:iam::111111111111:user/not-a-role"})
        await harness.namespace("prod", TARGET)
        await harness.bucket("prod", "bad-arn-bucket")
        condition = await harness.condition("prod", "bad-arn-bucket", "ACK.Terminal")
        assert "arn:aws:iam::111111111111:user/not-a-role" in condition["message"]
        assert "prod" in condition["message"] and TARGET in condition["message"]
        assert "bad-arn-bucket" not in await harness.buckets_anywhere(OWN, TARGET)


async def test_own_account_annotated_but_unmapped_never_falls_back(harness_parts: Parts) -> None:
    async with running_controller(*harness_parts) as harness:
        await harness.role_map({TARGET: ROLE})
        await harness.namespace("self", OWN)
        await harness.bucket("self", "own-bucket")
        condition = await harness.condition("self", "own-bucket", "ACK.Recoverable")
        assert "IAM Role is not available" in condition["message"] and OWN in condition["message"]
        assert "own-bucket" not in await harness.buckets_anywhere(OWN, TARGET)


async def test_unannotated_namespace_uses_the_controllers_own_account(harness_parts: Parts) -> None:
    async with running_controller(*harness_parts) as harness:
        await harness.namespace("plain", None)
        await harness.bucket("plain", "plain-bucket")
        await harness.condition("plain", "plain-bucket", "ACK.ResourceSynced")
        assert "plain-bucket" in await harness.moto.list_bucket_names(OWN)
        assert "plain-bucket" not in await harness.moto.list_bucket_names(TARGET)


async def test_fixing_the_map_creates_the_bucket_without_waiting_for_backoff(
    harness_parts: Parts,
) -> None:
    async with running_controller(*harness_parts) as harness:
        await harness.namespace("prod", TARGET)
        await harness.bucket("prod", "late-bucket")
        await harness.condition("prod", "late-bucket", "ACK.Recoverable")
        # ACK would wait for its 15 s requeue; the role-map event re-resolves at once.
        await harness.role_map({TARGET: ROLE})
        await harness.condition("prod", "late-bucket", "ACK.ResourceSynced", within=5.0)
        assert "late-bucket" in await harness.moto.list_bucket_names(TARGET)
        obj = await harness.kube.get(BUCKETS, "late-bucket", "prod")
        types = {c["type"] for c in obj["status"]["conditions"]}
        assert "ACK.Recoverable" not in types


async def create_bucket_as(moto: MotoServer, account: str, name: str) -> None:
    session = aioboto3.Session()
    own = moto.controller_credentials
    where = {"region_name": "us-east-1", "endpoint_url": moto.url}
    async with session.client(
        "sts",
        aws_access_key_id=own.access_key_id,
        aws_secret_access_key=own.secret_access_key,
        **where,
    ) as sts:
        issued = (
            await sts.assume_role(
                RoleArn=f"arn:aws:iam::{account}:role/squatter", RoleSessionName="squatter"
            )
        )["Credentials"]
    async with session.client(
        "s3",
        aws_access_key_id=issued["AccessKeyId"],
        aws_secret_access_key=issued["SecretAccessKey"],
        aws_session_token=issued["SessionToken"],
        **where,
    ) as s3:
        await s3.create_bucket(Bucket=name)


async def test_bucket_name_owned_by_another_account_is_terminal(harness_parts: Parts) -> None:
    async with running_controller(*harness_parts) as harness:
        await create_bucket_as(harness.moto, "222222222222", "squatted-name")
        await harness.role_map({TARGET: ROLE})
        await harness.namespace("prod", TARGET)
        await harness.bucket("prod", "squatted-name")
        condition = await harness.condition("prod", "squatted-name", "ACK.Terminal")
        assert "another AWS account" in condition["message"]
        assert "squatted-name" not in await harness.moto.list_bucket_names(TARGET)


async def test_existing_bucket_of_the_same_account_is_not_an_error(harness_parts: Parts) -> None:
    async with running_controller(*harness_parts) as harness:
        await create_bucket_as(harness.moto, TARGET, "already-mine")
        await harness.role_map({TARGET: ROLE})
        await harness.namespace("prod", TARGET)
        await harness.bucket("prod", "already-mine")
        await harness.condition("prod", "already-mine", "ACK.ResourceSynced")
        assert "already-mine" in await harness.moto.list_bucket_names(TARGET)
