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

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

OUTBOUND_ERROR_NO_STATUS = "-1"
"""`status_code` of an outbound call that failed without an HTTP response (as ACK reports)."""


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

    # -- recording helpers (keep label order in one place) --

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
