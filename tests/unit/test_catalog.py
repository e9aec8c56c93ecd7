"""The kind catalog and its wiring: what a registration gives the controller (its API path, its
own cache and queue, its CRD in deploy/crds), and the registrations the controller refuses."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from carm.clock import FakeClock
from carm.controllers import KindController, requeue_everything, resource_ref
from carm.events import EventType, ObjectKey, WatchEvent
from carm.kube.client import BUCKETS
from carm.resources.catalog import RESOURCE_KINDS, CatalogError, check_catalog
from carm.resources.crds import ALL_CRDS
from carm.resources.iamroleselector_crd import IAM_ROLE_SELECTOR_CRD
from carm.resources.kind import ResourceDescriptor, ResourceKind
from carm.resources.s3.bucket import BUCKET, BUCKET_KIND
from carm.settings import Settings

QUEUES = ResourceDescriptor("sqs.services.k8s.aws", "v1alpha1", "Queue", "queues")


def crd_of(descriptor: ResourceDescriptor, **changes: Any) -> dict[str, Any]:
    crd = copy.deepcopy(BUCKET_KIND.crd)
    spec = crd["spec"]
    spec["group"] = descriptor.group
    spec["names"] = {"kind": descriptor.kind, "plural": descriptor.plural}
    spec.update(changes)
    return crd


def queue_kind(descriptor: ResourceDescriptor = QUEUES, **crd_changes: Any) -> ResourceKind:
    return ResourceKind(descriptor, crd_of(QUEUES, **crd_changes), BUCKET_KIND.build)


def test_the_bucket_is_registered_and_its_crd_rendered_with_the_selectors() -> None:
    assert check_catalog(RESOURCE_KINDS) == (BUCKET_KIND,)
    assert list(ALL_CRDS) == [BUCKET_KIND.crd, IAM_ROLE_SELECTOR_CRD]
    assert resource_ref(BUCKET) == BUCKETS
    assert BUCKET.controller_name == "bucket"  # controller-runtime's label, as before


@pytest.mark.parametrize(
    ("kinds", "message"),
    [
        ((BUCKET_KIND, BUCKET_KIND), "two resource kinds named Bucket"),
        (
            (BUCKET_KIND, queue_kind(replace(QUEUES, group="other.services.k8s.aws"))),
            "has group, kind, plural ('sqs.services.k8s.aws', 'Queue', 'queues'), its "
            "descriptor ('other.services.k8s.aws', 'Queue', 'queues')",
        ),
        ((queue_kind(replace(QUEUES, version="v1")),), "does not serve version v1"),
        ((queue_kind(scope="Cluster"),), "is Cluster, not Namespaced"),
        ((queue_kind(replace(QUEUES, kind="Namespace")),), "has the name of a kind the"),
    ],
)
def test_unusable_registrations_are_refused_and_named(
    kinds: tuple[ResourceKind, ...], message: str
) -> None:
    with pytest.raises(CatalogError) as raised:
        check_catalog(kinds)
    assert message in str(raised.value)


def test_a_new_leader_requeues_every_kinds_objects_in_their_own_queues() -> None:
    clock = FakeClock()
    settings = Settings(max_concurrent_syncs=2)
    buckets = KindController(BUCKET_KIND, settings, clock)
    queues = KindController(queue_kind(), settings, clock)
    for controller in (buckets, queues):
        obj = {"metadata": {"namespace": "prod", "name": "orders", "resourceVersion": "1"}}
        controller.store.apply(WatchEvent(controller.kind, EventType.ADDED, obj))
    requeue_everything([buckets, queues], lambda namespace: "111111111111")()
    for controller in (buckets, queues):
        assert controller.queue.depth_by_lane() == {"111111111111": 1}
        assert controller.queue.get_nowait() == ObjectKey("prod", "orders")
    assert (buckets.name, queues.name) == ("bucket", "queue")
