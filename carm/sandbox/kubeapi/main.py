"""`carm sandbox kubeapi`: run the embedded API server in the foreground until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from carm.sandbox.kubeapi.server import KubeApiServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carm sandbox kubeapi",
        description="Serve an in-memory Kubernetes API (for kubectl, tests and demos).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0 picks a free one)")
    parser.add_argument("--kubeconfig", required=True, help="where to write a kubeconfig")
    parser.add_argument("--namespace", default="default", help="the kubeconfig's namespace")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    server = KubeApiServer(host=args.host, port=args.port)
    await server.start()
    try:
        server.write_kubeconfig(args.kubeconfig, namespace=args.namespace)
        print(f"Kubernetes API serving on {server.url}", flush=True)
        print(f"  export KUBECONFIG={args.kubeconfig}", flush=True)
        print("  kubectl get namespaces", flush=True)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        await stopping.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
