"""Kubernetes' protobuf encoding, read: the bodies typed Go clients send
(``application/vnd.kubernetes.protobuf``; ``kubectl create configmap`` and ``kubectl
auth can-i`` are such clients), decoded into the JSON shape every other body has.

Rules of this file (k8s.io/apimachinery's protobuf serializer):

- A body is the 4 bytes ``k8s\\0`` and a ``runtime.Unknown``: typeMeta (1: apiVersion
  1, kind 2), raw (2: the object's own message), contentEncoding (3), contentType (4).
- An object's message has the field numbers of its Go type's ``protobuf`` tags
  (``TypeDef.proto``); a type Go embeds inline is a message of its own here and
  merges into the outer object in JSON. Quantities, IntOrStrings, times, durations
  and raw extensions are messages with JSON counterparts (a string, an int or string,
  an RFC 3339 string, Go's duration text, any JSON).
- Go writes every non-pointer field, zero or not, and a pointer field when it is set;
  its JSON leaves out what ``omitempty`` does. So among a struct's fields we leave out
  zero scalars of non-pointer omitempty fields, empty lists and maps and zero times,
  and keep a pointer's zero (``replicas: 0`` is set) and structs, even empty ones
  (values inside maps and lists are kept as they are): what Go's JSON would say.
- Malformed input raises ``ProtobufError``; nothing is guessed.
"""

from __future__ import annotations

import base64
import datetime
import json
import struct
from typing import Any

from ._schema import SCALARS, Field, Schema, TypeDef

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


