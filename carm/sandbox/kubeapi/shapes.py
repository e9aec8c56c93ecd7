"""How the fields of a kind merge under server-side apply: granular or atomic, and how lists key.

The apiserver reads this from its type models: for custom resources from the CRD schema's
`x-kubernetes-list-type` (`atomic` by default, `set`, or `map` keyed by
`x-kubernetes-list-map-keys`) and `x-kubernetes-map-type` (`granular` by default, `atomic`); for
built-in kinds from their Go types, which this server knows through the strategic-merge keys it
already keeps (`merge_keys` in builtins.py: a key names a map list, "" a set). Every kind's
`metadata` is the ObjectMeta type, the schema openapi.py publishes. Fields a schema does not
describe (under `x-kubernetes-preserve-unknown-fields`, or with no schema) are untyped, as the
apiserver deduces them: maps granular, lists atomic.

A `Shape` is one node of that model; it is walked alongside a value and never copies a schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from carm.sandbox.kubeapi.openapi import OBJECT_META_SCHEMA

ATOMIC = "atomic"
SET = "set"
MAP = "map"


@dataclass(frozen=True, slots=True)
class Shape:
    """One node of a kind's merge model: its schema (None when untyped) and its dotted path."""

    schema: Mapping[str, Any] | None
    path: str = ""
    # Built-in kinds: dotted path of a list -> its merge key ("" for a set).
    list_keys: Mapping[str, str] | None = None

    @classmethod
    def of_kind(
        cls, schema: Mapping[str, Any] | None, list_keys: Mapping[str, str] | None
    ) -> Shape:
        """The root of a kind: its schema, with ObjectMeta as `metadata`."""
        root: dict[str, Any] = dict(schema) if schema is not None else {"type": "object"}
        root["properties"] = {**(root.get("properties") or {}), "metadata": OBJECT_META_SCHEMA}
        if schema is None:
            root["x-kubernetes-preserve-unknown-fields"] = True
        return cls(root, "", list_keys)

    def field(self, name: str) -> tuple[Shape, bool]:
        """The shape of the map entry `name`, and whether the schema declares it as a field."""
        path = f"{self.path}.{name}" if self.path else name
        if self.schema is None:
            return Shape(None, path, self.list_keys), False
        properties = self.schema.get("properties") or {}
        if name in properties:
            return Shape(properties[name], path, self.list_keys), True
        additional = self.schema.get("additionalProperties")
        if isinstance(additional, Mapping):
            return Shape(additional, path, self.list_keys), False
        return Shape(None, path, self.list_keys), False

    def item(self) -> Shape:
        items = self.schema.get("items") if self.schema is not None else None
        return Shape(items if isinstance(items, Mapping) else None, self.path, self.list_keys)

    @property
    def atomic_map(self) -> bool:
        return self.schema is not None and self.schema.get("x-kubernetes-map-type") == ATOMIC

    def list_type(self) -> tuple[str, tuple[str, ...]]:
        """`atomic`, `set` or `map` and, for `map`, the keys of an item."""
        if self.list_keys is not None and self.path in self.list_keys:
            key = self.list_keys[self.path]
            return (MAP, (key,)) if key else (SET, ())
        if self.schema is None:
            return ATOMIC, ()
        kind = self.schema.get("x-kubernetes-list-type") or ATOMIC
        if kind == MAP:
            return MAP, tuple(self.schema.get("x-kubernetes-list-map-keys") or ())
        return (SET, ()) if kind == SET else (ATOMIC, ())
