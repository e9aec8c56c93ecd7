"""Leader election on a fake clock with an in-memory Lease API: one leader at a time, also when
the API server is slow or unreachable; take-over after a crash within the lease duration (plus
one poll); immediate hand-over on shutdown."""

from __future__ import annotations

import copy
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carm.clock import FakeClock
from carm.events import RawObject
from carm.kube.client import KubeApiError, KubeConnectionError, ResourceRef
from carm.kube.lease import LEASE_NAME, LeaderElector, LeaseTimings

NAMESPACE = "ack-system"
TIMINGS = LeaseTimings(lease_duration=15.0, renew_deadline=10.0, retry_period=2.0)


class FakeLeaseApi:
    """Leases in memory with the API server's compare-and-swap."""

    def __init__(self) -> None:
        self.objects: dict[str, RawObject] = {}
        self.version = 0

    def get(self, name: str) -> RawObject:
        if name not in self.objects:
            raise KubeApiError(404, "NotFound", f"leases {name!r} not found")
        return copy.deepcopy(self.objects[name])

    def create(self, body: RawObject) -> RawObject:
        name = body["metadata"]["name"]
        if name in self.objects:
            raise KubeApiError(409, "AlreadyExists", f"leases {name!r} already exists")
        return self._store(body)

    def replace(self, body: RawObject) -> RawObject:
        current = self.objects[body["metadata"]["name"]]["metadata"]["resourceVersion"]
        if body["metadata"].get("resourceVersion") != current:
            raise KubeApiError(409, "Conflict", "the object has been modified")
        return self._store(body)

    def _store(self, body: RawObject) -> RawObject:
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.objects[stored["metadata"]["name"]] = stored
        return copy.deepcopy(stored)

    @property
    def holder(self) -> str | None:
        lease = self.objects.get(LEASE_NAME)
        return None if lease is None else lease["spec"]["holderIdentity"]

    @property
    def transitions(self) -> int:
        return int(self.objects[LEASE_NAME]["spec"]["leaseTransitions"])