class ProtobufError(ValueError):
    """The body is not a Kubernetes protobuf object we can read."""


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data):
            raise ProtobufError("truncated varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ProtobufError("varint too long")


def fields(data: bytes) -> list[tuple[int, int, Any]]:
    """The (number, wire type, value) of each field of a message: ints for varints and
    fixed-width values, bytes for length-delimited ones."""
    out = []
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0")
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 1:
            if i + 8 > len(data):
                raise ProtobufError("truncated 64-bit field")
            value = data[i : i + 8]
            i += 8
        elif wire == 2:
            size, i = _varint(data, i)
            if i + size > len(data):
                raise ProtobufError("truncated length-delimited field")
            value = data[i : i + size]
            i += size
        elif wire == 5:
            if i + 4 > len(data):
                raise ProtobufError("truncated 32-bit field")
            value = data[i : i + 4]
            i += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


def unwrap(body: bytes) -> tuple[str, str, bytes]:
    """The (apiVersion, kind, raw object message) of a protobuf body."""
    if not body.startswith(MAGIC):
        raise ProtobufError("the body does not start with Kubernetes' protobuf prefix")
    api_version = kind = ""
    raw = b""
    for number, wire, value in fields(body[len(MAGIC) :]):
        if number == 1 and wire == 2:
            for n, w, v in fields(value):
                if n == 1 and w == 2:
                    api_version = _text(v)
                elif n == 2 and w == 2:
                    kind = _text(v)
        elif number == 2 and wire == 2:
            raw = value
    if not kind:
        raise ProtobufError("the body names no kind")
    return api_version, kind, raw


def decode_body(schema: Schema, body: bytes) -> dict:
    """The object a protobuf body holds, as JSON data (with apiVersion and kind)."""
    api_version, kind, raw = unwrap(body)
    t = schema.kind(api_version, kind)
    if t is None:
        raise ProtobufError(f'no kind "{kind}" is registered for version "{api_version}"')
    obj = _message(schema, t, raw)
    return {"apiVersion": api_version, "kind": kind, **obj}


def _text(value: Any) -> str:
    if not isinstance(value, bytes):
        raise ProtobufError("a string field is not length-delimited")
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise ProtobufError("a string field is not UTF-8") from None


def _signed(value: int, bits: int = 64) -> int:
    value &= (1 << 64) - 1
    if value >= 1 << 63:
        value -= 1 << 64
    if bits == 32 and not -(2**31) <= value < 2**31:
        raise ProtobufError("an int32 field is out of range")
    return value


def _omitted(f: Field, value: Any) -> bool:
    """Whether Go's JSON leaves the field out: nil (a pointer not on the wire, an empty
    list or map); a zero scalar unless it is a pointer's (set: ``replicas: 0``,
    ``allowPrivilegeEscalation: false``) or the field has no omitempty. A struct is
    always written (``resources: {}``)."""
    if value is None or value == []:
        return True
    if isinstance(value, dict):
        return f.is_map and not value
    return value in ("", 0) and not f.pointer and f.omitempty


def _message(schema: Schema, t: TypeDef, data: bytes) -> dict:
    out: dict[str, Any] = {}
    for number, wire, value in fields(data):
        f = t.proto.get(number)
        if f is None:
            continue  # a field newer than our schema: protobuf's rule is to skip it
        if isinstance(f, str):  # a type embedded inline
            out.update(_message(schema, schema[f], _bytes(value, wire)))
            continue
        if f.is_list:
            out.setdefault(f.name, []).extend(_repeated(schema, f.item, wire, value))
        elif f.is_map:
            key, item = _map_entry(schema, f.item, _bytes(value, wire))
            out.setdefault(f.name, {})[key] = item
        else:
            out[f.name] = _single(schema, f.type, wire, value)
    return {k: v for k, v in out.items() if not _omitted(t.fields[k], v)}


def _bytes(value: Any, wire: int) -> bytes:
    if wire != 2:
        raise ProtobufError("a message field is not length-delimited")
    return value


def _repeated(schema: Schema, item: str, wire: int, value: Any) -> list:
    if wire == 2 and item in ("int32", "int64", "boolean", "double"):
        # Packed scalars: one length-delimited run of values.
        values = []
        if item == "double":
            return [struct.unpack("<d", value[i : i + 8])[0] for i in range(0, len(value), 8)]
        i = 0
        while i < len(value):
            v, i = _varint(value, i)
            values.append(_single(schema, item, 0, v))
        return values
    return [_single(schema, item, wire, value)]


def _map_entry(schema: Schema, item: str, data: bytes) -> tuple[str, Any]:
    key, value = "", None
    for number, wire, v in fields(data):
        if number == 1:
            key = _text(v)
        elif number == 2:
            if item.startswith("[]"):  # Go's map[string][]string: a message of items
                value = [
                    _single(schema, item[2:], w, x) for n, w, x in fields(_bytes(v, wire)) if n == 1
                ]
            else:
                value = _single(schema, item, wire, v)
    if value is None:
        value = _zero(item)
    return key, value


def _zero(type_name: str) -> Any:
    zero = {
        "string": "",
        "boolean": False,
        "int32": 0,
        "int64": 0,
        "double": 0.0,
        "byte": "",
        "quantity": "0",
    }
    if type_name in zero:
        return zero[type_name]
    return [] if type_name.startswith("[]") else {}


def _single(schema: Schema, type_name: str, wire: int, value: Any) -> Any:
    if type_name == "string":
        return _text(value)
    if type_name == "boolean":
        return bool(value)
    if type_name in ("int32", "int64"):
        if wire != 0:
            raise ProtobufError("an integer field is not a varint")
        return _signed(value, 32 if type_name == "int32" else 64)
    if type_name == "double":
        if wire != 1:
            raise ProtobufError("a double field is not 64-bit")
        return struct.unpack("<d", value)[0]
    if type_name == "byte":
        return base64.b64encode(_bytes(value, wire)).decode()
    if type_name in SCALARS:
        parts = {n: v for n, _w, v in fields(_bytes(value, wire))}
        return _special(type_name, parts)
    t = schema.types.get(type_name)
    if t is None:
        raise ProtobufError(f"no type {type_name}")
    return _message(schema, t, _bytes(value, wire))


def _special(type_name: str, parts: dict[int, Any]) -> Any:
    if type_name == "quantity":
        return _text(parts.get(1, b"0"))
    if type_name == "intstr":
        if parts.get(1, 0) == 1:
            return _text(parts.get(3, b""))
        return _signed(parts.get(2, 0), 32)
    if type_name in ("time", "microtime"):
        if not parts:  # Go writes its zero time as an empty message: JSON null
            return None
        seconds = _signed(parts.get(1, 0))
        nanos = _signed(parts.get(2, 0), 32)
        try:
            moment = _EPOCH + datetime.timedelta(seconds=seconds, microseconds=nanos // 1000)
        except OverflowError:
            raise ProtobufError(f"a time of {seconds} seconds is out of range") from None
        if type_name == "microtime":
            return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if type_name == "duration":
        return go_duration(_signed(parts.get(1, 0)))
    # raw, fieldsv1: JSON bytes
    raw = parts.get(1, b"")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise ProtobufError("a raw extension is not JSON") from None


def go_duration(nanos: int) -> str:
    """Go's ``time.Duration.String()``: ``1h0m0s``, ``1.5s``, ``300ms``, ``0s``."""
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if nanos >= size:
                return sign + _decimal(nanos, size) + unit
    seconds, frac = divmod(nanos, 1_000_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = _decimal(seconds * 1_000_000_000 + frac, 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _decimal(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"
