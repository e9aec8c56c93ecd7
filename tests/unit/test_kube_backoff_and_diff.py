"""Pure parts of the reflector: the backoff schedule and the re-list difference."""

from __future__ import annotations

import random

from carm.events import ObjectKey, RawObject
from carm.kube.reflector import Backoff, BackoffPolicy, diff_relist


class FixedRandom(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def obj(name: str, version: str, namespace: str = "ns") -> RawObject:
    return {"metadata": {"name": name, "namespace": namespace, "resourceVersion": version}}


def test_backoff_doubles_up_to_the_maximum() -> None:
    backoff = Backoff(BackoffPolicy(initial=0.2, maximum=3.0, factor=2.0), FixedRandom(0.0))
    delays = [backoff.next_delay() for _ in range(7)]
    assert delays == [0.2, 0.4, 0.8, 1.6, 3.0, 3.0, 3.0]
    assert backoff.failures == 7


def test_backoff_reset_starts_over() -> None:
    backoff = Backoff(BackoffPolicy(initial=0.5), FixedRandom(0.0))
    backoff.next_delay()
    backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_jitter_shortens_the_delay_by_at_most_its_fraction() -> None:
    policy = BackoffPolicy(initial=1.0, jitter=0.25)
    assert Backoff(policy, FixedRandom(0.0)).next_delay() == 1.0
    assert Backoff(policy, FixedRandom(0.999999)).next_delay() >= 0.75
    delays = {Backoff(policy, random.Random(seed)).next_delay() for seed in range(50)}
    assert all(0.75 <= d <= 1.0 for d in delays)
    assert len(delays) > 40, "jitter spreads reconnects apart"


def test_diff_against_nothing_is_all_added() -> None:
    items = [obj("a", "1"), obj("b", "2")]
    diff = diff_relist({}, items)
    assert diff.added == items
    assert (diff.modified, diff.deleted, diff.unchanged) == ([], [], 0)


def test_diff_reports_exactly_what_changed() -> None:
    known = {
        ObjectKey("ns", "same"): "5",
        ObjectKey("ns", "changed"): "6",
        ObjectKey("ns", "gone"): "7",
        ObjectKey("", "cluster-gone"): "8",
    }
    items = [obj("same", "5"), obj("changed", "9"), obj("new", "10")]
    diff = diff_relist(known, items)
    assert [ObjectKey.of(o) for o in diff.added] == [ObjectKey("ns", "new")]
    assert [ObjectKey.of(o) for o in diff.modified] == [ObjectKey("ns", "changed")]
    assert sorted(diff.deleted) == [
        (ObjectKey("", "cluster-gone"), "8"),
        (ObjectKey("ns", "gone"), "7"),
    ]
    assert diff.unchanged == 1


def test_diff_treats_versions_as_opaque() -> None:
    # A smaller-looking version is still just "different": never compare versions by order.
    diff = diff_relist({ObjectKey("ns", "a"): "100"}, [obj("a", "99")])
    assert [ObjectKey.of(o) for o in diff.modified] == [ObjectKey("ns", "a")]


def test_same_name_in_two_namespaces_are_two_objects() -> None:
    diff = diff_relist({ObjectKey("x", "a"): "1"}, [obj("a", "1", "x"), obj("a", "1", "y")])
    assert [ObjectKey.of(o) for o in diff.added] == [ObjectKey("y", "a")]
    assert diff.unchanged == 1
