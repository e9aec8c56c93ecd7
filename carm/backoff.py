"""Exponential backoff: the one retry schedule behind every retry loop in carm.

The work queue (per key), the reflectors (per watch stream), the credential cache (per role
session) and the controller's own start-up (GetCallerIdentity) all wait `base`, `base x factor`,
`base x factor^2`, ... up to `cap` after consecutive failures; they differ only in parameters
and in how they spread retries apart (jitter). This module is pure: callers count their own
failures and sleep on their own clock, and randomness comes from an injectable
`random.Random` so tests can pin exact schedules.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backoff", "Jitter", "exponential_delay", "proportional_jitter"]

Jitter = Callable[[float], float]
"""Turns a backoff delay into the delay actually used (to spread retries of many callers)."""


def exponential_delay(failures: int, *, base: float, cap: float, factor: float = 2.0) -> float:
    """`base x factor^(failures - 1)`, at most `cap`; fewer than one failure counts as one."""
    try:
        grown = base * factor ** (max(failures, 1) - 1)
    except OverflowError:  # absurd failure counts: 2.0 ** 1100 does not fit a float
        grown = math.inf
    return min(cap, grown)


def proportional_jitter(fraction: float = 0.1, rng: random.Random | None = None) -> Jitter:
    """Jitter that lengthens each delay by up to `fraction` of it (seed `rng` in tests).

    A negative `fraction` shortens each delay by up to that much instead, which keeps the cap a
    true upper bound."""
    source = rng or random.Random()

    def jitter(delay: float) -> float:
        return delay * (1.0 + fraction * source.random())

    return jitter


@dataclass(frozen=True, slots=True)
class Backoff:
    """An exponential schedule with its jitter: base, factor x base, ... up to cap."""

    base: float
    """Delay after the first failure, in seconds."""

    cap: float
    """Longest delay (before jitter), in seconds."""

    factor: float = 2.0
    """Growth of the delay per further consecutive failure."""

    jitter: Jitter | None = None
    """Applied to every delay; None for exact delays."""

    def delay(self, failures: int) -> float:
        """The delay after `failures` consecutive failures (failures >= 1)."""
        exact = exponential_delay(failures, base=self.base, cap=self.cap, factor=self.factor)
        return max(0.0, self.jitter(exact) if self.jitter else exact)
