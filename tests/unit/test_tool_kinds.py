"""How `carm explain` reads KIND in KIND/NAME: as kubectl does, for every kind served."""

from __future__ import annotations

from carm.resources.kind import ResourceDescriptor
from carm.tools.kinds import kind_named, served_kinds_in_words, typed

BUCKETS = ResourceDescriptor("s3.services.k8s.aws", "v1alpha1", "Bucket", "buckets")
QUEUES = ResourceDescriptor("sqs.services.k8s.aws", "v1alpha1", "Queue", "queues")
POLICIES = ResourceDescriptor("iam.services.k8s.aws", "v1alpha1", "Policy", "policies")
KINDS = (BUCKETS, QUEUES, POLICIES)


def test_a_kind_is_named_by_its_singular_or_plural_alone_or_qualified_in_any_case() -> None:
    for name in (
        "queue",
        "queues",
        "Queue",
        "queue.sqs.services.k8s.aws",
        "queues.sqs.services.k8s.aws",
        "queues.v1alpha1.sqs.services.k8s.aws",
    ):
        assert kind_named(name, KINDS) is QUEUES, name
    assert kind_named("policies", KINDS) is POLICIES
    assert kind_named("policy.iam.services.k8s.aws", KINDS) is POLICIES


def test_other_names_name_no_kind() -> None:
    for name in (
        "",
        "queu",
        "queue.sqs",  # a partial group
        "queues.s3.services.k8s.aws",  # another kind's group
        "queues.v1.sqs.services.k8s.aws",  # a version not served
        "sqs.services.k8s.aws",
    ):
        assert kind_named(name, KINDS) is None, name
    assert kind_named("queue", (BUCKETS,)) is None


def test_the_kinds_served_in_words_name_each_as_kubectl_would_find_it() -> None:
    assert served_kinds_in_words(KINDS) == (
        "bucket (buckets.s3.services.k8s.aws), queue (queues.sqs.services.k8s.aws), "
        "policy (policies.iam.services.k8s.aws)"
    )


def test_typed_sets_only_what_an_object_lacks() -> None:
    item = {"metadata": {"name": "jobs"}}
    assert typed(item, QUEUES) == {
        "metadata": {"name": "jobs"},
        "apiVersion": "sqs.services.k8s.aws/v1alpha1",
        "kind": "Queue",
    }
    other = {"apiVersion": "sqs.services.k8s.aws/v1", "kind": "Queue"}
    assert typed(dict(other), QUEUES) == other
