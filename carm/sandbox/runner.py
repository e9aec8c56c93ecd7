"""`carm sandbox`: the embedded default.

One process tree: the embedded Kubernetes API (in this process) with carm's CRDs and the
namespace ack-system, a moto server (a child process) whose controller identity is account
000000000000, and the controller in CARM mode (in this process, as `carm run` would run it).
Files in the state directory tell other shells how to reach it:

    kubeconfig    for kubectl and `carm run --kubeconfig`
    env           `export` lines: KUBECONFIG, AWS_*, ACK_SYSTEM_NAMESPACE
    metrics-url   where the controller's /metrics is served
    ready         written once everything is up and the controller's caches are synced
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

import anyio
import anyio.abc

from carm.app import Controller
from carm.kube.client import NAMESPACES, KubeApiError, KubeClient
from carm.observability.logging import configure_logging
from carm.resources.crds import ALL_CRDS
from carm.sandbox.demo import play_demo
from carm.sandbox.kubeapi.server import KubeApiServer
from carm.sandbox.moto import MotoServer
from carm.settings import Settings

log = logging.getLogger("carm.sandbox")

SYSTEM_NAMESPACE = "ack-system"


def run_sandbox(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_format)
    try:
        return anyio.run(_main, args)
    except KeyboardInterrupt:
        return 130


async def _main(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("ready", "metrics-url"):
        (state_dir / stale).unlink(missing_ok=True)
    exit_code = 0
    async with anyio.create_task_group() as group:
        group.start_soon(_cancel_on_signal, group.cancel_scope)
        exit_code = await _run(args, state_dir, group)
        group.cancel_scope.cancel()
    return exit_code


async def _run(args: argparse.Namespace, state_dir: Path, group: anyio.abc.TaskGroup) -> int:
    kubeconfig = state_dir / "kubeconfig"
    kubeapi = KubeApiServer(port=args.kube_port)
    await kubeapi.start()
    try:
        for crd in ALL_CRDS:
            kubeapi.install_crd(crd)
        kubeapi.write_kubeconfig(kubeconfig)
        await _ensure_namespace(kubeconfig, SYSTEM_NAMESPACE)
        async with MotoServer(port=args.aws_port, region=args.region) as moto:
            env = moto.controller_env() | {
                "KUBECONFIG": str(kubeconfig),
                "ACK_SYSTEM_NAMESPACE": SYSTEM_NAMESPACE,
            }
            _write_env(state_dir / "env", env)
            os.environ.update(env)  # the in-process controller's own AWS identity
            print(f"carm sandbox: Kubernetes API at {kubeapi.url}, AWS (moto) at {moto.url}")
            print(f"carm sandbox: in another shell: source {state_dir / 'env'}")
            if not args.no_controller:
                controller = Controller(_controller_settings(args, kubeconfig, moto.url))
                await group.start(controller.run)
                metrics_url = f"http://{controller.state.metrics_addr}/metrics"
                (state_dir / "metrics-url").write_text(metrics_url + "\n")
                print(f"carm sandbox: controller ready, metrics at {metrics_url}")
            (state_dir / "ready").write_text("ready\n")
            if args.demo:
                return await play_demo(env, state_dir, moto, SYSTEM_NAMESPACE)
            print("carm sandbox: running; Ctrl-C stops it")
            await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await kubeapi.stop()
    return 0


def _controller_settings(args: argparse.Namespace, kubeconfig: Path, aws_url: str) -> Settings:
    return Settings(
        kubeconfig=str(kubeconfig),
        enable_carm=True,
        aws_region=args.region,
        aws_endpoint_url=aws_url,
        log_level=args.log_level,
        max_concurrent_syncs=args.max_concurrent_syncs,
        system_namespace=SYSTEM_NAMESPACE,
        metrics_addr=f"127.0.0.1:{args.metrics_port}",
    )


async def _ensure_namespace(kubeconfig: Path, name: str) -> None:
    async with await KubeClient.from_kubeconfig(str(kubeconfig)) as kube:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        try:
            await kube.create(NAMESPACES, body)
        except KubeApiError as error:
            if not error.already_exists:
                raise


def _write_env(path: Path, env: Mapping[str, str]) -> None:
    lines = [f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items())]
    path.write_text("\n".join(lines) + "\n")


async def _cancel_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            print(f"carm sandbox: {signal.Signals(signum).name}: shutting down", file=sys.stderr)
            scope.cancel()
            return
