"""`--feature-gates` and `--deletion-policy`: ACK's names and defaults; an unknown gate or a bad
value stops the start with a message that says what is wrong."""

from __future__ import annotations

import subprocess
import sys

import pytest

from carm.cli import build_parser, settings_from_args
from carm.featuregates import FeatureGateError, FeatureGates
from carm.settings import Settings, SettingsError


def parse(*argv: str) -> Settings:
    return settings_from_args(build_parser().parse_args(["run", "--aws-region", "x", *argv]))


def test_the_defaults_are_acks() -> None:
    gates = parse().feature_gates
    assert (gates.resource_adoption, gates.read_only_resources) == (True, True)
    assert (gates.team_level_carm, gates.service_level_carm, gates.iam_role_selector) == (
        False,
        False,
        False,
    )
    assert parse().deletion_policy == "delete"


def test_gates_are_set_by_their_ack_names() -> None:
    settings = parse(
        "--feature-gates",
        "TeamLevelCARM=true, ServiceLevelCARM=True,IAMRoleSelector=1,ReadOnlyResources=false",
        "--deletion-policy",
        "retain",
    )
    gates = settings.feature_gates
    assert gates.team_level_carm and gates.service_level_carm and gates.iam_role_selector
    assert not gates.read_only_resources
    assert gates.enabled() == [
        "ResourceAdoption",
        "TeamLevelCARM",
        "ServiceLevelCARM",
        "IAMRoleSelector",
    ]
    assert settings.deletion_policy == "retain"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("TeamLevelCarm=true", "unknown feature gate 'TeamLevelCarm'; known gates: "),
        ("TeamLevelCARM", "has no value"),
        ("TeamLevelCARM=maybe", "must be true or false"),
    ],
)
def test_a_bad_gate_is_refused(value: str, why: str) -> None:
    with pytest.raises(FeatureGateError, match=why):
        FeatureGates.parse(value)


def test_an_unknown_gate_stops_carm_run_before_anything_starts() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "carm.cli", "run", "--feature-gates", "TeamLevelCarm=true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "unknown feature gate 'TeamLevelCarm'" in result.stderr
    assert "TeamLevelCARM" in result.stderr  # the known names, to fix the typo


def test_a_deletion_policy_other_than_delete_or_retain_is_refused() -> None:
    with pytest.raises(SystemExit):
        parse("--deletion-policy", "keep")
    with pytest.raises(SettingsError, match="'keep'"):
        Settings(aws_region="x", deletion_policy="keep").validate()
