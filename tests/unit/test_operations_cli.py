"""`carm run`'s production flags (health, leader election, shutdown) with controller-runtime's
defaults, the timing rules that keep one leader at a time, and the log format."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import orjson
import pytest

from carm.cli import build_parser, settings_from_args
from carm.observability.logging import configure_logging
from carm.settings import Settings, SettingsError


def parse(*argv: str) -> Settings:
    return settings_from_args(build_parser().parse_args(["run", "--aws-region=us-east-1", *argv]))


def test_defaults_are_controller_runtimes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACK_SYSTEM_NAMESPACE", "controllers")
    settings = parse()
    assert settings.metrics_addr == "0.0.0.0:8080" and settings.healthz_addr == "0.0.0.0:8081"
    assert settings.enable_leader_election is False
    assert settings.lease_namespace == "controllers", "the system namespace by default"
    assert (settings.lease_duration_seconds, settings.renew_deadline_seconds) == (15, 10)
    assert settings.retry_period_seconds == 2
    assert settings.graceful_shutdown_timeout_seconds == 30
    settings.validate()


def test_durations_as_go_spells_them() -> None:
    settings = parse(
        "--enable-leader-election",
        "--leader-election-namespace=kube-system",
        "--leader-election-lease-duration=1m",
        "--leader-election-renew-deadline=45s",
        "--leader-election-retry-period=500ms",
        "--graceful-shutdown-timeout=90",
        "--healthz-addr=:9440",
    )
    assert settings.enable_leader_election and settings.lease_namespace == "kube-system"
    assert settings.lease_duration_seconds == 60 and settings.renew_deadline_seconds == 45
    assert settings.retry_period_seconds == 0.5
    assert settings.graceful_shutdown_timeout_seconds == 90
    assert settings.healthz_addr == ":9440"


def test_a_duration_that_is_not_one_stops_the_start(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--leader-election-lease-duration=soon")
    assert "expected a duration such as 15s" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("lease", "renew", "retry"),
    [("10s", "10s", "2s"), ("15s", "2s", "2s"), ("15s", "10s", "0s")],
)
def test_timings_that_could_allow_two_leaders_are_refused(
    lease: str, renew: str, retry: str
) -> None:
    settings = parse(
        f"--leader-election-lease-duration={lease}",
        f"--leader-election-renew-deadline={renew}",
        f"--leader-election-retry-period={retry}",
    )
    with pytest.raises(SettingsError, match="--leader-election-lease-duration > "):
        settings.validate()


def test_a_negative_shutdown_timeout_is_refused() -> None:
    with pytest.raises(SettingsError, match="--graceful-shutdown-timeout"):
        parse("--graceful-shutdown-timeout=-1").validate()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes the root logger: put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in ("botocore", "aiobotocore")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, previous in quiet.items():
        logging.getLogger(name).setLevel(previous)


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_carry_the_reconcile_context_and_libraries_stay_quiet(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("debug", "json")
    context = {"kind": "Bucket", "namespace": "production", "name": "my-bucket"}
    context |= {"account": "111111111111", "region": "us-east-1"}
    logging.getLogger("carm.reconcile").info("synced", extra={"carm": context})
    logging.getLogger("botocore.endpoint").debug("Sending http request: <secret headers>")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, "botocore's debug lines (with signed headers) are never shown"
    entry = orjson.loads(lines[0])
    assert entry["msg"] == "synced" and entry["level"] == "info"
    assert {k: entry[k] for k in context} == context


@pytest.mark.usefixtures("restore_logging")
def test_text_lines_for_people(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "text")
    logging.getLogger("carm.reconcile").info("synced", extra={"carm": {"account": "1"}})
    assert capsys.readouterr().err.rstrip().endswith("INFO carm.reconcile synced account=1")
