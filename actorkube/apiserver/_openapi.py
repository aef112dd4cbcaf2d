"""The OpenAPI v3 documents kubectl reads: ``/openapi/v3`` (an index of group versions)
and ``/openapi/v3/api/v1``, ``/openapi/v3/apis/<group>/<version>`` (paths and schemas).

Rules of this file:

- The documents are generated from the registry (paths, verbs, GVKs, at every version
  a resource is served at) and the schema (components), in the shape kube-apiserver
  serves: every path operation names its ``x-kubernetes-group-version-kind`` and
  ``x-kubernetes-action``; writes declare the ``fieldValidation``, ``fieldManager``
  and ``dryRun`` parameters (kubectl checks for ``fieldValidation`` before it leaves
  validation to the server), patches also ``force``; components carry the list, map
  and patch markers that ``kubectl apply`` and ``kubectl explain`` read.
- A document is built once per server and kept as JSON bytes; the index links each one
  with a hash of its content, so that clients caching by URL see changes.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from ._registry import Registry, ResourceType
from ._schema import Field, Schema, TypeDef

REF = "#/components/schemas/"
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
# Scalars with a schema of their own in Kubernetes' documents (kubectl explain shows
# their names: <Quantity>, <IntOrString>, <Time>).
_NAMED_SCALARS = {
    "quantity": (
        "io.k8s.apimachinery.pkg.api.resource.Quantity",
        {
            "oneOf": [{"type": "string"}, {"type": "number"}],
            "description": "Quantity is a fixed-point representation of a number "
            "(a CPU or memory amount: 500m, 1.5Gi).",
        },
    ),
    "intstr": (
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "description": "IntOrString is a type that can hold an int32 or a string.",
        },
    ),
    "time": (
        META + "Time",
        {
            "type": "string",
            "format": "date-time",
            "description": "Time is a timestamp in RFC 3339 form.",
        },
    ),
    "microtime": (
        META + "MicroTime",
        {
            "type": "string",
            "format": "date-time",
            "description": "MicroTime is a timestamp with microseconds.",
        },
    ),
    "fieldsv1": (
        META + "FieldsV1",
        {
            "type": "object",
            "description": "FieldsV1 stores a "
            "set of fields in a data structure like a Trie, in "
            "JSON format.",
        },
    ),
    "raw": (
        "io.k8s.apimachinery.pkg.runtime.RawExtension",
        {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "description": "RawExtension is used to hold extensions in external versions.",
        },
    ),
}
_PLAIN = {
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
    "int32": {"type": "integer", "format": "int32"},
    "int64": {"type": "integer", "format": "int64"},
    "double": {"type": "number", "format": "double"},
    "byte": {"type": "string", "format": "byte"},
    "duration": {"type": "string"},
}
# What every document holds besides its resources' own types.
_COMMON = [META + "DeleteOptions", META + "Status", META + "APIResourceList"]
VERSION = "v1.32.0"


def _ref(name: str) -> dict:
    return {"$ref": REF + name}


def _type_schema(type_name: str) -> dict:
    if type_name in _PLAIN:
        return dict(_PLAIN[type_name])
    if type_name in _NAMED_SCALARS:
        return {"allOf": [_ref(_NAMED_SCALARS[type_name][0])]}
    if type_name.startswith("[]"):
        return {"type": "array", "items": _type_schema(type_name[2:])}
    if type_name.startswith("{}"):
        return {"type": "object", "additionalProperties": _type_schema(type_name[2:])}
    return {"allOf": [_ref(type_name)], "default": {}}


def _property(f: Field) -> dict:
    prop = _type_schema(f.type)
    if f.description:
        prop["description"] = f.description
    if f.list_type:
        prop["x-kubernetes-list-type"] = f.list_type
    if f.map_keys:
        prop["x-kubernetes-list-map-keys"] = list(f.map_keys)
    if f.map_type:
        prop["x-kubernetes-map-type"] = f.map_type
    if f.patch_strategy:
        prop["x-kubernetes-patch-strategy"] = f.patch_strategy
    if f.merge_key:
        prop["x-kubernetes-patch-merge-key"] = f.merge_key
    return prop


def component(t: TypeDef) -> dict:
    """The schema of one type, as Kubernetes' documents give it."""
    out: dict[str, Any] = {"type": "object"}
    if t.description:
        out["description"] = t.description
    out["properties"] = {name: _property(f) for name, f in sorted(t.fields.items())}
    required = sorted(name for name, f in t.fields.items() if f.required)
    if required:
        out["required"] = required
    if t.struct_type == "atomic":
        out["x-kubernetes-map-type"] = "atomic"
    if t.gvk:
        out["x-kubernetes-group-version-kind"] = [
            {"group": g, "kind": k, "version": v} for g, v, k in t.gvk
        ]
    return out


