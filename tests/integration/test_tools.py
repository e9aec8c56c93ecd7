"""`carm explain` and `carm doctor` against the sandbox's parts (embedded Kubernetes API, moto)
with no controller running: a good setup explains and passes, broken ones say what is wrong."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import anyio.to_thread
import orjson
import pytest

from carm.cli import main
from carm.kube.client import BUCKETS, CONFIG_MAPS, IAM_ROLE_SELECTORS, NAMESPACES, KubeClient
from carm.resources.iamroleselector_crd import IAM_ROLE_SELECTOR_CRD
from carm.sandbox.kubeapi.server import KubeApiServer
from carm.sandbox.moto import MotoServer

A, B = "111111111111", "222222222222"
ROLE_A = f"arn:aws:iam::{A}:role/s3"
ROLE_B = f"arn:aws:iam::{B}:role/s3"
OWNER = "services.k8s.aws/owner-account-id"


class Cluster:
    def __init__(self, kube: KubeClient, kubeconfig: Path, moto: MotoServer) -> None:
        self.kube = kube
        self.kubeconfig = kubeconfig
        self.moto = moto

    async def namespace(self, name: str, **annotations: str) -> None:
        body = {"metadata": {"name": name, "annotations": annotations}}
        await self.kube.create(NAMESPACES, body)

    async def role_map(self, data: dict[str, str], name: str = "ack-role-account-map") -> None:
        body = {"metadata": {"name": name, "namespace": "ack-system"}, "data": data}
        await self.kube.create(CONFIG_MAPS, body)

    async def bucket(self, namespace: str, name: str) -> None:
        body = {
            "apiVersion": "s3.services.k8s.aws/v1alpha1",
            "kind": "Bucket",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"name": name},
        }
        await self.kube.create(BUCKETS, body)

    async def run(self, *argv: str) -> tuple[int, str]:
        """`carm <argv>` as a user types it, with the cluster's kubeconfig and moto's AWS."""
        args = [*argv, "--kubeconfig", str(self.kubeconfig), "--aws-region", "us-east-1"]
        args += ["--aws-endpoint-url", self.moto.url]
        return await anyio.to_thread.run_sync(_capture, args)


def _capture(argv: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


@pytest.fixture
def cluster(
    kube: KubeClient,
    kube_server: KubeApiServer,
    moto_server: MotoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Cluster:
    for name, value in moto_server.controller_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ACK_SYSTEM_NAMESPACE", "ack-system")
    kubeconfig = tmp_path / "user-kubeconfig"
    kube_server.write_kubeconfig(kubeconfig)
    return Cluster(kube, kubeconfig, moto_server)


async def good_setup(cluster: Cluster) -> None:
    await cluster.role_map({A: ROLE_A})
    await cluster.namespace("prod", **{OWNER: A, "services.k8s.aws/default-region": "eu-west-1"})
    await cluster.bucket("prod", "logs")


async def test_explain_says_where_every_value_comes_from(cluster: Cluster) -> None:
    await good_setup(cluster)
    code, text = await cluster.run("explain", "prod")
    assert code == 0, text
    lines = {line.split()[0]: line for line in text.splitlines()[1:] if line.startswith("  ")}
    assert A in lines["account"] and "services.k8s.aws/owner-account-id" in lines["account"]
    assert ROLE_A in lines["role"]
    assert 'ack-system/ack-role-account-map key "111111111111"' in lines["role"]
    assert "eu-west-1" in lines["region"] and "default-region" in lines["region"]
    assert "delete" in lines["deletion"] and "--deletion-policy" in lines["deletion"]
    assert "the IAMRoleSelector feature gate is off" in lines["selector"]


async def test_explain_of_one_resource_as_json(cluster: Cluster) -> None:
    await good_setup(cluster)
    code, text = await cluster.run(
        "explain", "prod", "bucket/logs", "-o", "json", "--deletion-policy", "retain"
    )
    assert code == 0, text
    result = orjson.loads(text)
    assert (result["resource"], result["resolved"]) == ("Bucket/logs", True)
    assert result["account"] == {
        "value": A,
        "source": "namespace annotation services.k8s.aws/owner-account-id",
    }
    assert result["deletion_policy"] == {"value": "retain", "source": "--deletion-policy"}
    assert result["partition"]["value"] == "aws"


async def test_explain_of_a_broken_namespace_says_what_is_wrong_and_exits_1(
    cluster: Cluster,
) -> None:
    await good_setup(cluster)
    await cluster.namespace("typo", **{OWNER: "11111111111x", "services.k8s.aws/team-id": "t"})
    code, text = await cluster.run("explain", "typo")
    assert code == 1
    assert "does NOT resolve" in text
    assert 'problem: namespace "typo" has annotation' in text and "'11111111111x'" in text
    assert "InvalidOwnerAccountID: needs a change" in text
    assert "note: annotation services.k8s.aws/team-id='t' is ignored" in text
    code, text = await cluster.run("explain", "nowhere")
    assert code == 1 and 'namespace "nowhere" not found' in text


async def test_doctor_passes_a_good_setup_and_assumes_its_roles(cluster: Cluster) -> None:
    await good_setup(cluster)
    code, text = await cluster.run("doctor", "--assume")
    assert code == 0, text
    assert text.startswith("carm doctor: 0 error(s), 0 warning(s)")
    assert "OK      controller credentials: the controller acts as account 000000000000" in text
    assert f'role {ROLE_A} (ConfigMap ack-system/ack-role-account-map key "{A}")' in text
    assert f"assumed; acts in account {A}" in text


async def test_doctor_finds_every_kind_of_broken_setup(cluster: Cluster) -> None:
    await cluster.role_map(
        {
            A: ROLE_A,
            B: "arn:aws:iam::999999999999:role/wrong-account",
            "333333333333": '{"roleARN": "nope"}',
            "444444444444": "arn:aws:iam::444444444444:role/unused",
            "prod": ROLE_A,
        }
    )
    await cluster.namespace("a", **{OWNER: A})
    await cluster.namespace("b", **{OWNER: B})
    await cluster.namespace("c", **{OWNER: "333333333333"})
    await cluster.namespace("unmapped", **{OWNER: "555555555555"})
    await cluster.namespace("typo", **{OWNER: "5555"})
    await cluster.namespace("policy", **{OWNER: A, "s3.services.k8s.aws/deletion-policy": "keep"})
    code, text = await cluster.run("doctor", "-o", "json", "--watch-namespace", "a")
    assert code == 1
    findings = {(f["severity"], f["subject"], f["message"]) for f in orjson.loads(text)["findings"]}
    messages = "\n".join(f"{s} {subj}: {m}" for s, subj, m in sorted(findings))
    expected = [
        ("error", "controller flags", "--watch-namespace"),
        ("error", 'key "prod"', "the key is not a 12-digit account id"),
        ("error", f'key "{B}"', "belongs to account 999999999999, not 222222222222"),
        ("error", 'key "333333333333"', "is not a valid IAM role ARN"),
        ("warning", 'key "444444444444"', "no namespace is annotated with 444444444444"),
        ("error", 'namespace "unmapped"', "IAM Role is not available"),
        ("error", 'namespace "typo"', "'5555', which is not a 12-digit AWS account id"),
        ("error", 'namespace "policy"', "deletion policy 'keep'"),
    ]
    for severity, subject, fragment in expected:
        assert any(
            s == severity and subject in subj and fragment in m for s, subj, m in findings
        ), f"missing {severity} {subject}: {fragment} in\n{messages}"
    assert not any(subj == 'namespace "a"' for _, subj, _ in findings)


async def test_doctor_names_conflicting_selectors_and_a_denied_role(
    cluster: Cluster, kube_server: KubeApiServer
) -> None:
    kube_server.install_crd(IAM_ROLE_SELECTOR_CRD)
    await cluster.role_map({A: ROLE_A})
    await cluster.namespace("apps", **{OWNER: A})
    await cluster.bucket("apps", "data")
    for name in ("one", "two"):
        spec = {"arn": ROLE_B, "namespaceSelector": {"names": ["apps"]}}
        await cluster.kube.create(IAM_ROLE_SELECTORS, {"metadata": {"name": name}, "spec": spec})
    cluster.moto.deny_assume_role(ROLE_A)
    cluster.moto.set_iam_enforcement(True)
    code, text = await cluster.run("doctor", "--assume", "--feature-gates", "IAMRoleSelector=true")
    assert code == 1
    assert "2 IAMRoleSelectors match" in text and "one -> " in text and "two -> " in text
    assert f"ERROR   role {ROLE_A}" in text and "AssumeRole failed: AccessDenied" in text


async def test_doctor_with_the_selector_gate_but_no_crd_says_so(cluster: Cluster) -> None:
    code, text = await cluster.run("doctor", "--feature-gates", "IAMRoleSelector=true")
    assert code == 1
    assert "iamroleselectors.services.k8s.aws is not installed" in text


async def test_explain_runs_as_a_command_with_a_kubeconfig(
    kube: KubeClient, kube_server: KubeApiServer, tmp_path: Path
) -> None:
    """The installed entry point, as a user runs it: no controller, just a kubeconfig."""
    kubeconfig = tmp_path / "kubeconfig"
    kube_server.write_kubeconfig(kubeconfig)
    result = await anyio.run_process(
        [sys.executable, "-m", "carm.cli", "explain", "team-a", "--aws-region", "us-west-2"],
        check=False,
        env=os.environ | {"KUBECONFIG": str(kubeconfig), "NO_PROXY": "127.0.0.1,localhost"},
    )
    stdout = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    assert 'namespace "team-a": resolves' in stdout
    assert "the controller's own" in stdout
