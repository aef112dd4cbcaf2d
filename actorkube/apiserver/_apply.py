"""Server-side apply and field ownership (``metadata.managedFields``).

Rules of this file (Kubernetes' server-side apply):

- Every write records who set what: an ``Update`` entry per (manager, apiVersion,
  subresource) for creates, updates and patches, owning the fields the write changed
  (taken from whoever owned them before); an ``Apply`` entry per manager for apply
  patches, owning exactly the fields of the manager's last applied configuration.
- An apply merges the configuration into the live object (associative lists by their
  keys, sets as sets, atomic values whole), removes the fields the manager applied
  last time and applies no more unless someone else owns them, and fails with a
  conflict when it would change a value another manager owns, unless forced (then the
  ownership moves to the applier).
- Identity and server-set metadata (name, namespace, uid, resourceVersion, generation,
  creationTimestamp, deletion fields, managedFields) and, outside the status
  subresource, the status are not owned by anyone; through the status subresource only
  the status is.
- A write whose body changes ``managedFields`` itself sets them as given (checked;
  ``[{}]`` clears them, an empty list changes nothing), and its own changes are
  recorded on top, as Kubernetes lets clients do (``_bodies.track``).
- Each entry's fields are paths of the version its apiVersion names. For a resource
  served at several versions (``versions``: the type and the object at each), a write
  at one version takes from the managers of another the fields whose value changed
  at theirs (``disown_changed``), and an apply conflicts with them there; otherwise a
  version other than the write's is read as the write's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs

from ._fieldset import (
    ITEM,
    Path,
    display,
    from_fields_v1,
    item_key,
    leaves,
    prefixes,
    to_fields_v1,
)
from ._schema import SCALARS, Field, Schema, TypeDef

# An apiVersion's type, and the conversion of the objects at hand to it (None: the
# resource is not served at that version).
Versions = Callable[[str], tuple[TypeDef | None, Callable[[dict], dict]] | None]

APPLY, UPDATE = "Apply", "Update"
_SERVER_META = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "selfLink",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
)


@attrs.frozen
class Conflict:
    manager: str  # as Kubernetes prints it: '"kubectl"' or '"m" using v1'
    path: Path


class ApplyConflict(Exception):
    """An apply would change fields others own; ``message`` is Kubernetes' text."""

    def __init__(self, conflicts: list[Conflict]) -> None:
        self.conflicts = conflicts
        super().__init__(_conflict_message(conflicts))


def _conflict_message(conflicts: list[Conflict]) -> str:
    n = len(conflicts)
    if n == 1:
        c = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {c.manager}: {display(c.path)}"
    by_manager: dict[str, list[str]] = {}
    for c in conflicts:
        by_manager.setdefault(c.manager, []).append(display(c.path))
    parts = [
        f"conflicts with {m}:\n" + "\n".join(f"- {p}" for p in paths)
        for m, paths in by_manager.items()
    ]
    return f"Apply failed with {n} conflicts: " + "\n".join(parts)


def _skip(subresource: str, obj: dict) -> list[Path]:
    skip = [(("f", "apiVersion"),), (("f", "kind"),)]
    skip += [(("f", "metadata"), ("f", k)) for k in _SERVER_META]
    if subresource == "status":
        skip += [(("f", k),) for k in obj if k != "status"]
    else:
        skip.append((("f", "status"),))
    return skip


@attrs.define
class _Entry:
    data: dict
    fields: set

    @property
    def ident(self) -> tuple:
        d = self.data
        version = d.get("apiVersion", "") if d.get("operation") == UPDATE else ""
        return (d.get("manager", ""), d.get("operation", ""), version, d.get("subresource", ""))

    def shown(self) -> str:
        d = self.data
        text = json.dumps(d.get("manager", ""))
        if d.get("subresource"):
            text += f" with subresource {json.dumps(d['subresource'])}"
        if d.get("operation") == APPLY:
            return text
        return f"{text} using {d.get('apiVersion', '')}"


def _entries(obj: dict | None) -> list[_Entry]:
    managed = ((obj or {}).get("metadata") or {}).get("managedFields") or []
    return [
        _Entry(dict(e), from_fields_v1(e.get("fieldsV1"))) for e in managed if isinstance(e, dict)
    ]


def _entry_of(entries: list[_Entry], manager: str, operation: str, api_version: str,
              subresource: str) -> _Entry:  # fmt: skip
    """The manager's entry for this operation (Apply: one whatever the version), added
    to ``entries`` if it has none."""
    version = api_version if operation == UPDATE else ""
    ident = (manager, operation, version, subresource)
    for e in entries:
        if e.ident == ident:
            return e
    data = {"manager": manager, "operation": operation, "apiVersion": api_version}
    if subresource:
        data["subresource"] = subresource
    entries.append(_Entry(data, set()))
    return entries[-1]


