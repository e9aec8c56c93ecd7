"""The three patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge.

Strategic merge is the merge patch plus what built-in kinds declare in their Go types: lists
whose elements are merged by a key (`patchMergeKey`), lists of scalars merged as sets, and the
`$patch`, `$retainKeys`, `$deleteFromPrimitiveList/...` and `$setElementOrder/...` directives
that `kubectl apply` sends. Which lists merge by what is given per kind as dotted paths
(`metadata.ownerReferences` -> `uid`; a "" key marks a list of scalars merged as a set).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from carm.sandbox.kubeapi.errors import ApiError, bad_request


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---------------------------------------------------------------------------------------------
# JSON patch


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _patch_error(f"invalid JSON pointer: {path!r}")
    return [_unescape(token) for token in path[1:].split("/")]


def _patch_error(message: str) -> ApiError:
    # The apiserver answers a JSON patch that does not apply as NewGenericServerResponse(422):
    # a generic message, the library's text as the one cause.
    return ApiError(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
        details={"causes": [{"reason": "UnexpectedServerResponse", "message": message}]},
    )


def _index(container: list[Any], token: str, *, for_insert: bool) -> int:
    if token == "-" and for_insert:
        return len(container)
    if not token.isdigit():
        raise _patch_error(f"invalid array index: {token!r}")
    index = int(token)
    limit = len(container) if for_insert else len(container) - 1
    if index > limit:
        raise _patch_error(f"array index out of bounds: {index}")
    return index


def _parent(document: Any, tokens: list[str]) -> Any:
    node = document
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise _patch_error(f"doc is missing path: /{'/'.join(tokens)}")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, for_insert=False)]
        else:
            raise _patch_error(f"doc is missing path: /{'/'.join(tokens)}")
    return node


def _get(document: Any, tokens: list[str]) -> Any:
    if not tokens:
        return document
    parent = _parent(document, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _patch_error(f"doc is missing key: /{'/'.join(tokens)}")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, for_insert=False)]
    raise _patch_error(f"doc is missing path: /{'/'.join(tokens)}")


def _remove(document: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise _patch_error("cannot remove the whole document")
    parent = _parent(document, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _patch_error(f"unable to remove nonexistent key: {last}: missing value")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, for_insert=False))
    raise _patch_error(f"doc is missing path: /{'/'.join(tokens)}")


def _add(document: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _parent(document, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, for_insert=True), value)
    else:
        raise _patch_error(f"doc is missing path: /{'/'.join(tokens)}")
    return document


def _replace(document: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _parent(document, tokens)
    if isinstance(parent, dict):
        # As the apiserver's json-patch library (v4): replacing a missing key of an existing
        # object sets it, like `add`.
        parent[tokens[-1]] = value
    elif isinstance(parent, list):
        parent[_index(parent, tokens[-1], for_insert=False)] = value
    else:
        raise _patch_error(
            f"replace operation does not apply: doc is missing path: /{'/'.join(tokens)}"
        )
    return document


def json_patch(document: Any, operations: Any) -> Any:
    """RFC 6902 on a copy of `document`: add, remove, replace, move, copy, test."""
    if not isinstance(operations, list):
        raise bad_request("json patch must be a list of operations")
    result = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise bad_request(f"invalid json patch operation: {operation!r}")
        op = operation["op"]
        tokens = _pointer(operation["path"])
        if op == "add":
            result = _add(result, tokens, copy.deepcopy(operation.get("value")))
        elif op == "remove":
            _remove(result, tokens)
        elif op == "replace":
            result = _replace(result, tokens, copy.deepcopy(operation.get("value")))
        elif op == "test":
            if _get(result, tokens) != operation.get("value"):
                raise _patch_error(f"testing value {operation['path']} failed: test failed")
        elif op in ("move", "copy"):
            source = _pointer(operation.get("from", ""))
            value = _get(result, source)
            if op == "move":
                _remove(result, source)
            result = _add(result, tokens, copy.deepcopy(value))
        else:
            raise bad_request(f"unexpected json patch operation: {op!r}")
    return result


# ---------------------------------------------------------------------------------------------
# Strategic merge patch

_SET_ORDER = "$setElementOrder/"
_DELETE_FROM = "$deleteFromPrimitiveList/"


def strategic_merge_patch(target: Any, patch: Any, merge_keys: Mapping[str, str]) -> Any:
    """Strategic merge `patch` into `target` (neither is modified)."""
    return _smp(target, patch, merge_keys, "")


def _smp(target: Any, patch: Any, merge_keys: Mapping[str, str], path: str) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {key: copy.deepcopy(value) for key, value in patch.items() if key != "$patch"}
    result = dict(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith(_SET_ORDER):
            continue
        if key.startswith(_DELETE_FROM):
            field = key[len(_DELETE_FROM) :]
            doomed = value if isinstance(value, list) else []
            result[field] = [item for item in result.get(field) or [] if item not in doomed]
            continue
        child_path = f"{path}.{key}" if path else key
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and child_path in merge_keys:
            result[key] = _merge_list(result.get(key), value, merge_keys, child_path)
        else:
            merged = _smp(result.get(key), value, merge_keys, child_path)
            if merged is None and isinstance(value, dict):
                result.pop(key, None)
            else:
                result[key] = merged
    if isinstance(retain, list):
        result = {key: value for key, value in result.items() if key in retain}
    return result


def _merge_list(
    target: Any, patch: list[Any], merge_keys: Mapping[str, str], path: str
) -> list[Any]:
    current = list(target) if isinstance(target, list) else []
    key = merge_keys[path]
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [
            copy.deepcopy(item)
            for item in patch
            if not isinstance(item, dict) or item.get("$patch") != "replace"
        ]
    if not key:  # a list of scalars merged as a set, order kept
        return current + [item for item in patch if item not in current]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise bad_request(f"map in list {path} is missing its merge key {key!r}")
        position = next(
            (
                i
                for i, existing in enumerate(current)
                if isinstance(existing, dict) and existing.get(key) == item[key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if position is not None:
                current.pop(position)
        elif position is None:
            current.append({k: v for k, v in item.items() if k != "$patch"})
        else:
            current[position] = _smp(current[position], item, merge_keys, path)
    return current
