"""Every mapping source ACK has, with its precedence (selector > team > owner account > own),
each behind its feature gate; and which resources each change of a source affects."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from carm.accounts.resolver import AccountResolver
from carm.accounts.rules import (
    ControllerIdentity,
    Resolution,
    ResolutionError,
    ResolutionReason,
    ResolverSettings,
)
from carm.accounts.selectors import GroupVersionKind
from carm.observability.metrics import Metrics

OWN = ControllerIdentity("000000000000")
BUCKET = GroupVersionKind("s3.services.k8s.aws", "v1alpha1", "Bucket")
QUEUE = GroupVersionKind("sqs.services.k8s.aws", "v1alpha1", "Queue")


def gates(**enabled: bool) -> ResolverSettings:
    """The given feature gates, for a controller serving Buckets and (another service) Queues."""
    return ResolverSettings(resource_types=(BUCKET, QUEUE), **enabled)


ALL_GATES = gates(team_level=True, service_level=True, selectors=True)
ROLE_ACCOUNT = "arn:aws:iam::111111111111:role/account-level"
ROLE_S3 = "arn:aws:iam::111111111111:role/s3-level"
ROLE_TEAM = "arn:aws:iam::222222222222:role/team-a"
ROLE_TEAM_S3 = "arn:aws:iam::222222222222:role/team-a-s3"
ROLE_SELECTED = "arn:aws:iam::333333333333:role/selected"


def namespace(
    name: str,
    account: str | None = None,
    team: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    annotations = {}
    if account:
        annotations["services.k8s.aws/owner-account-id"] = account
    if team:
        annotations["services.k8s.aws/team-id"] = team
    return {"metadata": {"name": name, "annotations": annotations, "labels": labels or {}}}


def configmap(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ack-system"}, "data": data}


def selector(name: str, arn: str = ROLE_SELECTED, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"arn": arn, **spec}}


def bucket(ns: str, name: str = "b", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "s3.services.k8s.aws/v1alpha1",
        "kind": "Bucket",
        "metadata": {"namespace": ns, "name": name, "labels": labels or {}},
    }


def build(settings: ResolverSettings = ALL_GATES) -> AccountResolver:
    resolver = AccountResolver(OWN, settings)
    resolver.on_role_map(
        configmap(
            "ack-role-account-map",
            {"111111111111": ROLE_ACCOUNT, "s3.111111111111": ROLE_S3},
        )
    )
    resolver.on_team_map(
        configmap("ack-role-team-map", {"team-a": ROLE_TEAM, "s3.team-a": ROLE_TEAM_S3})
    )
    resolver.on_namespace(namespace("acct", "111111111111"), "acct")
    resolver.on_namespace(namespace("team", "111111111111", team="team-a"), "team")
    resolver.on_namespace(namespace("plain", labels={"env": "prod"}), "plain")
    return resolver


def resolution(resolver: AccountResolver, ns: str, obj: Any = None) -> Resolution:
    result = resolver.resolve(ns, obj)
    assert isinstance(result, Resolution), result
    return result


def error(resolver: AccountResolver, ns: str, obj: Any = None) -> ResolutionError:
    result = resolver.resolve(ns, obj)
    assert isinstance(result, ResolutionError), result
    return result


def test_with_every_gate_off_only_the_owner_account_counts() -> None:
    resolver = build(gates())
    assert resolution(resolver, "acct").role_arn == ROLE_ACCOUNT
    # The team annotation is ignored: the owner account decides.
    assert resolution(resolver, "team").role_arn == ROLE_ACCOUNT
    resolver.on_selector(selector("everything"), "everything")
    assert resolution(resolver, "plain").role_arn is None


def test_service_level_keys_win_over_plain_ones() -> None:
    resolver = build(gates(service_level=True))
    result = resolution(resolver, "acct")
    assert result.role_arn == ROLE_S3
    assert result.role_source == 'ConfigMap ack-system/ack-role-account-map key "s3.111111111111"'


def queue(ns: str, name: str = "q") -> dict[str, Any]:
    return {
        "apiVersion": "sqs.services.k8s.aws/v1alpha1",
        "kind": "Queue",
        "metadata": {"namespace": ns, "name": name},
    }


def test_service_level_keys_are_the_resource_own_service() -> None:
    resolver = build(gates(service_level=True))
    role_sqs = "arn:aws:iam::111111111111:role/sqs-level"
    added = resolver.on_role_map(
        configmap(
            "ack-role-account-map",
            {
                "111111111111": ROLE_ACCOUNT,
                "s3.111111111111": ROLE_S3,
                "sqs.111111111111": role_sqs,
            },
        )
    )
    # The new sqs key changes the Queues of the namespace, not its Buckets.
    assert affected(added, [bucket("acct"), queue("acct")]) == {"acct/q"}
    assert resolution(resolver, "acct", bucket("acct")).role_arn == ROLE_S3
    of_queue = resolution(resolver, "acct", queue("acct"))
    assert of_queue.role_arn == role_sqs
    assert of_queue.role_source.endswith('key "sqs.111111111111"')


def test_a_team_id_beats_the_owner_account_and_the_account_is_the_roles() -> None:
    resolver = build(gates(team_level=True))
    result = resolution(resolver, "team")
    assert (result.role_arn, result.account_id, result.team_id) == (
        ROLE_TEAM,
        "222222222222",
        "team-a",
    )
    assert "team 'team-a'" in result.account_source
    both = resolution(build(), "team")
    assert both.role_arn == ROLE_TEAM_S3  # service-level key of the team


def test_team_errors_name_the_team_map() -> None:
    resolver = build(gates(team_level=True))
    resolver.on_namespace(namespace("other", team="team-z"), "other")
    missing = error(resolver, "other")
    assert missing.reason is ResolutionReason.ROLE_NOT_AVAILABLE and not missing.terminal
    assert "ack-system/ack-role-team-map has no role for team 'team-z'" in missing.message
    resolver.on_namespace(namespace("bad", team="-x-"), "bad")
    assert error(resolver, "bad").reason is ResolutionReason.INVALID_TEAM_ID
    resolver.on_team_map(None)
    gone = error(resolver, "team")
    assert gone.reason is ResolutionReason.TEAM_MAP_MISSING and not gone.terminal
    assert gone.message.startswith("IAM Role is not available: ConfigMap ack-system/ack-role-")


def test_a_matching_selector_overrides_every_map_and_sets_the_account() -> None:
    resolver = build()
    resolver.on_selector(selector("prod-data", namespaceSelector={"names": ["team"]}), "prod-data")
    result = resolution(resolver, "team", bucket("team"))
    assert (result.role_arn, result.account_id, result.selector) == (
        ROLE_SELECTED,
        "333333333333",
        "prod-data",
    )
    assert resolution(resolver, "acct", bucket("acct")).role_arn == ROLE_S3  # not matched


def test_selectors_apply_even_with_carm_disabled() -> None:
    resolver = build(gates(carm_enabled=False, selectors=True))
    resolver.on_selector(
        selector("by-label", resourceLabelSelector={"matchLabels": {"t": "x"}}), "by-label"
    )
    assert resolution(resolver, "acct", bucket("acct", labels={"t": "x"})).selector == "by-label"
    assert resolution(resolver, "acct", bucket("acct")).role_arn is None  # own account


def test_two_matching_selectors_are_terminal_and_named() -> None:
    resolver = build()
    resolver.on_selector(selector("b-wide"), "b-wide")
    resolver.on_selector(selector("a-prod", namespaceSelector={"names": ["plain"]}), "a-prod")
    conflict = error(resolver, "plain", bucket("plain"))
    assert conflict.terminal and conflict.reason is ResolutionReason.SELECTOR_CONFLICT
    assert conflict.selectors == ("a-prod", "b-wide")
    assert "a-prod -> " in conflict.message and "b-wide -> " in conflict.message


def test_an_invalid_matching_selector_is_terminal_rather_than_ignored() -> None:
    resolver = build()
    resolver.on_selector(
        selector(
            "typo", arn="arn:aws:iam::333333333333:user/x", namespaceSelector={"names": ["acct"]}
        ),
        "typo",
    )
    invalid = error(resolver, "acct", bucket("acct"))
    assert invalid.reason is ResolutionReason.INVALID_SELECTOR and invalid.terminal
    assert 'IAMRoleSelector "typo"' in invalid.message and "not an IAM role ARN" in invalid.message
    # Resources it does not match keep their maps' role.
    assert resolution(resolver, "team").role_arn == ROLE_TEAM_S3


# -- what each change affects --


def affected(change: Any, objects: list[dict[str, Any]]) -> set[str]:
    return {
        f"{o['metadata']['namespace']}/{o['metadata']['name']}"
        for o in objects
        if o["metadata"]["namespace"] in change.namespaces
        and (change.affects is None or change.affects(o))
    }


BUCKETS = [
    bucket("acct", "a1"),
    bucket("acct", "a2", {"tier": "data"}),
    bucket("team", "t1"),
    bucket("plain", "p1"),
]


def test_a_team_map_change_affects_only_that_teams_resources_and_retires_its_role() -> None:
    resolver = build()
    change = resolver.on_team_map(
        configmap(
            "ack-role-team-map",
            {"team-a": ROLE_TEAM, "s3.team-a": "arn:aws:iam::222222222222:role/new"},
        )
    )
    assert affected(change, BUCKETS) == {"team/t1"}
    assert change.retired_role_arns == {ROLE_TEAM_S3}


def test_a_selector_affects_exactly_the_resources_it_matches_before_or_after() -> None:
    resolver = build()
    created = resolver.on_selector(
        selector("data", resourceLabelSelector={"matchLabels": {"tier": "data"}}), "data"
    )
    assert affected(created, BUCKETS) == {"acct/a2"}
    moved = resolver.on_selector(selector("data", namespaceSelector={"names": ["plain"]}), "data")
    assert affected(moved, BUCKETS) == {"acct/a2", "plain/p1"}
    deleted = resolver.on_selector(None, "data")
    assert affected(deleted, BUCKETS) == {"plain/p1"}
    assert deleted.retired_role_arns == {ROLE_SELECTED}


def test_a_selector_change_with_the_gate_off_affects_nothing() -> None:
    resolver = build(gates())
    change = resolver.on_selector(selector("all"), "all")
    assert affected(change, BUCKETS) == set()


def test_namespace_labels_matter_only_when_a_selector_looks_at_them() -> None:
    resolver = build()
    relabelled = resolver.on_namespace(namespace("plain", labels={"env": "dev"}), "plain")
    assert affected(relabelled, BUCKETS) == set()
    resolver.on_selector(
        selector("prod", namespaceSelector={"labelSelector": {"matchLabels": {"env": "prod"}}}),
        "prod",
    )
    back = resolver.on_namespace(namespace("plain", labels={"env": "prod"}), "plain")
    assert affected(back, BUCKETS) == {"plain/p1"}
    assert resolution(resolver, "plain", bucket("plain")).selector == "prod"


def test_an_account_map_entry_of_a_selected_resource_affects_it_not() -> None:
    resolver = build()
    resolver.on_selector(selector("acct-data", namespaceSelector={"names": ["acct"]}), "acct-data")
    change = resolver.on_role_map(
        configmap(
            "ack-role-account-map",
            {"111111111111": ROLE_ACCOUNT, "s3.111111111111": "arn:aws:iam::111111111111:role/v2"},
        )
    )
    assert change.namespaces == {"acct"}
    assert affected(change, BUCKETS) == set()  # its selector decides, not the map


def test_unusable_entries_are_logged_once_per_key_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    resolver = AccountResolver(OWN, gates(), metrics=metrics)
    with caplog.at_level(logging.WARNING, logger="carm.accounts.resolver"):
        resolver.on_role_map(
            configmap("ack-role-account-map", {"111111111111": "nope", "prod": ROLE_ACCOUNT})
        )
        resolver.on_role_map(  # the same bad entries again: no new log lines
            configmap(
                "ack-role-account-map",
                {"111111111111": "nope", "prod": ROLE_ACCOUNT, "222222222222": ROLE_TEAM},
            )
        )
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "ack-role-account-map key \"111111111111\" = 'nope' cannot be used" in lines[0]
    assert 'key "prod"' in lines[1] and "not a 12-digit account id" in lines[1]
    sample = metrics.registry.get_sample_value(
        "carm_invalid_mapping_entries", {"source": "ack-role-account-map"}
    )
    assert sample == 2