def _with_entries(obj: dict, entries: list[_Entry]) -> dict:
    managed = []
    for e in entries:
        if not e.fields:
            continue
        managed.append({**e.data, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(e.fields)})
    m = dict(obj.get("metadata") or {})
    if managed:
        m["managedFields"] = managed
    else:
        m.pop("managedFields", None)
    return {**obj, "metadata": m}


def explicit_managed_fields(new: dict) -> dict:
    """``new`` without managedFields (what ``managedFields: [{}]`` asks for)."""
    return _with_entries(new, [])


def track_update(
    schema: Schema,
    t: TypeDef | None,
    old: dict | None,
    new: dict,
    *,
    manager: str,
    api_version: str,
    subresource: str,
    now: str,
) -> dict:
    """``new`` with its managedFields updated for an Update by ``manager``."""
    skip = _skip(subresource, new)
    before = leaves(schema, t, old or {}, skip=skip)
    after = leaves(schema, t, new, skip=skip)
    changed = {p for p, v in after.items() if p not in before or before[p] != v}
    removed = before.keys() - after.keys()
    entries = _entries(old)
    for e in entries:
        e.fields -= changed
        e.fields -= removed
    if changed:
        mine = _entry_of(entries, manager, UPDATE, api_version, subresource)
        mine.fields |= changed
        mine.data["time"] = now
    return _with_entries(new, entries)


def disown_changed(
    schema: Schema,
    old: dict | None,
    new: dict,
    *,
    api_version: str,
    subresource: str,
    versions: Versions,
) -> dict:
    """``new`` (its managedFields tracked for a write at ``api_version``) with the
    entries of other versions losing the fields whose value changed at their version."""
    entries = _entries(new)
    skip = _skip(subresource, new)
    changed_at: dict[str, set] = {}
    touched = False
    for e in entries:
        version = e.data.get("apiVersion", "")
        if version == api_version:
            continue
        if version not in changed_at:
            found = versions(version)
            changed_at[version] = set()
            if found is not None:
                t, convert = found
                before = leaves(schema, t, {} if old is None else convert(old), skip=skip)
                after = leaves(schema, t, convert(new), skip=skip)
                changed = {p for p, v in after.items() if before.get(p, _MISSING) != v}
                changed_at[version] = changed | (before.keys() - after.keys())
        if e.fields & changed_at[version]:
            e.fields -= changed_at[version]
            touched = True
    return _with_entries(new, entries) if touched else new


def apply(
    schema: Schema,
    t: TypeDef | None,
    live: dict | None,
    config: dict,
    *,
    manager: str,
    api_version: str,
    subresource: str,
    force: bool,
    now: str,
    versions: Versions | None = None,
) -> dict:
    """The object after ``manager`` applies ``config`` to ``live`` (None: it does not
    exist yet), with its managedFields; ``versions``: the resource's other versions,
    where the managers who wrote at them own their fields. Raises ApplyConflict."""
    live = live or {}
    skip = _skip(subresource, config)
    applied = leaves(schema, t, config, skip=skip)
    current = leaves(schema, t, live, skip=skip)
    entries = _entries(live)
    ident = (manager, APPLY, "", subresource)
    mine = next((e for e in entries if e.ident == ident), None)
    others = [e for e in entries if e is not mine]
    result = _merge(schema, t, live, config)
    # A conflict is a field another manager owns whose value the merge changes (an
    # empty struct in the configuration changes nothing below it).
    merged = leaves(schema, t, result, skip=skip)
    # (before, after, paths refined) at each version a manager wrote at.
    seen = {api_version: (current, merged, prefixes(merged))}

    def at_version(version: str) -> tuple[dict, dict, set]:
        if version not in seen:
            found = versions(version) if versions is not None else None
            if found is None:
                seen[version] = seen[api_version]
            else:
                tv, convert = found
                after = leaves(schema, tv, convert(result), skip=skip)
                seen[version] = (leaves(schema, tv, convert(live), skip=skip), after,
                                 prefixes(after))  # fmt: skip
        return seen[version]

    conflicts: list[Conflict] = []
    taken: list[tuple[_Entry, Path]] = []
    for e in others:
        before, after, refined = at_version(e.data.get("apiVersion", ""))
        for p in e.fields:
            if p[-1:] == (ITEM,):
                continue
            now_value = after.get(p, _MISSING)
            if now_value is _MISSING and p in refined:
                continue  # a leaf that became a struct with fields: nothing was lost
            if now_value != before.get(p, _MISSING):
                conflicts.append(Conflict(e.shown(), p))
                taken.append((e, p))
    if conflicts and not force:
        raise ApplyConflict(sorted(conflicts, key=lambda c: display(c.path)))
    for e, p in taken:
        e.fields.discard(p)
    previous = mine.fields if mine is not None else set()
    owned = prefixes(p for e in others for p in e.fields)
    stale = [
        p for p in previous - applied.keys() if (p[:-1] if p[-1:] == (ITEM,) else p) not in owned
    ]
    # An item that goes takes its fields with it; the keys of an item that stays stay.
    gone = {p[:-1] for p in stale if p[-1:] == (ITEM,)}
    for path in sorted(stale, key=len):
        inside_gone = any(path[:i] in gone for i in range(1, len(path)))
        if path[-1:] != (ITEM,) and (_is_key(path) or inside_gone):
            continue
        result = _remove(schema, t, result, path)
    if mine is None:
        mine = _entry_of(entries, manager, APPLY, api_version, subresource)
    # The time says when the manager last changed something (Kubernetes' rule), so that
    # applying the same configuration again writes nothing.
    changed = mine.fields != set(applied) or any(
        current.get(p, _MISSING) != v for p, v in applied.items() if p[-1:] != (ITEM,)
    )
    mine.fields = set(applied)
    mine.data["apiVersion"] = api_version
    if changed or "time" not in mine.data:
        mine.data["time"] = now
    return _with_entries(result, entries)


