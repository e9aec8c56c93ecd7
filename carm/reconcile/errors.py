"""How a reconcile step reports that it could not finish.

Both carry a message written for the user: it ends up in the resource's conditions.
"""

from __future__ import annotations

from collections.abc import Sequence

from carm.reconcile.conditions import Condition


class ReconcileError(Exception):
    """A reconcile could not finish; `reason` is a short CamelCase word for the condition.

    `conditions` are written along with the failure ones: facts established before the failure
    that the user should still see (e.g. ACK.IAMRoleSelected when the selected role is denied).
    """

    terminal = False

    def __init__(
        self, message: str, *, reason: str = "", conditions: Sequence[Condition] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or type(self).__name__.removesuffix("Error")
        self.conditions = tuple(conditions)


class TerminalError(ReconcileError):
    """Retrying will not help until someone changes the resource or the configuration.

    carm still retries with a long backoff, because configuration (a namespace annotation, the
    role map) may be fixed outside the resource.
    """

    terminal = True


class RecoverableError(ReconcileError):
    """A passing failure (throttling, a missing mapping, an unreachable endpoint): retried."""

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        retry_after: float | None = None,
        conditions: Sequence[Condition] = (),
    ) -> None:
        super().__init__(message, reason=reason, conditions=conditions)
        self.retry_after = retry_after
