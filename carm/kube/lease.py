"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's algorithm.

Several replicas may run; only the one holding the Lease `ack-s3.services.k8s.aws` reconciles.
Every replica keeps its caches warm (its reflectors run regardless), so a standby that wins the
lease starts working at once, without a cold list.

The record (`spec` of the Lease): `holderIdentity`, `leaseDurationSeconds` (the holder's
promise: "consider me gone this long after my last renewal"), `acquireTime`, `renewTime`,
`leaseTransitions`. Writes are compare-and-swap on `metadata.resourceVersion`, so of two
candidates writing at once exactly one wins.

Why it is safe (no two leaders write at once, even when the API server is slow):

- Nobody trusts another process's clock. A standby dates a renewal by *its own* monotonic clock,
  at the moment it first sees the record change (after the GET returned: never earlier than
  the write), and may take over only `leaseDurationSeconds` after that.
- The leader dates a renewal by the moment it *started* the attempt (never later than the
  write) and stops leading `renew_deadline` after the start of its last successful attempt,
  whether or not the next attempt has come back: a watchdog on the injected clock cancels the
  term (the workers and any reconcile in flight) at that deadline.
- So the leader has stopped at least `lease_duration - renew_deadline` (5 s by default) before
  any standby may start; settings validation requires lease > renew deadline > 1.2 x retry.

Cost of that safety: after the leader dies, a standby takes over between `lease_duration -
retry_period` and `lease_duration + retry_period` after the kill (it sees renewals only when
it polls). A leader that shuts down releases the lease (empty holder), and a standby takes it
at its next poll, within one retry period.

A lost lease ends the term (the workers are cancelled) and the replica goes back to
campaigning, caches still warm; it does not exit as controller-runtime does.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import anyio
import anyio.abc

from carm.clock import Clock
from carm.events import RawObject
from carm.kube.client import LEASES, KubeApiError, KubeError, ResourceRef

log = logging.getLogger("carm.kube.lease")

LEASE_NAME: Final = "ack-s3.services.k8s.aws"
"""ACK's lease name for the S3 controller."""


def default_identity(environ: dict[str, str] | None = None) -> str:
    """`<pod name>_<uuid>` as controller-runtime does: unique per process, readable by people."""
    env = os.environ if environ is None else environ
    return f"{env.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4()}"


