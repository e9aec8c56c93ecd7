"""The Event recorder on a fake clock: what `kubectl describe` will show, aggregation of
repeats into one Event with a count, the per-object rate limit, the bounded buffer, and that a
failing API server costs nothing but the event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from carm.clock import FakeClock
from carm.events import RawObject
from carm.kube.client import KubeConnectionError, ResourceRef
from carm.kube.events import MAX_MESSAGE, EventRecorder


def bucket(name: str = "my-bucket", uid: str = "uid-1") -> RawObject:
    return {
        "apiVersion": "s3.services.k8s.aws/v1alpha1",
        "kind": "Bucket",
        "metadata": {"name": name, "namespace": "production", "uid": uid, "resourceVersion": "7"},
    }


class FakeEventApi:
    def __init__(self) -> None:
        self.events: dict[str, RawObject] = {}
        self.patches: list[tuple[str, RawObject]] = []
        self.down = False

    async def create(
        self, ref: ResourceRef, body: RawObject, namespace: str | None = None
    ) -> RawObject:
        if self.down:
            raise KubeConnectionError("connection refused")
        assert ref.plural == "events" and namespace == body["metadata"]["namespace"]
        self.events[body["metadata"]["name"]] = body
        return body

    async def merge_patch(
        self,
        ref: ResourceRef,
        name: str,
        patch: RawObject,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> RawObject:
        if self.down:
            raise KubeConnectionError("connection refused")
        self.patches.append((name, patch))
        self.events[name] |= patch
        return self.events[name]


@asynccontextmanager
async def recorder(**options: Any) -> AsyncIterator[tuple[EventRecorder, FakeEventApi, FakeClock]]:
    api, clock = FakeEventApi(), FakeClock()
    events = EventRecorder(api, clock=clock, instance="carm-0_abc", **options)
    async with anyio.create_task_group() as group:
        group.start_soon(events.run)
        yield events, api, clock
        group.cancel_scope.cancel()


async def test_an_event_names_the_object_and_the_controller_as_describe_expects() -> None:
    async with recorder() as (events, api, clock):
        events.record(bucket(), "Normal", "Created", "Bucket created in AWS account 111111111111")
        await clock.settle()
        (event,) = api.events.values()
        assert event["involvedObject"] == {
            "apiVersion": "s3.services.k8s.aws/v1alpha1",
            "kind": "Bucket",
            "namespace": "production",
            "name": "my-bucket",
            "uid": "uid-1",
            "resourceVersion": "7",
        }
        assert (event["type"], event["reason"], event["count"]) == ("Normal", "Created", 1)
        assert event["metadata"]["name"].startswith("my-bucket.")
        assert event["source"] == {"component": "ack-s3-controller"}
        assert event["reportingInstance"] == "carm-0_abc"
        assert event["firstTimestamp"] == event["lastTimestamp"]


async def test_a_repeated_event_is_one_event_with_a_count() -> None:
    async with recorder() as (events, api, clock):
        for _ in range(3):
            events.record(bucket(), "Warning", "InvalidBucketName", "bucket name invalid")
            await clock.advance(30)
        assert len(api.events) == 1
        (event,) = api.events.values()
        assert event["count"] == 3 and event["lastTimestamp"] > event["firstTimestamp"]
        events.record(bucket(), "Warning", "InvalidBucketName", "another message")
        await clock.settle()
        assert len(api.events) == 2, "a different message is a different event"


async def test_a_repeat_after_the_aggregation_window_starts_a_new_event() -> None:
    async with recorder(aggregate_seconds=600) as (events, api, clock):
        events.record(bucket(), "Warning", "Terminal", "broken")
        await clock.advance(601)
        events.record(bucket(), "Warning", "Terminal", "broken")
        await clock.settle()
        assert len(api.events) == 2 and not api.patches


async def test_each_object_is_rate_limited_and_refills_slowly() -> None:
    async with recorder(burst=5, refill_seconds=300) as (events, api, clock):
        for i in range(8):
            events.record(bucket(), "Normal", "Updated", f"generation {i}")
        events.record(bucket("other", "uid-2"), "Normal", "Created", "fine")
        await clock.settle()
        assert len(api.events) == 6 and events.dropped == 3, "5 for my-bucket, 1 for other"
        await clock.advance(300)
        events.record(bucket(), "Normal", "Updated", "generation 9")
        events.record(bucket(), "Normal", "Updated", "generation 10")
        await clock.settle()
        assert len(api.events) == 7, "one token back after the refill period"


async def test_the_buffer_is_bounded_while_the_api_server_is_slow() -> None:
    api, clock = FakeEventApi(), FakeClock()
    events = EventRecorder(api, clock=clock, instance="x", buffer_size=3)
    for i in range(5):  # nobody writes yet (run() not started)
        events.record(bucket(f"b{i}", f"u{i}"), "Normal", "Created", "created")
    assert events.dropped == 2
    await events.flush()
    assert len(api.events) == 3


async def test_a_failing_api_server_loses_the_event_and_nothing_else() -> None:
    async with recorder() as (events, api, clock):
        api.down = True
        events.record(bucket(), "Warning", "Terminal", "broken")
        await clock.settle()
        assert events.dropped == 1 and not api.events
        api.down = False
        events.record(bucket(), "Warning", "Terminal", "broken")
        await clock.settle()
        assert len(api.events) == 1


async def test_long_messages_are_cut_to_what_the_api_server_accepts() -> None:
    async with recorder() as (events, api, clock):
        events.record(bucket(), "Warning", "Terminal", "x" * 5000)
        await clock.settle()
        (event,) = api.events.values()
        assert len(event["message"]) == MAX_MESSAGE and event["message"].endswith("...")
