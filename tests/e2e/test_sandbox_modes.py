"""The sandbox as the README uses it: `--demo`, and `--no-controller` with `carm run` by hand."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import read_env

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl]

NO_PROXY = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def test_demo_plays_the_walkthrough_and_exits_zero(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "carm.cli", "sandbox", "--demo", "--state-dir", str(tmp_path)],
        capture_output=True,
        timeout=120,
        env=os.environ | NO_PROXY,
    )
    output = result.stdout.decode()
    assert result.returncode == 0, output + result.stderr.decode()
    assert "listed by account 111111111111: yes" in output
    assert "listed by the controller's own account 000000000000: no" in output
    assert "carm sandbox --demo: OK" in output
    env_file = (tmp_path / "env").read_text()
    for name in (
        "KUBECONFIG",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "ACK_SYSTEM_NAMESPACE",
    ):
        assert f"export {name}=" in env_file


def wait_for_file(path: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"process exited with {process.returncode}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.1)


def test_no_controller_then_carm_run_by_hand(tmp_path: Path) -> None:
    sandbox = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "carm.cli",
            "sandbox",
            "--no-controller",
            "--state-dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ | NO_PROXY,
    )
    controller: subprocess.Popen[bytes] | None = None
    try:
        wait_for_file(tmp_path / "ready", sandbox)
        assert not (tmp_path / "metrics-url").exists()
        env = os.environ | read_env(tmp_path / "env") | NO_PROXY
        kubectl = ["kubectl", "--cache-dir", str(tmp_path / "cache")]
        manifest = (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: plain\n---\n"
            "apiVersion: s3.services.k8s.aws/v1alpha1\nkind: Bucket\n"
            "metadata:\n  name: by-hand\n  namespace: plain\nspec:\n  name: by-hand\n"
        )
        subprocess.run(
            [*kubectl, "apply", "-f", "-"],
            input=manifest.encode(),
            env=env,
            check=True,
            capture_output=True,
        )
        controller = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "carm.cli",
                "run",
                "--kubeconfig",
                env["KUBECONFIG"],
                "--metrics-addr",
                "127.0.0.1:0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        waited = subprocess.run(
            [
                *kubectl,
                "wait",
                "--for=condition=ACK.ResourceSynced",
                "bucket/by-hand",
                "-n",
                "plain",
                "--timeout=60s",
            ],
            env=env,
            capture_output=True,
        )
        assert waited.returncode == 0, waited.stderr.decode()
        controller.terminate()
        _, stderr = controller.communicate(timeout=30)
        assert controller.returncode == 0, stderr.decode()[-3000:]
        assert b"controller ready" in stderr
    finally:
        for process in (controller, sandbox):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
    assert sandbox.returncode == 0
