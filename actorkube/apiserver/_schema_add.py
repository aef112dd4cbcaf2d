"""Adds the types of more Kubernetes API packages to ``schema.json`` without touching the
types already there. Run by a developer when a group version starts being served:

    python -m actorkube.apiserver._schema_add PROTO_FIELDS MARKERS GO_FIELDS

The three inputs are ``_schema_gen``'s (see its docstring), for the new packages only;
the types are generated exactly as ``_schema_gen`` generates them (descriptions and
required fields from the official Python client's models) and then merged:

- A type the schema does not have is added. A type it has is left as it is: the run
  fails if the generated one differs, since that would change a type already served
  (regenerate everything with ``_schema_gen`` instead).
- A field the client does not describe gets its type's description, as
  ``_schema_gen`` does, also when the type is one already in the schema (``metadata``:
  ObjectMeta's).
- The sources are recorded beside the existing ones: ``source.go`` per package, and
  the proto and marker sources appended to ``source.proto`` and ``source.markers``.
- The file keeps its form (compact, keys sorted), so a diff shows only the additions.

batch/v1, autoscaling/v2 and certificates/v1 were added this way from k8s.io/api
v0.32.1 (see docs/apiserver.md). ``GROUPS`` names the API group of each package directory that
``_schema_gen.GROUPS`` does not know yet.
"""

from __future__ import annotations

import json
import sys
from typing import Any
from unittest import mock

from . import _schema_gen
from ._schema import DATA

GROUPS = {"batch": "batch", "certificates": "certificates.k8s.io"}


class SchemaConflict(ValueError):
    """A generated type differs from the one already in the schema: the inputs are of
    another Kubernetes version than the schema (the developer's to reconcile)."""


def generated(proto: dict, markers: dict, go: dict) -> dict[str, Any]:
    """The types of the inputs, as ``_schema_gen`` makes them (with ``GROUPS``)."""
    with mock.patch.dict(_schema_gen.GROUPS, GROUPS):
        data = _schema_gen.generate(proto, {**markers, "source": ""})
    return _schema_gen.add_go_fields(data, {**go, "source": ""})["types"]


def merge(schema: dict, types: dict[str, Any], sources: dict[str, Any]) -> list[str]:
    """Add ``types`` to ``schema`` (changed in place); the names added. ``sources``:
    ``go`` (by package), ``proto`` and ``markers`` (text)."""
    added = []
    known = {**schema["types"], **types}
    for spec in types.values():
        for entry in spec["fields"]:
            inner = known.get(entry.get("type", "").removeprefix("[]"), {})
            if "embed" not in entry and not entry.get("description") and inner.get("description"):
                entry["description"] = inner["description"]
    for name, spec in sorted(types.items()):
        if name in schema["types"]:
            if schema["types"][name] != spec:
                raise SchemaConflict(f"{name} differs from the schema's")
            continue
        schema["types"][name] = spec
        added.append(name)
    source = schema["source"]
    source["go"].update(sources["go"])
    for key in ("proto", "markers"):
        if sources[key] not in source[key]:
            source[key] += " + " + sources[key]
    return added


def _describe(sources: Any) -> str:
    if isinstance(sources, dict):
        return "; ".join(f"{pkg}: {text}" for pkg, text in sorted(sources.items()))
    return str(sources)


def main() -> None:
    proto, markers, go = _schema_gen.load_inputs(sys.argv[1:4])
    schema = json.loads(DATA.read_text())
    sources = {"go": go.get("source", {}), "proto": _describe(proto.get("source", "")),
               "markers": _describe(markers.get("source", ""))}  # fmt: skip
    added = merge(schema, generated(proto, markers, go), sources)
    DATA.write_text(json.dumps(schema, separators=(",", ":"), sort_keys=True))
    print(f"added {len(added)} types", file=sys.stderr)


if __name__ == "__main__":
    main()