class Connection:
    """One replica's way to the API: a request takes `up` seconds of fake time to reach the
    server (where it is applied at once), the answer `back` seconds to return; while `down`,
    requests fail on the way there."""

    def __init__(self, api: FakeLeaseApi, clock: FakeClock) -> None:
        self.api = api
        self.clock = clock
        self.up = 0.0
        self.back = 0.0
        self.down = False

    async def _call(self, apply: Callable[[], RawObject]) -> RawObject:
        if self.up:
            await self.clock.sleep(self.up)
        if self.down:
            raise KubeConnectionError("connection refused")
        try:
            result = apply()
        finally:
            if self.back:
                await self.clock.sleep(self.back)
        return result

    async def get(self, ref: ResourceRef, name: str, namespace: str | None = None) -> RawObject:
        return await self._call(lambda: self.api.get(name))

    async def create(
        self, ref: ResourceRef, body: RawObject, namespace: str | None = None
    ) -> RawObject:
        return await self._call(lambda: self.api.create(body))

    async def replace(
        self,
        ref: ResourceRef,
        body: RawObject,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> RawObject:
        return await self._call(lambda: self.api.replace(body))


@dataclass
class Replica:
    """One elector whose term records when it leads and can be told to finish (shutdown)."""

    elector: LeaderElector
    clock: FakeClock
    connection: Connection
    terms: list[tuple[float, float | None]] = field(default_factory=list)
    shutdown: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope | None = None
    returned: bool = False

    @property
    def working(self) -> bool:
        return bool(self.terms) and self.terms[-1][1] is None

    async def term(self) -> None:
        self.terms.append((self.clock.monotonic(), None))
        try:
            await self.shutdown.wait()
        finally:
            self.terms[-1] = (self.terms[-1][0], self.clock.monotonic())

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        with anyio.CancelScope() as self.scope:
            task_status.started()
            await self.elector.run(self.term)
            self.returned = True

    def kill(self) -> None:
        """SIGKILL: the process vanishes, nothing is released."""
        assert self.scope is not None
        self.scope.cancel()


@asynccontextmanager
async def cluster(
    count: int, timings: LeaseTimings = TIMINGS, latency: float = 0.0
) -> AsyncIterator[tuple[FakeClock, FakeLeaseApi, list[Replica]]]:
    clock = FakeClock()
    api = FakeLeaseApi()
    replicas = []
    for i in range(count):
        connection = Connection(api, clock)
        connection.up = connection.back = latency / 2
        elector = LeaderElector(
            connection, namespace=NAMESPACE, identity=f"replica-{i}", clock=clock, timings=timings
        )
        replicas.append(Replica(elector, clock, connection))
    async with anyio.create_task_group() as group:
        for replica in replicas:
            await group.start(replica.run)
        await clock.settle()
        yield clock, api, replicas
        group.cancel_scope.cancel()


async def advance_checking(
    clock: FakeClock, api: FakeLeaseApi, reps: list[Replica], s: float
) -> None:
    """Advance in small steps; never two replicas working at once."""
    steps = round(s / 0.1)
    for _ in range(steps):
        await clock.advance(0.1)
        working = [r.elector.identity for r in reps if r.working]
        assert len(working) <= 1, f"two leaders at {clock.monotonic()}: {working}"


async def test_the_first_replica_creates_the_lease_and_the_second_waits() -> None:
    async with cluster(2) as (clock, api, (a, b)):
        assert api.holder == "replica-0" and a.working and a.elector.leading
        await advance_checking(clock, api, [a, b], 60)
        assert not b.terms, "the standby must not work while the leader renews"
        assert a.elector.terms == 1 and api.transitions == 0
        spec = api.objects[LEASE_NAME]["spec"]
        assert spec["leaseDurationSeconds"] == 15
        assert spec["renewTime"].endswith("Z") and spec["acquireTime"] <= spec["renewTime"]


async def test_after_a_crash_the_standby_takes_over_within_the_lease_duration_and_a_poll() -> None:
    async with cluster(2) as (clock, api, (a, b)):
        await advance_checking(clock, api, [a, b], 7.3)
        killed_at = clock.monotonic()
        a.kill()
        await advance_checking(clock, api, [a, b], 20)
        assert b.terms, "the standby never took over"
        took_over = b.terms[0][0] - killed_at
        period = TIMINGS.retry_period
        assert TIMINGS.lease_duration - period <= took_over <= TIMINGS.lease_duration + period
        assert api.holder == "replica-1" and api.transitions == 1


async def test_a_leader_that_cannot_renew_stops_before_its_lease_can_expire() -> None:
    async with cluster(2) as (clock, api, (a, b)):
        await advance_checking(clock, api, [a, b], 5.0)
        last_renewal_started = 4.0 + 1_000.0  # renewals every 2 s from t=1000
        a.connection.down = b.connection.down = True
        await advance_checking(clock, api, [a, b], 30)
        stopped = a.terms[0][1]
        assert stopped is not None
        assert stopped == pytest.approx(last_renewal_started + TIMINGS.renew_deadline)
        assert not b.terms, "nobody can take over while the API is down"
        a.connection.down = b.connection.down = False
        await advance_checking(clock, api, [a, b], 30)
        # Both poll; whoever comes first wins, and only after the lease ran out.
        winner = a if len(a.terms) > 1 else b
        assert winner.terms[-1][0] >= last_renewal_started + TIMINGS.lease_duration


async def test_shutdown_releases_the_lease_and_the_standby_takes_over_at_its_next_poll() -> None:
    async with cluster(2) as (clock, api, (a, b)):
        await advance_checking(clock, api, [a, b], 9.0)
        a.shutdown.set()
        await clock.settle()
        assert a.returned and api.holder is None
        released_at = clock.monotonic()
        await advance_checking(clock, api, [a, b], 3.0)
        assert b.terms and b.terms[0][0] - released_at <= TIMINGS.retry_period
        assert api.transitions == 1


async def test_another_holder_in_the_record_ends_the_term_at_the_next_renewal() -> None:
    async with cluster(1) as (clock, api, (a,)):
        lease = api.objects[LEASE_NAME]
        lease["spec"]["holderIdentity"] = "an-operator"
        lease["metadata"]["resourceVersion"] = "999"
        await clock.advance(TIMINGS.retry_period)
        assert not a.working and not a.elector.leading
        await clock.advance(TIMINGS.lease_duration + TIMINGS.retry_period)
        assert a.working and api.holder == "replica-0", "it takes the lease once it runs out"


async def test_candidates_starting_together_elect_one_leader() -> None:
    async with cluster(5, latency=1.0) as (clock, api, replicas):
        await advance_checking(clock, api, replicas, 30)
        assert sum(bool(r.terms) for r in replicas) == 1


async def test_a_leader_back_from_an_outage_leads_again_in_a_new_term() -> None:
    async with cluster(1) as (clock, api, (a,)):
        a.connection.down = True
        await clock.advance(15)
        assert not a.working
        a.connection.down = False
        await clock.advance(TIMINGS.retry_period)
        assert a.working and a.elector.terms == 2
        assert api.transitions == 0, "its own lease: no transition"


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1))
def test_never_two_leaders_with_a_slow_flaky_api_and_crashes(seed: int) -> None:
    """Random latency (up to longer than the renew deadline), outages and crashes: at no moment
    do two replicas work."""

    async def scenario() -> None:
        rng = random.Random(seed)
        async with cluster(3) as (clock, api, replicas):
            for _ in range(30):
                for replica in replicas:
                    # Each way on its own: a fast request with a slow answer is the hard case.
                    replica.connection.up = rng.choice([0.0, 0.2, 3.0, 12.0])
                    replica.connection.back = rng.choice([0.0, 0.2, 3.0, 12.0])
                    replica.connection.down = rng.random() < 0.2
                if rng.random() < 0.05:
                    alive = [r for r in replicas if r.scope and not r.scope.cancel_called]
                    if len(alive) > 1:
                        rng.choice(alive).kill()
                await advance_checking(clock, api, replicas, rng.choice([0.5, 2.0, 5.0]))

    anyio.run(scenario)


def test_timings_must_leave_the_leader_time_to_stop() -> None:
    with pytest.raises(ValueError, match="lease_duration > renew_deadline"):
        LeaseTimings(lease_duration=10, renew_deadline=10, retry_period=2)
    with pytest.raises(ValueError):
        LeaseTimings(lease_duration=15, renew_deadline=2, retry_period=2)
