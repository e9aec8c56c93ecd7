"""controller-runtime's reconcile and workqueue metrics and carm's per-account ones, read the way
Prometheus reads them (the text exposition), from a real work queue and cache contents."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from carm.clock import FakeClock
from carm.events import ObjectKey, RawObject
from carm.observability.metrics import Metrics
from carm.queue import WorkQueue

A, B = "111111111111", "222222222222"


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(metrics: Metrics, metric: str, **labels: str) -> float | None:
    return samples(metrics).get((metric, frozenset(labels.items())))


def test_reconcile_results_in_controller_runtimes_words_and_per_account() -> None:
    metrics = Metrics()
    for outcome, account in (("success", A), ("error", A), ("skipped", ""), ("requeue", B)):
        metrics.record_reconcile(
            controller="bucket", kind="Bucket", account=account, outcome=outcome, seconds=0.2
        )
    assert (
        value(metrics, "controller_runtime_reconcile_total", controller="bucket", result="success")
        == 2
    )
    assert value(metrics, "controller_runtime_reconcile_errors_total", controller="bucket") == 1
    assert (
        value(metrics, "controller_runtime_reconcile_time_seconds_count", controller="bucket") == 4
    )
    assert value(metrics, "carm_reconcile_total", account=A, kind="Bucket", result="error") == 1
    # An account's credential series exist from its first reconcile on, at 0.
    assert value(metrics, "carm_credential_cache_hits_total", account=B) == 0
    assert value(metrics, "carm_credential_cache_hits_total", account="unresolved") is None
    assert value(metrics, "carm_reconcile_total", account=B, kind="Bucket", result="requeue") == 1
    assert (
        value(
            metrics, "carm_reconcile_total", account="unresolved", kind="Bucket", result="success"
        )
        == 1
    )


async def test_work_queue_depth_adds_retries_and_waits_per_account() -> None:
    clock = FakeClock()
    metrics = Metrics()
    queue = WorkQueue(
        clock=clock,
        max_concurrent=4,
        on_dequeue=lambda lane, waited: metrics.record_dequeue("bucket", lane, waited),
    )
    metrics.watch_work_queue("bucket", queue)
    for i in range(3):
        queue.add(ObjectKey("prod", f"a{i}"), lane=A)
    queue.add(ObjectKey("dev", "b0"), lane=B)
    assert value(metrics, "workqueue_depth", name="bucket") == 4
    assert value(metrics, "carm_workqueue_depth", name="bucket", account=A) == 3
    await clock.advance(2)
    key = queue.get_nowait()
    queue.requeue_with_backoff(key)
    queue.done(key)
    assert value(metrics, "workqueue_adds_total", name="bucket") == 4
    assert value(metrics, "workqueue_retries_total", name="bucket") == 1
    assert value(metrics, "workqueue_queue_duration_seconds_count", name="bucket") == 1
    assert value(metrics, "workqueue_queue_duration_seconds_sum", name="bucket") == 2
    for _ in range(3):
        queue.done(queue.get_nowait())
    # A drained account keeps reporting 0 rather than vanishing from dashboards.
    assert value(metrics, "carm_workqueue_depth", name="bucket", account=B) == 0
    assert value(metrics, "carm_workqueue_in_flight", name="bucket", account=A) == 0


def test_resources_by_account_and_condition_with_bounded_labels() -> None:
    metrics = Metrics()

    def bucket(namespace: str, name: str, *conditions: tuple[str, str]) -> RawObject:
        return {
            "metadata": {"namespace": namespace, "name": name},
            "status": {"conditions": [{"type": t, "status": s} for t, s in conditions]},
        }

    cache = [
        bucket("prod", "one", ("ACK.ResourceSynced", "True"), ("Ready", "True")),
        bucket("prod", "two", ("ACK.ResourceSynced", "False"), ("ACK.Terminal", "True")),
        bucket("dev", "three", ("SomethingElse", "True")),
        bucket("nowhere", "four"),
    ]
    accounts = {"prod": A, "dev": B}
    metrics.watch_resources(
        "Bucket", lambda: cache, lambda obj: accounts.get(obj["metadata"]["namespace"], "")
    )
    assert value(metrics, "carm_resources", account=A, kind="Bucket") == 2
    assert value(metrics, "carm_resources", account="unresolved", kind="Bucket") == 1
    synced = {"account": A, "kind": "Bucket", "condition": "ACK.ResourceSynced"}
    assert value(metrics, "carm_resource_conditions", **synced, status="True") == 1
    assert value(metrics, "carm_resource_conditions", **synced, status="False") == 1
    text = metrics.render().decode()
    assert "SomethingElse" not in text, "only ACK's condition types become label values"
    assert '"one"' not in text and "three" not in text, "never an object's name"


def test_no_created_series_doubles_the_counters() -> None:
    metrics = Metrics()
    metrics.record_reconcile(
        controller="bucket", kind="Bucket", account=A, outcome="success", seconds=1
    )
    assert "_created" not in metrics.render().decode()


def test_every_kind_reports_in_one_metric_family_per_name() -> None:
    """One work queue and one cache per kind, as ACK has one controller per kind: each is a
    label value of the same families (a family repeated in one scrape is invalid exposition)."""
    clock = FakeClock()
    metrics = Metrics()
    for name, lane in (("bucket", A), ("queue", B)):
        queue = WorkQueue(clock=clock)
        queue.add(ObjectKey("prod", "orders"), lane=lane)
        metrics.watch_work_queue(name, queue)
    caches = {"Bucket": ("prod", "dev"), "Queue": ("prod",)}
    for kind, namespaces in caches.items():
        objects = [{"metadata": {"namespace": ns, "name": "orders"}} for ns in namespaces]
        metrics.watch_resources(kind, lambda objects=objects: objects, lambda obj: A)
    types = [line for line in metrics.render().decode().splitlines() if line.startswith("# TYPE")]
    assert len(types) == len(set(types)), "a family appears twice"
    assert value(metrics, "workqueue_depth", name="bucket") == 1
    assert value(metrics, "workqueue_depth", name="queue") == 1
    assert value(metrics, "carm_workqueue_depth", name="queue", account=B) == 1
    assert value(metrics, "carm_workqueue_depth", name="queue", account=A) == 0
    assert value(metrics, "carm_resources", account=A, kind="Bucket") == 2
    assert value(metrics, "carm_resources", account=A, kind="Queue") == 1