def _scalar_names(schema: Schema, names: list[str]) -> set[str]:
    used = set()
    for name in names:
        for f in schema[name].fields.values():
            if f.item in _NAMED_SCALARS:
                used.add(f.item)
    return used


def _parameters(names: list[str]) -> list[dict]:
    described = {
        "namespace": ("path", "object name and auth scope, such as for teams and projects"),
        "name": ("path", "name of the object"),
        "fieldValidation": (
            "query",
            "Strict, Warn (the default) or Ignore: what to do with unknown and duplicate fields",
        ),
        "fieldManager": ("query", "a name associated with the actor making these changes"),
        "dryRun": ("query", "when present, the modifications are not persisted"),
        "force": ("query", "force apply requests: take the fields others own"),
        "labelSelector": ("query", "a selector to restrict the list of returned objects"),
        "fieldSelector": ("query", "a selector to restrict the list of returned objects"),
        "limit": ("query", "the most items a list returns; continue for the rest"),
        "continue": ("query", "the continue token of the previous page"),
        "resourceVersion": ("query", "the version a read may be served at"),
        "watch": ("query", "watch for changes instead of listing"),
    }
    out = []
    for name in names:
        where, text = described[name]
        kind = "boolean" if name in ("force", "watch") else "string"
        kind = "integer" if name == "limit" else kind
        p = {"name": name, "in": where, "description": text, "schema": {"type": kind}}
        if where == "path":
            p["required"] = True
        out.append(p)
    return out


def _operation(
    rt: ResourceType,
    action: str,
    kind_name: str,
    op_id: str,
    params: list[str],
    body: bool = False,
    subresource: str = "",
) -> dict:
    gvk = {"group": rt.group, "kind": rt.kind, "version": rt.version}
    if subresource == "scale":
        gvk = {"group": "autoscaling", "kind": "Scale", "version": "v1"}
    content = {"application/json": {"schema": _ref(kind_name)}}
    op: dict[str, Any] = {
        "operationId": op_id,
        "tags": [rt.api_version.replace("/", "_")],
        "parameters": _parameters(params),
        "responses": {"200": {"description": "OK", "content": content}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    }
    if body:
        types = (
            [
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
                "application/apply-patch+yaml",
            ]
            if action == "patch"
            else ["application/json"]
        )
        schema = {"type": "object"} if action == "patch" else _ref(kind_name)
        op["requestBody"] = {"required": True, "content": {t: {"schema": schema} for t in types}}
    if action in ("post",):
        op["responses"]["201"] = {"description": "Created", "content": content}
    return op


def _paths(rt: ResourceType, type_name: str) -> dict:
    base = "/api/v1" if not rt.group else f"/apis/{rt.group}/{rt.version}"
    item_params = ["name", "namespace"] if rt.namespaced else ["name"]
    scope = ["namespace"] if rt.namespaced else []
    collection = (
        f"{base}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{base}/{rt.plural}"
    )
    item = collection + "/{name}"
    kind = rt.kind
    list_name = type_name + "List"
    writes = ["fieldValidation", "fieldManager", "dryRun"]
    listing = ["labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "watch"]
    paths = {
        collection: {
            "get": _operation(rt, "list", list_name, f"list{kind}", scope + listing),
            "post": _operation(rt, "post", type_name, f"create{kind}", scope + writes, body=True),
        },
        item: {
            "get": _operation(rt, "get", type_name, f"read{kind}", item_params),
            "put": _operation(
                rt, "put", type_name, f"replace{kind}", item_params + writes, body=True
            ),
            "patch": _operation(
                rt, "patch", type_name, f"patch{kind}", item_params + writes + ["force"], body=True
            ),
            "delete": _operation(
                rt, "delete", META + "Status", f"delete{kind}", item_params, body=False
            ),
        },
    }
    if rt.namespaced:
        paths[f"{base}/{rt.plural}"] = {
            "get": _operation(rt, "list", list_name, f"list{kind}ForAllNamespaces", listing)
        }
    for sub in sorted(rt.subresources & {"status", "scale"}):
        sub_type = type_name if sub == "status" else "io.k8s.api.autoscaling.v1.Scale"
        name = f"{kind}{sub.capitalize()}"
        paths[f"{item}/{sub}"] = {
            "get": _operation(rt, "get", sub_type, f"read{name}", item_params, subresource=sub),
            "put": _operation(
                rt,
                "put",
                sub_type,
                f"replace{name}",
                item_params + writes,
                body=True,
                subresource=sub,
            ),
            "patch": _operation(
                rt,
                "patch",
                sub_type,
                f"patch{name}",
                item_params + writes + ["force"],
                body=True,
                subresource=sub,
            ),
        }
    return paths


def _list_component(rt: ResourceType, type_name: str) -> dict:
    return {
        "type": "object",
        "description": f"{rt.kind}List is a list of {rt.kind} objects.",
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "APIVersion defines the "
                "versioned schema of this representation of an object.",
            },
            "kind": {
                "type": "string",
                "description": "Kind is a string value "
                "representing the REST resource this object represents.",
            },
            "items": {
                "type": "array",
                "description": f"List of {rt.plural}.",
                "items": {"allOf": [_ref(type_name)], "default": {}},
            },
            "metadata": {"allOf": [_ref(META + "ListMeta")], "default": {}},
        },
        "required": ["items"],
        "x-kubernetes-group-version-kind": [
            {"group": rt.group, "kind": rt.list_kind, "version": rt.version}
        ],
    }


