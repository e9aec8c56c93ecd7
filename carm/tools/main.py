"""Running `carm explain` and `carm doctor`: read the cluster, decide, print, exit status."""

from __future__ import annotations

import argparse
import sys

import anyio
import orjson

from carm.events import RawObject
from carm.kube.client import BUCKETS, KubeApiError, KubeClient, KubeError
from carm.settings import Settings
from carm.tools.doctor import diagnose, verify_roles
from carm.tools.explain import explain
from carm.tools.snapshot import read_cluster

_BUCKET_NAMES = frozenset({"bucket", "buckets", "bucket.s3.services.k8s.aws"})
_BUCKET_NAMES |= {"buckets.s3.services.k8s.aws"}


def run_tool(command: str, args: argparse.Namespace, settings: Settings) -> int:
    try:
        return anyio.run(_main, command, args, settings)
    except (KubeError, OSError) as error:
        print(f"carm {command}: cannot read the cluster: {error}", file=sys.stderr)
        return 2


async def _main(command: str, args: argparse.Namespace, settings: Settings) -> int:
    async with await KubeClient.from_env(settings.kubeconfig) as kube:
        if command == "explain":
            return await _explain(kube, args, settings)
        return await _doctor(kube, args, settings)


def _print(result: object, output: str) -> None:
    if output == "json":
        to_json = getattr(result, "to_json")  # noqa: B009 - both result types have it
        sys.stdout.write(orjson.dumps(to_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(getattr(result, "to_text")() + "\n")  # noqa: B009


async def _explain(kube: KubeClient, args: argparse.Namespace, settings: Settings) -> int:
    resource: RawObject | None = None
    if args.resource is not None:
        kind, _, name = str(args.resource).partition("/")
        if kind.lower() not in _BUCKET_NAMES or not name:
            print(
                f"carm explain: {args.resource!r}: expected bucket/NAME (the kinds carm serves)",
                file=sys.stderr,
            )
            return 2
        try:
            resource = await kube.get(BUCKETS, name, args.namespace)
            resource.setdefault("kind", "Bucket")
        except KubeApiError as error:
            if not error.not_found:
                raise
    snapshot = await read_cluster(kube, settings)
    label = None if args.resource is None else f"Bucket/{str(args.resource).partition('/')[2]}"
    result = explain(snapshot, settings, args.namespace, resource, label)
    _print(result, args.output)
    return 0 if result.resolved else 1


async def _doctor(kube: KubeClient, args: argparse.Namespace, settings: Settings) -> int:
    snapshot = await read_cluster(kube, settings, with_buckets=True)
    report = diagnose(snapshot, settings)
    if args.assume:
        from carm.accounts.clients import AwsClientPool
        from carm.accounts.sts import StsRoleAssumer
        from carm.clock import SystemClock

        async with AwsClientPool(clock=SystemClock()) as pool:
            assumer = StsRoleAssumer(
                pool,
                region=settings.aws_region or "us-east-1",
                endpoint_url=settings.aws_endpoint_url,
            )
            await verify_roles(report, snapshot, settings, assumer)
    _print(report, args.output)
    return report.exit_code
