"""End-to-end fixtures: `carm sandbox` started as a user would start it, plus kubectl and AWS
helpers that look at the result from outside the controller's process."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest

READY_TIMEOUT = 60.0


@dataclass
class Sandbox:
    state_dir: Path
    env: dict[str, str]
    cache_dir: Path
    process: subprocess.Popen[bytes]

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        kubectl = shutil.which("kubectl")
        assert kubectl is not None, "kubectl is required for end-to-end tests"
        result = subprocess.run(
            [kubectl, "--cache-dir", str(self.cache_dir), *args],
            input=stdin.encode() if stdin is not None else None,
            capture_output=True,
            env=self.env,
            timeout=120,
        )
        output = (result.stdout + result.stderr).decode()
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {output}")
        return result.stdout.decode() if check else output

    def shell(self, script: str) -> str:
        """Run a shell snippet as a user would, with the sandbox's env sourced."""
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", f"source {self.state_dir / 'env'}\n{script}"],
            capture_output=True,
            env=self.env | {"KUBECACHEDIR": str(self.cache_dir)},
            timeout=120,
        )
        output = (result.stdout + result.stderr).decode()
        assert result.returncode == 0, f"shell step failed: {script}\n{output}"
        return output

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        args = ["get", kind, name, "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        return dict(orjson.loads(self.kubectl(*args)))

    def metrics(self) -> str:
        url = (self.state_dir / "metrics-url").read_text().strip()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=10) as response:
            return str(response.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        total = 0.0
        for line in self.metrics().splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            series, value = line.rsplit(" ", 1)
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
        return total

    def _aws(self, service: str, **credentials: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            region_name=self.env["AWS_REGION"],
            aws_access_key_id=credentials.get("key", self.env["AWS_ACCESS_KEY_ID"]),
            aws_secret_access_key=credentials.get("secret", self.env["AWS_SECRET_ACCESS_KEY"]),
            aws_session_token=credentials.get("token"),
        )

    def buckets_of(self, account_id: str) -> set[str]:
        """Buckets that `account_id` owns, listed as that account (the controller's own keys
        for its own account, a role assumed in the account for any other)."""
        own = self._aws("sts").get_caller_identity()["Account"]
        if account_id == own:
            s3 = self._aws("s3")
        else:
            issued = self._aws("sts").assume_role(
                RoleArn=f"arn:aws:iam::{account_id}:role/e2e-inspector",
                RoleSessionName="e2e-inspector",
            )["Credentials"]
            s3 = self._aws(
                "s3",
                key=issued["AccessKeyId"],
                secret=issued["SecretAccessKey"],
                token=issued["SessionToken"],
            )
        return {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}


def read_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0] if value else ""
    return env


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    state_dir = tmp_path_factory.mktemp("sandbox")
    log = (state_dir / "sandbox.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "carm.cli",
            "sandbox",
            "--state-dir",
            str(state_dir),
            "--log-format",
            "json",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ | {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"},
    )
    deadline = time.monotonic() + READY_TIMEOUT
    while not (state_dir / "ready").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(
                "carm sandbox did not become ready:\n"
                + (state_dir / "sandbox.log").read_text()[-5000:]
            )
        time.sleep(0.1)
    env = os.environ | read_env(state_dir / "env") | {"NO_PROXY": "127.0.0.1,localhost"}
    yield Sandbox(state_dir, env, tmp_path_factory.mktemp("kubectl-cache"), process)
    process.terminate()
    try:
        code = process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    assert code == 0, (
        "carm sandbox did not exit cleanly on SIGTERM:\n"
        + (state_dir / "sandbox.log").read_text()[-5000:]
    )
