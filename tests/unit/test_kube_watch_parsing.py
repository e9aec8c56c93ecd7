"""Pure parts of the Kubernetes client: watch line splitting, decoding, errors, paths."""

from __future__ import annotations

import itertools

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from carm.kube.client import (
    BUCKETS,
    CONFIG_MAPS,
    MAX_RETRY_AFTER,
    NAMESPACES,
    KubeApiError,
    KubeConnectionError,
    WatchLineSplitter,
    api_error_from_response,
    decode_watch_line,
)


def event_line(type_: str, name: str, size: int = 0) -> bytes:
    obj = {"metadata": {"name": name, "resourceVersion": "1"}, "data": {"x": "y" * size}}
    return orjson.dumps({"type": type_, "object": obj}) + b"\n"


def split_into_chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=30),
)
def test_lines_survive_any_chunking(sizes: list[int], cuts: list[int]) -> None:
    stream = b"".join(event_line("ADDED", f"o{i}", size) for i, size in enumerate(sizes))
    splitter = WatchLineSplitter()
    lines: list[bytes] = []
    for chunk in split_into_chunks(stream, cuts):
        lines.extend(splitter.feed(chunk))
    assert not splitter.pending
    assert [decode_watch_line(line)[1]["metadata"]["name"] for line in lines] == [
        f"o{i}" for i in range(len(sizes))
    ]


def test_a_line_much_longer_than_the_chunks() -> None:
    line = event_line("MODIFIED", "big", size=3 * 1024 * 1024)
    splitter = WatchLineSplitter()
    out: list[bytes] = []
    for start in range(0, len(line), 4096):
        out.extend(splitter.feed(line[start : start + 4096]))
    assert len(out) == 1
    assert decode_watch_line(out[0])[0] == "MODIFIED"


def test_unfinished_line_is_pending_and_blank_lines_are_skipped() -> None:
    splitter = WatchLineSplitter()
    assert splitter.feed(b"\n\r\n" + event_line("ADDED", "a")[:10]) == []
    assert splitter.pending


def test_oversized_event_is_refused() -> None:
    splitter = WatchLineSplitter(max_line=100)
    with pytest.raises(KubeConnectionError):
        splitter.feed(b"x" * 101)


def test_error_event_raises_its_status() -> None:
    line = orjson.dumps(
        {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "code": 410,
                "reason": "Expired",
                "message": "too old resource version: 1 (5)",
            },
        }
    )
    with pytest.raises(KubeApiError) as caught:
        decode_watch_line(line)
    assert caught.value.gone
    assert not caught.value.retryable
    assert "too old" in caught.value.message


def test_garbage_line_is_a_connection_problem() -> None:
    with pytest.raises(KubeConnectionError):
        decode_watch_line(b"{not json")
    with pytest.raises(KubeConnectionError):
        decode_watch_line(b'{"type": "ADDED"}')


def test_error_response_carries_status_fields_and_bounded_retry_after() -> None:
    body = orjson.dumps(
        {"kind": "Status", "code": 429, "reason": "TooManyRequests", "message": "slow down"}
    )
    error = api_error_from_response(429, body, {"Retry-After": "7200"})
    assert (error.status, error.reason, error.message) == (429, "TooManyRequests", "slow down")
    assert error.retryable
    assert error.retry_after == MAX_RETRY_AFTER

    plain = api_error_from_response(502, b"<html>bad gateway</html>", {"Retry-After": "soon"})
    assert plain.retryable and plain.retry_after is None
    assert "bad gateway" in plain.message

    conflict = api_error_from_response(
        409, orjson.dumps({"code": 409, "reason": "AlreadyExists", "message": "x"}), {}
    )
    assert conflict.conflict and conflict.already_exists and not conflict.retryable


def test_connection_errors_are_retryable() -> None:
    assert KubeConnectionError("reset").retryable


def test_paths() -> None:
    assert NAMESPACES.path() == "/api/v1/namespaces"
    assert NAMESPACES.path(name="prod") == "/api/v1/namespaces/prod"
    assert CONFIG_MAPS.path() == "/api/v1/configmaps"
    assert CONFIG_MAPS.path("ack-system", "m") == "/api/v1/namespaces/ack-system/configmaps/m"
    assert (
        BUCKETS.path("team-a", "b1", "status")
        == "/apis/s3.services.k8s.aws/v1alpha1/namespaces/team-a/buckets/b1/status"
    )
    assert BUCKETS.api_version == "s3.services.k8s.aws/v1alpha1"
    with pytest.raises(ValueError, match="needs a namespace"):
        BUCKETS.path(None, "b1")
    with pytest.raises(ValueError, match="cluster-scoped"):
        NAMESPACES.path("ns", "x")
