"""The embedded server's fault injection and restarts, as kubectl experiences them.

These need the server's Python handle, so each test runs a private embedded server in a thread
(`private_server`); they skip against a real cluster.
"""

from __future__ import annotations

import json
import time

import pytest

from .harness import EmbeddedThread, Kubectl

pytestmark = pytest.mark.kubectl

Private = tuple[EmbeddedThread, Kubectl]


def test_throttling_is_retried_by_kubectl(private_server: Private) -> None:
    server, kubectl = private_server
    kubectl("create", "configmap", "patient", "-n", "default")
    server.call(server.server.inject_errors, verbs=["get"], status=429, count=2)

    began = time.monotonic()
    out = kubectl("get", "configmap", "patient", "-n", "default", "-o", "name")

    # client-go honours Retry-After on 429: it waits and retries instead of failing.
    assert out.strip() == "configmap/patient"
    assert time.monotonic() - began >= 1.0


def test_internal_errors_reach_the_user(private_server: Private) -> None:
    server, kubectl = private_server
    server.call(server.server.inject_errors, verbs=["create"], status=500, count=1)

    err = kubectl.fails("create", "configmap", "unlucky", "-n", "default")
    kubectl("create", "configmap", "unlucky", "-n", "default")

    assert "Internal error occurred: injected fault" in err


def test_faults_for_a_time_window_then_recover(private_server: Private) -> None:
    server, kubectl = private_server
    server.call(server.server.inject_errors, verbs=["list"], status=500, seconds=1.0)

    during = kubectl.run("get", "configmaps", "-n", "default")
    time.sleep(1.2)
    after = kubectl.run("get", "configmaps", "-n", "default")

    assert not during.ok
    assert "InternalError" in during.stderr
    assert after.ok, after.stderr


def test_faults_limited_to_one_resource(private_server: Private) -> None:
    server, kubectl = private_server
    server.call(server.server.inject_errors, verbs=["list"], status=500, count=5, plural="secrets")

    secrets = kubectl.run("get", "secrets", "-n", "default")
    config_maps = kubectl.run("get", "configmaps", "-n", "default")
    server.call(server.server.clear_faults)
    cleared = kubectl.run("get", "secrets", "-n", "default")

    assert not secrets.ok
    assert config_maps.ok, config_maps.stderr
    assert cleared.ok, cleared.stderr


def test_latency_trips_kubectl_request_timeout(private_server: Private) -> None:
    server, kubectl = private_server
    kubectl("get", "namespaces")  # discovery cached before the server slows down
    server.call(server.server.set_latency, 2.0)

    slow = kubectl.run("get", "namespaces", "--request-timeout=500ms")
    server.call(server.server.set_latency, 0.0)
    fast = kubectl.run("get", "namespaces", "--request-timeout=5s")

    assert not slow.ok
    assert "timeout" in slow.stderr.lower() or "deadline" in slow.stderr.lower()
    assert fast.ok, fast.stderr


def test_dropped_watches_end_kubectl_get_watch(private_server: Private) -> None:
    server, kubectl = private_server
    kubectl("create", "configmap", "watched", "-n", "default")

    with kubectl.spawn("get", "configmaps", "-n", "default", "--watch", "-o", "name") as watch:
        assert watch.next_line() == "configmap/watched"
        # kubectl opens its watch right after printing the list: drop until it has one to lose.
        for _ in range(20):
            server.call(server.server.drop_watches)
            code = watch.exited(timeout=0.5)
            if code is not None:
                break

    assert code is not None, "kubectl kept watching a stream the server closed"


def test_compaction_expires_old_resource_versions(private_server: Private) -> None:
    server, kubectl = private_server
    base = "/api/v1/namespaces/default/configmaps"
    old = kubectl.raw(base)["metadata"]["resourceVersion"]
    kubectl("create", "configmap", "a", "-n", "default")
    kubectl("create", "configmap", "b", "-n", "default")
    first_page = kubectl.raw(f"{base}?limit=1")
    kubectl("create", "configmap", "c", "-n", "default")
    server.call(server.server.compact)

    watch = kubectl.run("get", "--raw", f"{base}?watch=1&resourceVersion={old}&timeoutSeconds=1")
    page = kubectl.run(
        "get", "--raw", f"{base}?limit=1&continue={first_page['metadata']['continue']}"
    )

    # As the apiserver: the watch is accepted, then ends with an ERROR event holding a 410.
    assert watch.ok, watch.stderr
    (event,) = [json.loads(line) for line in watch.stdout.splitlines()]
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410
    assert event["object"]["reason"] == "Expired"
    assert event["object"]["message"].startswith(f"too old resource version: {old}")
    assert not page.ok
    assert "Error from server (Expired)" in page.stderr
    assert "The provided continue parameter is too old" in page.stderr


def test_restart_keeps_objects_and_versions(private_server: Private) -> None:
    server, kubectl = private_server
    kubectl("create", "configmap", "durable", "-n", "default", "--from-literal=a=1")
    before = kubectl.json("get", "configmap", "durable", "-n", "default")

    server.call(server.server.stop)
    down = kubectl.run("get", "configmap", "durable", "-n", "default", "--request-timeout=2s")
    server.call(server.server.start)
    after = kubectl.json("get", "configmap", "durable", "-n", "default")
    kubectl("create", "configmap", "newer", "-n", "default")
    newer = kubectl.json("get", "configmap", "newer", "-n", "default")

    assert not down.ok
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert int(newer["metadata"]["resourceVersion"]) > int(after["metadata"]["resourceVersion"])
