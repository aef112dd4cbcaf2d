"""Decoding a body into a typed object, as kube-apiserver's JSON decoder does.

What Kubernetes gets from decoding into its Go structs, we get from walking the schema:

- A value of the wrong type is a 400 whatever the field validation asks, with Go's
  message: ``json: cannot unmarshal string into Go struct field
  Container.spec.containers.ports.containerPort of type int32``.
- A field the type does not have is *unknown*: ``decode`` drops it and reports its path
  (``spec.containers[0].imagee``); the caller refuses the request
  (``fieldValidation=Strict``), warns (``Warn``, the default) or says nothing
  (``Ignore``). Nothing unknown is ever stored.
- ``null`` is Go's nil: the field is left out (in a list, the item's zero value).
- Quantities come out in canonical form (``1000m`` is ``"1"``, ``cpu: 0.5`` is
  ``"500m"``), as Kubernetes writes them back.
- Types the schema does not describe are passed through unchanged.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import attrs

from ._quantity import InvalidQuantity, Quantity
from ._schema import SCALARS, Schema, TypeDef

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z")
_GO_DURATION = re.compile(r"[-+]?(\d+(\.\d*)?(ns|us|µs|ms|s|m|h))+\Z|[-+]?0\Z")
_ZERO = {"string": "", "boolean": False, "int32": 0, "int64": 0, "double": 0}


class DecodeError(ValueError):
    """The body cannot be decoded into the type; the message is Go's (without the
    ``<Kind> in version ...`` preamble the caller adds)."""


@attrs.frozen
class Decoded:
    """The object with unknown fields dropped, and the paths of those fields."""

    obj: Any
    unknown: tuple[str, ...] = ()


def decode(schema: Schema, t: TypeDef, obj: Any) -> Decoded:
    """``obj`` decoded as a ``t`` (see the module rules). Raises DecodeError."""
    try:
        return Decoded(_fast(schema, t.name)(obj))
    except _Slow:
        pass  # something to report (an unknown field, a wrong type): the full walk says it
    unknown: list[str] = []
    walker = _Walker(schema, unknown)
    result = walker.struct(t, obj, "", "")
    return Decoded(result, tuple(unknown))


def _json_kind(value: Any) -> str:
    """Go's name for the JSON value's kind, as its errors print it."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def go_type(schema: Schema, type_name: str) -> str:
    """The Go type a field's type is (``int32``, ``[]v1.Container``,
    ``map[string]string``), for error messages."""
    if type_name.startswith("[]"):
        return "[]" + go_type(schema, type_name[2:])
    if type_name.startswith("{}"):
        return "map[string]" + go_type(schema, type_name[2:])
    simple = {
        "boolean": "bool",
        "double": "float64",
        "byte": "[]uint8",
        "quantity": "resource.Quantity",
        "intstr": "intstr.IntOrString",
        "time": "v1.Time",
        "microtime": "v1.MicroTime",
        "duration": "v1.Duration",
        "raw": "runtime.RawExtension",
        "fieldsv1": "v1.FieldsV1",
    }
    if type_name in simple:
        return simple[type_name]
    if type_name in SCALARS:
        return type_name
    t = schema.types.get(type_name)
    return f"{t.go_package}.{t.short_name}" if t else type_name


