"""The generic engine (`KindManager`) over a second, in-memory kind: what any resource kind gets
for free (identity immutability, adoption, read-only, removal of fields that leave the spec,
a delete that never touches what carm does not own), and the loop writing its outcome."""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from carm.clock import FakeClock
from carm.events import ObjectKey, RawObject
from carm.reconcile.conditions import ConditionType, condition_status
from carm.reconcile.errors import RecoverableError, TerminalError
from carm.reconcile.interfaces import AwsTarget, SyncOutcome
from carm.reconcile.loop import Reconciler
from carm.resources.annotations import policy_of
from carm.resources.engine import KindManager
from carm.resources.kind import Desired, Identity, Located, ResourceDescriptor
from carm.resources.tags import TagContext, expand, merge, parse_resource_tags

QUEUES = ResourceDescriptor("sqs.services.k8s.aws", "v1alpha1", "Queue", "queues")
ACCOUNT = "111111111111"


@dataclass
class Target:
    account_id: str = ACCOUNT
    region: str = "us-east-1"
    partition: str = "aws"
    role_arn: str | None = None
    deletion_policy: str = "delete"
    conditions: tuple[Any, ...] = ()

    async def client(self, service: str) -> Any:
        raise AssertionError("the in-memory kind makes no AWS calls")


@dataclass
class Cloud:
    """AWS, for the in-memory kind: queues by name, with owner and attributes."""

    queues: dict[str, dict[str, Any]] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)


class MemoryQueue:
    """A second kind in ~40 lines: attributes are its sub-configurations."""

    descriptor = QUEUES

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud

    def identify(self, obj: RawObject, adoption_fields: Mapping[str, Any]) -> Identity:
        name = (obj.get("spec") or {}).get("queueName") or adoption_fields.get("queueName")
        if not name:
            raise TerminalError("spec.queueName is required", reason="InvalidSpec")
        return Identity({"queueName": str(name)})

    def arn(self, identity: Identity, aws: AwsTarget) -> str:
        return f"arn:{aws.partition}:sqs:{aws.region}:{aws.account_id}:{identity['queueName']}"

    def desired(self, obj: RawObject, identity: Identity, aws: AwsTarget) -> Desired:
        spec = dict(obj.get("spec") or {})
        spec.pop("queueName", None)
        unmanaged = ("redrivePolicy",) if spec.pop("redrivePolicy", None) else ()
        return Desired(spec, unmanaged=unmanaged)

    async def locate(self, identity: Identity, desired: Desired, aws: AwsTarget) -> Located | None:
        self.cloud.calls.append("GetQueueUrl")
        return Located() if identity["queueName"] in self.cloud.queues else None

    async def owned(self, identity: Identity, aws: AwsTarget) -> bool:
        self.cloud.calls.append("ListQueues")
        return self.cloud.owners.get(identity["queueName"]) == aws.account_id

    async def create(self, identity: Identity, desired: Desired, aws: AwsTarget) -> None:
        self.cloud.calls.append("CreateQueue")
        self.cloud.queues.setdefault(identity["queueName"], {})
        self.cloud.owners.setdefault(identity["queueName"], aws.account_id)

    async def read(
        self, identity: Identity, fields: Collection[str] | None, aws: AwsTarget
    ) -> dict[str, Any]:
        self.cloud.calls.append("GetQueueAttributes")
        attributes = self.cloud.queues[identity["queueName"]]
        names = attributes.keys() if fields is None else fields
        return {name: attributes.get(name) for name in names}

    def differences(self, desired: Desired, observed: Mapping[str, Any]) -> list[str]:
        return sorted(k for k, v in desired.fields.items() if observed.get(k) != v)

    async def apply(
        self,
        identity: Identity,
        desired: Desired,
        changed: Collection[str],
        removed: Collection[str],
        aws: AwsTarget,
    ) -> None:
        attributes = self.cloud.queues[identity["queueName"]]
        for name in removed:
            self.cloud.calls.append(f"Unset {name}")
            attributes.pop(name, None)
        for name in changed:
            self.cloud.calls.append(f"Set {name}")
            attributes[name] = desired.fields[name]

    def spec_of(
        self, identity: Identity, located: Located, observed: Mapping[str, Any], aws: AwsTarget
    ) -> dict[str, Any]:
        return {"queueName": identity["queueName"], **observed}

    def status_of(
        self, identity: Identity, located: Located | None, aws: AwsTarget
    ) -> dict[str, Any]:
        return {"queueURL": f"https://sqs/{aws.account_id}/{identity['queueName']}"}

    async def delete(self, identity: Identity, aws: AwsTarget) -> None:
        self.cloud.calls.append("DeleteQueue")
        self.cloud.queues.pop(identity["queueName"], None)


