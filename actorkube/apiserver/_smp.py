"""Strategic merge patch (``application/strategic-merge-patch+json``): a JSON merge patch
that knows, from the schema, which lists merge rather than replace.

Rules of this file (Kubernetes' strategic merge patch, as kubectl apply, edit and patch
send it):

- Maps merge key by key; ``null`` removes a key. A list is replaced, unless its field's
  patch strategy is ``merge``: then a list of objects merges item by item on the merge
  key (``containers`` by ``name``), and a list of scalars is a set (``finalizers``).
- Directives: ``$patch: replace`` (a map, or a list when it is an item) replaces instead
  of merging; ``$patch: delete`` deletes a map, or the list item with the merge key next
  to it; ``$deleteFromPrimitiveList/<field>`` removes values from a set;
  ``$setElementOrder/<field>`` gives the order of a merged list (items the patch does not
  name keep their place after the named ones); ``$retainKeys`` clears the keys of a
  union it does not name (``volumes``, a Deployment's ``strategy``).
- A malformed patch raises ``PatchError``; nothing is half applied (the result is a new
  object, the original is never changed).
"""

from __future__ import annotations

from typing import Any

from ._schema import SCALARS, Field, Schema, TypeDef

PATCH = "$patch"
RETAIN_KEYS = "$retainKeys"
DELETE_FROM = "$deleteFromPrimitiveList/"
SET_ORDER = "$setElementOrder/"


class PatchError(ValueError):
    """The patch cannot be applied; the message says why."""


def strategic_merge(schema: Schema, t: TypeDef | None, original: dict, patch: Any) -> dict:
    """``patch`` applied to ``original`` (an object of type ``t``; None: a type the
    schema does not know, whose lists are all replaced)."""
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object")
    result = _merge_map(schema, t, original if isinstance(original, dict) else {}, patch)
    return result if result is not None else {}


def _field_of(t: TypeDef | None, key: str) -> Field | None:
    return t.fields.get(key) if t is not None else None


def _type_of(schema: Schema, type_name: str) -> TypeDef | None:
    return schema.types.get(type_name)


def _merge_map(
    schema: Schema, t: TypeDef | None, original: dict, patch: dict, value_type: str = ""
) -> dict | None:
    """The merged map; None when the patch deletes it. ``value_type``: the type of every
    value, for a map (``{}T``) rather than a struct ``t``."""
    directive = patch.get(PATCH)
    if directive is not None:
        if directive == "delete":
            return None
        if directive == "replace":
            return _strip(schema, t, {k: v for k, v in patch.items() if k != PATCH}, value_type)
        if directive != "merge":
            raise PatchError(f"unknown patch type: {directive!r} in map")
    result = dict(original)
    retain = patch.get(RETAIN_KEYS)
    if retain is not None:
        if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
            raise PatchError(f"{RETAIN_KEYS} must be a list of field names")
        for key, value in patch.items():
            if not key.startswith("$") and value is not None and key not in retain:
                raise PatchError(f"{RETAIN_KEYS} does not contain the field {key!r} the patch sets")
        result = {k: v for k, v in result.items() if k in retain}
    orders: dict[str, list] = {}
    for key, value in patch.items():
        if key.startswith(DELETE_FROM):
            name = key[len(DELETE_FROM) :]
            if not isinstance(value, list):
                raise PatchError(f"{key} must be a list")
            current = result.get(name)
            if isinstance(current, list):
                result[name] = [v for v in current if v not in value]
        elif key.startswith(SET_ORDER):
            if not isinstance(value, list):
                raise PatchError(f"{key} must be a list")
            orders[key[len(SET_ORDER) :]] = value
        elif key.startswith("$") and key not in (PATCH, RETAIN_KEYS):
            raise PatchError(f"unknown directive {key!r}")
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
            continue
        f = _field_of(t, key)
        type_name = f.type if f is not None else value_type
        merged = _merge_value(schema, f, type_name, result.get(key), value)
        if merged is _DELETED:
            result.pop(key, None)
        else:
            result[key] = merged
    for name, order in orders.items():
        if isinstance(result.get(name), list):
            result[name] = _ordered(result[name], order, _field_of(t, name))
    return result


