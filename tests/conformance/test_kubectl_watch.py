"""Watches: `kubectl get --watch`, and raw watch streams read through `kubectl get --raw`.

The watched kind is Secret: a real cluster adds ConfigMaps (and ServiceAccounts) of its own to
every new namespace, which would show up in the streams; it adds no Secrets.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from .harness import Kubectl, unique_name

pytestmark = pytest.mark.kubectl

EVENTS = (
    "jsonpath={.type} {.object.metadata.namespace}/{.object.metadata.name} "
    "{.object.metadata.labels.v}\n"
)


def secrets(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/secrets"


def put_secret(kubectl: Kubectl, name: str, namespace: str, **labels: str) -> None:
    """Creates (or changes the labels of) a Secret."""
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
    }
    kubectl("apply", "-f", "-", input=json.dumps(body))


def list_version(kubectl: Kubectl, path: str) -> str:
    version: str = kubectl.raw(path)["metadata"]["resourceVersion"]
    return version


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(event["type"], event["object"]["metadata"].get("name", "")) for event in events]


def test_get_watch_prints_changes_as_they_happen(kubectl: Kubectl, namespace: str) -> None:
    put_secret(kubectl, "before", namespace, v="0")

    with kubectl.spawn(
        "get", "secrets", "-n", namespace, "--watch", "--output-watch-events", "-o", EVENTS
    ) as watch:
        first = watch.next_line()
        put_secret(kubectl, "during", namespace, v="1")
        created = watch.next_line()
        kubectl("label", "secret", "during", "-n", namespace, "v=2", "--overwrite")
        modified = watch.next_line()
        kubectl("delete", "secret", "during", "-n", namespace)
        deleted = watch.next_line()

    assert first == f"ADDED {namespace}/before 0"
    assert created == f"ADDED {namespace}/during 1"
    assert modified == f"MODIFIED {namespace}/during 2"
    assert deleted == f"DELETED {namespace}/during 2"


def test_get_watch_all_namespaces_sees_every_namespace(kubectl: Kubectl) -> None:
    mark = unique_name("mark")
    spaces = [unique_name("watched"), unique_name("watched")]
    for ns in spaces:
        kubectl("create", "namespace", ns)
    try:
        with kubectl.spawn(
            "get",
            "secrets",
            "-A",
            "-l",
            f"mark={mark}",
            "--watch",
            "--output-watch-events",
            "-o",
            EVENTS,
        ) as watch:
            time.sleep(0.5)  # the initial (empty) list prints nothing: give the watch time to open
            for ns in spaces:
                put_secret(kubectl, "seen", ns, v="1")
                kubectl("label", "secret", "seen", "-n", ns, f"mark={mark}")
            lines = [watch.next_line(), watch.next_line()]
    finally:
        kubectl("delete", "namespace", *spaces, "--wait=false")

    # Labelling makes an object enter the selection: the watch reports it as ADDED.
    assert lines == [f"ADDED {ns}/seen 1" for ns in spaces]


def test_get_watch_only_shows_later_changes(kubectl: Kubectl, namespace: str) -> None:
    put_secret(kubectl, "old", namespace)

    with kubectl.spawn("get", "secrets", "-n", namespace, "--watch-only", "-o", "name") as watch:
        # A Secret created before kubectl's own list would not be shown: keep creating until
        # one is, then check that nothing older was.
        for attempt in range(20):
            put_secret(kubectl, f"new-{attempt}", namespace)
            try:
                line = watch.next_line(timeout=0.5)
                break
            except AssertionError:
                continue
        else:
            raise AssertionError("kubectl get --watch-only printed nothing")

    assert line.startswith("secret/new-")


def test_raw_watch_replays_from_a_resource_version_and_ends_on_timeout(
    kubectl: Kubectl, namespace: str
) -> None:
    base = secrets(namespace)
    put_secret(kubectl, "early", namespace)
    start = list_version(kubectl, base)
    put_secret(kubectl, "later", namespace, v="1")
    put_secret(kubectl, "later", namespace, v="2")
    kubectl("delete", "secret", "early", "-n", namespace)

    began = time.monotonic()
    events = kubectl.raw_lines(f"{base}?watch=1&resourceVersion={start}&timeoutSeconds=1")
    elapsed = time.monotonic() - began

    assert summary(events) == [("ADDED", "later"), ("MODIFIED", "later"), ("DELETED", "early")]
    assert events[1]["object"]["metadata"]["labels"] == {"v": "2"}
    assert events[0]["object"]["kind"] == "Secret"
    assert events[0]["object"]["apiVersion"] == "v1"
    versions = [int(event["object"]["metadata"]["resourceVersion"]) for event in events]
    assert versions == sorted(versions)
    assert versions[0] > int(start)
    assert 1.0 <= elapsed < 5.0  # timeoutSeconds=1 ends the stream


def test_resumed_watch_skips_what_it_already_saw(kubectl: Kubectl, namespace: str) -> None:
    base = secrets(namespace)
    start = list_version(kubectl, base)
    for i in range(3):
        put_secret(kubectl, f"step-{i}", namespace)
    events = kubectl.raw_lines(f"{base}?watch=1&resourceVersion={start}&timeoutSeconds=1")
    middle = events[1]["object"]["metadata"]["resourceVersion"]

    resumed = kubectl.raw_lines(f"{base}?watch=1&resourceVersion={middle}&timeoutSeconds=1")

    assert summary(events) == [("ADDED", "step-0"), ("ADDED", "step-1"), ("ADDED", "step-2")]
    assert summary(resumed) == [("ADDED", "step-2")]


@pytest.mark.parametrize("version", ["", "0"], ids=["unset", "zero"])
def test_watch_without_a_version_starts_with_synthetic_added_events(
    kubectl: Kubectl, namespace: str, version: str
) -> None:
    put_secret(kubectl, "a", namespace)
    put_secret(kubectl, "b", namespace)
    put_secret(kubectl, "a", namespace, v="1")
    query = "watch=1&timeoutSeconds=1" + (f"&resourceVersion={version}" if version else "")

    events = kubectl.raw_lines(f"{secrets(namespace)}?{query}")

    assert sorted(summary(events)) == [("ADDED", "a"), ("ADDED", "b")]
    assert next(e for e in events if e["object"]["metadata"]["name"] == "a")["object"]["metadata"][
        "labels"
    ] == {"v": "1"}


@pytest.mark.parametrize("spelling", ["true", "True", "1", "t", ""])
def test_watch_flag_spellings(kubectl: Kubectl, namespace: str, spelling: str) -> None:
    # The apiserver reads a query flag as true unless it is absent, "0" or "false".
    put_secret(kubectl, "spelled", namespace)

    events = kubectl.raw_lines(f"{secrets(namespace)}?watch={spelling}&timeoutSeconds=1")

    assert summary(events) == [("ADDED", "spelled")]


@pytest.mark.parametrize("spelling", ["false", "False", "0"])
def test_false_watch_flag_lists(kubectl: Kubectl, namespace: str, spelling: str) -> None:
    put_secret(kubectl, "listed", namespace)

    listed = kubectl.raw(f"{secrets(namespace)}?watch={spelling}")

    assert listed["kind"] == "SecretList"
    assert [item["metadata"]["name"] for item in listed["items"]] == ["listed"]


def test_cluster_wide_raw_watch_filters_by_label(kubectl: Kubectl) -> None:
    mark = unique_name("mark")
    spaces = [unique_name("wide"), unique_name("wide")]
    for ns in spaces:
        kubectl("create", "namespace", ns)
    try:
        start = list_version(kubectl, "/api/v1/secrets?limit=1")
        for ns in spaces:
            put_secret(kubectl, "marked", ns)
            kubectl("label", "secret", "marked", "-n", ns, f"mark={mark}")
            put_secret(kubectl, "unmarked", ns)
        events = kubectl.raw_lines(
            f"/api/v1/secrets?watch=true&resourceVersion={start}&timeoutSeconds=1"
            f"&labelSelector=mark%3D{mark}"
        )
    finally:
        kubectl("delete", "namespace", *spaces, "--wait=false")

    assert [(e["type"], e["object"]["metadata"]["namespace"]) for e in events] == [
        ("ADDED", ns) for ns in spaces
    ]


def test_field_selector_on_name_watches_one_object(kubectl: Kubectl, namespace: str) -> None:
    base = secrets(namespace)
    start = list_version(kubectl, base)
    put_secret(kubectl, "chosen", namespace)
    put_secret(kubectl, "ignored", namespace)

    events = kubectl.raw_lines(
        f"{base}?watch=1&resourceVersion={start}&timeoutSeconds=1"
        "&fieldSelector=metadata.name%3Dchosen"
    )
    listed = kubectl(
        "get", "secrets", "-n", namespace, "--field-selector=metadata.name!=chosen", "-o", "name"
    )

    assert summary(events) == [("ADDED", "chosen")]
    assert listed.split() == ["secret/ignored"]


def test_bookmarks_carry_the_current_resource_version(
    kubectl: Kubectl, namespace: str, embedded_only: None
) -> None:
    # The embedded server sends bookmarks every `bookmark_interval` (1 s by default); a real
    # apiserver sends them about once a minute, too rarely for a quick test.
    base = secrets(namespace)
    put_secret(kubectl, "marked", namespace)
    current = list_version(kubectl, base)

    events = kubectl.raw_lines(
        f"{base}?watch=1&resourceVersion={current}&allowWatchBookmarks=true&timeoutSeconds=3"
    )

    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks, events
    assert bookmarks[0]["object"]["kind"] == "Secret"
    assert int(bookmarks[0]["object"]["metadata"]["resourceVersion"]) >= int(current)
    assert all(e["type"] == "BOOKMARK" for e in events)
