"""IAMRoleSelector matching, as ACK's runtime defines it: selector kinds ANDed, list entries ORed,
empty parts match everything; validation problems are listed, never ignored."""

from __future__ import annotations

from typing import Any

import pytest

from carm.accounts.selectors import GroupVersionKind, RoleSelector

BUCKET = GroupVersionKind("s3.services.k8s.aws", "v1alpha1", "Bucket")
QUEUE = GroupVersionKind("sqs.services.k8s.aws", "v1alpha1", "Queue")
ROLE = "arn:aws:iam::111111111111:role/selected"


def selector(**spec: Any) -> RoleSelector:
    return RoleSelector.of({"metadata": {"name": "s"}, "spec": {"arn": ROLE, **spec}})


def matches(
    sel: RoleSelector,
    namespace: str = "prod",
    namespace_labels: dict[str, str] | None = None,
    gvk: GroupVersionKind = BUCKET,
    labels: dict[str, str] | None = None,
) -> bool:
    return sel.matches(
        namespace,
        tuple(sorted((namespace_labels or {}).items())),
        gvk,
        tuple(sorted((labels or {}).items())),
    )


def test_an_empty_selector_matches_every_resource() -> None:
    sel = selector()
    assert sel.valid and sel.role is not None and sel.role.account_id == "111111111111"
    assert matches(sel) and matches(sel, "other", gvk=QUEUE, labels={"a": "b"})


def test_namespace_names_are_ored_and_labels_anded_with_them() -> None:
    by_name = selector(namespaceSelector={"names": ["prod", "staging"]})
    assert matches(by_name, "prod") and matches(by_name, "staging")
    assert not matches(by_name, "dev")
    both = selector(
        namespaceSelector={"names": ["prod"], "labelSelector": {"matchLabels": {"env": "p"}}}
    )
    assert matches(both, "prod", {"env": "p", "x": "y"})
    assert not matches(both, "prod", {"env": "q"})
    assert not matches(both, "dev", {"env": "p"})
    by_label = selector(namespaceSelector={"labelSelector": {"matchLabels": {"env": "p"}}})
    assert matches(by_label, "anything", {"env": "p"})
    assert not matches(by_label, "anything", {})


def test_resource_types_are_ored_with_empty_fields_as_wildcards() -> None:
    sel = selector(
        resourceTypeSelector=[
            {"group": "s3.services.k8s.aws", "kind": "Bucket"},
            {"group": "sns.services.k8s.aws"},
        ]
    )
    assert matches(sel, gvk=BUCKET)
    assert matches(sel, gvk=GroupVersionKind("sns.services.k8s.aws", "v1", "Topic"))
    assert not matches(sel, gvk=QUEUE)
    assert not matches(
        selector(resourceTypeSelector=[{"group": "s3.services.k8s.aws", "version": "v1"}])
    )


def test_resource_labels_must_all_match_and_are_anded_with_the_rest() -> None:
    sel = selector(
        namespaceSelector={"names": ["prod"]},
        resourceLabelSelector={"matchLabels": {"tier": "data", "team": "a"}},
    )
    assert matches(sel, labels={"tier": "data", "team": "a", "more": "x"})
    assert not matches(sel, labels={"tier": "data"})
    assert not matches(sel, "dev", labels={"tier": "data", "team": "a"})


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"arn": ""}, "spec.arn is required"),
        ({"arn": "arn:aws:s3:::bucket"}, "is not an IAM role ARN"),
        ({"namespaceSelector": {"names": ["a", "a"]}}, "names repeats a"),
        ({"namespaceSelector": {"names": [""]}}, "holds an empty name"),
        ({"resourceTypeSelector": [{}]}, "names none of group, version or kind"),
        (
            {"resourceTypeSelector": [{"kind": "Bucket"}, {"kind": "Bucket"}]},
            "repeats an earlier entry",
        ),
        ({"resourceLabelSelector": {"matchLabels": {"": "x"}}}, "empty label key"),
        ({"namespaceSelector": {"names": "prod"}}, "must be a list"),
    ],
)
def test_invalid_selectors_say_what_is_wrong(spec: dict[str, Any], problem: str) -> None:
    sel = RoleSelector.of({"metadata": {"name": "s"}, "spec": {"arn": ROLE} | spec})
    assert not sel.valid
    assert any(problem in p for p in sel.problems), sel.problems


def test_an_objects_type_comes_from_apiversion_and_kind_or_the_default() -> None:
    obj = {"apiVersion": "sqs.services.k8s.aws/v1alpha1", "kind": "Queue"}
    assert GroupVersionKind.of(obj, BUCKET) == QUEUE
    assert GroupVersionKind.of({}, BUCKET) == BUCKET
