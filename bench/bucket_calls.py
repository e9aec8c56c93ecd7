"""AWS calls per steady-state reconcile of a synced Bucket (`python -m bench bucket_calls`).

carm reads a synced bucket with one HeadBucket plus one Get per sub-configuration its spec
manages (tags count as one: ACK's default resource tags are always set), and writes nothing
when nothing differs. ACK's s3-controller reads ListBuckets plus about 20 Gets on every
reconcile, whatever the spec holds.

For each spec profile below (from the name alone to every sub-configuration the sandbox's moto
server can hold), the controller runs in this process against the embedded Kubernetes API and
a moto server, with a short resync period; the buckets are created, synced, and then left alone
while their resyncs are counted, and the S3 calls the controller made in that window (its own
`ack_outbound_api_requests_total`) are divided by the reconciles. One profile runs at a time,
so every call in a window belongs to that profile's buckets.

Prints a table; writes bench/results/bucket_calls.json. `--quick` uses fewer buckets and
resyncs. Left out of "every sub-configuration": replication and logging (they need a second
bucket set up). requestPayment is in it: moto lacks `?requestPayment`, and the sandbox's moto
server adds it (carm.sandbox.moto_server).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio

from carm.app import Controller
from carm.events import Kind, ObjectKey
from carm.kube.client import BUCKETS, CONFIG_MAPS, NAMESPACES, KubeClient
from carm.resources.crds import ALL_CRDS
from carm.sandbox.kubeapi.server import serve_kubeapi
from carm.sandbox.moto import MotoServer
from carm.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results" / "bucket_calls.json"
ACCOUNT = "111111111111"
NAMESPACE = "bench-calls"
ACK_CALLS = 21  # ListBuckets + ~20 Gets (FACTS.md: ACK's S3 read)

SUBCONFIGURATIONS: dict[str, Any] = {
    "versioning": {"status": "Enabled"},
    "encryption": {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]},
    "publicAccessBlock": {"blockPublicACLs": True, "ignorePublicACLs": True},
    "ownershipControls": {"rules": [{"objectOwnership": "BucketOwnerPreferred"}]},
    "acl": "private",
    "policy": json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyDeletes",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:DeleteBucket",
                    "Resource": "arn:aws:s3:::*",
                }
            ],
        }
    ),
    "lifecycle": {
        "rules": [{"status": "Enabled", "filter": {"prefix": "tmp/"}, "expiration": {"days": 1}}]
    },
    "cors": {"corsRules": [{"allowedMethods": ["GET"], "allowedOrigins": ["*"]}]},
    "website": {"indexDocument": {"suffix": "index.html"}},
    "accelerate": {"status": "Enabled"},
    "requestPayment": {"payer": "Requester"},
    "notification": {
        "queueConfigurations": [
            {
                "queueARN": f"arn:aws:sqs:us-east-1:{ACCOUNT}:events",
                "events": ["s3:ObjectCreated:*"],
            }
        ]
    },
    "objectLockEnabledForBucket": True,
    "tagging": {"tagSet": [{"key": "team", "value": "bench"}]},
}


@dataclass(frozen=True)
class Profile:
    name: str
    fields: tuple[str, ...]

    @property
    def managed(self) -> int:
        """Managed sub-configurations: the fields, plus tags (always managed: resource tags)."""
        return len(set(self.fields) | {"tagging"})


PROFILES = (
    Profile("name only", ()),
    Profile(
        "versioning + encryption + public access block",
        ("versioning", "encryption", "publicAccessBlock"),
    ),
    Profile(
        "seven",
        ("versioning", "encryption", "publicAccessBlock", "policy", "lifecycle", "acl", "tagging"),
    ),
    Profile("every sub-configuration", tuple(SUBCONFIGURATIONS)),
)


@dataclass
class Row:
    profile: str
    buckets: int
    managed: int
    reconciles: int
    calls_per_reconcile: float
    expected: int
    writes: float


def s3_calls(controller: Controller, *, writes: bool = False) -> float:
    total = 0.0
    for metric in controller.metrics.registry.collect():
        if metric.name != "ack_outbound_api_requests":
            continue
        for sample in metric.samples:
            labels = sample.labels
            if not sample.name.endswith("_total") or labels.get("service") != "s3":
                continue
            if not writes or labels.get("op_type") in {"UPDATE", "CREATE", "DELETE"}:
                total += sample.value
    return total


def successes(controller: Controller, keys: set[ObjectKey]) -> int:
    return sum(1 for r in controller.state.reconciles if r.key in keys and r.outcome == "success")


async def measure(
    kube: KubeClient, controller: Controller, profile: Profile, buckets: int, resyncs: int
) -> Row:
    names = [f"{profile.name.split()[0]}-{i}".lower() for i in range(buckets)]
    spec = {field: SUBCONFIGURATIONS[field] for field in profile.fields}
    for name in names:
        body = {
            "apiVersion": "s3.services.k8s.aws/v1alpha1",
            "kind": "Bucket",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"name": f"bench-{name}", **spec},
        }
        await kube.create(BUCKETS, body)
    keys = {ObjectKey(NAMESPACE, name) for name in names}
    # Synced, and every bucket reconciled at least twice (past its creation). The window
    # opens and closes between rounds of resyncs, so no reconcile is counted in part.
    await until(lambda: successes(controller, keys) >= 2 * buckets)
    await quiet(controller, keys)
    start_reconciles, start_calls = successes(controller, keys), s3_calls(controller)
    start_writes = s3_calls(controller, writes=True)
    await until(lambda: successes(controller, keys) >= start_reconciles + resyncs * buckets)
    await quiet(controller, keys)
    reconciles = successes(controller, keys) - start_reconciles
    calls = s3_calls(controller) - start_calls
    writes = s3_calls(controller, writes=True) - start_writes
    for name in names:
        await kube.delete(BUCKETS, name, NAMESPACE)
    # Gone (finalizer removed, S3 bucket deleted) before the next profile is counted.
    store = controller.stores[Kind("Bucket")]
    await until(lambda: all(store.get(key) is None for key in keys))
    return Row(
        profile.name,
        buckets,
        profile.managed,
        reconciles,
        round(calls / reconciles, 2),
        1 + profile.managed,
        writes,
    )


async def run(buckets: int, resyncs: int, resync_seconds: float) -> list[Row]:
    rows: list[Row] = []
    with MotoServer() as moto, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(moto.controller_env())
        async with serve_kubeapi(host="127.0.0.1", port=0) as server:
            for crd in ALL_CRDS:
                server.install_crd(crd)
            kubeconfig = Path(tmp) / "kubeconfig"
            server.write_kubeconfig(kubeconfig)
            async with await KubeClient.from_kubeconfig(str(kubeconfig)) as kube:
                await _prepare(kube)
                controller = Controller(
                    Settings(
                        kubeconfig=str(kubeconfig),
                        aws_region="us-east-1",
                        aws_endpoint_url=moto.url,
                        system_namespace="ack-system",
                        metrics_addr="",
                        healthz_addr="",
                        resync_seconds=resync_seconds,
                    )
                )
                async with anyio.create_task_group() as group:
                    await group.start(controller.run)
                    for profile in PROFILES:
                        rows.append(await measure(kube, controller, profile, buckets, resyncs))
                    group.cancel_scope.cancel()
    return rows


async def until(predicate: Callable[[], bool], within: float = 120.0) -> None:
    with anyio.fail_after(within):
        while True:
            if predicate():
                return
            await anyio.sleep(0.05)


async def quiet(controller: Controller, keys: set[ObjectKey], gap: float = 0.15) -> None:
    """Wait for a pause between resync rounds: no reconcile finished and no S3 call made for
    `gap` seconds (the resync period is much longer than a round)."""
    with anyio.fail_after(60):
        while True:
            before = (successes(controller, keys), s3_calls(controller))
            await anyio.sleep(gap)
            if (successes(controller, keys), s3_calls(controller)) == before:
                return


async def _prepare(kube: KubeClient) -> None:
    for namespace, owner in (
        ("ack-system", {}),
        (NAMESPACE, {"services.k8s.aws/owner-account-id": ACCOUNT}),
    ):
        await kube.create(NAMESPACES, {"metadata": {"name": namespace, "annotations": owner}})
    await kube.create(
        CONFIG_MAPS,
        {
            "metadata": {"name": "ack-role-account-map", "namespace": "ack-system"},
            "data": {ACCOUNT: f"arn:aws:iam::{ACCOUNT}:role/s3FullAccess"},
        },
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench bucket_calls", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 buckets x 3 resyncs per profile")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    # The resync period leaves a pause between rounds of resyncs (see `quiet`).
    buckets, resyncs, period = (2, 3, 0.5) if args.quick else (10, 5, 1.0)
    started = time.perf_counter()
    rows = anyio.run(run, buckets, resyncs, period)
    print(
        f"S3 calls per steady-state reconcile of a synced Bucket ({buckets} buckets per profile, "
        f"{resyncs} resyncs each; ACK: ~{ACK_CALLS} whatever the spec)"
    )
    header = f"{'spec':<48} {'managed':>7} {'calls/reconcile':>15} {'1+managed':>9} {'writes':>6}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.profile:<48} {row.managed:>7} {row.calls_per_reconcile:>15.2f} "
            f"{row.expected:>9} {row.writes:>6.0f}"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps([asdict(row) for row in rows], indent=2) + "\n")
    print(f"({time.perf_counter() - started:.1f} s; figures in {args.output})")
    ok = all(row.calls_per_reconcile == row.expected and row.writes == 0 for row in rows)
    return 0 if ok else 1
