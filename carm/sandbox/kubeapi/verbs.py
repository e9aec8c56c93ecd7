"""The verbs (get, list, create, update, patch, delete) with the apiserver's semantics.

What a write goes through, in the apiserver's order:

1. **decode**: the body gets its kind and apiVersion, its namespace from the URL; unknown fields
   are pruned and reported per `fieldValidation` (Strict refuses with 400, Warn warns);
   built-in kinds refuse fields of the wrong type with 400 as their Go decoder does;
2. **merge with the stored object** (update and patch): a write to the main resource keeps the
   stored `status` of a kind with a status subresource, a write to `/status` changes nothing but
   `status`; server-owned metadata (uid, timestamps, generation) always comes from storage;
3. **kind rules** (`strategies.py`), schema **defaults**, then **validation** (422 Invalid);
4. **generation** is bumped when anything but metadata (and status, when separate) changed;
5. a write that changes nothing is answered with the stored object: no new resourceVersion,
   no watch event;
6. otherwise the object takes the next resourceVersion and is stored, and the **cascades** run:
   a CRD is (re)served, a deleted Namespace or CRD deletes what it holds, and the last object
   gone from a terminating Namespace or CRD finalizes it.

An object with finalizers is not deleted but marked (`deletionTimestamp`); whichever write
removes its last finalizer removes the object. Nothing here awaits, so each verb is atomic.
"""

from __future__ import annotations

import base64
import binascii
import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import yaml

from carm.sandbox.kubeapi import crds, managed_fields, schema, strategies
from carm.sandbox.kubeapi.apply import server_side_apply
from carm.sandbox.kubeapi.errors import (
    already_exists,
    bad_request,
    conflict,
    expired,
    forbidden,
    invalid,
    method_not_allowed,
    namespace_not_found,
    not_found,
    unsupported_media_type,
)
from carm.sandbox.kubeapi.metadata import (
    SERVER_OWNED_META,
    generated_name,
    meta_problems,
    name_problem,
    new_uid,
    now_rfc3339,
    spec_changed,
)
from carm.sandbox.kubeapi.patch import json_patch, merge_patch, strategic_merge_patch
from carm.sandbox.kubeapi.registry import Registry, ResourceType
from carm.sandbox.kubeapi.selectors import Predicate
from carm.sandbox.kubeapi.shapes import Shape
from carm.sandbox.kubeapi.storage import ResourceKey, Store

NAMESPACES: ResourceKey = ("", "namespaces")
CRDS: ResourceKey = ("apiextensions.k8s.io", "customresourcedefinitions")

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

_FIELD_VALIDATION = ("Ignore", "Warn", "Strict")


@dataclass(frozen=True, slots=True)
class WriteOptions:
    field_validation: str = "Warn"  # the apiserver's default when the request names none
    dry_run: bool = False
    field_manager: str = ""
    force: bool = False  # apply only: take fields other managers own


@dataclass(slots=True)
class Outcome:
    """What a verb answers: the body, its HTTP code and any `Warning` headers."""

    body: dict[str, Any]
    code: int = 200
    warnings: list[str] = field(default_factory=list)


def rkey(rtype: ResourceType) -> ResourceKey:
    return (rtype.group, rtype.plural)


