"""Prometheus metrics of the controller, in one injectable registry.

`Metrics` owns a `CollectorRegistry` (a fresh one per instance, so tests and several controllers
in one process never share counters) and declares every metric on it. The app builds one
`Metrics` and hands it to the parts that record; the /metrics endpoint renders `registry`.

Label cardinality stays bounded: labels carry AWS account ids, AWS service and operation names
and HTTP status codes, never the names of Kubernetes objects or buckets.

The two `ack_outbound_*` counters keep ACK's names and labels so existing dashboards work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from carm.observability.collectors import (
    UNRESOLVED_ACCOUNT,
    AccountOf,
    ObjectsSource,
    QueueStats,
    ResourceCollector,
    WorkQueueCollector,
    account_label,
)

# Go's client_golang (ACK, controller-runtime) exposes no `*_created` series; neither do we: they
# would double the series of every counter and histogram for no dashboard's benefit.
disable_created_metrics()  # type: ignore[no-untyped-call]

OUTBOUND_ERROR_NO_STATUS = "-1"
"""`status_code` of an outbound call that failed without an HTTP response (as ACK reports)."""

# controller-runtime's buckets, so its dashboards' quantiles mean the same here.
_RECONCILE_TIME_BUCKETS = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7),
    *(0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20),
    *(25, 30, 40, 50, 60),
)
_QUEUE_DURATION_BUCKETS = tuple(1e-8 * 10**i for i in range(12))
# Per account the series multiply by accounts: fewer, coarser buckets.
_ACCOUNT_QUEUE_DURATION_BUCKETS = (0.01, 0.1, 1.0, 10.0, 60.0, 300.0)

# The loop's outcomes in controller-runtime's result vocabulary (a skipped key, e.g. one
# deleted meanwhile, is a successful reconcile there).
_CONTROLLER_RUNTIME_RESULTS = {
    "success": "success",
    "error": "error",
    "requeue": "requeue",
    "skipped": "success",
}


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()

        # -- AWS calls (ACK's names and labels) --
        self.outbound_api_requests = Counter(
            "ack_outbound_api_requests",
            "Total number of outbound AWS API requests made by the controller.",
            ["service", "op_type", "op_id"],
            registry=self.registry,
        )
        self.outbound_api_request_errors = Counter(
            "ack_outbound_api_requests_error",
            "Total number of outbound AWS API requests made by the controller that resulted in "
            "a 4XX or 5XX HTTP status code (-1: no response).",
            ["service", "op_id", "status_code"],
            registry=self.registry,
        )

        # -- STS credentials, per target account --
        self.sts_assume_role = Counter(
            "carm_sts_assume_role",
            "STS AssumeRole calls made by the credential cache, by target account and result "
            "(success or error).",
            ["account", "result"],
            registry=self.registry,
        )
        self.credential_cache_hits = Counter(
            "carm_credential_cache_hits",
            "Credential requests answered from the cache without waiting.",
            ["account"],
            registry=self.registry,
        )
        self.credential_cache_misses = Counter(
            "carm_credential_cache_misses",
            "Credential requests that had to wait for an AssumeRole (their own or one in flight).",
            ["account"],
            registry=self.registry,
        )
        self.credential_expiry = Gauge(
            "carm_credential_expiry_seconds",
            "Seconds until the cached credentials of the account expire.",
            ["account"],
            registry=self.registry,
        )

        # -- CARM configuration --
        self.invalid_mapping_entries = Gauge(
            "carm_invalid_mapping_entries",
            "Entries of a CARM source that cannot be used: keys or values of ConfigMaps "
            "ack-role-account-map and ack-role-team-map, invalid IAMRoleSelectors.",
            ["source"],
            registry=self.registry,
        )

        # -- reconciles and the work queue (controller-runtime's names and labels) --
        self.reconcile_total = Counter(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            ["controller", "result"],
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            ["controller"],
            registry=self.registry,
        )
        self.reconcile_time = Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            ["controller"],
            buckets=_RECONCILE_TIME_BUCKETS,
            registry=self.registry,
        )
        self.workqueue_queue_duration = Histogram(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            ["name"],
            buckets=_QUEUE_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.leader = Gauge(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates "
            "backup, 1 indicates master. 'name' is the string used to identify the lease.",
            ["name"],
            registry=self.registry,
        )

        # -- reconciles per target account (carm's) --
        self.account_reconciles = Counter(
            "carm_reconcile",
            "Reconciles by the AWS account of the resource, kind and result (success, error, "
            "requeue; 'unresolved' when the account could not be resolved).",
            ["account", "kind", "result"],
            registry=self.registry,
        )
        self.account_queue_duration = Histogram(
            "carm_workqueue_queue_duration_seconds",
            "How long keys waited for a worker, by the AWS account they belong to.",
            ["name", "account"],
            buckets=_ACCOUNT_QUEUE_DURATION_BUCKETS,
            registry=self.registry,
        )
        self._accounts: set[str] = set()
        """Accounts seen in the work queue: they keep reporting a depth of 0 when drained."""
        self._work_queues: WorkQueueCollector | None = None
        self._resources: ResourceCollector | None = None

    # -- recording helpers (keep label order in one place) --

    def record_reconcile(
        self, *, controller: str, kind: str, account: str, outcome: str, seconds: float
    ) -> None:
        """One reconcile: `outcome` is the loop's success, error, requeue or skipped."""
        result = _CONTROLLER_RUNTIME_RESULTS.get(outcome, outcome)
        self.reconcile_total.labels(controller, result).inc()
        if result == "error":
            self.reconcile_errors.labels(controller).inc()
        self.reconcile_time.labels(controller).observe(seconds)
        label = account_label(account)
        self._see_account(label)
        self.account_reconciles.labels(label, kind, result).inc()

    def record_dequeue(self, name: str, account: str, waited: float) -> None:
        """A worker took a key that had waited `waited` seconds (the queue's on_dequeue)."""
        label = account_label(account)
        self._see_account(label)
        self.workqueue_queue_duration.labels(name).observe(waited)
        self.account_queue_duration.labels(name, label).observe(waited)

    def _see_account(self, label: str) -> None:
        if label in self._accounts:
            return
        self._accounts.add(label)
        if label != UNRESOLVED_ACCOUNT:
            # Series that exist from the account's first reconcile on, at 0: `rate()` and
            # dashboards see "no cache hits yet" instead of nothing.
            self.credential_cache_hits.labels(label)
            self.credential_cache_misses.labels(label)

    def watch_work_queue(self, name: str, queue: QueueStats) -> None:
        """Report `queue`'s depth, adds and retries (and per account) at every scrape, as
        `name` (one call per kind's work queue)."""
        if self._work_queues is None:
            self._work_queues = WorkQueueCollector(self._accounts)
            self.registry.register(self._work_queues)
        self._work_queues.add(name, queue)

    def watch_resources(self, kind: str, objects: ObjectsSource, account_of: AccountOf) -> None:
        """Report resources by account and condition from the cache at every scrape (one call
        per kind)."""
        if self._resources is None:
            self._resources = ResourceCollector()
            self.registry.register(self._resources)
        self._resources.add(kind, objects, account_of)

    def set_leader(self, lease: str, leading: bool) -> None:
        self.leader.labels(lease).set(1 if leading else 0)

    def record_outbound_call(
        self, *, service: str, op_type: str, op_id: str, status_code: str | None
    ) -> None:
        """One AWS API call; `status_code` is None on success, else the HTTP status (or -1)."""
        self.outbound_api_requests.labels(service, op_type, op_id).inc()
        if status_code is not None:
            self.outbound_api_request_errors.labels(service, op_id, status_code).inc()

    def track_credential_expiry(self, account: str, seconds_left: Callable[[], float]) -> None:
        """Report the live time-to-expiry of `account`'s credentials at every scrape."""
        self.credential_expiry.labels(account).set_function(seconds_left)

    def forget_credential_expiry(self, account: str) -> None:
        with contextlib.suppress(KeyError):  # never tracked, or already forgotten
            self.credential_expiry.remove(account)

    def render(self) -> bytes:
        """The registry in Prometheus' text exposition format (what /metrics serves)."""
        return generate_latest(self.registry)
