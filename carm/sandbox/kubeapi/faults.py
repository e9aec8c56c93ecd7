"""Injected faults: error answers for chosen verbs, and added latency.

A rule answers `status` (429 comes with `Retry-After`) to requests of its verbs, optionally
only for one resource plural, for its next `count` matching requests and/or until `seconds`
have passed; a rule with neither limit stays until `clear()`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from carm.clock import Clock, SystemClock
from carm.sandbox.kubeapi.errors import ApiError, for_code

VERBS = frozenset(
    {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
)


@dataclass(slots=True)
class FaultRule:
    verbs: frozenset[str]
    status: int
    plural: str | None
    remaining: int | None  # requests left to fail; None: no count limit
    until: float | None  # clock.monotonic() deadline; None: no time limit

    def matches(self, verb: str, plural: str | None, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return False
        if self.remaining is not None and self.remaining <= 0:
            return False
        return verb in self.verbs and (self.plural is None or self.plural == plural)

    def spent(self, now: float) -> bool:
        return (self.remaining is not None and self.remaining <= 0) or (
            self.until is not None and now >= self.until
        )


class FaultInjector:
    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._rules: list[FaultRule] = []
        self.latency = 0.0

    def add(
        self,
        *,
        verbs: Iterable[str],
        status: int,
        count: int | None = None,
        seconds: float | None = None,
        plural: str | None = None,
    ) -> None:
        chosen = frozenset(verbs)
        unknown = chosen - VERBS
        if unknown:
            raise ValueError(f"unknown verbs {sorted(unknown)}; known: {sorted(VERBS)}")
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error code, not {status}")
        until = self._clock.monotonic() + seconds if seconds is not None else None
        self._rules.append(FaultRule(chosen, status, plural, count, until))

    def clear(self) -> None:
        self._rules.clear()
        self.latency = 0.0

    def check(self, verb: str, plural: str | None) -> ApiError | None:
        """The injected error for this request, if a rule takes it (and counts it)."""
        now = self._clock.monotonic()
        self._rules = [rule for rule in self._rules if not rule.spent(now)]
        for rule in self._rules:
            if rule.matches(verb, plural, now):
                if rule.remaining is not None:
                    rule.remaining -= 1
                return for_code(rule.status)
        return None
