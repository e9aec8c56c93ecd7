"""`carm` command line: `carm run` (the controller), `carm sandbox` (the embedded default),
`carm explain` and `carm doctor` (how CARM resolves, and what is wrong with its setup)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from carm.featuregates import FeatureGateError, FeatureGates
from carm.settings import (
    ACK_DEFAULT_RESOURCE_TAGS,
    Settings,
    SettingsError,
    default_system_namespace,
)


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
    add_operations_flags(parser)
    add_carm_flags(parser)
    add_resource_flags(parser)


def _feature_gates(value: str) -> FeatureGates:
    try:
        return FeatureGates.parse(value)
    except FeatureGateError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_carm_flags(parser: argparse.ArgumentParser) -> None:
    """ACK's CARM flags: feature gates and the default deletion policy."""
    parser.add_argument(
        "--feature-gates",
        type=_feature_gates,
        default=FeatureGates(),
        metavar="NAME=BOOL,...",
        help="ACK feature gates, e.g. TeamLevelCARM=true,ServiceLevelCARM=true,"
        "IAMRoleSelector=true (an unknown name is an error)",
    )
    parser.add_argument(
        "--deletion-policy",
        default="delete",
        choices=["delete", "retain"],
        help="what deleting a resource does in AWS unless annotated otherwise (default delete)",
    )


def carm_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The Settings fields of `add_carm_flags`."""
    return {"feature_gates": args.feature_gates, "deletion_policy": args.deletion_policy}


def add_resource_flags(parser: argparse.ArgumentParser) -> None:
    """What every managed AWS resource gets: ACK's resource tags."""
    parser.add_argument(
        "--resource-tags",
        type=_tags,
        default=ACK_DEFAULT_RESOURCE_TAGS,
        metavar="KEY=VALUE,...",
        help="tags set on every AWS resource; ACK's variables (%%K8S_NAMESPACE%%, "
        "%%K8S_RESOURCE_NAME%%, ...) expand per resource; empty sets none (default: ACK's "
        "controller-version and namespace tags)",
    )


def _tags(value: str) -> tuple[str, ...]:
    tags = tuple(part.strip() for part in value.split(",") if part.strip())
    for tag in tags:
        if "=" not in tag or not tag.partition("=")[0].strip():
            raise argparse.ArgumentTypeError(f"expected key=value, got {tag!r}")
    return tags


def resource_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The Settings fields of `add_resource_flags`."""
    return {"resource_tags": tuple(args.resource_tags)}


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(value: str) -> float:
    """Seconds from a Go-style duration as ACK's flags take them ("15s", "500ms", "1m") or a
    plain number of seconds."""
    text = value.strip()
    for unit in sorted(_DURATION_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            number, scale = text[: -len(unit)], _DURATION_UNITS[unit]
            break
    else:
        number, scale = text, 1.0
    try:
        return float(number) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 15s, 500ms or 1m, got {value!r}"
        ) from None


def add_operations_flags(parser: argparse.ArgumentParser) -> None:
    """Running in production: health probes, leader election, shutdown (controller-runtime's
    defaults)."""
    parser.add_argument(
        "--healthz-addr", default="0.0.0.0:8081", help="host:port of /healthz and /readyz"
    )
    parser.add_argument(
        "--enable-leader-election",
        type=_bool,
        nargs="?",
        const=True,
        default=False,
        metavar="BOOL",
        help="reconcile only while holding the Lease ack-s3.services.k8s.aws (default false)",
    )
    parser.add_argument(
        "--leader-election-namespace",
        default="",
        help="namespace of the Lease (default: the system namespace)",
    )
    parser.add_argument("--leader-election-lease-duration", type=_duration, default=15.0)
    parser.add_argument("--leader-election-renew-deadline", type=_duration, default=10.0)
    parser.add_argument("--leader-election-retry-period", type=_duration, default=2.0)
    parser.add_argument(
        "--graceful-shutdown-timeout",
        type=_duration,
        default=30.0,
        help="on SIGTERM, how long in-flight reconciles may run before they are cancelled",
    )


def operations_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The Settings fields of `add_operations_flags`."""
    return {
        "healthz_addr": args.healthz_addr,
        "enable_leader_election": args.enable_leader_election,
        "leader_election_namespace": args.leader_election_namespace,
        "lease_duration_seconds": args.leader_election_lease_duration,
        "renew_deadline_seconds": args.leader_election_renew_deadline,
        "retry_period_seconds": args.leader_election_retry_period,
        "graceful_shutdown_timeout_seconds": args.graceful_shutdown_timeout,
    }


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
        **operations_settings(args),
        **carm_settings(args),
        **resource_settings(args),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the controller against a Kubernetes cluster")
    add_run_flags(run)
    sandbox = commands.add_parser(
        "sandbox", help="embedded Kubernetes API + moto + controller, in one process tree"
    )
    from carm.sandbox.options import add_sandbox_arguments

    add_sandbox_arguments(sandbox)
    _add_tool_parsers(commands)
    return parser


def _add_tool_parsers(commands: Any) -> None:
    """`carm explain` and `carm doctor` take every flag of `carm run` (paste the controller's
    arguments to see what it would do); the ones that do not matter to them are ignored."""
    explain = commands.add_parser(
        "explain",
        help="how a namespace (or one resource) resolves: account, role, region, ... and why",
    )
    explain.add_argument("namespace")
    explain.add_argument(
        "resource",
        nargs="?",
        metavar="KIND/NAME",
        help="one resource of a kind carm serves, named as kubectl names it (e.g. bucket/logs, "
        "buckets.s3.services.k8s.aws/logs); without it, the namespace as a whole",
    )
    doctor = commands.add_parser(
        "doctor", help="check the whole CARM setup of a cluster; exits 1 when something is wrong"
    )
    doctor.add_argument(
        "--assume",
        action="store_true",
        help="also assume every mapped role (with the controller's AWS credentials) and check "
        "its account",
    )
    for tool in (explain, doctor):
        tool.add_argument("--output", "-o", choices=["text", "json"], default="text")
        add_run_flags(tool)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["sandbox", "kubeapi"]:
        from carm.sandbox.kubeapi.main import main as kubeapi_main

        return kubeapi_main(argv[2:])
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    if args.command in ("explain", "doctor"):
        from carm.tools.main import run_tool

        return run_tool(args.command, args, settings_from_args(args))
    from carm.sandbox.runner import run_sandbox

    return run_sandbox(args)


def _run(args: argparse.Namespace) -> int:
    from carm.observability.logging import configure_logging

    settings = settings_from_args(args)
    try:
        settings.validate()
    except SettingsError as error:
        print(f"carm: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, args.log_format)
    from carm.app import run_controller

    return run_controller(settings)


if __name__ == "__main__":
    raise SystemExit(main())
