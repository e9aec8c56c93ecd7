"""Metrics computed at scrape time from state the controller keeps anyway.

Counting on every change would put metric updates on the hot paths of the work queue and the
caches; reading their state when Prometheus scrapes (every 15-60 s) costs one pass over it and
can never drift from it. Two collectors, each over every resource kind (one metric family
per name: a second collector yielding the same names would make the exposition invalid):

- `WorkQueueCollector`: controller-runtime's `workqueue_depth` and `workqueue_adds_total` /
  `workqueue_retries_total` (the queue counts them itself), and carm's `carm_workqueue_depth`
  and `carm_workqueue_in_flight` per account (the queue's lanes are accounts), for each work
  queue by its `name` (the kind's controller). Accounts seen once keep reporting, with 0, so a
  drained account shows 0 rather than vanishing.
- `ResourceCollector`: `carm_resources` per account and kind, and
  `carm_resource_conditions` per account, kind, condition type and status, from the caches:
  O(number of resources) per scrape, no work per watch event.

Label values are bounded: account ids (from the role map), kinds, ACK's condition types (other
types are not counted), True/False/Unknown. Never an object's name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from carm.events import RawObject
from carm.reconcile.conditions import ConditionType

UNRESOLVED_ACCOUNT = "unresolved"
"""The `account` label of work or resources whose account is not known (yet)."""

_CONDITION_TYPES = frozenset(ConditionType)
_CONDITION_STATUSES = frozenset({"True", "False", "Unknown"})


def account_label(account: str) -> str:
    return account or UNRESOLVED_ACCOUNT


class QueueStats(Protocol):
    """What the collector reads of a `carm.queue.WorkQueue`."""

    @property
    def depth(self) -> int: ...

    adds_total: int
    retries_total: int

    def depth_by_lane(self) -> dict[str, int]: ...

    def in_flight_by_lane(self) -> dict[str, int]: ...


class WorkQueueCollector(Collector):
    def __init__(self, known_accounts: set[str]) -> None:
        self._queues: dict[str, QueueStats] = {}
        self._accounts = known_accounts

    def add(self, name: str, queue: QueueStats) -> None:
        self._queues[name] = queue

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("workqueue_depth", "Current depth of workqueue", labels=["name"])
        adds = CounterMetricFamily(
            "workqueue_adds", "Total number of adds handled by workqueue", labels=["name"]
        )
        retries = CounterMetricFamily(
            "workqueue_retries", "Total number of retries handled by workqueue", labels=["name"]
        )
        by_lane: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
        for name, queue in self._queues.items():
            depth.add_metric([name], queue.depth)
            adds.add_metric([name], queue.adds_total)
            retries.add_metric([name], queue.retries_total)
            waiting = {account_label(lane): n for lane, n in queue.depth_by_lane().items()}
            working = {account_label(lane): n for lane, n in queue.in_flight_by_lane().items()}
            self._accounts.update(waiting, working)
            by_lane[name] = (waiting, working)
        yield from (depth, adds, retries)

        by_account = GaugeMetricFamily(
            "carm_workqueue_depth",
            "Keys waiting for a worker, by the AWS account they belong to.",
            labels=["name", "account"],
        )
        in_flight = GaugeMetricFamily(
            "carm_workqueue_in_flight",
            "Keys a worker is reconciling now, by the AWS account they belong to.",
            labels=["name", "account"],
        )
        for name, (waiting, working) in by_lane.items():
            for account in sorted(self._accounts):
                by_account.add_metric([name, account], waiting.get(account, 0))
                in_flight.add_metric([name, account], working.get(account, 0))
        yield from (by_account, in_flight)


ObjectsSource = Callable[[], Iterable[RawObject]]
AccountOf = Callable[[RawObject], str]


class ResourceCollector(Collector):
    def __init__(self) -> None:
        self._kinds: dict[str, tuple[ObjectsSource, AccountOf]] = {}

    def add(self, kind: str, objects: ObjectsSource, account_of: AccountOf) -> None:
        self._kinds[kind] = (objects, account_of)

    def collect(self) -> Iterator[Metric]:
        resources: Counter[tuple[str, str]] = Counter()
        conditions: Counter[tuple[str, str, str, str]] = Counter()
        for kind, (objects, account_of) in self._kinds.items():
            for obj in objects():
                account = account_label(account_of(obj))
                resources[(account, kind)] += 1
                for condition in (obj.get("status") or {}).get("conditions") or ():
                    type_, status = condition.get("type"), condition.get("status")
                    if type_ in _CONDITION_TYPES and status in _CONDITION_STATUSES:
                        conditions[(account, kind, type_, status)] += 1
        total = GaugeMetricFamily(
            "carm_resources",
            "Resources in the controller's cache, by AWS account and kind.",
            labels=["account", "kind"],
        )
        for labels, count in sorted(resources.items()):
            total.add_metric(list(labels), count)
        by_condition = GaugeMetricFamily(
            "carm_resource_conditions",
            "Resources by AWS account, kind, ACK condition type and condition status.",
            labels=["account", "kind", "condition", "status"],
        )
        for condition_labels, count in sorted(conditions.items()):
            by_condition.add_metric(list(condition_labels), count)
        yield from (total, by_condition)
