"""deploy/ installed with `kubectl apply -k` on the sandbox, then carm run with exactly the
permissions its RBAC grants, through the user document's walkthrough with debug logging.

Why a proxy and not RBAC in the embedded server: the proxy (carm.sandbox.authz) implements the
RBAC authorizer's rules on what the server actually stored, denies everything else with the
apiserver's 403, and records every decision. That gives three checks the server alone could not:
carm needs nothing the rules do not grant (no request denied, the walkthrough converges), it
uses every verb of every rule (least privilege: nothing granted for nothing), and the exact list
of requests for a reader.

The same run checks what an operator sees afterwards: /metrics names every metric of the issue
with the account label, Events describe create, delete and terminal errors, SIGTERM exits 0 and
releases the lease, and no credential value ever reached the logs (at debug level), the Events,
the statuses or the metrics.
"""

from __future__ import annotations

import contextlib
import re
import signal
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from carm.sandbox.authz import Authorizer, grants_for_service_account
from tests.e2e.conftest import Sandbox
from tests.e2e.processes import (
    CarmRun,
    authorizing_proxy,
    http_get,
    lease_holder,
    sandbox_without_controller,
    wait_until,
)
from tests.e2e.test_user_document import ANNOTATE, BUCKET, NAMESPACE, ROLE_MAP

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl]

ROOT = Path(__file__).resolve().parents[2]
SERVICE_ACCOUNT = ("ack-system", "ack-s3-controller")
USER = "system:serviceaccount:ack-system:ack-s3-controller"
ACCOUNT = "111111111111"

# Every metric the issue names; those carm labels by account must carry account=111111111111.
METRICS = (
    "ack_outbound_api_requests_total",
    "ack_outbound_api_requests_error_total",
    "controller_runtime_reconcile_total",
    "controller_runtime_reconcile_time_seconds_bucket",
    "workqueue_depth",
    "workqueue_adds_total",
    "workqueue_retries_total",
    "workqueue_queue_duration_seconds_bucket",
)
ACCOUNT_METRICS = (
    "carm_sts_assume_role_total",
    "carm_credential_cache_hits_total",
    "carm_credential_cache_misses_total",
    "carm_credential_expiry_seconds",
    "carm_workqueue_depth",
    "carm_reconcile_total",
    "carm_resources",
    "carm_resource_conditions",
)

# A namespace whose annotation is not an account id: a Terminal condition, retried with
# backoff, so its Warning event repeats (and is aggregated with a patch). And a bucket name S3
# refuses (HTTP 400), for ACK's error counter.
BROKEN = """apiVersion: v1
kind: Namespace
metadata:
  name: broken
  annotations:
    services.k8s.aws/owner-account-id: "not-an-account"
---
apiVersion: s3.services.k8s.aws/v1alpha1
kind: Bucket
metadata:
  name: misplaced
  namespace: broken
spec:
  name: misplaced-bucket
---
apiVersion: s3.services.k8s.aws/v1alpha1
kind: Bucket
metadata:
  name: refused
  namespace: production
spec:
  name: b1
"""


@dataclass
class Run:
    """Everything observed during one run, for the tests below to judge."""

    applied: str = ""
    authorizer: Authorizer | None = None
    synced_bucket: dict[str, Any] = field(default_factory=dict)
    statuses: str = ""
    described: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    metrics: str = ""
    readyz: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    lease_holder_after: str = "?"
    logs: str = ""
    credentials: list[str] = field(default_factory=list)
    buckets_in_account: set[str] = field(default_factory=set)


def api_url(sandbox: Sandbox) -> str:
    config = yaml.safe_load(Path(sandbox.env["KUBECONFIG"]).read_text())
    return str(config["clusters"][0]["cluster"]["server"])