_DELETED = object()


def _merge_value(schema: Schema, f: Field | None, type_name: str, original: Any, patch: Any) -> Any:
    if isinstance(patch, dict):
        if type_name.startswith("{}"):
            merged = _merge_map(
                schema, None, original if isinstance(original, dict) else {}, patch, type_name[2:]
            )
        elif type_name in SCALARS and type_name != "raw":
            return patch  # a wrong type: decoding says so
        else:
            t = _type_of(schema, type_name)
            base = original if isinstance(original, dict) else {}
            merged = _merge_map(schema, t, base, patch)
        return _DELETED if merged is None else merged
    if isinstance(patch, list):
        if f is not None and f.is_list and "merge" in f.patch_strategy.split(","):
            return _merge_list(schema, f, original if isinstance(original, list) else [], patch)
        return [
            _strip_value(schema, type_name[2:] if type_name.startswith("[]") else "", v)
            for v in patch
        ]
    return patch


def _merge_list(schema: Schema, f: Field, original: list, patch: list) -> list:
    item_type = f.item
    if item_type in SCALARS:  # a set of scalars
        if any(isinstance(v, dict) and v.get(PATCH) == "replace" for v in patch):
            return [v for v in patch if not isinstance(v, dict)]
        result = list(original)
        for v in patch:
            if isinstance(v, dict):
                raise PatchError(f"the list {f.name} holds values, not objects")
            if v not in result:
                result.append(v)
        return result
    key = f.merge_key
    if not key:
        return [_strip_value(schema, item_type, v) for v in patch]
    t = _type_of(schema, item_type)
    for v in patch:
        if isinstance(v, dict) and v.get(PATCH) == "replace":
            return [
                _strip_value(schema, item_type, x)
                for x in patch
                if not (isinstance(x, dict) and x.get(PATCH) == "replace")
            ]
    result = list(original)
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"the items of {f.name} must be objects")
        if key not in item:
            raise PatchError(f"map: {item} does not contain declared merge key: {key}")
        at = next(
            (i for i, x in enumerate(result) if isinstance(x, dict) and x.get(key) == item[key]),
            None,
        )
        if item.get(PATCH) == "delete":
            result = [x for x in result if not (isinstance(x, dict) and x.get(key) == item[key])]
            continue
        if at is None:
            merged = _merge_map(schema, t, {}, item)
            if merged is not None:
                result.append(merged)
        else:
            merged = _merge_map(schema, t, result[at], item)
            if merged is None:
                del result[at]
            else:
                result[at] = merged
    return result


def _ordered(items: list, order: list, f: Field | None) -> list:
    """``items`` with those ``order`` names first, in its order; the rest after, as they
    were."""
    key = f.merge_key if f is not None else ""

    def ident(v: Any) -> Any:
        if key and isinstance(v, dict):
            return ("k", repr(v.get(key)))
        return ("v", repr(v))

    rank = {}
    for i, entry in enumerate(order):
        rank.setdefault(ident(entry), i)
    named = sorted((v for v in items if ident(v) in rank), key=lambda v: rank[ident(v)])
    rest = [v for v in items if ident(v) not in rank]
    return named + rest


def _strip(schema: Schema, t: TypeDef | None, value: dict, value_type: str = "") -> dict:
    """A patch's value with its directives removed, for a place it is taken whole."""
    return _merge_map(schema, t, {}, value, value_type) or {}


def _strip_value(schema: Schema, type_name: str, value: Any) -> Any:
    if isinstance(value, dict):
        if type_name.startswith("{}"):
            return _strip(schema, None, value, type_name[2:])
        return _strip(schema, _type_of(schema, type_name), value)
    return value
