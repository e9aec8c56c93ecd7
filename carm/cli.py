"""`carm` command line: `carm run` (the controller) and `carm sandbox` (the embedded default)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from carm.settings import Settings, SettingsError, default_system_namespace


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"true", "1", "yes", "on"}:
        return True
    if lowered in {"false", "0", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _namespaces(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """ACK's controller flags (same names and defaults where ACK has them)."""
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG") or None)
    parser.add_argument(
        "--watch-namespace",
        type=_namespaces,
        default=(),
        help="comma-separated namespaces to watch; empty (default) watches all namespaces",
    )
    parser.add_argument(
        "--enable-carm", type=_bool, nargs="?", const=True, default=True, metavar="BOOL"
    )
    parser.add_argument("--aws-region", default=os.environ.get("AWS_REGION", ""))
    parser.add_argument("--aws-endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL") or None)
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--log-format", default="json", choices=["json", "text"])
    parser.add_argument("--reconcile-default-resync-seconds", type=float, default=36_000.0)
    parser.add_argument("--reconcile-default-max-concurrent-syncs", type=int, default=16)
    parser.add_argument("--metrics-addr", default="0.0.0.0:8080")


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings(
        kubeconfig=args.kubeconfig,
        watch_namespaces=tuple(args.watch_namespace),
        enable_carm=args.enable_carm,
        aws_region=args.aws_region,
        aws_endpoint_url=args.aws_endpoint_url,
        log_level=args.log_level,
        resync_seconds=args.reconcile_default_resync_seconds,
        max_concurrent_syncs=args.reconcile_default_max_concurrent_syncs,
        system_namespace=default_system_namespace(),
        metrics_addr=args.metrics_addr,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the controller against a Kubernetes cluster")
    add_run_flags(run)
    sandbox = commands.add_parser(
        "sandbox", help="embedded Kubernetes API + moto + controller, in one process tree"
    )
    from carm.sandbox.options import add_sandbox_arguments  # noqa: PLC0415 - keep `run` lean

    add_sandbox_arguments(sandbox)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["sandbox", "kubeapi"]:
        from carm.sandbox.kubeapi.main import main as kubeapi_main  # noqa: PLC0415

        return kubeapi_main(argv[2:])
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    from carm.sandbox.runner import run_sandbox  # noqa: PLC0415

    return run_sandbox(args)


def _run(args: argparse.Namespace) -> int:
    from carm.observability.logging import configure_logging  # noqa: PLC0415

    settings = settings_from_args(args)
    try:
        settings.validate()
    except SettingsError as error:
        print(f"carm: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, args.log_format)
    from carm.app import run_controller  # noqa: PLC0415

    return run_controller(settings)


if __name__ == "__main__":
    raise SystemExit(main())