_MISSING = object()


# --- merging a configuration into the live object ----------------------------------------


def _merge(schema: Schema, t: TypeDef | None, live: Any, config: Any) -> Any:
    if not isinstance(config, dict) or not isinstance(live, dict):
        return config
    if t is not None and t.struct_type == "atomic":
        return config
    result = dict(live)
    for key, value in config.items():
        if value is None:
            continue
        f = t.fields.get(key) if t is not None else None
        result[key] = _merge_field(schema, f, result.get(key), value) if f else value
    return result


def _merge_field(schema: Schema, f: Field, live: Any, config: Any) -> Any:
    if f.is_list and isinstance(config, list) and isinstance(live, list):
        kind = f.effective_list_type
        if kind == "set":
            return live + [v for v in config if v not in live]
        if kind == "map" and f.list_keys:
            t = schema.types.get(f.item)
            result = list(live)
            for item in config:
                if not isinstance(item, dict):
                    continue
                at = _find(result, item, f.list_keys)
                if at is None:
                    result.append(item)
                else:
                    result[at] = _merge(schema, t, result[at], item)
            return result
        return config
    if f.is_map and isinstance(config, dict) and isinstance(live, dict):
        if f.map_type == "atomic":
            return config
        if f.item in SCALARS or f.item.startswith(("[]", "{}")):
            return {**live, **config}
        t = schema.types.get(f.item)
        return {**live, **{k: _merge(schema, t, live.get(k, {}), v) for k, v in config.items()}}
    if f.type in SCALARS:
        return config
    return _merge(schema, schema.types.get(f.type), live, config)


def _is_key(path: Path) -> bool:
    """Whether ``path`` is a key field of the associative-list item it is in."""
    if len(path) < 2 or path[-2][0] != "k" or path[-1][0] != "f":
        return False
    try:
        return path[-1][1] in json.loads(path[-2][1])
    except ValueError:
        return False


def _find(items: list, item: dict, keys: tuple[str, ...]) -> int | None:
    ident = item_key(item, keys)
    for i, x in enumerate(items):
        if isinstance(x, dict) and item_key(x, keys) == ident:
            return i
    return None


def _remove(schema: Schema, t: TypeDef | None, obj: Any, path: Path) -> Any:
    """``obj`` without the field (or list item) at ``path``."""
    if not path or not isinstance(obj, dict):
        return obj
    kind, name = path[0]
    rest = path[1:]
    if kind != "f" or name not in obj:
        return obj
    f = t.fields.get(name) if t is not None else None
    if not rest:
        return {k: v for k, v in obj.items() if k != name}
    value = obj[name]
    if isinstance(value, list) and f is not None:
        element = rest[0]
        tail = rest[1:]
        if element == ITEM:
            return obj
        ekind, ename = element
        if ekind == "k":
            keys = json.loads(ename)
            at = _find(value, keys, tuple(keys))
            if at is None:
                return obj
            if tail in ((), (ITEM,)):
                value = value[:at] + value[at + 1 :]
            else:
                inner = _remove(schema, schema.types.get(f.item), value[at], tail)
                value = [*value[:at], inner, *value[at + 1 :]]
        elif ekind == "v":
            drop = json.loads(ename)
            value = [v for v in value if v != drop]
        return {**obj, name: value}
    if isinstance(value, dict):
        if f is not None and f.is_map:
            inner_t = schema.types.get(f.item)
            _, key = rest[0]
            if len(rest) == 1:
                value = {k: v for k, v in value.items() if k != key}
            elif key in value:
                value = {**value, key: _remove(schema, inner_t, value[key], rest[1:])}
            return {**obj, name: value}
        inner_t = schema.types.get(f.type) if f is not None else None
        return {**obj, name: _remove(schema, inner_t, value, rest)}
    return obj
