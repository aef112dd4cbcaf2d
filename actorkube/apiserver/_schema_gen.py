"""Generates ``schema.json`` (see ``_schema``) from Kubernetes' own descriptions of its
types. Run by a developer when the served types change, not by the server:

    python -m actorkube.apiserver._schema_gen PROTO_FIELDS MARKERS GO_FIELDS \
        > actorkube/apiserver/schema.json

- ``PROTO_FIELDS``: every message of the ``generated.proto`` files of k8s.io/api
  (core, apps, rbac, coordination, discovery, policy, autoscaling, authorization,
  authentication /v1; batch/v1 and autoscaling/v2 were added by ``_schema_add``) and
  k8s.io/apimachinery (meta/v1, runtime, intstr, resource), as
  JSON ``{"messages": {"k8s.io.api.core.v1.Pod": {"spec": [2, "<type>", "optional"]}}}``
  (type: a proto scalar, a message's full name or ``map<string,V>``; label
  ``optional``, ``repeated`` or ``map``). Field names, types and numbers come from here.
- ``MARKERS``: the ``+listType``, ``+listMapKey``, ``+mapType``, ``+structType``
  markers and ``patchStrategy``/``patchMergeKey`` tags of the Go ``types.go`` files, as
  JSON ``{"types": {"io.k8s.api.core.v1.PodSpec": {"containers": {"listType": "map",
  ...}}}, "structTypes": {...}}``.
- ``GO_FIELDS``: whether each Go field is a pointer and has ``omitempty`` (protobuf
  readers need it: a ``*bool`` set to false is set).
- Descriptions and which fields are required come from the official Python client's
  models (``kubernetes.client.models``, the test extra), which are generated from
  Kubernetes' OpenAPI; so do ``apiVersion`` and ``kind`` (Go embeds them without a
  protobuf tag), and a message a type embeds inline (``Volume``'s ``VolumeSource``) is
  told apart by its fields being the outer type's in JSON. Fields the client knows and
  the protobuf does not are newer than the version served, and left out.
"""

from __future__ import annotations

import inspect
import json
import sys
from typing import Any

SPECIAL = {
    "k8s.io.apimachinery.pkg.apis.meta.v1.Time": "time",
    "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime": "microtime",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Duration": "duration",
    "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1": "fieldsv1",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "quantity",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "intstr",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "raw",
}
PROTO_SCALARS = {
    "string": "string",
    "bool": "boolean",
    "int32": "int32",
    "int64": "int64",
    "double": "double",
    "float": "double",
    "bytes": "byte",
}
GROUPS = {
    "core": "",
    "apps": "apps",
    "rbac": "rbac.authorization.k8s.io",
    "coordination": "coordination.k8s.io",
    "discovery": "discovery.k8s.io",
    "policy": "policy",
    "autoscaling": "autoscaling",
    "batch": "batch",
    "authorization": "authorization.k8s.io",
    "authentication": "authentication.k8s.io",
}
# Go types that are lists in JSON and a message of items in protobuf.
LIST_WRAPPERS = {"ExtraValue": "[]string"}


def openapi_name(proto_name: str) -> str:
    """``k8s.io.api.core.v1.Pod`` -> ``io.k8s.api.core.v1.Pod``."""
    return "io.k8s." + proto_name.removeprefix("k8s.io.")


def field_type(proto_type: str, label: str) -> str:
    if label == "map":
        inner = proto_type.removeprefix("map<").removesuffix(">").split(",", 1)[1].strip()
        return "{}" + field_type(inner, "optional")
    if proto_type in PROTO_SCALARS:
        base = PROTO_SCALARS[proto_type]
    elif proto_type in SPECIAL:
        base = SPECIAL[proto_type]
    elif proto_type.rsplit(".", 1)[-1] in LIST_WRAPPERS:
        base = LIST_WRAPPERS[proto_type.rsplit(".", 1)[-1]]
    else:
        base = openapi_name(proto_type)
    return "[]" + base if label == "repeated" else base


def python_models() -> dict[str, type]:
    from kubernetes.client import models

    return {
        name: cls
        for name, cls in inspect.getmembers(models, inspect.isclass)
        if hasattr(cls, "model_fields")
    }


def python_class(models: dict[str, type], proto_name: str) -> type | None:
    """The Python client's model of a message (``V1PodSpec``, ``CoreV1Event``)."""
    parts = proto_name.split(".")
    name, version = parts[-1], parts[-2]
    group_dir = parts[-3]
    exact = f"{version.capitalize()}{name}"
    candidates = [c for n, c in models.items() if n == exact or n.endswith(exact)]
    if len(candidates) == 1:
        return candidates[0]
    prefix = group_dir.capitalize() + exact
    for n, c in models.items():
        if n == prefix:
            return c
    return models.get(exact)


def json_fields(cls: type) -> dict[str, Any]:
    """The model's fields by JSON name."""
    out = {}
    for attr, f in cls.model_fields.items():
        out[f.serialization_alias or f.alias or attr] = f
    return out


