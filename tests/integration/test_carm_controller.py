"""CARM end to end against the embedded API and a real moto server: edits of every source act at
once on exactly the resources they concern; teams, service keys, selectors and rich role
entries put buckets in the right account; drift and bad values stop before any AWS call."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from carm.events import ObjectKey
from carm.kube.client import BUCKETS, KubeClient
from carm.sandbox.kubeapi.server import KubeApiServer
from carm.sandbox.moto import MotoServer
from tests.integration.carm_harness import Parts, running_controller

A, B = "111111111111", "222222222222"
ROLE_A1 = f"arn:aws:iam::{A}:role/s3-v1"
ROLE_A2 = f"arn:aws:iam::{A}:role/s3-v2"
ROLE_B = f"arn:aws:iam::{B}:role/s3"
OWNER = "services.k8s.aws/owner-account-id"


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


async def test_remapping_an_account_resyncs_its_resources_at_once_and_touches_no_other(
    parts: Parts,
) -> None:
    async with running_controller(parts) as carm:
        await carm.role_map({A: ROLE_A1, B: ROLE_B})
        layout = {"a-one": OWNER, "a-two": OWNER, "b-one": OWNER}
        accounts = {"a-one": A, "a-two": A, "b-one": B}
        for namespace in layout:
            await carm.namespace(namespace, {OWNER: accounts[namespace]})
        names = {ns: [f"{ns}-{i}" for i in range(8)] for ns in layout}
        for namespace, buckets in names.items():
            for name in buckets:
                await carm.bucket(namespace, name)
        for namespace, buckets in names.items():
            for name in buckets:
                await carm.condition(namespace, name, "ACK.ResourceSynced")
        await carm.settle()

        mark = len(carm.controller.state.reconciles)
        of_a = {ObjectKey(ns, n) for ns in ("a-one", "a-two") for n in names[ns]}
        await carm.role_map({A: ROLE_A2, B: ROLE_B})
        with anyio.fail_after(2.0):  # the acceptance bound: every resource of A, with no restart
            while True:
                done = {
                    r.key
                    for r in carm.reconciles_since(mark)
                    if r.role_arn == ROLE_A2 and r.outcome == "success"
                }
                if of_a <= done:
                    break
                await anyio.sleep(0.02)
        await carm.settle()
        after = carm.reconciles_since(mark)
        assert not [r for r in after if r.key.namespace == "b-one"]  # account B: not one reconcile
        assert {r.key for r in after} == of_a
        assert all(r.account_id == A and r.role_arn == ROLE_A2 for r in after)
        assert set(await carm.moto.list_bucket_names(A)) >= {key.name for key in of_a}


async def test_deleting_the_role_map_gives_a_clear_condition_and_recreating_it_recovers(
    parts: Parts,
) -> None:
    async with running_controller(parts) as carm:
        await carm.role_map({A: ROLE_A1})
        await carm.namespace("prod", {OWNER: A})
        await carm.bucket("prod", "carm-map-gone")
        await carm.condition("prod", "carm-map-gone", "ACK.ResourceSynced")

        await carm.role_map(None)
        gone = await carm.condition("prod", "carm-map-gone", "ACK.Recoverable", within=5.0)
        assert gone["message"].startswith(
            "IAM Role is not available: ConfigMap ack-system/ack-role-account-map not found"
        )
        await carm.role_map({A: ROLE_A1})
        await carm.condition("prod", "carm-map-gone", "ACK.ResourceSynced", within=5.0)
        obj = await carm.kube.get(BUCKETS, "carm-map-gone", "prod")
        assert "ACK.Recoverable" not in {c["type"] for c in obj["status"]["conditions"]}


async def test_team_and_service_level_roles_put_buckets_in_the_roles_account(
    parts: Parts,
) -> None:
    async with running_controller(parts, "TeamLevelCARM=true,ServiceLevelCARM=true") as carm:
        await carm.configmap(
            "ack-role-team-map",
            {"team-a": ROLE_A1, "s3.team-b": ROLE_B, "team-b": f"arn:aws:iam::{A}:role/not-s3"},
        )
        # A team id beats the owner account; the account is the team role's.
        await carm.namespace("squad-a", {"services.k8s.aws/team-id": "team-a", OWNER: B})
        await carm.namespace("squad-b", {"services.k8s.aws/team-id": "team-b"})
        await carm.bucket("squad-a", "carm-team-a")
        await carm.bucket("squad-b", "carm-team-b")
        await carm.condition("squad-a", "carm-team-a", "ACK.ResourceSynced")
        await carm.condition("squad-b", "carm-team-b", "ACK.ResourceSynced")
        assert "carm-team-a" in await carm.moto.list_bucket_names(A)
        assert "carm-team-b" in await carm.moto.list_bucket_names(B)  # the s3.team-b key
        status = (await carm.kube.get(BUCKETS, "carm-team-a", "squad-a"))["status"]
        assert status["ackResourceMetadata"]["ownerAccountID"] == A


async def test_iam_role_selectors_choose_the_role_and_a_conflict_names_both(
    parts: Parts,
) -> None:
    async with running_controller(parts, "IAMRoleSelector=true") as carm:
        await carm.role_map({A: ROLE_A1})
        await carm.namespace("apps", {OWNER: A}, labels={"env": "prod"})
        await carm.selector(
            "prod-data",
            {
                "arn": ROLE_B,
                "namespaceSelector": {"labelSelector": {"matchLabels": {"env": "prod"}}},
                "resourceTypeSelector": [{"group": "s3.services.k8s.aws", "kind": "Bucket"}],
                "resourceLabelSelector": {"matchLabels": {"tier": "data"}},
            },
        )
        await carm.bucket("apps", "carm-selected", labels={"tier": "data"})
        await carm.bucket("apps", "carm-mapped")
        selected = await carm.condition("apps", "carm-selected", "ACK.IAMRoleSelected")
        assert selected["message"] == f'IAMRoleSelector "prod-data" selected role {ROLE_B}'
        await carm.condition("apps", "carm-selected", "ACK.ResourceSynced")
        await carm.condition("apps", "carm-mapped", "ACK.IAMRoleSelected", status="False")
        await carm.condition("apps", "carm-mapped", "ACK.ResourceSynced")
        assert "carm-selected" in await carm.moto.list_bucket_names(B)
        assert "carm-mapped" in await carm.moto.list_bucket_names(A)

        await carm.selector(
            "everything-in-apps", {"arn": ROLE_B, "namespaceSelector": {"names": ["apps"]}}
        )
        await carm.bucket("apps", "carm-conflict", labels={"tier": "data"})
        terminal = await carm.condition("apps", "carm-conflict", "ACK.Terminal")
        assert "everything-in-apps" in terminal["message"] and "prod-data" in terminal["message"]
        assert "carm-conflict" not in await carm.moto.list_bucket_names(A)
        assert "carm-conflict" not in await carm.moto.list_bucket_names(B)


async def test_a_json_role_entry_with_external_id_source_identity_and_tags_works(
    parts: Parts,
) -> None:
    entry = (
        '{"roleARN": "' + ROLE_A1 + '", "externalID": "carm-ext-1", '
        '"sessionDurationSeconds": 1800, "sourceIdentity": "carm-it", '
        '"sessionTags": {"team": "a"}}'
    )
    async with running_controller(parts) as carm:
        await carm.role_map({A: entry, B: "arn:aws:iam::222222222222:role/ok"})
        await carm.namespace("rich", {OWNER: A})
        await carm.bucket("rich", "carm-rich-entry")
        await carm.condition("rich", "carm-rich-entry", "ACK.ResourceSynced")
        assert "carm-rich-entry" in await carm.moto.list_bucket_names(A)

        # A broken entry breaks only its own key: B's namespace still works.
        await carm.role_map({A: '{"roleARN": "' + ROLE_A1 + '", "externalId": "x"}', B: ROLE_B})
        await carm.namespace("other", {OWNER: B})
        await carm.bucket("other", "carm-other")
        await carm.condition("other", "carm-other", "ACK.ResourceSynced")
        broken = await carm.condition("rich", "carm-rich-entry", "ACK.Terminal", within=5.0)
        assert "unknown field(s) 'externalId'" in broken["message"]
        assert carm.metric("carm_invalid_mapping_entries", source="ack-role-account-map") == 1


async def test_a_resource_whose_account_changed_is_terminal_and_nothing_is_created(
    parts: Parts,
) -> None:
    async with running_controller(parts) as carm:
        await carm.role_map({A: ROLE_A1, B: ROLE_B})
        await carm.namespace("moving", {OWNER: A})
        await carm.bucket("moving", "carm-drift")
        await carm.condition("moving", "carm-drift", "ACK.ResourceSynced")
        await carm.annotate_namespace("moving", {OWNER: B})
        drift = await carm.condition("moving", "carm-drift", "ACK.Terminal", within=5.0)
        assert f"created in account {A}" in drift["message"]
        assert f"now resolves to account {B}" in drift["message"]
        assert "carm-drift" not in await carm.moto.list_bucket_names(B)
        # Deleting it now must not delete the bucket in either account.
        await carm.kube.delete(BUCKETS, "carm-drift", "moving")
        await carm.condition("moving", "carm-drift", "ACK.Terminal", within=5.0)
        assert "carm-drift" in await carm.moto.list_bucket_names(A)


async def test_an_invalid_deletion_policy_is_terminal_and_never_a_silent_retain(
    parts: Parts,
) -> None:
    async with running_controller(parts) as carm:
        await carm.role_map({A: ROLE_A1})
        await carm.namespace("prod", {OWNER: A, "s3.services.k8s.aws/deletion-policy": "Retain"})
        await carm.bucket("prod", "carm-policy")
        terminal = await carm.condition("prod", "carm-policy", "ACK.Terminal")
        assert "'Retain'" in terminal["message"]
        assert "s3.services.k8s.aws/deletion-policy" in terminal["message"]
        assert "carm-policy" not in await carm.moto.list_bucket_names(A)
        await carm.annotate_namespace("prod", {"s3.services.k8s.aws/deletion-policy": "retain"})
        await carm.condition("prod", "carm-policy", "ACK.ResourceSynced", within=5.0)
        await carm.kube.delete(BUCKETS, "carm-policy", "prod")
        await carm.gone("prod", "carm-policy")  # the finalizer is removed...
        assert "carm-policy" in await carm.moto.list_bucket_names(A)  # ...the bucket retained