class _Walker:
    def __init__(self, schema: Schema, unknown: list[str]) -> None:
        self.schema = schema
        self.unknown = unknown

    def _wrong(self, value: Any, owner: str, go_path: str, type_name: str) -> DecodeError:
        where = f"Go struct field {owner}.{go_path}" if owner else "Go value"
        return DecodeError(
            f"json: cannot unmarshal {_json_kind(value)} into {where} "
            f"of type {go_type(self.schema, type_name)}"
        )

    def struct(self, t: TypeDef, obj: Any, path: str, go_path: str, owner: str = "") -> Any:
        if not isinstance(obj, dict):
            raise self._wrong(obj, owner, go_path, t.name)
        out = {}
        fields = t.fields
        for key, value in obj.items():
            f = fields.get(key)
            where = f"{path}.{key}" if path else key
            if f is None:
                self.unknown.append(where)
                continue
            if value is None:
                continue
            gp = f"{go_path}.{key}" if go_path else key
            out[key] = self.value(f.type, value, where, gp, t.short_name)
        return out

    def value(self, type_name: str, value: Any, path: str, go_path: str, owner: str) -> Any:
        if type_name in SCALARS:
            return self.scalar(type_name, value, go_path, owner)
        if type_name.startswith("[]"):
            if not isinstance(value, list):
                raise self._wrong(value, owner, go_path, type_name)
            item = type_name[2:]
            return [
                self.value(item, v, f"{path}[{i}]", go_path, owner)
                if v is not None
                else self._zero(item)
                for i, v in enumerate(value)
            ]
        if type_name.startswith("{}"):
            if not isinstance(value, dict):
                raise self._wrong(value, owner, go_path, type_name)
            item = type_name[2:]
            return {
                k: self.value(item, v, f"{path}[{k}]", go_path, owner)
                if v is not None
                else self._zero(item)
                for k, v in value.items()
            }
        t = self.schema.types.get(type_name)
        if t is None:
            return value
        return self.struct(t, value, path, go_path, owner)

    def _zero(self, type_name: str) -> Any:
        if type_name in _ZERO:
            return _ZERO[type_name]
        if type_name.startswith("[]") or type_name in SCALARS:
            return None
        return {}

    def scalar(self, type_name: str, value: Any, go_path: str, owner: str) -> Any:
        if type_name == "string":
            if not isinstance(value, str):
                raise self._wrong(value, owner, go_path, type_name)
            return value
        if type_name == "boolean":
            if not isinstance(value, bool):
                raise self._wrong(value, owner, go_path, type_name)
            return value
        if type_name in ("int32", "int64"):
            low, high = _INT32 if type_name == "int32" else _INT64
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self._wrong(value, owner, go_path, type_name)
            if isinstance(value, float) or not low <= value <= high:
                raise DecodeError(
                    f"json: cannot unmarshal number {value} into Go struct field "
                    f"{owner}.{go_path} of type {type_name}"
                )
            return value
        if type_name == "double":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self._wrong(value, owner, go_path, type_name)
            return value
        if type_name == "quantity":
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise self._wrong(value, owner, go_path, type_name)
            try:
                return str(Quantity.parse(value))
            except InvalidQuantity as e:
                raise DecodeError(e.reason) from None
        if type_name == "intstr":
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise self._wrong(value, owner, go_path, "int32")
            return value
        if type_name == "byte":
            if not isinstance(value, str):
                raise self._wrong(value, owner, go_path, type_name)
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError) as e:
                raise DecodeError(f"illegal base64 data: {e}") from None
            return value
        if type_name in ("time", "microtime"):
            if not isinstance(value, str) or not _RFC3339.match(value):
                shown = value if isinstance(value, str) else _json_kind(value)
                raise DecodeError(
                    f'parsing time "{shown}" as "2006-01-02T15:04:05Z07:00": '
                    f"cannot parse it as RFC 3339 (field {owner}.{go_path})"
                )
            return value
        if type_name == "duration":
            if not isinstance(value, str) or not _GO_DURATION.match(value):
                raise DecodeError(f"time: invalid duration {value!r} (field {owner}.{go_path})")
            return value
        if type_name == "fieldsv1" and not isinstance(value, dict):
            raise self._wrong(value, owner, go_path, type_name)
        return value  # raw


# --- the fast path ------------------------------------------------------------------------
#
# Nearly every body is well formed. For those, decoding drops nulls and canonicalises
# quantities, which functions compiled once per type do several times faster than the
# walk above (no paths built, no type names looked up per field). They raise _Slow at
# the first thing the walk would report or that they do not handle, and the walk then
# decodes the whole body again: the walk alone defines the result, the fast path only
# ever agrees with it (tests/test_apiserver_decode checks that it does). A value they
# leave as it is comes back itself, not a copy (most of a body has no null and only
# canonical quantities): the result may share parts with the body, and neither is ever
# changed in place (as everywhere in the API server).


class _Slow(Exception):
    """The fast path cannot decode this body; the walk will."""


_FAST: dict[int, tuple[Schema, dict[str, Any]]] = {}
_QUANTITIES: dict[str, str] = {}  # canonical forms of quantity strings seen
_MAX_QUANTITIES = 4096


def _fast(schema: Schema, type_name: str) -> Any:
    entry = _FAST.get(id(schema))
    if entry is None or entry[0] is not schema:
        entry = _FAST[id(schema)] = (schema, {})
    compiled = entry[1]
    found = compiled.get(type_name)
    return found if found is not None else _compile(schema, compiled, type_name)


