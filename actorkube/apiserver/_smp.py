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
  ``$setElementOrder/<field>`` gives the order of a merged list; without it the
  patch's own order counts (items the patch names come before the others unless both
  were there in the other order: new items go first, as in Kubernetes);
  ``$retainKeys`` clears the keys of a union it does not name (``volumes``, a
  Deployment's ``strategy``).
- A malformed patch raises ``PatchError``; nothing is half applied (the result is a new
  object, the original is never changed). Merging takes time linear in the lists'
  lengths (items are found by their merge key in a dict).
"""

from __future__ import annotations

import json
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
                drop = {_ident(v) for v in value}
                result[name] = [v for v in current if _ident(v) not in drop]
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
        before = result.get(key)
        merged = _merge_value(schema, f, type_name, before, value)
        if merged is _DELETED:
            result.pop(key, None)
            continue
        if isinstance(merged, list) and _merges(f) and isinstance(value, list):
            order = orders.pop(key, None)
            named = order if order is not None else value
            merged = _arrange(merged, before if isinstance(before, list) else [], named, f)
        result[key] = merged
    for name, order in orders.items():  # an order for a list the patch leaves as it is
        f = _field_of(t, name)
        if isinstance(result.get(name), list) and _merges(f):
            result[name] = _arrange(result[name], result[name], order, f)
    return result


def _merges(f: Field | None) -> bool:
    return f is not None and f.is_list and "merge" in f.patch_strategy.split(",")


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
        if _merges(f):
            return _merge_list(schema, f, original if isinstance(original, list) else [], patch)
        return [
            _strip_value(schema, type_name[2:] if type_name.startswith("[]") else "", v)
            for v in patch
        ]
    return patch


def _ident(value: Any) -> Any:
    """A hashable identity of a JSON value (True is not 1, as in JSON)."""
    if isinstance(value, dict | list):
        return ("j", json.dumps(value, sort_keys=True))
    return (type(value).__name__, value)


def _merge_list(schema: Schema, f: Field, original: list, patch: list) -> list:
    """A list with patch strategy ``merge``, merged in time linear in its length, in
    Kubernetes' order (``_arrange``)."""
    item_type = f.item
    if item_type in SCALARS:  # a set of scalars
        if any(isinstance(v, dict) and v.get(PATCH) == "replace" for v in patch):
            return [v for v in patch if not isinstance(v, dict)]
        result = list(original)
        seen = {_ident(v) for v in result}
        for v in patch:
            if isinstance(v, dict):
                raise PatchError(f"the list {f.name} holds values, not objects")
            if _ident(v) not in seen:
                seen.add(_ident(v))
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
    # Items by their merge key; None marks one deleted (compacted at the end).
    result: list[Any] = list(original)
    at: dict[Any, int] = {}
    for i, x in enumerate(result):
        if isinstance(x, dict) and key in x:
            at.setdefault(_ident(x[key]), i)
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"the items of {f.name} must be objects")
        if key not in item:
            raise PatchError(f"map: {item} does not contain declared merge key: {key}")
        ident = _ident(item[key])
        i = at.get(ident)
        if item.get(PATCH) == "delete":
            if i is not None:
                result[i] = None
                del at[ident]
            continue
        merged = _merge_map(schema, t, {} if i is None else result[i], item)
        if i is None:
            if merged is not None:
                at[ident] = len(result)
                result.append(merged)
        elif merged is None:
            result[i] = None
            del at[ident]
        else:
            result[i] = merged
    return [x for x in result if x is not None]


def _arrange(items: list, original: list, patch_order: list, f: Field | None) -> list:
    """``items`` (a merged list) in the order Kubernetes gives them: the items the patch
    names (in the order of ``$setElementOrder``, else of the patch) merged with the
    others (in their original order) so that an item the patch names goes before an
    original one unless both were there and it came after."""
    key = f.merge_key if f is not None else ""

    def ident(v: Any) -> Any:
        return _ident(v.get(key)) if key and isinstance(v, dict) else _ident(v)

    named: dict[Any, int] = {}
    for entry in patch_order:
        named.setdefault(ident(entry), len(named))
    was: dict[Any, int] = {}
    for i, v in enumerate(original):
        was.setdefault(ident(v), i)
    right = sorted((v for v in items if ident(v) in named), key=lambda v: named[ident(v)])
    left = sorted((v for v in items if ident(v) not in named),
                  key=lambda v: was.get(ident(v), len(was)))  # fmt: skip
    out: list = []
    i = j = 0
    while i < len(left) or j < len(right):
        if j >= len(right):
            out.append(left[i])
            i += 1
        elif i >= len(left):
            out.append(right[j])
            j += 1
        else:
            li, rj = was.get(ident(left[i])), was.get(ident(right[j]))
            if li is not None and rj is not None and li < rj:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def _strip(schema: Schema, t: TypeDef | None, value: dict, value_type: str = "") -> dict:
    """A patch's value with its directives removed, for a place it is taken whole."""
    return _merge_map(schema, t, {}, value, value_type) or {}


def _strip_value(schema: Schema, type_name: str, value: Any) -> Any:
    if isinstance(value, dict):
        if type_name.startswith("{}"):
            return _strip(schema, None, value, type_name[2:])
        return _strip(schema, _type_of(schema, type_name), value)
    return value
