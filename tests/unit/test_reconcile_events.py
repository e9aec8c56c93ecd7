"""Which reconciles become Kubernetes Events: the AWS resource created, a spec change synced,
the resource deleted, a terminal error; a resync that changes nothing records nothing."""

from __future__ import annotations

from dataclasses import dataclass, field

from carm.clock import FakeClock
from carm.events import ObjectKey, RawObject
from carm.reconcile.errors import RecoverableError, TerminalError
from carm.reconcile.loop import Reconciler
from tests.unit.test_reconcile_loop import KEY, Manager, Queue, Targets, Writer


@dataclass
class Recorder:
    events: list[tuple[str, str, str]] = field(default_factory=list)

    def record(self, obj: RawObject, type_: str, reason: str, message: str) -> None:
        assert obj["metadata"]["name"] == KEY.name
        self.events.append((type_, reason, message))


def build(
    targets: Targets | None = None,
) -> tuple[Reconciler, dict[ObjectKey, RawObject], Manager, Recorder]:
    store: dict[ObjectKey, RawObject] = {
        KEY: {
            "metadata": {
                "name": KEY.name,
                "namespace": KEY.namespace,
                "resourceVersion": "1",
                "generation": 1,
            },
            "spec": {"name": "my-bucket"},
        }
    }
    manager, recorder = Manager(store=store), Recorder()
    reconciler = Reconciler(
        kind="Bucket",
        store=store,
        queue=Queue(),
        targets=targets or Targets(),
        manager=manager,
        writer=Writer(store),
        clock=FakeClock(),
        recorder=recorder,
    )
    return reconciler, store, manager, recorder


async def test_created_once_then_resyncs_are_silent() -> None:
    reconciler, _, _, recorder = build()
    await reconciler.reconcile(KEY)
    assert recorder.events == [
        ("Normal", "Created", "Bucket created in AWS account 111111111111 (us-east-1)")
    ]
    await reconciler.reconcile(KEY)
    await reconciler.reconcile(KEY)
    assert len(recorder.events) == 1


async def test_a_spec_change_synced_is_an_update() -> None:
    reconciler, store, _, recorder = build()
    await reconciler.reconcile(KEY)
    store[KEY]["metadata"]["generation"] = 2
    await reconciler.reconcile(KEY)
    assert recorder.events[-1] == (
        "Normal",
        "Updated",
        "spec (generation 2) synced in AWS account 111111111111 (us-east-1)",
    )


async def test_deletion_is_recorded() -> None:
    reconciler, store, _, recorder = build()
    await reconciler.reconcile(KEY)
    store[KEY]["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    await reconciler.reconcile(KEY)
    assert recorder.events[-1] == (
        "Normal",
        "Deleted",
        "Bucket deleted in AWS account 111111111111 (us-east-1)",
    )


async def test_terminal_errors_warn_and_recoverable_ones_do_not() -> None:
    reconciler, _, manager, recorder = build()
    manager.error = RecoverableError("throttled", reason="Throttling")
    await reconciler.reconcile(KEY)
    assert recorder.events == []
    manager.error = TerminalError("bucket name taken by another account", reason="NameTaken")
    await reconciler.reconcile(KEY)
    assert recorder.events == [("Warning", "NameTaken", "bucket name taken by another account")]
