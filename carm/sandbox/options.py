"""Arguments of `carm sandbox` (kept apart so `carm --help` doesn't import the sandbox)."""

from __future__ import annotations

import argparse


def add_sandbox_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        default="./.carm-sandbox",
        help="where kubeconfig, env, ready and logs are written (default ./.carm-sandbox)",
    )
    parser.add_argument("--kube-port", type=int, default=0, help="embedded API port (0: any)")
    parser.add_argument("--aws-port", type=int, default=0, help="moto server port (0: any)")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="controller /metrics port on 127.0.0.1 (0: any; see DIR/metrics-url)",
    )
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument(
        "--no-controller",
        action="store_true",
        help="start only the API and AWS, to run `carm run` by hand",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="play the CARM walkthrough with kubectl, report, and exit",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--log-format", default="text", choices=["json", "text"])
    parser.add_argument("--max-concurrent-syncs", type=int, default=16)