@dataclass(frozen=True, slots=True)
class LeaseTimings:
    """controller-runtime's defaults; see the module docstring for how they relate."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > 1.2 * self.retry_period > 0:
            raise ValueError(
                "lease_duration > renew_deadline > 1.2 x retry_period > 0 is required, got "
                f"{self.lease_duration}, {self.renew_deadline}, {self.retry_period}"
            )


class LeaseClient(Protocol):
    """The part of `KubeClient` the elector uses (unit tests substitute an in-memory fake)."""

    async def get(self, ref: ResourceRef, name: str, namespace: str | None = None) -> RawObject: ...

    async def create(
        self, ref: ResourceRef, body: RawObject, namespace: str | None = None
    ) -> RawObject: ...

    async def replace(
        self,
        ref: ResourceRef,
        body: RawObject,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> RawObject: ...


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    holder: str
    """"" when nobody holds the lease (released, or never taken)."""
    duration: float
    acquire_time: str | None
    renew_time: str | None
    transitions: int

    @classmethod
    def of(cls, lease: RawObject, default_duration: float) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration=float(spec.get("leaseDurationSeconds") or default_duration),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def spec(self) -> RawObject:
        return {
            "holderIdentity": self.holder or None,
            "leaseDurationSeconds": math.ceil(self.duration),
            "acquireTime": self.acquire_time,
            "renewTime": self.renew_time,
            "leaseTransitions": self.transitions,
        }


def micro_time(wall: float) -> str:
    """Kubernetes MicroTime: RFC 3339 with microseconds, in UTC."""
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


Term = Callable[[], Awaitable[None]]
"""What to do while leading: runs until it returns (shutdown) or is cancelled (lease lost)."""

LeadershipObserver = Callable[[bool], None]


class LeaderElector:
    def __init__(
        self,
        client: LeaseClient,
        *,
        namespace: str,
        identity: str,
        clock: Clock,
        timings: LeaseTimings | None = None,
        name: str = LEASE_NAME,
        on_change: LeadershipObserver | None = None,
    ) -> None:
        self._client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self._clock = clock
        self.timings = timings or LeaseTimings()
        self._on_change = on_change

        self._observed: LeaseRecord | None = None
        self._observed_at = -math.inf  # our monotonic time when the record last changed
        self._resource_version = ""
        self._deadline = -math.inf  # while leading: when we must have stopped
        self._leading = False
        self.terms = 0
        """Terms started (times this replica became leader)."""

    # -- state ------------------------------------------------------------------------------

    @property
    def leading(self) -> bool:
        """Whether this replica leads now: it won the lease and its renew deadline is ahead."""
        return self._leading and self._clock.monotonic() < self._deadline

    @property
    def observed_holder(self) -> str:
        """The holder in the last record seen ("" for none)."""
        return self._observed.holder if self._observed is not None else ""

    # -- the campaign -----------------------------------------------------------------------

    async def run(self, term: Term) -> None:
        """Campaign for the lease; run `term` while leading. A lost lease cancels `term` and the
        campaign goes on; when `term` returns (shutdown), release the lease and return."""
        while True:
            await self._acquire()
            if await self._lead(term):
                await self._release()
                return

    async def _acquire(self) -> None:
        waiting_for = None
        while True:
            if await self._try_acquire_or_renew():
                return
            holder = self.observed_holder
            if holder and holder != waiting_for:
                log.info(
                    "waiting for the lease held by another replica",
                    extra={"carm": self._context(holder=holder)},
                )
                waiting_for = holder
            await self._clock.sleep(self._next_try_in())

    def _next_try_in(self) -> float:
        """Poll every retry period, but try right when the holder's lease runs out."""
        retry = self.timings.retry_period
        if self._observed is None or not self._observed.holder:
            return retry
        expires_in = self._observed_at + self._observed.duration - self._clock.monotonic()
        # Already expired but not won (a failed or lost attempt): back to the normal pace.
        return retry if expires_in <= 0 else min(retry, expires_in)

    async def _lead(self, term: Term) -> bool:
        """One term; True when `term` returned (shutdown), False when the lease was lost."""
        self._set_leading(True)
        finished = False
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._watchdog, group.cancel_scope)
                group.start_soon(self._renew_loop, group.cancel_scope)
                await term()
                finished = True
                group.cancel_scope.cancel()
        finally:
            self._set_leading(False)
        if not finished:
            holder = self.observed_holder
            why = (
                f"{holder} holds it now"
                if holder not in ("", self.identity)
                else f"no renewal succeeded within {self.timings.renew_deadline:g}s"
            )
            log.warning(
                "lost the lease (%s): reconciles stopped, campaigning again",
                why,
                extra={"carm": self._context()},
            )
        return finished

    async def _renew_loop(self, term_scope: anyio.CancelScope) -> None:
        while True:
            await self._clock.sleep(self.timings.retry_period)
            renewed = await self._try_acquire_or_renew()
            if not renewed and self.observed_holder not in ("", self.identity):
                # Someone else holds it (we were too slow, or an operator took it): stop now
                # rather than at the deadline.
                term_scope.cancel()
                return

    async def _watchdog(self, term_scope: anyio.CancelScope) -> None:
        """Cancel the term when the renew deadline passes (the renew loop moves it ahead)."""
        while (remaining := self._deadline - self._clock.monotonic()) > 0:
            await self._clock.sleep(remaining)
        term_scope.cancel()

    def _set_leading(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        if leading:
            self.terms += 1
            log.info("became the leader", extra={"carm": self._context()})
        if self._on_change is not None:
            self._on_change(leading)

    # -- one attempt ------------------------------------------------------------------------

    async def _try_acquire_or_renew(self) -> bool:
        started = self._clock.monotonic()
        try:
            return await self._attempt(started)
        except KubeError as error:
            if isinstance(error, KubeApiError) and error.conflict:
                return False  # another replica wrote first: read again next time
            log.warning(
                "cannot read or write the lease: %s",
                error,
                extra={"carm": self._context(leading=self._leading)},
            )
            return False

    async def _attempt(self, started: float) -> bool:
        wall = micro_time(self._clock.wall())
        try:
            lease = await self._client.get(LEASES, self.name, self.namespace)
        except KubeApiError as error:
            if not error.not_found:
                raise
            record = LeaseRecord(self.identity, self.timings.lease_duration, wall, wall, 0)
            created = await self._client.create(LEASES, self._body(record, None), self.namespace)
            self._won(created, record, started)
            return True
        current = LeaseRecord.of(lease, self.timings.lease_duration)
        if current != self._observed:
            # Dated on our clock, after the GET returned: never before the holder wrote it.
            self._observed, self._observed_at = current, self._clock.monotonic()
        self._resource_version = str((lease.get("metadata") or {}).get("resourceVersion") or "")
        if current.holder and current.holder != self.identity and not self._expired(current):
            return False
        ours = current.holder == self.identity
        record = LeaseRecord(
            holder=self.identity,
            duration=self.timings.lease_duration,
            acquire_time=current.acquire_time if ours else wall,
            renew_time=wall,
            transitions=current.transitions if ours else current.transitions + 1,
        )
        replaced = await self._client.replace(
            LEASES, self._body(record, self._resource_version), self.namespace
        )
        self._won(replaced, record, started)
        return True

    def _expired(self, record: LeaseRecord) -> bool:
        return self._clock.monotonic() >= self._observed_at + record.duration

    def _won(self, lease: RawObject, record: LeaseRecord, started: float) -> None:
        self._observed, self._observed_at = record, started
        self._resource_version = str((lease.get("metadata") or {}).get("resourceVersion") or "")
        # Dated by when the attempt started: the write cannot have happened earlier.
        self._deadline = started + self.timings.renew_deadline

    def _body(self, record: LeaseRecord, resource_version: str | None) -> RawObject:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if resource_version:
            metadata["resourceVersion"] = resource_version
        return {
            "apiVersion": LEASES.api_version,
            "kind": "Lease",
            "metadata": metadata,
            "spec": record.spec(),
        }

    # -- hand-over --------------------------------------------------------------------------

    async def _release(self) -> None:
        """Clear the holder so a standby takes over at its next poll (bounded: one retry
        period past the renew deadline at most, as shutdown must not hang on a dead server)."""
        if self._observed is None or self._observed.holder != self.identity:
            return
        wall = micro_time(self._clock.wall())
        released = LeaseRecord("", 1.0, wall, wall, self._observed.transitions)
        body = self._body(released, self._resource_version)
        async with anyio.create_task_group() as group:

            async def give_up() -> None:
                await self._clock.sleep(self.timings.retry_period)
                group.cancel_scope.cancel()

            group.start_soon(give_up)
            try:
                await self._client.replace(LEASES, body, self.namespace)
            except KubeError as error:
                # A conflict means someone else took it already; otherwise it expires anyway.
                log.warning("could not release the lease: %s", error, extra=self._log())
            else:
                self._observed = released
                log.info("released the lease", extra=self._log())
            group.cancel_scope.cancel()

    def _log(self) -> dict[str, dict[str, object]]:
        return {"carm": self._context()}

    def _context(self, **fields: object) -> dict[str, object]:
        return {
            "lease": f"{self.namespace}/{self.name}",
            "identity": self.identity,
            **fields,
        }
