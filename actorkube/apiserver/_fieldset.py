"""Field sets: which fields of an object a field manager owns, in Kubernetes'
``FieldsV1`` form (``{"f:spec": {"f:containers": {"k:{\\"name\\":\\"a\\"}": {".": {},
"f:image": {}}}}}``).

Rules of this file (structured-merge-diff's, which server-side apply is built on):

- A path is a tuple of elements: ``("f", name)`` a field or map key, ``("k", json)`` an
  item of an associative list by its keys (compact JSON, keys in the list's key order),
  ``("v", json)`` an item of a set, ``("i", n)`` an item of a list by position (lists
  of no declared type inside ``raw`` values never appear: a raw value is a leaf).
- A set holds leaves, plus ``(..., ".")`` for each associative-list item owned as an
  item (a set's items are leaves). Structs are not leaves unless empty; granular maps and
  associative lists and sets are never leaves (an empty one owns nothing); atomic lists,
  maps and structs are.
- ``leaves(obj)`` maps each path of an object to its value, so that two versions of an
  object can be compared path by path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ._schema import SCALARS, Field, Schema, TypeDef

Path = tuple
ITEM = "."


# Defaults of list-map key fields, which identify an item whether it was written or
# defaulted (a port applied without a protocol is the TCP port the server stores):
# structured-merge-diff reads them from the schema's defaults.
KEY_DEFAULTS = {"protocol": "TCP"}


def item_key(item: dict, keys: tuple[str, ...]) -> dict:
    """The key fields that identify ``item`` in an associative list, defaults filled."""
    out = {}
    for k in keys:
        if k in item:
            out[k] = item[k]
        elif k in KEY_DEFAULTS:
            out[k] = KEY_DEFAULTS[k]
    return out


def _key_json(item: dict, keys: tuple[str, ...]) -> str:
    return json.dumps(item_key(item, keys), separators=(",", ":"))


def _value_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def leaves(
    schema: Schema, t: TypeDef | None, obj: Any, *, skip: Iterable[Path] = ()
) -> dict[Path, Any]:
    """Every owned path of ``obj`` (of type ``t``) with its value (see the rules);
    ``skip``: paths left out with everything under them."""
    out: dict[Path, Any] = {}
    _walk_struct(schema, t, obj, (), out, frozenset(skip))
    return out


def _walk_struct(schema, t, obj, path, out, skip) -> None:
    if not isinstance(obj, dict) or (t is not None and t.struct_type == "atomic"):
        out[path] = obj
        return
    if not obj and path:
        out[path] = obj
        return
    for key, value in obj.items():
        p = (*path, ("f", key))
        if p in skip:
            continue
        f = t.fields.get(key) if t is not None else None
        if f is None:
            out[p] = value
            continue
        _walk_field(schema, f, f.type, value, p, out, skip)


def _walk_field(schema: Schema, f: Field, type_name: str, value, path, out, skip) -> None:
    if type_name.startswith("[]") and isinstance(value, list):
        kind = f.effective_list_type
        item = type_name[2:]
        if kind == "map" and f.list_keys:
            t = schema.types.get(item)
            for v in value:
                if not isinstance(v, dict):
                    continue
                p = (*path, ("k", _key_json(v, f.list_keys)))
                out[(*p, ITEM)] = v
                _walk_struct(schema, t, v, p, out, skip)
            return
        if kind == "set" and item in SCALARS:
            for v in value:
                out[(*path, ("v", _value_json(v)))] = v
            return
        out[path] = value
        return
    if type_name.startswith("{}") and isinstance(value, dict):
        if f.map_type == "atomic":
            out[path] = value
            return
        item = type_name[2:]
        for k, v in value.items():
            p = (*path, ("f", k))
            if item in SCALARS or item.startswith(("[]", "{}")):
                out[p] = v
            else:
                _walk_struct(schema, schema.types.get(item), v, p, out, skip)
        return
    if type_name in SCALARS or not isinstance(value, dict):
        out[path] = value
        return
    _walk_struct(schema, schema.types.get(type_name), value, path, out, skip)


def to_fields_v1(paths: Iterable[Path]) -> dict:
    """The ``FieldsV1`` JSON of a set of paths."""
    root: dict = {}
    for path in sorted(paths, key=_sort_key):
        node = root
        for element in path:
            if element == ITEM:
                node.setdefault(ITEM, {})
                continue
            kind, name = element
            node = node.setdefault(f"{kind}:{name}", {})
    return root


def _sort_key(path: Path) -> tuple:
    return tuple((e,) if e == ITEM else (e[0], str(e[1])) for e in path)


def from_fields_v1(fields: Any) -> set[Path]:
    """The set of paths a ``FieldsV1`` JSON names (leaves: entries with no children)."""
    out: set[Path] = set()

    def walk(node: dict, path: tuple) -> None:
        for key, child in node.items():
            if key == ITEM:
                out.add((*path, ITEM))
                continue
            kind, _, name = key.partition(":")
            if kind not in ("f", "k", "v", "i") or not _well_formed(kind, name):
                continue  # what a client wrote wrong counts for nothing, and fails nothing
            p = (*path, (kind, int(name) if kind == "i" else name))
            if isinstance(child, dict) and child:
                walk(child, p)
            else:
                out.add(p)

    if isinstance(fields, dict):
        walk(fields, ())
    return out


def _well_formed(kind: str, name: str) -> bool:
    if kind == "i":
        return name.isdigit()
    if kind in ("k", "v"):
        try:
            value = json.loads(name)
        except ValueError:
            return False
        return kind == "v" or isinstance(value, dict)
    return True


def prefixes(paths: Iterable[Path]) -> set[Path]:
    """Every path that is a path of ``paths`` or above one (an item marker counts as
    the item), to ask "does anyone own something at or below this?" in one lookup."""
    out: set[Path] = set()
    for path in paths:
        if path[-1:] == (ITEM,):
            path = path[:-1]
        for i in range(1, len(path) + 1):
            out.add(path[:i])
    return out


def display(path: Path) -> str:
    """A path as Kubernetes prints it in conflicts: ``.spec.containers[name="a"].image``."""
    text = ""
    for element in path:
        if element == ITEM:
            continue
        kind, name = element
        if kind == "f":
            text += f".{name}"
        elif kind == "k":
            keys = json.loads(name)
            text += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
        elif kind == "v":
            text += f"[={name}]"
        else:
            text += f"[{name}]"
    return text
