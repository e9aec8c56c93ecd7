from carm.reconcile.conditions import (
    Condition,
    ConditionType,
    condition_status,
    merge_conditions,
    rfc3339,
)

T0 = 1_700_000_000.0


def test_condition_keeps_transition_time_while_status_is_unchanged() -> None:
    first = merge_conditions(
        None, [Condition(ConditionType.RESOURCE_SYNCED, False, "A", "a")], now=T0
    )
    again = merge_conditions(
        first, [Condition(ConditionType.RESOURCE_SYNCED, False, "B", "b")], now=T0 + 60
    )
    assert again[0]["lastTransitionTime"] == rfc3339(T0)
    assert again[0]["message"] == "b"
    flipped = merge_conditions(
        again, [Condition(ConditionType.RESOURCE_SYNCED, True)], now=T0 + 120
    )
    assert flipped[0]["lastTransitionTime"] == rfc3339(T0 + 120)
    assert flipped[0]["status"] == "True"


def test_dropped_conditions_vanish_and_foreign_ones_stay() -> None:
    current = [
        {"type": "ACK.Terminal", "status": "True", "lastTransitionTime": "x"},
        {"type": "Custom", "status": "True", "lastTransitionTime": "y"},
    ]
    merged = merge_conditions(
        current,
        [Condition(ConditionType.READY, True)],
        drop=frozenset({ConditionType.TERMINAL}),
        now=T0,
    )
    assert [c["type"] for c in merged] == ["Custom", "Ready"]
    assert condition_status({"conditions": merged}, ConditionType.READY) == "True"
    assert condition_status({"conditions": merged}, ConditionType.TERMINAL) is None
