"""The schema of the built-in types: every field of every Kubernetes type the API server
serves, as k8s.io/api declares it.

One description serves every place that needs to know a type's shape: decoding a body
(unknown fields, wrong types: ``_decode``), strategic merge patch (merge keys:
``_smp``), server-side apply (list types: ``_apply``), protobuf bodies (field numbers:
``_protobuf``) and the OpenAPI documents kubectl reads (``_openapi``).

Rules of this file:

- The data is ``schema.json`` next to this file, generated from k8s.io/api's and
  k8s.io/apimachinery's Go types by ``_schema_gen`` (see docs/apiserver.md): field
  names, types, descriptions, protobuf numbers, and the markers of ``+listType``,
  ``+listMapKey``, ``+mapType``, ``+structType``, ``patchStrategy``, ``patchMergeKey``.
- A type is named as in Kubernetes' OpenAPI (``io.k8s.api.core.v1.PodSpec``). A field's
  type is a scalar (``string``, ``boolean``, ``int32``, ``int64``, ``double``, ``byte``
  (base64 in JSON), ``quantity``, ``intstr``, ``time``, ``microtime``, ``duration``,
  ``raw`` (any JSON), ``fieldsv1``), ``[]T`` (a list), ``{}T`` (a map with string keys)
  or a type's name.
- Fields Go embeds inline (``VolumeSource`` in ``Volume``) are fields of the outer type
  in JSON and a message of their own in protobuf: ``TypeDef.fields`` is the JSON view,
  ``TypeDef.proto`` the protobuf one. ``Field.pointer`` and ``omitempty`` are the Go
  field's (a ``*bool`` set to false is set; protobuf readers need to know).
- Loaded once, on first use, and never changed.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import attrs

SCALARS = frozenset(
    {
        "string",
        "boolean",
        "int32",
        "int64",
        "double",
        "byte",
        "quantity",
        "intstr",
        "time",
        "microtime",
        "duration",
        "raw",
        "fieldsv1",
    }
)
DATA = Path(__file__).with_name("schema.json")


@attrs.frozen
class Field:
    """One field, by its JSON name. ``list_type`` is ``atomic``, ``set`` or ``map``
    (with ``map_keys``) for lists, ``map_type`` ``atomic`` or ``granular`` for maps and
    structs (server-side apply); ``patch_strategy`` (``merge``, ``retainKeys``, both
    joined by a comma) and ``merge_key`` are strategic merge patch's."""

    name: str
    type: str
    description: str = ""
    required: bool = False
    proto: int = 0
    list_type: str = ""
    map_keys: tuple[str, ...] = ()
    patch_strategy: str = ""
    merge_key: str = ""
    map_type: str = ""
    pointer: bool = False  # Go's *T: set (even to its zero value) or not
    omitempty: bool = True  # Go's JSON leaves the zero value out

    @property
    def is_list(self) -> bool:
        return self.type.startswith("[]")

    @property
    def is_map(self) -> bool:
        return self.type.startswith("{}")

    @property
    def item(self) -> str:
        """The type of a list's items or a map's values (the type itself otherwise)."""
        return self.type[2:] if self.is_list or self.is_map else self.type

    @property
    def list_keys(self) -> tuple[str, ...]:
        """The keys that name an item of an associative list: the list-map keys, or for
        a list without a list type the strategic merge key (server-side apply reads
        ``patchStrategy: merge`` as ``listType: map`` keyed by the merge key)."""
        if self.list_type == "map":
            return self.map_keys
        if not self.list_type and "merge" in self.patch_strategy.split(",") and self.merge_key:
            return (self.merge_key,)
        return ()

    @property
    def effective_list_type(self) -> str:
        """The list type server-side apply uses: the declared one, else one derived from
        the patch strategy (``map`` with a merge key, ``set`` without), else
        ``atomic``."""
        if self.list_type:
            return self.list_type
        if "merge" in self.patch_strategy.split(","):
            return "map" if self.merge_key else "set"
        return "atomic"


@attrs.frozen
class TypeDef:
    """One struct type. ``fields`` by JSON name; ``proto`` by protobuf field number:
    a ``Field``, or the name of a type embedded inline (its fields are ours in JSON).
    ``gvk``: the (group, version, kind) this is the top-level type of."""

    name: str
    description: str = ""
    fields: dict[str, Field] = attrs.field(factory=dict)
    proto: dict[int, Field | str] = attrs.field(factory=dict)
    struct_type: str = ""
    gvk: tuple[tuple[str, str, str], ...] = ()

    @property
    def short_name(self) -> str:
        """The Go name (``PodSpec``), as Go's JSON errors and ``kubectl explain`` show."""
        return self.name.rsplit(".", 1)[-1]

    @property
    def go_package(self) -> str:
        """Go's package name for the type (``v1``, ``resource``), as error messages
        print it (``v1.PodSpec``)."""
        return self.name.rsplit(".", 2)[-2]


class Schema:
    """The types, by name and by the (apiVersion, kind) they are the top of."""

    def __init__(self, types: dict[str, TypeDef]) -> None:
        self.types = types
        self._by_kind: dict[tuple[str, str], TypeDef] = {}
        for t in types.values():
            for group, version, kind in t.gvk:
                api_version = f"{group}/{version}" if group else version
                self._by_kind[(api_version, kind)] = t

    def __getitem__(self, name: str) -> TypeDef:
        return self.types[name]

    def kind(self, api_version: str, kind: str) -> TypeDef | None:
        """The type of objects of this kind, None if the schema does not have it."""
        return self._by_kind.get((api_version, kind))

    def closure(self, names: list[str]) -> list[str]:
        """``names`` and every type their fields reach, in a stable order."""
        seen: dict[str, None] = {}
        todo = list(names)
        while todo:
            name = todo.pop()
            if name in seen or name not in self.types:
                continue
            seen[name] = None
            for f in self.types[name].fields.values():
                if f.item not in SCALARS:
                    todo.append(f.item)
        return sorted(seen)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Schema:
        """The schema from the JSON ``_schema_gen`` writes (see ``load``)."""
        raw = data["types"]
        types: dict[str, TypeDef] = {}

        def build(name: str) -> TypeDef:
            if name in types:
                return types[name]
            spec = raw[name]
            fields: dict[str, Field] = {}
            proto: dict[int, Field | str] = {}
            for entry in spec.get("fields", ()):
                if "embed" in entry:  # inline in JSON, a message of its own in protobuf
                    inner = build(entry["embed"])
                    fields.update(inner.fields)
                    if entry.get("proto"):
                        proto[entry["proto"]] = entry["embed"]
                    else:
                        proto.update(inner.proto)
                    continue
                f = Field(
                    entry["name"],
                    entry["type"],
                    entry.get("description", ""),
                    entry.get("required", False),
                    entry.get("proto", 0),
                    entry.get("listType", ""),
                    tuple(entry.get("listMapKeys", ())),
                    entry.get("patchStrategy", ""),
                    entry.get("patchMergeKey", ""),
                    entry.get("mapType", ""),
                    entry.get("pointer", False),
                    entry.get("omitempty", True),
                )
                fields[f.name] = f
                if f.proto:
                    proto[f.proto] = f
            gvk = tuple(tuple(g) for g in spec.get("gvk", ()))
            t = TypeDef(
                name, spec.get("description", ""), fields, proto, spec.get("structType", ""), gvk
            )
            types[name] = t
            return t

        for name in raw:
            build(name)
        return cls(types)


@functools.cache
def builtin_schema() -> Schema:
    """The schema of the built-in types (loaded on first use)."""
    return Schema.from_data(json.loads(DATA.read_text()))