def queue(spec: dict[str, Any] | None, **annotations: str) -> RawObject:
    obj: RawObject = {
        "metadata": {
            "name": "orders",
            "namespace": "prod",
            "resourceVersion": "1",
            "annotations": {
                f"services.k8s.aws/{k.replace('_', '-')}": v for k, v in annotations.items()
            },
        },
        "status": {},
    }
    if spec is not None:
        obj["spec"] = spec
    return obj


def as_synced(obj: RawObject, outcome: SyncOutcome) -> RawObject:
    """The object after the loop wrote the outcome."""
    obj = copy.deepcopy(obj)
    if outcome.spec is not None:
        obj["spec"] = outcome.spec
    obj["status"] = obj.get("status", {}) | outcome.status
    return obj


async def test_create_then_steady_state_reads_once_and_writes_nothing() -> None:
    cloud = Cloud()
    manager = KindManager(MemoryQueue(cloud))
    obj = queue({"queueName": "orders", "delaySeconds": "5"})
    outcome = await manager.sync(obj, Target())
    assert cloud.queues["orders"] == {"delaySeconds": "5"}
    assert (
        outcome.status["ackResourceMetadata"]["arn"] == "arn:aws:sqs:us-east-1:111111111111:orders"
    )
    assert outcome.status["managedConfigurations"] == ["delaySeconds"]
    cloud.calls.clear()
    await manager.sync(as_synced(obj, outcome), Target())
    assert cloud.calls == ["GetQueueUrl", "GetQueueAttributes"]


async def test_a_field_that_leaves_the_spec_is_removed_and_drift_is_restored() -> None:
    cloud = Cloud()
    manager = KindManager(MemoryQueue(cloud))
    obj = queue({"queueName": "orders", "delaySeconds": "5", "visibilityTimeout": "30"})
    obj = as_synced(obj, await manager.sync(obj, Target()))
    cloud.queues["orders"]["delaySeconds"] = "0"  # changed behind carm's back
    del obj["spec"]["visibilityTimeout"]
    obj = as_synced(obj, await manager.sync(obj, Target()))
    assert cloud.queues["orders"] == {"delaySeconds": "5"}
    assert obj["status"]["managedConfigurations"] == ["delaySeconds"]


async def test_the_identity_cannot_change() -> None:
    manager = KindManager(MemoryQueue(Cloud()))
    obj = queue({"queueName": "orders"})
    obj = as_synced(obj, await manager.sync(obj, Target()))
    obj["spec"]["queueName"] = "invoices"
    with pytest.raises(TerminalError, match="cannot change") as raised:
        await manager.sync(obj, Target())
    assert raised.value.reason == "ImmutableField"


async def test_adopt_writes_the_spec_found_in_aws_and_never_creates() -> None:
    cloud = Cloud({"legacy": {"delaySeconds": "9"}}, {"legacy": ACCOUNT})
    manager = KindManager(MemoryQueue(cloud))
    outcome = await manager.sync(
        queue(None, adoption_policy="adopt", adoption_fields='{"queueName": "legacy"}'), Target()
    )
    assert outcome.spec == {"queueName": "legacy", "delaySeconds": "9"}
    with pytest.raises(TerminalError, match="does not exist"):
        await manager.sync(queue({"queueName": "missing"}, adoption_policy="adopt"), Target())
    assert "missing" not in cloud.queues and "CreateQueue" not in cloud.calls


async def test_resources_of_other_accounts_are_neither_adopted_nor_deleted() -> None:
    cloud = Cloud({"theirs": {}}, {"theirs": "222222222222"})
    manager = KindManager(MemoryQueue(cloud))
    obj = queue({"queueName": "theirs"}, adoption_policy="adopt")
    with pytest.raises(TerminalError, match="not owned by account 111111111111"):
        await manager.sync(obj, Target())
    await manager.delete(obj, Target())  # status never recorded it as ours
    assert "theirs" in cloud.queues and "DeleteQueue" not in cloud.calls
    # Nor is a resource of its own account whose adoption never completed.
    cloud.queues["legacy"], cloud.owners["legacy"] = {}, ACCOUNT
    await manager.delete(queue({"queueName": "legacy"}, adoption_policy="adopt"), Target())
    assert "legacy" in cloud.queues and "DeleteQueue" not in cloud.calls


async def test_read_only_reports_differences_and_writes_nothing() -> None:
    cloud = Cloud({"seen": {"delaySeconds": "1"}}, {"seen": ACCOUNT})
    manager = KindManager(MemoryQueue(cloud))
    obj = queue({"queueName": "seen", "delaySeconds": "5"}, read_only="true")
    outcome = await manager.sync(obj, Target())
    (drift,) = [c for c in outcome.conditions if c.type is ConditionType.RESOURCE_SYNCED]
    assert not drift.status and "spec.delaySeconds" in drift.message
    await manager.delete(as_synced(obj, outcome), Target())
    assert cloud.queues == {"seen": {"delaySeconds": "1"}}
    assert not any(c.startswith(("Set", "Unset", "Create", "Delete")) for c in cloud.calls)
    with pytest.raises(RecoverableError, match="never creates"):
        await manager.sync(queue({"queueName": "absent"}, read_only="true"), Target())


