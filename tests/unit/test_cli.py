"""`carm run` flags: ACK's names and defaults, and the refusals that stop a bad start."""

from __future__ import annotations

import subprocess
import sys

import pytest

from carm.cli import build_parser, settings_from_args
from carm.settings import Settings, SettingsError, default_system_namespace


def parse(*argv: str) -> Settings:
    return settings_from_args(build_parser().parse_args(["run", *argv]))


def test_acks_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    settings = parse()
    assert settings.enable_carm is True
    assert settings.watch_namespaces == ()
    assert settings.aws_region == "eu-west-1"
    assert settings.resync_seconds == 36_000
    assert settings.max_concurrent_syncs == 16
    assert settings.kubeconfig is None


def test_flags_as_ack_spells_them() -> None:
    settings = parse(
        "--enable-carm=false",
        "--watch-namespace",
        "team-a, team-b",
        "--aws-region",
        "us-west-2",
        "--aws-endpoint-url",
        "http://127.0.0.1:5000",
        "--reconcile-default-resync-seconds",
        "60",
        "--reconcile-default-max-concurrent-syncs",
        "1",
        "--kubeconfig",
        "/tmp/kc",
    )
    assert settings.enable_carm is False
    assert settings.watch_namespaces == ("team-a", "team-b")
    assert settings.aws_endpoint_url == "http://127.0.0.1:5000"
    assert (settings.resync_seconds, settings.max_concurrent_syncs) == (60, 1)
    settings.validate()


def test_carm_with_a_watch_namespace_is_refused_with_the_reason() -> None:
    settings = parse("--watch-namespace", "team-a", "--aws-region", "us-east-1")
    with pytest.raises(SettingsError, match=r"watch every namespace.*team-a"):
        settings.validate()


def test_carm_run_exits_at_start_with_the_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "carm.cli", "run", "--watch-namespace", "x", "--aws-region", "a"],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert b"--watch-namespace" in result.stderr and b"--enable-carm" in result.stderr


def test_system_namespace_follows_acks_environment_order() -> None:
    assert default_system_namespace({}) == "ack-system"
    assert default_system_namespace({"K8S_NAMESPACE": "k"}) == "k"
    assert default_system_namespace({"K8S_NAMESPACE": "k", "ACK_SYSTEM_NAMESPACE": "a"}) == "a"
