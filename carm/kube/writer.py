"""The reconcile loop's Kubernetes writes (`ResourceWriter`) for one kind, over `KubeClient`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from carm.events import RawObject
from carm.kube.client import KubeApiError, KubeClient, ResourceRef
from carm.reconcile.interfaces import ObjectGone, WriteConflict


class KubeResourceWriter:
    def __init__(self, client: KubeClient, ref: ResourceRef) -> None:
        self._client = client
        self._ref = ref

    async def set_finalizers(self, obj: RawObject, finalizers: list[str]) -> RawObject:
        meta = obj["metadata"]
        # resourceVersion in a patch is a precondition: a finalizer list computed from a stale
        # copy must not overwrite another controller's finalizers.
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}}
        return await self._patch(obj, patch, None)

    async def patch_status(self, obj: RawObject, status: dict[str, Any]) -> RawObject:
        return await self._patch(obj, {"status": status}, "status")

    async def replace_spec(self, obj: RawObject, spec: dict[str, Any]) -> RawObject:
        meta = obj["metadata"]
        # A JSON patch, not a merge patch: a merge would keep spec fields the new spec leaves
        # out. The resourceVersion in it is a precondition, as in set_finalizers.
        operations = [
            {
                "op": "replace",
                "path": "/metadata/resourceVersion",
                "value": meta["resourceVersion"],
            },
            {"op": "add", "path": "/spec", "value": spec},
        ]
        with _reconcile_errors():
            return await self._client.json_patch(
                self._ref, meta["name"], operations, meta.get("namespace")
            )

    async def _patch(self, obj: RawObject, patch: RawObject, subresource: str | None) -> RawObject:
        meta = obj["metadata"]
        with _reconcile_errors():
            return await self._client.merge_patch(
                self._ref, meta["name"], patch, meta.get("namespace"), subresource=subresource
            )


@contextmanager
def _reconcile_errors() -> Iterator[None]:
    """The API server's 409 and 404 as the reconcile loop's WriteConflict and ObjectGone."""
    try:
        yield
    except KubeApiError as error:
        if error.conflict:
            raise WriteConflict(str(error)) from error
        if error.not_found:
            raise ObjectGone(str(error)) from error
        raise