async def test_unmanaged_fields_are_advisory() -> None:
    manager = KindManager(MemoryQueue(Cloud()))
    outcome = await manager.sync(queue({"queueName": "q", "redrivePolicy": "{}"}), Target())
    (advisory,) = outcome.conditions
    assert advisory.type is ConditionType.ADVISORY and "spec.redrivePolicy" in advisory.message


@pytest.mark.parametrize(
    ("annotation", "value"),
    [("adoption_policy", "take-it"), ("adoption_fields", "{name"), ("read_only", "yes")],
)
def test_unreadable_annotations_are_terminal_and_named(annotation: str, value: str) -> None:
    with pytest.raises(TerminalError) as raised:
        policy_of(queue({}, **{annotation: value}))
    assert annotation.replace("_", "-") in raised.value.message and value in raised.value.message


def test_resource_tags_expand_acks_variables_and_the_spec_wins() -> None:
    templates = parse_resource_tags(
        [
            "services.k8s.aws/controller-version=%CONTROLLER_SERVICE%-%CONTROLLER_VERSION%",
            "services.k8s.aws/namespace=%K8S_NAMESPACE%",
            "by=%MANAGED_BY%",
            "name=%K8S_RESOURCE_KIND%/%K8S_RESOURCE_NAME%",
        ]
    )
    tags = expand(templates, TagContext("s3", "prod", "logs", "Bucket"))
    assert tags == {
        "services.k8s.aws/controller-version": "s3-v0.1.0",
        "services.k8s.aws/namespace": "prod",
        "name": "Bucket/logs",
    }  # %MANAGED_BY% expanded to nothing: left out, as ACK does
    assert merge(tags, {"name": "mine"})["name"] == "mine"
    with pytest.raises(ValueError, match="key=value"):
        parse_resource_tags(["no-equals-sign"])


# -- the loop writes what the engine returns --


@dataclass
class Store:
    obj: RawObject
    writes: list[str] = field(default_factory=list)

    def get(self, key: ObjectKey) -> RawObject | None:
        return self.obj

    async def set_finalizers(self, obj: RawObject, finalizers: list[str]) -> RawObject:
        self.writes.append("finalizers")
        self.obj = copy.deepcopy(self.obj)
        self.obj["metadata"]["finalizers"] = finalizers
        return self.obj

    async def replace_spec(self, obj: RawObject, spec: dict[str, Any]) -> RawObject:
        self.writes.append("spec")
        self.obj = copy.deepcopy(self.obj) | {"spec": spec}
        return self.obj

    async def patch_status(self, obj: RawObject, status: dict[str, Any]) -> RawObject:
        self.writes.append("status")
        self.obj = copy.deepcopy(self.obj)
        self.obj["status"] = {
            k: v for k, v in (self.obj.get("status", {}) | status).items() if v is not None
        }
        return self.obj


@dataclass
class Queue:
    def __aiter__(self) -> Any:
        raise AssertionError("not used")

    def done(self, key: ObjectKey) -> None: ...
    def forget(self, key: ObjectKey) -> None: ...
    def remove(self, key: ObjectKey) -> None: ...
    def set_lane(self, key: ObjectKey, lane: str) -> None: ...
    def add_after(self, key: ObjectKey, delay: float, lane: str | None = None) -> None: ...

    def requeue_with_backoff(self, key: ObjectKey, at_least: float = 0.0) -> float:
        return 1.0


@dataclass
class Targets:
    async def target_for(self, obj: RawObject) -> AwsTarget:
        return Target()

    def lane_of(self, namespace: str) -> str:
        return ACCOUNT


async def test_the_loop_writes_an_adopted_spec_before_the_status() -> None:
    cloud = Cloud({"legacy": {"delaySeconds": "9"}}, {"legacy": ACCOUNT})
    store = Store(queue(None, adoption_policy="adopt", adoption_fields='{"queueName": "legacy"}'))
    reconciler = Reconciler(
        kind="Queue",
        store=store,
        queue=Queue(),
        targets=Targets(),
        manager=KindManager(MemoryQueue(cloud)),
        writer=store,
        clock=FakeClock(),
    )
    result = await reconciler.reconcile(ObjectKey("prod", "orders"))
    assert result.outcome == "success"
    assert store.writes == ["finalizers", "spec", "status"]
    assert store.obj["spec"] == {"queueName": "legacy", "delaySeconds": "9"}
    assert condition_status(store.obj["status"], ConditionType.RESOURCE_SYNCED) == "True"
    assert store.obj["metadata"]["finalizers"] == ["finalizers.sqs.services.k8s.aws/Queue"]
