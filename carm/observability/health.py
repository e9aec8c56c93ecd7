"""Liveness and readiness checks, as the kubelet's probes and people read them.

- Liveness (`/healthz`): the process and its event loop answer. An HTTP handler that runs at
  all proves the loop is not blocked; a stuck loop fails the probe by its timeout. Nothing
  else is checked: restarting the pod must never be the answer to an outage elsewhere (API
  server, STS), which a restart cannot fix and would make worse with cold caches.
- Readiness (`/readyz`): the controller can do its job: every cache synced, its own AWS
  identity known, every watch stream connected. A standby replica (leader election) is ready:
  its caches are warm, which is what a rolling update waits for.

Each check returns `CheckResult(ok, message)`; the JSON body lists all of them, so
`curl :8081/readyz` says which one fails and why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from carm.clock import Clock


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    message: str = "ok"


Check = Callable[[], CheckResult]


@dataclass(frozen=True, slots=True)
class HealthReport:
    results: dict[str, CheckResult]

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results.values())

    @property
    def failing(self) -> list[str]:
        return [name for name, result in self.results.items() if not result.ok]

    def body(self) -> dict[str, object]:
        return {
            "status": "ok" if self.ok else "failed",
            "failing": self.failing,
            "checks": {
                name: {"ok": result.ok, "message": result.message}
                for name, result in self.results.items()
            },
        }


@dataclass
class HealthChecks:
    """Named readiness checks, registered by parts of the app as they start; liveness is the
    loop answering at all (see the module docstring)."""

    _readiness: dict[str, Check] = field(default_factory=dict)

    def add_readiness(self, name: str, check: Check) -> None:
        self._readiness[name] = check

    def liveness(self) -> HealthReport:
        return HealthReport({"ping": CheckResult(True)})

    def readiness(self) -> HealthReport:
        if not self._readiness:
            return HealthReport({"starting": CheckResult(False, "the controller is starting")})
        return HealthReport(_run(self._readiness))


def _run(checks: dict[str, Check]) -> dict[str, CheckResult]:
    results = {}
    for name, check in checks.items():
        try:
            results[name] = check()
        except Exception as error:  # noqa: BLE001 - a broken check fails, it must not 500
            results[name] = CheckResult(False, f"check failed: {type(error).__name__}: {error}")
    return results


# -- the controller's readiness checks --------------------------------------------------------


class Syncable(Protocol):
    @property
    def synced(self) -> bool: ...


def caches_synced(caches: dict[str, Syncable]) -> Check:
    """Every cache holds its first full list."""

    def check() -> CheckResult:
        waiting = sorted(name for name, cache in caches.items() if not cache.synced)
        if waiting:
            return CheckResult(False, "waiting for the first list of: " + ", ".join(waiting))
        return CheckResult(True, f"{len(caches)} caches synced")

    return check


class WatchConnection(Protocol):
    @property
    def connected(self) -> bool: ...


class WatchesConnected:
    """Every watch stream is open, or was within `grace` seconds.

    A healthy stream is reopened every few minutes (the server's timeout) and for a moment is
    not connected; a failing one backs off for up to 30 s. The check remembers since when each
    stream was seen down (at probe time) so that a reconnect does not flap readiness, and an
    outage shows after `grace` seconds.
    """

    def __init__(
        self, streams: Iterable[tuple[str, WatchConnection]], clock: Clock, grace: float = 5.0
    ) -> None:
        self._streams = list(streams)
        self._clock = clock
        self._grace = grace
        self._down_since: dict[str, float] = {}

    def __call__(self) -> CheckResult:
        now = self._clock.monotonic()
        down = []
        for name, stream in self._streams:
            if stream.connected:
                self._down_since.pop(name, None)
                continue
            since = self._down_since.setdefault(name, now)
            if now - since >= self._grace:
                down.append(f"{name} (for {now - since:.0f}s)")
        if down:
            return CheckResult(False, "watch not connected: " + ", ".join(down))
        return CheckResult(True, f"{len(self._streams)} watches connected")


def known(what: str, value: Callable[[], str | None], missing: str) -> Check:
    """A value the controller learns at start (e.g. its own AWS account) is known."""

    def check() -> CheckResult:
        found = value()
        return CheckResult(True, f"{what}: {found}") if found else CheckResult(False, missing)

    return check