def generate(proto: dict, markers: dict) -> dict:
    models = python_models()
    messages = proto["messages"]
    classes = {name: python_class(models, name) for name in messages}
    marks = markers.get("types", {})
    struct_types = markers.get("structTypes", {})
    types: dict[str, Any] = {}
    for name, fields in sorted(messages.items()):
        if name in SPECIAL or name.rsplit(".", 1)[-1] in LIST_WRAPPERS:
            continue
        if name.startswith("k8s.io.apimachinery.pkg.runtime."):
            continue
        out_name = openapi_name(name)
        cls = classes.get(name)
        described = json_fields(cls) if cls is not None else {}
        entries = []
        seen = set()
        by_lower = {name.lower(): name for name in described}
        for field, (number, ptype, label) in sorted(fields.items(), key=lambda x: x[1][0]):
            inner = messages.get(ptype)
            if described and field not in described and field.lower() in by_lower:
                field = by_lower[field.lower()]  # BoundObjectReference's uID is "uid" in JSON
            embedded = inner is not None and ptype not in SPECIAL
            if (
                embedded
                and described
                and field not in described
                and set(inner) <= set(described) | {"apiVersion", "kind"}
            ):
                # Embedded inline: its fields are ours in JSON.
                entries.append({"embed": openapi_name(ptype), "proto": number})
                seen |= set(inner)
                continue
            entry: dict[str, Any] = {
                "name": field,
                "type": field_type(ptype, label),
                "proto": number,
            }
            py = described.get(field)
            if py is not None:
                if py.description:
                    entry["description"] = py.description
                if py.is_required():
                    entry["required"] = True
            entry.update(marks.get(out_name, {}).get(field, {}))
            entries.append(entry)
            seen.add(field)
        for field in ("apiVersion", "kind"):  # Go's TypeMeta, embedded without a tag
            py = described.get(field)
            if py is None or field in seen:
                continue
            entry = {"name": field, "type": "string"}
            if py.description:
                entry["description"] = py.description
            if py.is_required():
                entry["required"] = True
            entries.append(entry)
        spec: dict[str, Any] = {"fields": entries}
        if cls is not None and cls.__doc__ and "Do not edit" not in cls.__doc__:
            # The generator's own note about its attributes is not the type's.
            doc = inspect.cleandoc(cls.__doc__).split("\nAttributes:\n")[0].strip()
            if doc:
                spec["description"] = doc
        if out_name in struct_types:
            spec["structType"] = struct_types[out_name]
        gvk = _gvk(name, fields, described)
        if gvk:
            spec["gvk"] = [gvk]
        types[out_name] = spec
    source = {"proto": proto.get("source", ""), "markers": markers.get("source", "")}
    for spec in types.values():
        # A field of a struct type the client does not describe: its type's description.
        for entry in spec["fields"]:
            inner = types.get(entry.get("type", "").removeprefix("[]"))
            described_type = inner.get("description") if inner else ""
            if "embed" not in entry and not entry.get("description") and described_type:
                entry["description"] = described_type
    return {"source": source, "types": types}


def _gvk(name: str, fields: dict, described: dict) -> list[str] | None:
    parts = name.split(".")
    kind, version = parts[-1], parts[-2]
    if name.startswith("k8s.io.apimachinery.pkg.apis.meta.v1."):
        return ["", "v1", kind] if kind in ("Status", "DeleteOptions") else None
    group_dir = parts[-3]
    if group_dir not in GROUPS or "kind" not in described:
        return None
    meta = fields.get("metadata", [0, ""])[1]
    if not meta.endswith(("ObjectMeta", "ListMeta")):
        return None
    return [GROUPS[group_dir], version, kind]


def add_go_fields(data: dict, go: dict) -> dict:
    """Mark each field with its Go pointer-ness and omitempty (from ``GO_FIELDS``:
    ``{"types": {"io.k8s.api.core.v1.PodSpec": {"replicas": {"pointer": true,
    "omitempty": true}}}}``, parsed from the same types.go files)."""
    known = go.get("types", {})
    for name, spec in data["types"].items():
        fields = known.get(name, {})
        for entry in spec["fields"]:
            info = fields.get(entry.get("name", ""))
            if info is None:
                continue
            if info.get("pointer"):
                entry["pointer"] = True
            if not info.get("omitempty", True):
                entry["omitempty"] = False
    data["source"]["go"] = go.get("source", "")
    return data


def load_inputs(paths: list[str]) -> tuple[Any, Any, Any]:
    """The three inputs (PROTO_FIELDS, MARKERS, GO_FIELDS) from their files."""
    loaded = []
    for path in paths[:3]:
        with open(path) as f:
            loaded.append(json.load(f))
    proto, markers, go = loaded
    return proto, markers, go


def main() -> None:
    proto, markers, go = load_inputs(sys.argv[1:4])
    data = add_go_fields(generate(proto, markers), go)
    json.dump(data, sys.stdout, separators=(",", ":"), sort_keys=True)


if __name__ == "__main__":
    main()
