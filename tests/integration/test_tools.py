"""`carm explain` and `carm doctor` against the sandbox's parts (embedded Kubernetes API, moto)
with no controller running: a good setup explains and passes, broken ones say what is wrong."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import orjson
import pytest

from carm.cli import main
from carm.controllers import resource_ref
from carm.featuregates import FeatureGates
from carm.kube.client import BUCKETS, CONFIG_MAPS, IAM_ROLE_SELECTORS, NAMESPACES, KubeClient
from carm.resources.iamroleselector_crd import IAM_ROLE_SELECTOR_CRD
from carm.resources.kind import ResourceDescriptor
from carm.resources.s3.bucket import BUCKET_KIND
from carm.sandbox.kubeapi.server import KubeApiServer
from carm.sandbox.moto import MotoServer
from carm.settings import Settings
from carm.tools.doctor import diagnose
from carm.tools.explain import Fact
from carm.tools.main import UnknownKind, explain_in_cluster
from carm.tools.snapshot import read_cluster
from tests.crds import custom_resource_definition

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


# -- a second kind, of another service ---------------------------------------------------------
# A test-only Queue of service sqs beside the Bucket (s3), passed to the tool functions as the
# kinds served: what a second catalog entry gives the tools, with no edit in carm/tools.

QUEUES = ResourceDescriptor("sqs.services.k8s.aws", "v1alpha1", "Queue", "queues")
BUCKETS_AND_QUEUES = (BUCKET_KIND.descriptor, QUEUES)
QUEUE_CRD = custom_resource_definition(QUEUES.group, QUEUES.version, QUEUES.kind, QUEUES.plural)
ROLE_A_SQS = f"arn:aws:iam::{A}:role/sqs"
SQS_POLICY = "sqs.services.k8s.aws/deletion-policy"


def service_level() -> Settings:
    gates = FeatureGates.parse("ServiceLevelCARM=true")
    return Settings(aws_region="us-east-1", system_namespace="ack-system", feature_gates=gates)


async def queue(cluster: Cluster, namespace: str, name: str, owner: str | None = None) -> None:
    body: dict[str, Any] = {
        "apiVersion": QUEUES.api_version,
        "kind": QUEUES.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"queueName": name},
    }
    if owner is not None:  # as if the controller had created it in account `owner`
        body["status"] = {"ackResourceMetadata": {"ownerAccountID": owner, "region": "us-east-1"}}
    await cluster.kube.create(resource_ref(QUEUES), body)


async def test_explain_resolves_each_kind_with_its_own_service(
    cluster: Cluster, kube_server: KubeApiServer
) -> None:
    kube_server.install_crd(QUEUE_CRD)
    await cluster.role_map({f"s3.{A}": ROLE_A, f"sqs.{A}": ROLE_A_SQS})
    await cluster.namespace("prod", **{OWNER: A, SQS_POLICY: "retain"})
    await cluster.bucket("prod", "logs")
    await queue(cluster, "prod", "jobs")
    settings = service_level()
    where = "ConfigMap ack-system/ack-role-account-map key"
    for name in ("queue", "queues", "Queue", f"queue.{QUEUES.group}", f"QUEUES.{QUEUES.group}"):
        result = await explain_in_cluster(
            cluster.kube, settings, "prod", f"{name}/jobs", kinds=BUCKETS_AND_QUEUES
        )
        assert (result.resource, result.problems) == ("Queue/jobs", []), name
        assert result.facts["role"] == Fact(ROLE_A_SQS, f'{where} "sqs.{A}"')
        assert result.facts["deletion policy"] == Fact(
            "retain", f"namespace annotation {SQS_POLICY}"
        )

    bucket = await explain_in_cluster(
        cluster.kube, settings, "prod", "buckets.s3.services.k8s.aws/logs", kinds=BUCKETS_AND_QUEUES
    )
    assert (bucket.resource, bucket.problems) == ("Bucket/logs", [])
    assert bucket.facts["role"] == Fact(ROLE_A, f'{where} "s3.{A}"')
    assert bucket.facts["deletion policy"] == Fact("delete", "--deletion-policy")

    # The namespace as a whole is answered for the first kind, saying the other differs.
    whole = await explain_in_cluster(cluster.kube, settings, "prod", kinds=BUCKETS_AND_QUEUES)
    assert whole.facts["role"] == bucket.facts["role"]
    (note,) = [n for n in whole.notes if "otherwise" in n]
    assert "how a Bucket resolves here; Queue resolve(s) otherwise" in note
    alone = await explain_in_cluster(cluster.kube, settings, "prod", kinds=(QUEUES,))
    assert alone.facts["role"] == Fact(ROLE_A_SQS, f'{where} "sqs.{A}"')
    assert not [n for n in alone.notes if "otherwise" in n]


async def test_explain_names_the_kinds_served_when_a_kind_is_unknown(
    cluster: Cluster, kube_server: KubeApiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    kube_server.install_crd(QUEUE_CRD)
    await good_setup(cluster)
    served = "bucket (buckets.s3.services.k8s.aws), queue (queues.sqs.services.k8s.aws)"
    for wrong in ("topic/orders", "queue", "queue/", "queues.sns.services.k8s.aws/jobs"):
        with pytest.raises(UnknownKind) as raised:
            await explain_in_cluster(
                cluster.kube, service_level(), "prod", wrong, kinds=BUCKETS_AND_QUEUES
            )
        assert served in str(raised.value), wrong
    missing = await explain_in_cluster(
        cluster.kube, service_level(), "prod", "queue/nope", kinds=BUCKETS_AND_QUEUES
    )
    assert missing.problems == ['Queue/nope not found in namespace "prod"']

    # The command serves the catalog's kinds: today the Bucket, so a Queue is refused.
    code, text = await cluster.run("explain", "prod", "queue/jobs")
    assert (code, text) == (2, "")
    assert "KIND one of the kinds carm serves: bucket (buckets.s3.services.k8s.aws)" in (
        capsys.readouterr().err
    )
    code, text = await cluster.run("explain", "prod", "buckets.s3.services.k8s.aws/logs")
    assert code == 0 and 'namespace "prod", Bucket/logs: resolves' in text


async def test_doctor_checks_the_resources_and_role_map_keys_of_every_kind(
    cluster: Cluster, kube_server: KubeApiServer
) -> None:
    kube_server.install_crd(QUEUE_CRD)
    await cluster.role_map(
        {
            f"s3.{A}": ROLE_A,
            f"sqs.{A}": ROLE_A_SQS,
            f"sqs.{B}": ROLE_B,
            f"sns.{A}": ROLE_A,  # another controller's, or a typo: carm never reads it
        }
    )
    await cluster.namespace("prod", **{OWNER: A})
    await cluster.namespace("queues-only", **{OWNER: B})
    await cluster.namespace("policy", **{OWNER: A, SQS_POLICY: "keep"})
    await cluster.bucket("prod", "logs")
    await queue(cluster, "prod", "jobs", owner=B)  # created in B, now resolves to A
    await queue(cluster, "queues-only", "work")
    snapshot = await read_cluster(
        cluster.kube, service_level(), kinds=BUCKETS_AND_QUEUES, with_resources=True
    )
    assert sorted(
        (r["apiVersion"], r["kind"], r["metadata"]["name"]) for r in snapshot.resources
    ) == [
        ("s3.services.k8s.aws/v1alpha1", "Bucket", "logs"),
        ("sqs.services.k8s.aws/v1alpha1", "Queue", "jobs"),
        ("sqs.services.k8s.aws/v1alpha1", "Queue", "work"),
    ]
    report = diagnose(snapshot, service_level())
    findings = {(f.severity, f.subject): f.message for f in report.findings}
    keys = "ConfigMap ack-system/ack-role-account-map key"

    assert "created in account 222222222222" in findings[("error", 'Queue "prod/jobs"')]
    unknown_service = findings[("warning", f'{keys} "sns.{A}"')]
    assert "'sns' is not the service of a kind carm serves (s3, sqs)" in unknown_service
    # Buckets would fail in "queues-only" (no s3. or plain key for B): a warning, since its
    # Queue resolves (sqs.B); an error would be the Queue's own.
    no_buckets = findings[("warning", 'namespace "queues-only"')]
    assert "a Bucket here would not resolve: IAM Role is not available" in no_buckets
    assert "deletion policy 'keep'" in findings[("error", 'namespace "policy"')]
    assert SQS_POLICY in findings[("error", 'namespace "policy"')]
    flagged = {subject for _, subject in findings}
    for fine in ('Queue "queues-only/work"', 'Bucket "prod/logs"', 'namespace "prod"'):
        assert fine not in flagged, fine
    for used in (f"s3.{A}", f"sqs.{A}", f"sqs.{B}"):
        assert f'{keys} "{used}"' not in flagged, used
    assert report.exit_code == 1

    # With the Bucket alone served, the sqs keys are another service's and Queues unseen.
    alone = diagnose(
        await read_cluster(cluster.kube, service_level(), with_resources=True), service_level()
    )
    assert ("warning", f'{keys} "sqs.{B}"') in {(f.severity, f.subject) for f in alone.findings}
    assert not [f for f in alone.findings if f.subject.startswith("Queue ")]


async def test_doctor_says_when_the_crd_of_a_kind_served_is_missing(cluster: Cluster) -> None:
    await good_setup(cluster)
    snapshot = await read_cluster(
        cluster.kube, service_level(), kinds=BUCKETS_AND_QUEUES, with_resources=True
    )
    report = diagnose(snapshot, service_level())
    assert [(f.severity, f.subject) for f in report.findings] == [("error", "Queue CRD")]
    assert "queues.sqs.services.k8s.aws is not installed" in report.findings[0].message