def deep_copy(obj: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads(orjson.dumps(obj))
    return result


def present(rtype: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """The stored object as the requested version shows it (same storage for every version)."""
    if obj.get("apiVersion") == rtype.api_version:
        return obj
    return {**obj, "apiVersion": rtype.api_version}


def _is_deleting(obj: dict[str, Any] | None) -> bool:
    return bool(obj and obj["metadata"].get("deletionTimestamp"))


class Verbs:
    """Every verb on every kind, over one `Store` and the `Registry` of served kinds."""

    def __init__(
        self,
        registry: Registry,
        store: Store,
        on_unserved: Callable[[ResourceKey], None] = lambda _key: None,
    ) -> None:
        self.registry = registry
        self.store = store
        self._on_unserved = on_unserved
        self._crd_types: dict[str, list[ResourceType]] = {}

    # -- reads --------------------------------------------------------------------------------

    def get(self, rtype: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        found = self.store.get(rkey(rtype), namespace, name)
        if found is None:
            raise not_found(rtype, name)
        return present(rtype, found)

    def list_collection(
        self,
        rtype: ResourceType,
        namespace: str | None,
        *,
        predicate: Predicate | None = None,
        limit: int = 0,
        continue_token: str = "",
    ) -> dict[str, Any]:
        """A page of the collection in key order; `continue` resumes after the last key.

        Continued pages show the collection as it was at the first page's resourceVersion,
        rolled back through the change history, as the apiserver (reading etcd at that
        revision) does. Should the history no longer reach back that far through mere
        overflow, the page shows the current state instead: this server's history is much
        shorter than etcd's, and an expired list under load would be an artefact of that.
        """
        collection = self.store.collection(rkey(rtype))
        keys = collection.sorted_keys(namespace)
        list_version = self.store.resource_version
        start = 0
        rolled_back: dict[tuple[str, str], dict[str, Any] | None] = {}
        if continue_token:
            list_version, after = self._decode_continue(continue_token)
            rolled_back = self.store.changed_since(rkey(rtype), list_version) or {}
            if namespace is not None:
                rolled_back = {k: v for k, v in rolled_back.items() if k[0] == namespace}
            if rolled_back:
                keys = sorted(set(keys) | set(rolled_back))
            start = bisect.bisect_right(keys, after)
        items: list[dict[str, Any]] = []
        metadata: dict[str, Any] = {"resourceVersion": str(list_version)}
        for index in range(start, len(keys)):
            key = keys[index]
            obj = rolled_back[key] if key in rolled_back else collection.get(*key)
            if obj is None or (predicate is not None and not predicate(obj)):
                continue
            if limit and len(items) == limit:
                last = items[-1]["metadata"]
                metadata["continue"] = self._encode_continue(
                    list_version, (last.get("namespace") or "", last["name"])
                )
                if predicate is None and not rolled_back:
                    metadata["remainingItemCount"] = len(keys) - index
                break
            items.append(present(rtype, obj))
        return {
            "kind": rtype.list_kind_name,
            "apiVersion": rtype.api_version,
            "metadata": metadata,
            "items": items,
        }

    @staticmethod
    def _encode_continue(version: int, after: tuple[str, str]) -> str:
        raw = orjson.dumps({"v": version, "s": list(after)})
        return base64.urlsafe_b64encode(raw).decode()

    def _decode_continue(self, token: str) -> tuple[int, tuple[str, str]]:
        try:
            decoded = orjson.loads(base64.urlsafe_b64decode(token.encode()))
            version, (namespace, name) = int(decoded["v"]), decoded["s"]
        except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError):
            raise bad_request(f"continue key is not valid: {token!r}") from None
        if self.store.continue_expired(version):
            raise expired(
                "The provided continue parameter is too old to display a consistent list result."
                " You can start a new list without the continue parameter."
            )
        return version, (str(namespace), str(name))

    # -- create -------------------------------------------------------------------------------

    def create(
        self, rtype: ResourceType, namespace: str, body: Any, options: WriteOptions
    ) -> Outcome:
        obj = self._body(rtype, body)
        meta = obj["metadata"]
        self._place(rtype, namespace, meta)
        warnings = self._decode(rtype, obj, options)
        if not meta.get("name") and not meta.get("generateName"):
            raise invalid(
                rtype,
                "",
                [
                    {
                        "reason": "FieldValueRequired",
                        "field": "metadata.name",
                        "message": "Required value: name or generateName is required",
                    }
                ],
            )
        self._admit_create(rtype, namespace, meta.get("name") or meta["generateName"])
        for key in (*SERVER_OWNED_META, "resourceVersion", "generation", "selfLink"):
            meta.pop(key, None)
        requested = meta.get("managedFields")
        _set_entries(meta, managed_fields.after_write(requested, None, subresource=None))
        strategies.prepare_create(rtype, obj)
        if rtype.custom:
            schema.apply_defaults(rtype.schema, obj)
        collection = self.store.collection(rkey(rtype))
        if not meta.get("name"):
            for _ in range(16):
                meta["name"] = generated_name(meta["generateName"])
                if collection.get(namespace, meta["name"]) is None:
                    break
        self._validate(rtype, obj, None)
        strategies.after_validation(rtype, None, obj)
        if collection.get(namespace, meta["name"]) is not None:
            raise already_exists(rtype, meta["name"])
        meta["uid"] = new_uid()
        meta["creationTimestamp"] = now_rfc3339()
        if rtype.extra.get("generation"):
            meta["generation"] = 1
        if options.dry_run:
            return Outcome(present(rtype, obj), 201, warnings)
        meta["resourceVersion"] = str(self.store.next_version())
        self.store.put(rkey(rtype), obj, "ADDED", None)
        self._after_change(rtype, None, obj)
        return Outcome(present(rtype, obj), 201, warnings)

    def _admit_create(self, rtype: ResourceType, namespace: str, name: str) -> None:
        if rtype.namespaced:
            holder = self.store.get(NAMESPACES, "", namespace)
            if holder is None:
                raise namespace_not_found(namespace)
            if _is_deleting(holder):
                raise forbidden(
                    rtype,
                    name,
                    f"unable to create new content in namespace {namespace} because it is "
                    "being terminated",
                )
        if rtype.custom:
            crd = self.store.get(CRDS, "", rtype.extra.get("crd", ""))
            if _is_deleting(crd):
                raise method_not_allowed(
                    "create not allowed while custom resource definition is terminating"
                )

    # -- update and patch ---------------------------------------------------------------------

    def update(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        options: WriteOptions,
        subresource: str | None = None,
    ) -> Outcome:
        obj = self._body(rtype, body)
        meta = obj["metadata"]
        self._address(rtype, namespace, name, meta)
        old = self.store.get(rkey(rtype), namespace, name)
        if old is None:
            if rtype.extra.get("create_on_update") and subresource is None:
                return self.create(rtype, namespace, obj, options)
            raise not_found(rtype, name)
        warnings = self._decode(rtype, obj, options)
        wanted = meta.get("resourceVersion")
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise conflict(rtype, name)
        return self._replace(rtype, old, obj, options, subresource, warnings)

    def patch(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        raw: bytes,
        content_type: str,
        options: WriteOptions,
        subresource: str | None = None,
    ) -> Outcome:
        media = content_type.split(";")[0].strip().lower()
        if media == APPLY_PATCH:
            return self._apply(rtype, namespace, name, raw, options, subresource)
        if media not in (MERGE_PATCH, JSON_PATCH, STRATEGIC_MERGE_PATCH) or (
            media == STRATEGIC_MERGE_PATCH and not rtype.strategic_merge
        ):
            raise unsupported_media_type(content_type)
        old = self.store.get(rkey(rtype), namespace, name)
        if old is None:
            raise not_found(rtype, name)
        try:
            patch = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise bad_request(f"error decoding patch: {error}") from None
        current = deep_copy(present(rtype, old))
        if media == MERGE_PATCH:
            patched = merge_patch(current, patch)
        elif media == JSON_PATCH:
            patched = json_patch(current, patch)
        else:
            patched = strategic_merge_patch(current, patch, rtype.extra.get("merge_keys", {}))
        return self._write_patched(rtype, old, patched, options, subresource)

    def _write_patched(
        self,
        rtype: ResourceType,
        old: dict[str, Any],
        patched: Any,
        options: WriteOptions,
        subresource: str | None,
    ) -> Outcome:
        if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
            raise bad_request("the patched object is not a Kubernetes object")
        old_meta = old["metadata"]
        meta = patched["metadata"]
        meta["name"] = old_meta["name"]
        if "namespace" in old_meta:
            meta["namespace"] = old_meta["namespace"]
        warnings = self._decode(rtype, patched, options)
        wanted = meta.get("resourceVersion")
        if wanted and wanted != old_meta["resourceVersion"]:
            raise conflict(rtype, old_meta["name"])
        return self._replace(rtype, old, patched, options, subresource, warnings)

    def _apply(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        raw: bytes,
        options: WriteOptions,
        subresource: str | None,
    ) -> Outcome:
        """Server-side apply with field ownership (see apply.py)."""
        if not options.field_manager:
            raise bad_request(
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is '
                "required for apply patch"
            )
        try:
            applied = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            raise bad_request(f"error decoding YAML: {error}") from None
        if not isinstance(applied, dict):
            raise bad_request("apply patch must be an object")
        config = self._body(rtype, applied)
        meta = config["metadata"]
        if meta.get("managedFields") is not None:
            raise bad_request("metadata.managedFields must be nil")
        self._address(rtype, namespace, name, meta)
        warnings = self._decode(rtype, config, options)
        old = self.store.get(rkey(rtype), namespace, name)
        if old is None and subresource is not None:
            raise not_found(rtype, name)
        wanted = meta.get("resourceVersion")
        if old is not None and wanted and wanted != old["metadata"]["resourceVersion"]:
            raise conflict(rtype, name)
        if rtype.has_status:
            # What the written part cannot change is not applied (the apiserver's reset fields).
            if subresource == "status":
                kept = ("apiVersion", "kind", "status")
                config = {key: config[key] for key in kept if key in config}
                config["metadata"] = {"name": name}
            else:
                config.pop("status", None)
        obj = server_side_apply(
            present(rtype, old) if old is not None else None,
            config,
            applier=(options.field_manager, subresource or ""),
            api_version=rtype.api_version,
            shape=Shape.of_kind(rtype.schema, rtype.extra.get("merge_keys")),
            force=options.force,
            now=now_rfc3339(),
        )
        if old is None:
            outcome = self.create(rtype, namespace, obj, options)
        else:
            outcome = self._replace(rtype, old, obj, options, subresource, [], applied=True)
        outcome.warnings[:0] = warnings
        return outcome

    def _replace(
        self,
        rtype: ResourceType,
        old: dict[str, Any],
        obj: dict[str, Any],
        options: WriteOptions,
        subresource: str | None,
        warnings: list[str],
        *,
        applied: bool = False,
    ) -> Outcome:
        requested = obj["metadata"].get("managedFields")
        new = self._merge_subresource(rtype, old, obj, subresource)
        meta = new["metadata"]
        old_meta = old["metadata"]
        for key in (*SERVER_OWNED_META, "generation", "resourceVersion"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        meta.pop("selfLink", None)
        if subresource is None:
            strategies.prepare_update(rtype, old, new)
            if rtype.custom:
                schema.apply_defaults(rtype.schema, new)
        if applied:  # server_side_apply worked out the entries
            _set_entries(meta, requested)
        else:
            entries = managed_fields.after_write(
                requested, old_meta.get("managedFields"), subresource=subresource
            )
            _set_entries(meta, managed_fields.forget_removed(entries, new, subresource=subresource))
        self._validate(rtype, new, old)
        strategies.after_validation(rtype, old, new)
        if rtype.extra.get("generation") and spec_changed(
            old, new, status_is_separate=rtype.has_status
        ):
            meta["generation"] = int(old_meta.get("generation") or 0) + 1
        if new == old:
            return Outcome(present(rtype, old), 200, warnings)
        if options.dry_run:
            return Outcome(present(rtype, new), 200, warnings)
        meta["resourceVersion"] = str(self.store.next_version())
        if _is_deleting(new) and not self._held(rtype, new):
            self.store.remove(rkey(rtype), new)
            self._after_remove(rtype, new)
        else:
            self.store.put(rkey(rtype), new, "MODIFIED", old)
            self._after_change(rtype, old, new)
        return Outcome(present(rtype, new), 200, warnings)

    @staticmethod
    def _merge_subresource(
        rtype: ResourceType, old: dict[str, Any], obj: dict[str, Any], subresource: str | None
    ) -> dict[str, Any]:
        if subresource is None:
            if rtype.has_status:
                if "status" in old:
                    obj["status"] = old["status"]
                else:
                    obj.pop("status", None)
            return obj
        new = deep_copy(old)
        if subresource == "status":
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
        elif subresource == "finalize" and strategies.is_namespace(rtype):
            finalizers = (obj.get("spec") or {}).get("finalizers") or []
            new.setdefault("spec", {})["finalizers"] = finalizers
        else:
            raise not_found(rtype, old["metadata"]["name"])
        return new

    # -- delete -------------------------------------------------------------------------------

    def delete(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        options: dict[str, Any],
        *,
        dry_run: bool = False,
    ) -> Outcome:
        old = self.store.get(rkey(rtype), namespace, name)
        if old is None:
            raise not_found(rtype, name)
        preconditions = options.get("preconditions") or {}
        meta = old["metadata"]
        if preconditions.get("uid") and preconditions["uid"] != meta["uid"]:
            raise conflict(
                rtype,
                name,
                f"Precondition failed: UID in precondition: {preconditions['uid']}, UID in "
                f"object meta: {meta['uid']}",
            )
        wanted = preconditions.get("resourceVersion")
        if wanted and wanted != meta["resourceVersion"]:
            raise conflict(
                rtype,
                name,
                f"Precondition failed: ResourceVersion in precondition: {wanted}, "
                f"ResourceVersion in meta: {meta['resourceVersion']}",
            )
        if dry_run:
            return Outcome(present(rtype, old))
        return self._delete(rtype, old)

    def _delete(self, rtype: ResourceType, old: dict[str, Any]) -> Outcome:
        meta = old["metadata"]
        if _is_deleting(old):
            return Outcome(present(rtype, old))
        version = str(self.store.next_version())
        if meta.get("finalizers") or strategies.is_namespace(rtype):
            new = {
                **old,
                "metadata": {
                    **meta,
                    "deletionTimestamp": now_rfc3339(),
                    "deletionGracePeriodSeconds": 0,
                    "resourceVersion": version,
                },
            }
            if strategies.is_namespace(rtype):
                new["status"] = {**(old.get("status") or {}), "phase": "Terminating"}
            self.store.put(rkey(rtype), new, "MODIFIED", old)
            self._after_change(rtype, old, new)
            return Outcome(present(rtype, new))
        final = {**old, "metadata": {**meta, "resourceVersion": version}}
        self.store.remove(rkey(rtype), final)
        self._after_remove(rtype, final)
        details: dict[str, Any] = {"name": meta["name"], "kind": rtype.plural, "uid": meta["uid"]}
        if rtype.group:
            details["group"] = rtype.group
        return Outcome(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            }
        )

    def delete_collection(
        self, rtype: ResourceType, namespace: str | None, predicate: Predicate | None
    ) -> dict[str, Any]:
        listed = self.list_collection(rtype, namespace, predicate=predicate)
        for obj in listed["items"]:
            current = self.store.get(
                rkey(rtype), obj["metadata"].get("namespace") or "", obj["metadata"]["name"]
            )
            if current is not None:
                self._delete(rtype, current)
        return listed

    # -- decoding and validation --------------------------------------------------------------

    @staticmethod
    def _body(rtype: ResourceType, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request(f"{rtype.kind} in body must be a JSON object")
        kind = body.get("kind") or rtype.kind
        api_version = body.get("apiVersion") or rtype.api_version
        if kind != rtype.kind:
            raise bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rtype.kind})"
            )
        if api_version.split("/")[0] != rtype.api_version.split("/")[0] and rtype.group:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rtype.api_version})"
            )
        body["kind"] = kind
        body["apiVersion"] = rtype.api_version
        metadata = body.get("metadata")
        if metadata is None:
            body["metadata"] = {}
        elif not isinstance(metadata, dict):
            raise bad_request(f"{rtype.kind} metadata must be a JSON object")
        return body

    @staticmethod
    def _address(rtype: ResourceType, namespace: str, name: str, meta: dict[str, Any]) -> None:
        """Give a written body the name and namespace of its URL; a body naming another fails."""
        if meta.get("name") and meta["name"] != name:
            raise bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({name})"
            )
        meta["name"] = name
        Verbs._place(rtype, namespace, meta)

    @staticmethod
    def _place(rtype: ResourceType, namespace: str, meta: dict[str, Any]) -> None:
        if not rtype.namespaced:
            meta.pop("namespace", None)
            return
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        meta["namespace"] = namespace

    @staticmethod
    def _decode(rtype: ResourceType, obj: dict[str, Any], options: WriteOptions) -> list[str]:
        if options.field_validation not in _FIELD_VALIDATION:
            raise bad_request(
                f"fieldValidation must be one of Ignore, Warn or Strict, not "
                f"{options.field_validation!r}"
            )
        _check_meta_types(rtype, obj["metadata"])
        unknown = schema.prune(rtype.schema, obj)
        if unknown and options.field_validation == "Strict":
            raise bad_request(
                f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}: '
                "strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in unknown)
            )
        if not rtype.custom:
            for cause in schema.validate(rtype.schema, obj):
                if cause["reason"] == "FieldValueTypeInvalid":
                    raise bad_request(
                        f'{rtype.kind} in version "{rtype.version}" cannot be handled as a '
                        f"{rtype.kind}: json: cannot unmarshal {cause['message']} "
                        f"(field {rtype.kind}.{cause['field']})"
                    )
        if unknown and options.field_validation == "Warn":
            return [f'unknown field "{path}"' for path in unknown]
        return []

    def _validate(
        self, rtype: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        meta = obj["metadata"]
        name = meta.get("name") or ""
        causes: list[dict[str, str]] = []
        if old is None:
            problem = name_problem(name, label=strategies.is_namespace(rtype))
            if problem:
                causes.append(
                    {
                        "reason": "FieldValueInvalid",
                        "field": "metadata.name",
                        "message": f'Invalid value: "{name}": {problem}',
                    }
                )
        causes.extend(meta_problems(meta))
        if rtype.custom:
            causes.extend(schema.validate(rtype.schema, obj))
        elif strategies.is_crd(rtype):
            causes.extend(crds.validate(obj))
        if old is not None:
            causes.extend(_update_rules(old, obj))
        if causes:
            raise invalid(rtype, name, causes)

    def _held(self, rtype: ResourceType, obj: dict[str, Any]) -> bool:
        """Whether something other than metadata.finalizers still holds a deleted object."""
        if obj["metadata"].get("finalizers"):
            return True
        return strategies.is_namespace(rtype) and bool((obj.get("spec") or {}).get("finalizers"))

    # -- cascades -----------------------------------------------------------------------------

    def type_for(self, resource: ResourceKey) -> ResourceType | None:
        """A served type of a storage resource (any version; the storage one if known)."""
        found = [rtype for rtype in self.registry if rkey(rtype) == resource]
        return found[0] if found else None

    def _after_change(
        self, rtype: ResourceType, old: dict[str, Any] | None, new: dict[str, Any]
    ) -> None:
        if strategies.is_crd(rtype):
            self._serve_crd(new)
            if _is_deleting(new) and not _is_deleting(old):
                self._empty_crd(new)
        elif strategies.is_namespace(rtype) and _is_deleting(new) and not _is_deleting(old):
            self._empty_namespace(new["metadata"]["name"])

    def _after_remove(self, rtype: ResourceType, obj: dict[str, Any]) -> None:
        namespace = obj["metadata"].get("namespace")
        if namespace:
            self._maybe_finalize_namespace(namespace)
        if rtype.custom:
            self._maybe_finalize_crd(rtype.extra.get("crd", ""))
        if strategies.is_crd(rtype):
            self._unserve_crd(obj)

    def _empty_namespace(self, namespace: str) -> None:
        for resource in self.store.resources_in_namespace(namespace):
            rtype = self.type_for(resource)
            if rtype is None:
                continue
            for obj in list(self.store.iter_objects(resource, namespace)):
                self._delete(rtype, obj)
        self._maybe_finalize_namespace(namespace)

    def _maybe_finalize_namespace(self, namespace: str) -> None:
        holder = self.store.get(NAMESPACES, "", namespace)
        if not _is_deleting(holder) or not self.store.namespace_is_empty(namespace):
            return
        assert holder is not None
        spec = holder.get("spec") or {}
        finalizers = [
            f for f in spec.get("finalizers") or () if f != strategies.NAMESPACE_FINALIZER
        ]
        if finalizers == (spec.get("finalizers") or []):
            return  # someone else's finalizer still holds it
        # The namespace controller's last step: drop the `kubernetes` finalizer; with nothing
        # else holding the namespace, that removes it.
        new = {
            **holder,
            "spec": {**spec, "finalizers": finalizers},
            "metadata": {**holder["metadata"], "resourceVersion": str(self.store.next_version())},
        }
        namespace_type = self.type_for(NAMESPACES)
        assert namespace_type is not None
        if self._held(namespace_type, new):
            self.store.put(NAMESPACES, new, "MODIFIED", holder)
        else:
            self.store.remove(NAMESPACES, new)

    def _serve_crd(self, crd: dict[str, Any]) -> None:
        name = crd["metadata"]["name"]
        for previous in self._crd_types.pop(name, []):
            self.registry.remove(previous.group, previous.version, previous.plural)
        served = crds.served_types(crd)
        for rtype in served:
            self.registry.add(rtype)
        self._crd_types[name] = served

    def _empty_crd(self, crd: dict[str, Any]) -> None:
        names = crd["spec"]["names"]
        resource = (crd["spec"]["group"], names["plural"])
        rtype = self.type_for(resource)
        if rtype is not None:
            for obj in list(self.store.iter_objects(resource, None)):
                self._delete(rtype, obj)
        self._maybe_finalize_crd(crd["metadata"]["name"])

    def _maybe_finalize_crd(self, name: str) -> None:
        crd = self.store.get(CRDS, "", name)
        if crd is None or not _is_deleting(crd):
            return
        resource = (crd["spec"]["group"], crd["spec"]["names"]["plural"])
        if self.store.collection(resource).count:
            return
        finalizers = [
            f for f in crd["metadata"].get("finalizers") or () if f != crds.CLEANUP_FINALIZER
        ]
        new = {
            **crd,
            "metadata": {
                **crd["metadata"],
                "finalizers": finalizers,
                "resourceVersion": str(self.store.next_version()),
            },
        }
        if not finalizers:
            del new["metadata"]["finalizers"]
            self.store.remove(CRDS, new)
            self._unserve_crd(new)
        else:
            self.store.put(CRDS, new, "MODIFIED", crd)

    def _unserve_crd(self, crd: dict[str, Any]) -> None:
        for rtype in self._crd_types.pop(crd["metadata"]["name"], []):
            self.registry.remove(rtype.group, rtype.version, rtype.plural)
        resource = (crd["spec"]["group"], crd["spec"]["names"]["plural"])
        self.store.drop_collection(resource)
        self._on_unserved(resource)


def _set_entries(meta: dict[str, Any], entries: Any) -> None:
    if entries:
        meta["managedFields"] = entries
    else:
        meta.pop("managedFields", None)


def _check_meta_types(rtype: ResourceType, meta: dict[str, Any]) -> None:
    """ObjectMeta fields of the wrong JSON type fail decoding (400), as with the Go type."""
    for key in ("labels", "annotations"):
        value = meta.get(key)
        if value is not None and (
            not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values())
        ):
            raise bad_request(
                f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}: '
                f"metadata.{key} must be a map of strings"
            )
    for key in ("finalizers", "ownerReferences"):
        value = meta.get(key)
        if value is not None and not isinstance(value, list):
            raise bad_request(
                f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}: '
                f"metadata.{key} must be a list"
            )


def _update_rules(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, str]]:
    """What an update may not do: add finalizers while deleting, change immutable data."""
    causes: list[dict[str, str]] = []
    if _is_deleting(old):
        before = set(old["metadata"].get("finalizers") or ())
        added = [f for f in new["metadata"].get("finalizers") or () if f not in before]
        if added:
            shown = ", ".join(f'"{f}"' for f in added)
            causes.append(
                {
                    "reason": "FieldValueForbidden",
                    "field": "metadata.finalizers",
                    "message": "Forbidden: no new finalizers can be added if the object is being "
                    f"deleted, found new finalizers []string{{{shown}}}",
                }
            )
    if old.get("immutable") is True:
        for key in ("data", "binaryData", "immutable"):
            if old.get(key) != new.get(key):
                causes.append(
                    {
                        "reason": "FieldValueForbidden",
                        "field": key,
                        "message": "Forbidden: field is immutable when `immutable` is set",
                    }
                )
    return causes
