"""Processes for the operations tests: `carm sandbox --no-controller` and `carm run` replicas,
started as an operator would, observed from outside (logs, HTTP endpoints, kubectl)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from carm.sandbox.authz import Authorizer, AuthorizingProxy, Delay
from tests.e2e.conftest import Sandbox, read_env

CARM = (sys.executable, "-m", "carm.cli")
NO_PROXY = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `predicate` every 50 ms; returns the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def stop(process: subprocess.Popen[bytes], timeout: float = 20) -> int:
    """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@contextmanager
def sandbox_without_controller(state_dir: Path) -> Iterator[Sandbox]:
    """`carm sandbox --no-controller`: the embedded API and moto, for `carm run` by hand."""
    log = (state_dir / "sandbox.log").open("wb")
    process = subprocess.Popen(
        [*CARM, "sandbox", "--no-controller", "--state-dir", str(state_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ | NO_PROXY,
    )
    try:
        wait_until(
            lambda: (state_dir / "ready").exists() or process.poll() is not None, 60, "sandbox"
        )
        assert process.poll() is None, (state_dir / "sandbox.log").read_text()[-3000:]
        env = os.environ | read_env(state_dir / "env") | NO_PROXY
        cache = state_dir / "kubectl-cache"
        yield Sandbox(state_dir, env, cache, process)
    finally:
        code = stop(process)
        log.close()
    assert code == 0, (state_dir / "sandbox.log").read_text()[-3000:]


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


class CarmRun:
    """One `carm run` replica: JSON logs to a file, metrics and probes on free ports."""

    def __init__(
        self, name: str, sandbox: Sandbox, *args: str, kubeconfig: str | None = None
    ) -> None:
        self.name = name
        self.log_path = sandbox.state_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                *CARM,
                "run",
                *("--kubeconfig", kubeconfig or sandbox.env["KUBECONFIG"]),
                *("--metrics-addr", "127.0.0.1:0", "--healthz-addr", "127.0.0.1:0"),
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=sandbox.env,
        )

    def lines(self) -> list[dict[str, Any]]:
        entries = []
        for raw in self.log_path.read_bytes().splitlines():
            try:
                entries.append(orjson.loads(raw))
            except orjson.JSONDecodeError:
                entries.append({"msg": raw.decode(errors="replace")})
        return entries

    def logged(self, msg: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("msg") == msg]

    def wait_logged(self, msg: str, timeout: float = 30) -> dict[str, Any]:
        wait_until(
            lambda: bool(self.logged(msg)) or self.process.poll() is not None,
            timeout,
            f"{self.name} to log {msg!r}",
        )
        assert self.logged(msg), f"{self.name} exited: {self.tail()}"
        return self.logged(msg)[0]

    def url(self, server: str) -> str:
        line = self.wait_logged(
            {"metrics": "serving /metrics", "health": "serving /healthz and /readyz"}[server]
        )
        return f"http://{line['addr']}"

    def metrics(self) -> str:
        return http_get(self.url("metrics") + "/metrics")[1].decode()

    def metric(self, name: str, **labels: str) -> float:
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith((name + "{", name + " ")):
                series, value = line.rsplit(" ", 1)
                if all(f'{k}="{v}"' in series for k, v in labels.items()):
                    total += float(value)
        return total

    def tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


def lease_holder(sandbox: Sandbox) -> str:
    out = sandbox.kubectl(
        "get", "lease", "ack-s3.services.k8s.aws", "-n", "ack-system", "-o", "json", check=False
    )
    try:
        return str((orjson.loads(out).get("spec") or {}).get("holderIdentity") or "")
    except orjson.JSONDecodeError:
        return ""


@contextmanager
def authorizing_proxy(
    upstream: str, authorizer: Authorizer, delay: Delay | None = None
) -> Iterator[AuthorizingProxy]:
    """The RBAC proxy on its own event loop in a thread, so tests stay synchronous."""
    proxy = AuthorizingProxy(upstream, authorizer, delay=delay)
    started = threading.Event()
    loop = asyncio.new_event_loop()
    stopping = asyncio.Event()

    async def serve() -> None:
        async with proxy.running():
            started.set()
            await stopping.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10), "the RBAC proxy did not start"
    try:
        yield proxy
    finally:
        loop.call_soon_threadsafe(stopping.set)
        thread.join(10)
        loop.close()
