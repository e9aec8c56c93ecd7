"""Decoding of Kubernetes protobuf request bodies into the JSON shape of the same object.

kubectl's typed commands (`kubectl create namespace`, `create configmap`, `create secret`...)
send `Content-Type: application/vnd.kubernetes.protobuf` and do not fall back to JSON on 415,
so the built-in kinds must be readable in protobuf. Answers stay JSON: those clients accept it.

The format: the magic `k8s\\0`, then a `runtime.Unknown` envelope whose `typeMeta` names the
kind and whose `raw` is the object's message. The generated Go code writes every scalar field,
even empty ones, so zero values are dropped here as JSON's `omitempty` would, except for the
optional (pointer) fields marked `?`, whose zero is meaningful (`automountServiceAccountToken:
false`). Only the messages of the built-in kinds served here are described; unknown field
numbers are skipped.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from carm.sandbox.kubeapi.errors import bad_request

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

# message name -> field number -> (json name, type); types: string, bytes, int, bool, time,
# microtime, map (string -> string), bytesmap (string -> base64), or a message name;
# a leading "*" marks a repeated field, a trailing "?" an optional one (zero kept).
Fields = dict[int, tuple[str, str]]
MESSAGES: dict[str, Fields] = {
    "Unknown": {1: ("typeMeta", "TypeMeta"), 2: ("raw", "bytes")},
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    "ObjectMeta": {
        1: ("name", "string"),
        2: ("generateName", "string"),
        3: ("namespace", "string"),
        5: ("uid", "string"),
        6: ("resourceVersion", "string"),
        7: ("generation", "int"),
        8: ("creationTimestamp", "time"),
        9: ("deletionTimestamp", "time"),
        10: ("deletionGracePeriodSeconds", "int?"),
        11: ("labels", "map"),
        12: ("annotations", "map"),
        13: ("ownerReferences", "*OwnerReference"),
        14: ("finalizers", "*string"),
    },
    "OwnerReference": {
        1: ("kind", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
        5: ("apiVersion", "string"),
        6: ("controller", "bool?"),
        7: ("blockOwnerDeletion", "bool?"),
    },
    "ObjectReference": {
        1: ("kind", "string"),
        2: ("namespace", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
        5: ("apiVersion", "string"),
        6: ("resourceVersion", "string"),
        7: ("fieldPath", "string"),
    },
    "LocalObjectReference": {1: ("name", "string")},
    "Namespace": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "NamespaceSpec"),
        3: ("status", "NamespaceStatus"),
    },
    "NamespaceSpec": {1: ("finalizers", "*string")},
    "NamespaceStatus": {1: ("phase", "string")},
    "ConfigMap": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "map"),
        3: ("binaryData", "bytesmap"),
        4: ("immutable", "bool?"),
    },
    "Secret": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "bytesmap"),
        3: ("type", "string"),
        4: ("stringData", "map"),
        5: ("immutable", "bool?"),
    },
    "ServiceAccount": {
        1: ("metadata", "ObjectMeta"),
        2: ("secrets", "*ObjectReference"),
        3: ("imagePullSecrets", "*LocalObjectReference"),
        4: ("automountServiceAccountToken", "bool?"),
    },
    "Event": {
        1: ("metadata", "ObjectMeta"),
        2: ("involvedObject", "ObjectReference"),
        3: ("reason", "string"),
        4: ("message", "string"),
        5: ("source", "EventSource"),
        6: ("firstTimestamp", "time"),
        7: ("lastTimestamp", "time"),
        8: ("count", "int"),
        9: ("type", "string"),
        10: ("eventTime", "microtime"),
        11: ("series", "EventSeries"),
        12: ("action", "string"),
        13: ("related", "ObjectReference"),
        14: ("reportingComponent", "string"),
        15: ("reportingInstance", "string"),
    },
    "EventSource": {1: ("component", "string"), 2: ("host", "string")},
    "EventSeries": {1: ("count", "int"), 2: ("lastObservedTime", "microtime")},
    "Lease": {1: ("metadata", "ObjectMeta"), 2: ("spec", "LeaseSpec")},
    "LeaseSpec": {
        1: ("holderIdentity", "string?"),
        2: ("leaseDurationSeconds", "int?"),
        3: ("acquireTime", "microtime"),
        4: ("renewTime", "microtime"),
        5: ("leaseTransitions", "int?"),
        6: ("strategy", "string?"),
        7: ("preferredHolder", "string?"),
    },
    "DeleteOptions": {
        1: ("gracePeriodSeconds", "int?"),
        2: ("preconditions", "Preconditions"),
        3: ("orphanDependents", "bool?"),
        4: ("propagationPolicy", "string?"),
        5: ("dryRun", "*string"),
    },
    "Preconditions": {1: ("uid", "string?"), 2: ("resourceVersion", "string?")},
    "Time": {1: ("seconds", "int"), 2: ("nanos", "int")},
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def wire_fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of one message: ints for varints and fixed widths (a double
    as its little-endian bits), bytes for the rest."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            out.append((number, data[pos : pos + length]))
            pos += length
        elif wire == 1:
            out.append((number, int.from_bytes(data[pos : pos + 8], "little")))
            pos += 8
        elif wire == 5:
            out.append((number, int.from_bytes(data[pos : pos + 4], "little")))
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _timestamp(raw: bytes, *, micro: bool) -> str | None:
    parts = dict(wire_fields(raw))
    seconds = _signed(int(parts.get(1, 0)))
    nanos = int(parts.get(2, 0))
    if not seconds and not nanos:
        return None
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{nanos // 1000:06d}Z" if micro else f"{stamp}Z"


def _map_entry(raw: bytes) -> tuple[str, bytes]:
    parts = dict(wire_fields(raw))
    key, value = parts.get(1, b""), parts.get(2, b"")
    assert isinstance(key, bytes) and isinstance(value, bytes)
    return key.decode(), value


def _scalar(kind: str, value: int | bytes) -> Any:
    if kind == "string":
        assert isinstance(value, bytes)
        return value.decode()
    if kind == "bytes":
        assert isinstance(value, bytes)
        return base64.b64encode(value).decode()
    if kind == "int":
        assert isinstance(value, int)
        return _signed(value)
    if kind == "bool":
        return bool(value)
    assert isinstance(value, bytes)
    if kind in ("time", "microtime"):
        return _timestamp(value, micro=kind == "microtime")
    return decode_message(kind, value)


def _is_zero(value: Any) -> bool:
    return value is None or value in ("", 0, False) or value == {} or value == []


def decode_message(name: str, data: bytes) -> dict[str, Any]:
    fields = MESSAGES[name]
    result: dict[str, Any] = {}
    for number, value in wire_fields(data):
        described = fields.get(number)
        if described is None:
            continue
        json_name, kind = described
        optional = kind.endswith("?")
        kind = kind.rstrip("?")
        if kind in ("map", "bytesmap"):
            assert isinstance(value, bytes)
            key, raw = _map_entry(value)
            shown = raw.decode() if kind == "map" else base64.b64encode(raw).decode()
            result.setdefault(json_name, {})[key] = shown
        elif kind.startswith("*"):
            result.setdefault(json_name, []).append(_scalar(kind[1:], value))
        else:
            decoded = _scalar(kind, value)
            if optional or not _is_zero(decoded):
                result[json_name] = decoded
    return result


def decode(body: bytes, default_kind: str) -> dict[str, Any]:
    """The JSON-shaped object in a protobuf request body (400 when it cannot be read)."""
    if not body.startswith(MAGIC):
        raise bad_request("protobuf body does not start with the Kubernetes magic number")
    try:
        envelope = decode_message("Unknown", body[len(MAGIC) :])
        type_meta = envelope.get("typeMeta") or {}
        kind = type_meta.get("kind") or default_kind
        if kind not in MESSAGES:
            raise bad_request(f"no protobuf decoding for kind {kind!r} here; send JSON")
        raw = base64.b64decode(envelope.get("raw", ""))
        obj = decode_message(kind, raw)
    except (ValueError, KeyError, AssertionError, UnicodeDecodeError) as error:
        raise bad_request(f"could not decode the protobuf body: {error}") from None
    if type_meta.get("apiVersion"):
        obj = {"apiVersion": type_meta["apiVersion"], "kind": kind, **obj}
    return obj