def issued_credentials(sandbox: Sandbox) -> list[str]:
    """Every secret value carm held: its own keys, and what moto issued to its sessions."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = sandbox.env["AWS_ENDPOINT_URL"] + "/moto-api/data.json"
    with opener.open(url, timeout=10) as response:
        data = orjson.loads(response.read())
    values = [sandbox.env["AWS_ACCESS_KEY_ID"], sandbox.env["AWS_SECRET_ACCESS_KEY"]]
    for session in data.get("sts", {}).get("AssumedRole", []):
        if str(session.get("session_name", "")).startswith("carm-s3-"):
            values += [
                session["access_key_id"],
                session["secret_access_key"],
                session["session_token"],
            ]
    return values


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    record = Run()
    state_dir = tmp_path_factory.mktemp("deploy")
    with sandbox_without_controller(state_dir) as sandbox:
        record.applied = sandbox.kubectl("apply", "-k", str(ROOT / "deploy"))
        rbac = orjson.loads(
            sandbox.kubectl(
                "get", "clusterroles,clusterrolebindings,roles,rolebindings", "-A", "-o", "json"
            )
        )["items"]
        grants = grants_for_service_account(rbac, *SERVICE_ACCOUNT)
        record.authorizer = Authorizer(grants, USER)
        with authorizing_proxy(api_url(sandbox), record.authorizer) as proxy:
            config = yaml.safe_load(Path(sandbox.env["KUBECONFIG"]).read_text())
            config["clusters"][0]["cluster"]["server"] = proxy.url
            kubeconfig = state_dir / "service-account-kubeconfig"
            kubeconfig.write_text(yaml.safe_dump(config))
            carm = CarmRun(
                "carm",
                sandbox,
                "--log-level=debug",
                "--enable-leader-election",
                "--feature-gates=IAMRoleSelector=true",
                kubeconfig=str(kubeconfig),
            )
            try:
                walkthrough(sandbox, carm, record)
                carm.process.send_signal(signal.SIGTERM)
                record.exit_code = carm.process.wait(timeout=30)
            finally:
                carm.close()
                record.logs = carm.log_path.read_text(errors="replace")
        record.lease_holder_after = lease_holder(sandbox)
        record.credentials = issued_credentials(sandbox)
    return record


def walkthrough(sandbox: Sandbox, carm: CarmRun, record: Run) -> None:
    health = carm.url("health")
    wait_until(lambda: http_get(health + "/readyz")[0] == 200, 30, "readiness")
    sandbox.shell(ROLE_MAP)
    sandbox.shell(NAMESPACE)
    sandbox.shell(ANNOTATE)
    sandbox.shell(BUCKET)
    sandbox.kubectl("apply", "-f", "-", stdin=BROKEN)
    sandbox.kubectl(
        "wait",
        "--for=condition=ACK.ResourceSynced",
        "bucket/my-bucket",
        "-n",
        "production",
        "--timeout=60s",
    )
    record.synced_bucket = sandbox.get("bucket", "my-bucket", "production")
    record.buckets_in_account = sandbox.buckets_of(ACCOUNT)
    record.metrics = carm.metrics()
    record.readyz = orjson.loads(http_get(health + "/readyz")[1])

    def repeated_warning() -> bool:
        events = orjson.loads(sandbox.kubectl("get", "events", "-n", "broken", "-o", "json"))
        return any(e.get("count", 0) >= 2 for e in events["items"])

    # Judged by test_events_describe_create_delete_and_terminal_errors, not here.
    with contextlib.suppress(AssertionError):
        wait_until(repeated_warning, 30, "the terminal error's event to repeat")
    record.statuses = sandbox.kubectl("get", "buckets", "-A", "-o", "json")
    record.described = sandbox.kubectl("describe", "bucket", "my-bucket", "-n", "production")
    sandbox.kubectl("delete", "bucket", "my-bucket", "-n", "production", "--timeout=60s")
    record.events = orjson.loads(sandbox.kubectl("get", "events", "-A", "-o", "json"))["items"]


def test_kubectl_apply_k_installs_crds_rbac_and_the_deployment(run: Run) -> None:
    for installed in (
        "customresourcedefinition.apiextensions.k8s.io/buckets.s3.services.k8s.aws",
        "serviceaccount/ack-s3-controller created",
        "clusterrole.rbac.authorization.k8s.io/ack-s3-controller created",
        "clusterrolebinding.rbac.authorization.k8s.io/ack-s3-controller created",
        "role.rbac.authorization.k8s.io/ack-s3-controller created",
        "rolebinding.rbac.authorization.k8s.io/ack-s3-controller created",
        "deployment.apps/ack-s3-controller created",
    ):
        assert installed in run.applied


def test_the_walkthrough_converges_with_only_the_granted_permissions(run: Run) -> None:
    assert run.authorizer is not None
    denied = [request.describe() for request in run.authorizer.denied]
    assert denied == [], f"carm needed permissions deploy/rbac does not grant: {denied}"
    assert run.synced_bucket["status"]["ackResourceMetadata"]["ownerAccountID"] == ACCOUNT
    assert "my-bucket" in run.buckets_in_account


def test_every_granted_permission_is_used(run: Run) -> None:
    assert run.authorizer is not None
    unused = [
        f"{verb} by {grant.rule} ({grant.source})" for grant, verb in run.authorizer.unused_grants()
    ]
    assert unused == [], f"granted but never needed (not least privilege): {unused}"
    # And the grants are scoped: ConfigMaps and Leases only in the system namespace.
    scoped = {
        resource: grant.namespace
        for grant in run.authorizer.grants
        for resource in grant.rule.resources
    }
    assert scoped["configmaps"] == scoped["leases"] == "ack-system"
    assert scoped["namespaces"] is None and scoped["buckets"] is None


def test_metrics_after_the_walkthrough_name_every_metric_with_the_account(run: Run) -> None:
    lines = [line for line in run.metrics.splitlines() if not line.startswith("#")]
    for name in METRICS:
        assert any(line.startswith(name + "{") for line in lines), f"{name} missing"
    for name in ACCOUNT_METRICS:
        assert any(
            line.startswith(name + "{") and f'account="{ACCOUNT}"' in line for line in lines
        ), f"{name} has no sample with account={ACCOUNT}"
    refused = 'op_id="CreateBucket",service="s3",status_code="400"'
    assert any(
        line.startswith("ack_outbound_api_requests_error_total{") and refused in line
        for line in lines
    ), "a real HTTP status code"
    synced = 'condition="ACK.ResourceSynced",kind="Bucket",status="True"'
    assert any(synced in line and f'account="{ACCOUNT}"' in line for line in lines)
    # Bounded labels: no object or bucket name in any series.
    assert not [
        line for line in lines if any(n in line for n in ("my-bucket", "misplaced", "refused"))
    ]
    assert run.readyz["status"] == "ok" and set(run.readyz["checks"]) == {
        "caches",
        "aws-identity",
        "watches",
    }


def test_events_describe_create_delete_and_terminal_errors(run: Run) -> None:
    def events(namespace: str, name: str) -> dict[str, dict[str, Any]]:
        return {
            e["reason"]: e
            for e in run.events
            if e["involvedObject"]["name"] == name and e["metadata"]["namespace"] == namespace
        }

    mine = events("production", "my-bucket")
    assert mine["Created"]["type"] == "Normal" and ACCOUNT in mine["Created"]["message"]
    assert mine["Deleted"]["type"] == "Normal"
    assert mine["Created"]["involvedObject"]["kind"] == "Bucket"
    assert mine["Created"]["source"]["component"] == "ack-s3-controller"
    # What `kubectl describe bucket` users see.
    events_section = run.described.split("Events:", 1)[1]
    assert re.search(r"Normal\s+Created\s+.*ack-s3-controller\s+Bucket created", events_section)
    warning = [e for e in events("broken", "misplaced").values() if e["type"] == "Warning"]
    assert warning and warning[0]["count"] >= 2, "a repeated error is one event with a count"
    assert "not-an-account" in warning[0]["message"]


def test_sigterm_exits_zero_and_releases_the_lease(run: Run) -> None:
    assert run.exit_code == 0, run.logs[-3000:]
    assert run.lease_holder_after == ""
    assert "released the lease" in run.logs


def test_no_credential_in_logs_events_status_or_metrics(run: Run) -> None:
    assert len(run.credentials) >= 5, "the test must know the assumed-role credentials"
    assert '"level":"debug"' in run.logs, "the run must log at debug level"
    seen = {
        "logs": run.logs,
        "events": orjson.dumps(run.events).decode(),
        "status": run.statuses,
        "metrics": run.metrics,
    }
    leaks = [
        (where, secret[:4] + "...")
        for secret in run.credentials
        for where, text in seen.items()
        if secret in text
    ]
    assert leaks == []


def test_reconcile_log_lines_name_namespace_kind_name_account_and_region(run: Run) -> None:
    reconcile_lines = [
        orjson.loads(line)
        for line in run.logs.splitlines()
        if line.startswith("{") and '"logger":"carm.reconcile"' in line
    ]
    assert reconcile_lines
    for line in reconcile_lines:
        assert {"namespace", "kind", "name", "account", "region"} <= set(line), line
    synced = [line for line in reconcile_lines if line["msg"] == "synced"]
    assert synced[0]["account"] == ACCOUNT and synced[0]["region"] == "us-east-1"
