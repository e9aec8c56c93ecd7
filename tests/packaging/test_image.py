"""The container image, checked without a Docker engine: what the Dockerfile says (pinned base,
non-root user, `carm run` entrypoint), that constraints.txt pins exactly what pyproject asks for
at the versions the tests ran with, and that the image's own install script, run here into a
fresh venv, gives a working `carm run` with nothing unpinned."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
PINNED_BASE = re.compile(
    r"python:(?P<minor>3\.\d+)\.\d+-slim-(?P<debian>[a-z]+)@sha256:[0-9a-f]{64}"
)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_both_stages_use_one_base_pinned_by_patch_release_and_digest() -> None:
    steps = instructions()
    args = dict(rest.split("=", 1) for word, rest in steps if word == "ARG" and "=" in rest)
    base = PINNED_BASE.fullmatch(args["PYTHON_IMAGE"])
    assert base, f"not pinned: {args['PYTHON_IMAGE']}"
    assert base["minor"] == f"{sys.version_info.major}.{sys.version_info.minor}", (
        "the image's Python must be the one constraints.txt was locked with"
    )
    froms = [rest for word, rest in steps if word == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"], "multi-stage, one base"


def test_runs_carm_run_as_a_numeric_non_root_user() -> None:
    steps = instructions()
    users = [rest for word, rest in steps if word == "USER"]
    assert users, "no USER: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0
    final_stage = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    assert ("USER", users[-1]) in final_stage
    assert steps[-1] == ("ENTRYPOINT", '["carm", "run"]')


def test_the_image_installs_with_the_script_this_test_runs() -> None:
    runs = " ".join(rest for word, rest in instructions() if word == "RUN")
    assert "install_image.sh wheels /src /wheels" in runs
    assert "install_image.sh install /wheels /opt/carm" in runs
    assert "COPY constraints.txt" in DOCKERFILE or "constraints.txt ./" in DOCKERFILE


def test_constraints_pin_every_dependency_pyproject_declares() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = constraints()
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, pyproject asks {requirement}"
        )


def test_constraints_are_the_versions_the_tests_run_with() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lock_constraints.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_the_image_install_gives_a_working_carm_run_with_only_pinned_packages(
    tmp_path: Path,
) -> None:
    """The slow one (~25 s, mostly pip): the Dockerfile's two steps, then `carm run --help`."""
    script = ROOT / "scripts" / "install_image.sh"
    # `python` in the script is this interpreter, as it is the base image's in the Dockerfile.
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for step in (
        ["wheels", str(ROOT), str(tmp_path / "wheels")],
        ["install", str(tmp_path / "wheels"), str(tmp_path / "venv")],
    ):
        result = subprocess.run(
            ["sh", str(script), *step], capture_output=True, text=True, env=env, timeout=300
        )
        assert result.returncode == 0, f"{shlex.join(step)}: {result.stderr[-3000:]}"
    venv = tmp_path / "venv" / "bin"
    help_text = subprocess.run(
        [str(venv / "carm"), "run", "--help"], capture_output=True, text=True, timeout=60
    )
    assert help_text.returncode == 0, help_text.stderr
    for flag in ("--enable-leader-election", "--healthz-addr", "--graceful-shutdown-timeout"):
        assert flag in help_text.stdout
    frozen = subprocess.run(
        [str(venv / "python"), "-m", "pip", "freeze", "--all"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    installed = {
        canonicalize_name(name): version
        for name, _, version in (line.partition("==") for line in frozen.splitlines())
    }
    for tool in ("pip", "setuptools", "wheel"):
        installed.pop(tool, None)
    assert (
        installed.pop("carm")
        == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    )
    assert installed == constraints(), "the image holds exactly the pinned packages"
