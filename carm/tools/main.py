"""Running `carm explain` and `carm doctor`: read the cluster, decide, print, exit status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import anyio
import orjson

from carm.controllers import resource_ref
from carm.events import RawObject
from carm.kube.client import KubeApiError, KubeClient, KubeError
from carm.resources.kind import ResourceDescriptor
from carm.settings import Settings
from carm.tools.doctor import diagnose, verify_roles
from carm.tools.explain import Explanation, explain
from carm.tools.kinds import SERVED_KINDS, kind_named, served_kinds_in_words, typed
from carm.tools.snapshot import read_cluster


class UnknownKind(ValueError):
    """KIND/NAME names no kind carm serves (or no name); the message lists the kinds served."""


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
    try:
        result = await explain_in_cluster(kube, settings, args.namespace, args.resource)
    except UnknownKind as error:
        print(f"carm explain: {error}", file=sys.stderr)
        return 2
    _print(result, args.output)
    return 0 if result.resolved else 1


async def explain_in_cluster(
    kube: KubeClient,
    settings: Settings,
    namespace: str,
    kind_and_name: str | None = None,
    kinds: Sequence[ResourceDescriptor] = SERVED_KINDS,
) -> Explanation:
    """`carm explain NAMESPACE [KIND/NAME]` against the cluster, for the kinds served."""
    if kind_and_name is None:
        return explain(await read_cluster(kube, settings, kinds=kinds), settings, namespace)
    kind_name, _, name = kind_and_name.partition("/")
    kind = kind_named(kind_name, kinds)
    if kind is None or not name:
        raise UnknownKind(
            f"{kind_and_name!r}: expected KIND/NAME, KIND one of the kinds carm serves: "
            f"{served_kinds_in_words(kinds)}"
        )
    resource: RawObject | None = None
    try:
        resource = typed(await kube.get(resource_ref(kind), name, namespace), kind)
    except KubeApiError as error:
        if not error.not_found:
            raise
    snapshot = await read_cluster(kube, settings, kinds=kinds)
    return explain(snapshot, settings, namespace, resource, f"{kind.kind}/{name}")


async def _doctor(kube: KubeClient, args: argparse.Namespace, settings: Settings) -> int:
    snapshot = await read_cluster(kube, settings, with_resources=True)
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