def _compile(schema: Schema, compiled: dict[str, Any], type_name: str) -> Any:
    """The fast decoder of ``type_name`` (registered before its fields are compiled, so
    that recursive types end)."""
    if type_name in _CHECKS:
        return _CHECKS[type_name]
    if type_name.startswith("[]") or type_name.startswith("{}"):
        item = _fast(schema, type_name[2:])
        zero = _Walker(schema, [])._zero(type_name[2:])
        fresh = type(zero) is dict  # a struct's zero: a new empty object each time
        if type_name.startswith("[]"):

            def sequence(v: Any) -> Any:
                if type(v) is not list:
                    raise _Slow
                out = None  # a copy, made at the first item that decodes to another
                for i, x in enumerate(v):
                    y = ({} if fresh else zero) if x is None else item(x)
                    if out is not None:
                        out.append(y)
                    elif y is not x:
                        out = v[:i]
                        out.append(y)
                return v if out is None else out

            compiled[type_name] = sequence
            return sequence

        def mapping(v: Any) -> Any:
            if type(v) is not dict:
                raise _Slow
            out = None  # a copy, made at the first entry that decodes to another
            for k, x in v.items():
                y = ({} if fresh else zero) if x is None else item(x)
                if y is not x:
                    if out is None:
                        out = dict(v)
                    out[k] = y
            return v if out is None else out

        compiled[type_name] = mapping
        return mapping
    t = schema.types.get(type_name)
    if t is None:
        compiled[type_name] = _as_is
        return _as_is
    table: dict[str, Any] = {}
    # The fields whose values pass as they are when of exactly one type (strings and
    # booleans: most fields), told apart without calling their check.
    plain: dict[str, type] = {}

    def struct(v: Any) -> Any:
        if type(v) is not dict:
            raise _Slow
        out = None  # a copy, made at the first field dropped (null) or decoded to another
        for key, value in v.items():
            if type(value) is plain.get(key):
                continue
            f = table.get(key)
            if f is None:
                raise _Slow  # an unknown field: the walk names it
            if value is None:
                if out is None:
                    out = dict(v)
                del out[key]
                continue
            decoded = f(value)
            if decoded is not value:
                if out is None:
                    out = dict(v)
                out[key] = decoded
        return v if out is None else out

    compiled[type_name] = struct
    for key, field in t.fields.items():
        table[key] = _fast(schema, field.type)
        if field.type in _PLAIN:
            plain[key] = _PLAIN[field.type]
    return struct


def _as_is(v: Any) -> Any:
    return v


def _of_types(*types: type) -> Any:
    """A check that passes values of exactly these types (bool is not an int here)."""

    def check(v: Any) -> Any:
        if type(v) in types:
            return v
        raise _Slow

    return check


def _integer(low: int, high: int) -> Any:
    def check(v: Any) -> Any:
        if type(v) is int and low <= v <= high:
            return v
        raise _Slow

    return check


def _matching(pattern: re.Pattern) -> Any:
    def check(v: Any) -> Any:
        if type(v) is str and pattern.match(v):
            return v
        raise _Slow

    return check


def _quantity(v: Any) -> Any:
    if type(v) is not str:
        raise _Slow
    canonical = _QUANTITIES.get(v)
    if canonical is None:
        try:
            canonical = str(Quantity.parse(v))
        except InvalidQuantity:
            raise _Slow from None
        if len(_QUANTITIES) >= _MAX_QUANTITIES:
            _QUANTITIES.clear()
        _QUANTITIES[v] = canonical
    return v if canonical == v else canonical  # (the value itself when canonical already)


def _byte(v: Any) -> Any:
    if type(v) is not str:
        raise _Slow
    try:
        base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        raise _Slow from None
    return v


# The scalar types whose check passes exactly the values of one Python type.
_PLAIN = {"string": str, "boolean": bool}

_CHECKS = {
    "string": _of_types(str),
    "boolean": _of_types(bool),
    "int32": _integer(*_INT32),
    "int64": _integer(*_INT64),
    "double": _of_types(float, int),
    "quantity": _quantity,
    "intstr": _of_types(str, int),
    "byte": _byte,
    "time": _matching(_RFC3339),
    "microtime": _matching(_RFC3339),
    "duration": _matching(_GO_DURATION),
    "raw": _as_is,
    "fieldsv1": _of_types(dict),
}