class OpenApi:
    """The documents of one server (see the module rules)."""

    def __init__(self, registry: Registry, schema: Schema) -> None:
        self.registry = registry
        self.schema = schema

    def group_versions(self) -> list[tuple[str, str]]:
        return sorted({(rt.group, rt.version) for rt in self.registry.served()})

    @staticmethod
    def _gv_path(group: str, version: str) -> str:
        return f"api/{version}" if not group else f"apis/{group}/{version}"

    def index(self) -> dict:
        """``GET /openapi/v3``."""
        paths = {}
        for group, version in self.group_versions():
            gv = self._gv_path(group, version)
            digest = hashlib.sha512(self.document(group, version)).hexdigest().upper()
            paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest}"}
        return {"paths": paths}

    @functools.cache  # noqa: B019 - one server, documents that never change
    def document(self, group: str, version: str) -> bytes:
        """``GET /openapi/v3/api/v1`` and the like, as JSON bytes."""
        served = self.registry.served()
        resources = [rt for rt in served if (rt.group, rt.version) == (group, version)]
        if not resources:
            raise KeyError((group, version))
        paths: dict[str, Any] = {}
        roots = list(_COMMON)
        lists = {}
        for rt in resources:
            t = self.schema.kind(rt.api_version, rt.kind)
            if t is None:
                continue
            roots.append(t.name)
            if "scale" in rt.subresources:
                roots.append("io.k8s.api.autoscaling.v1.Scale")
            paths.update(_paths(rt, t.name))
            lists[t.name + "List"] = _list_component(rt, t.name)
        names = self.schema.closure([*roots, META + "ListMeta"])
        schemas = {name: component(self.schema[name]) for name in names}
        schemas.update(lists)
        for scalar in sorted(_scalar_names(self.schema, names)):
            ref, body = _NAMED_SCALARS[scalar]
            schemas[ref] = body
        doc = {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": VERSION},
            "paths": paths,
            "components": {"schemas": dict(sorted(schemas.items()))},
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    def at(self, path: str) -> bytes | dict | None:
        """The document at ``/openapi/v3[/...]``; None if there is none."""
        parts = [p for p in path.split("/") if p][2:]
        if not parts:
            return self.index()
        if parts[0] == "api" and len(parts) == 2:
            group, version = "", parts[1]
        elif parts[0] == "apis" and len(parts) == 3:
            group, version = parts[1], parts[2]
        else:
            return None
        try:
            return self.document(group, version)
        except KeyError:
            return None

