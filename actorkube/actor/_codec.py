"""Messages as data: the registry of message classes and their msgpack encoding.

Rules of this file:

- A message is a frozen attrs class registered under a string tag (``@message``).
  On the wire it is a msgpack array ``[tag, field_1, ..., field_n]`` in the order the
  class declares its fields. Nested messages are encoded the same way, in place.
- Each field is checked against its annotation on encode (the sender's fault, raised
  at the ``tell``) and again on decode (the bytes came from somewhere we do not
  trust). Supported annotations: ``int``, ``float``, ``bool``, ``str``, ``bytes``,
  ``None``, ``Any`` (msgpack-native data only), ``X | None``, unions of message
  classes, ``list[X]``, ``tuple[X, ...]``, ``tuple[X, Y]``, ``dict[K, V]``, enums,
  message classes and ``ActorRef``.
- Schema evolution: a decoder accepts arrays that lack trailing fields that have
  defaults, and ignores extra trailing elements; so appending a field with a default is
  compatible in both directions.
- Decoding never raises anything but ``DecodeError``, whatever the bytes.

Per-class encoders and decoders are compiled to plain Python functions the first time a
class is used (the same trick attrs uses for ``__init__``), because they sit on the
hot path of every ``tell``. An encode takes a fast path that leaves the contents of
``Any`` fields to msgpack's exact-type packer, and falls back to the checked path, which
also walks them, only when that packer meets something unusual (see ``_pack_exact``).
"""

from __future__ import annotations

import enum
import functools
import types
import typing
from collections.abc import Callable
from typing import Any

import attrs
import msgpack

from actorkube.heap import collector_paused

from ._errors import CodecError, DecodeError

__all__ = [
    "decode_message",
    "decode_value",
    "encode_message",
    "encode_value",
    "is_message",
    "message",
    "message_tag",
    "registered_tags",
]

# A resolver turns a wire address (system, name) back into an ActorRef of the
# decoding system; the codec itself knows nothing of systems.
Resolver = Callable[[str, str], Any]

_BY_TAG: dict[str, _Spec] = {}
_BY_CLASS: dict[type, _Spec] = {}

LARGE_PAYLOAD = 64 * 1024  # bytes from which decoding pauses the cyclic GC
_ENCODE_ERRORS = (TypeError, ValueError, OverflowError, RecursionError)

# Reply values are tagged so a plain list cannot be mistaken for a message.
_PLAIN, _MESSAGE, _REF = 0, 1, 2


# Two packers. ``_pack`` is msgpack's usual one, of the checked path: the compiled
# ``to_wire_checked`` walks every ``Any`` payload for map keys msgpack would encode but
# could not decode as dict keys (a tuple), and what msgpack cannot carry raises.
#
# ``_pack_exact`` is the fast path of every encode, after a ``to_wire`` that checks the
# fields but leaves ``Any`` payloads to it: with ``strict_types`` it packs only exact
# ``None``, ``bool``, ``int`` (64 bits), ``float``, ``str``, ``bytes``, ``list``,
# ``dict`` (and msgpack's own ``ExtType``, ``Timestamp`` and buffers) and raises at
# anything else. Anything else includes every map key that could not come back as a
# dict key (a tuple, a frozenset, an IntEnum), so once the exact packer has packed a
# payload it had no such key, and the bytes are those ``_pack`` would have made. Whatever
# it raises at (a tuple or an OrderedDict in a payload, a value of a wrong type, an int
# beyond 64 bits) is encoded again by the checked path, which raises what it finds or
# encodes it as before: the fast path never decides an error. (One difference: an
# ``ExtType``, ``Timestamp`` or read-only memoryview *key*, which the walk refuses,
# passes here; it does come back as a key, the last as bytes.)
#
# Neither packer has a ``default`` hook: a packer shared by threads (the Raft log
# encodes in a worker thread) must run no Python code while it packs, or another thread
# could pack into its buffer meanwhile. The exact packer never does; the usual one
# iterates a dict or list subclass through Python, so the (rare) checked path packs
# with a packer of its own each time.
_pack = functools.partial(msgpack.packb, use_bin_type=True)
_pack_exact = msgpack.Packer(use_bin_type=True, autoreset=True, strict_types=True).pack
# What the fast path may raise: then the checked path runs.
_NOT_FAST = (CodecError, *_ENCODE_ERRORS)

_unpack = msgpack.unpackb


def _unpackb(data: bytes, **options: Any) -> Any:
    """msgpack's unpackb, with the cyclic GC paused for a large payload (see
    ``actorkube.heap.collector_paused``)."""
    if len(data) < LARGE_PAYLOAD:
        return _unpack(data, **options)
    with collector_paused():
        return _unpack(data, **options)


def message(cls: type | None = None, *, tag: str | None = None) -> Any:
    """Class decorator: make ``cls`` a frozen attrs class and register it as a message.

    ``tag`` is the name the class has on the wire; it defaults to
    ``module.QualifiedName``. Pick a short explicit tag for classes that cross process
    boundaries: the tag, not the Python path, is the contract. Registering two classes
    under one tag is an error.
    """

    def wrap(c: type) -> type:
        if not attrs.has(c):
            c = attrs.frozen(c)
        _register(c, tag or f"{c.__module__}.{c.__qualname__}")
        return c

    return wrap if cls is None else wrap(cls)


def _register(cls: type, tag: str) -> None:
    old = _BY_TAG.get(tag)
    if old is not None and old.cls is not cls:
        # Re-registration of a class with the same module path happens when a test module
        # or a script is imported twice; a different path under one tag is a real clash.
        if (old.cls.__module__, old.cls.__qualname__) != (cls.__module__, cls.__qualname__):
            raise CodecError(f"message tag {tag!r} is already registered for {old.cls!r}")
        del _BY_CLASS[old.cls]
    spec = _Spec(cls, tag)
    _BY_TAG[tag] = spec
    _BY_CLASS[cls] = spec


def is_message(obj: object) -> bool:
    """True if ``obj`` is an instance of a registered message class."""
    return type(obj) in _BY_CLASS


def message_tag(cls: type) -> str:
    """The wire tag of a registered message class."""
    try:
        return _BY_CLASS[cls].tag
    except KeyError:
        raise CodecError(f"{cls!r} is not a registered message class") from None


def registered_tags() -> dict[str, type]:
    """A copy of the registry: wire tag to message class."""
    return {tag: spec.cls for tag, spec in _BY_TAG.items()}


def encode_message(msg: object) -> bytes:
    """Encode a registered message as msgpack bytes. Raises ``CodecError``."""
    spec = _BY_CLASS.get(type(msg))
    if spec is None:
        raise CodecError(f"{type(msg).__qualname__} is not a registered message class")
    try:
        return _pack_exact(spec.to_wire(msg))
    except _NOT_FAST:
        pass  # out of the except clause: an error raised below has no context
    return _encode_checked(spec, msg)


def _encode_checked(spec: _Spec, msg: object) -> bytes:
    """The checked path of ``encode_message`` (see ``_pack_exact``)."""
    try:
        return _pack(spec.to_wire_checked(msg))
    except _ENCODE_ERRORS as exc:
        # Values the annotations let through but msgpack cannot carry: a set in an Any
        # field, an int beyond 64 bits, a lone surrogate in a str, a cycle.
        raise CodecError(
            f"{type(msg).__qualname__} cannot be encoded: {type(exc).__name__}: {exc}"
        ) from None


def decode_message(data: bytes, resolve: Resolver) -> Any:
    """Decode bytes made by ``encode_message``. Raises ``DecodeError`` only."""
    try:
        # unpackb bounds every length it reads by len(data): hostile bytes cannot make
        # it allocate more than their size implies.
        if len(data) < LARGE_PAYLOAD:
            wire = _unpack(data, strict_map_key=False)
        else:
            wire = _unpackb(data, strict_map_key=False)
        # The common case inline; _message_from_wire explains what is wrong otherwise.
        spec = _BY_TAG.get(wire[0]) if type(wire) is list and wire else None
        if spec is None:
            return _message_from_wire(wire, resolve, object)
        return spec.from_wire(wire, resolve)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"malformed message: {type(exc).__name__}: {exc}") from None


def wire_tag(data: bytes) -> str | None:
    """The tag of a message ``encode_message`` made (its array's first item), read from
    the first bytes only: a large message is not decoded to learn what it is. None if
    ``data`` does not start like one."""
    try:
        head = data[0]
        if 0x90 <= head <= 0x9F:  # fixarray
            at = 1
        elif head == 0xDC:  # array 16
            at = 3
        elif head == 0xDD:  # array 32
            at = 5
        else:
            return None
        kind = data[at]
        if 0xA0 <= kind <= 0xBF:  # fixstr
            start, size = at + 1, kind & 0x1F
        elif kind == 0xD9:  # str 8
            start, size = at + 2, data[at + 1]
        elif kind == 0xDA:  # str 16
            start, size = at + 3, int.from_bytes(data[at + 1 : at + 3], "big")
        else:
            return None
        if start + size > len(data):
            return None
        return data[start : start + size].decode()
    except (IndexError, UnicodeDecodeError):
        return None


def encode_value(value: object) -> bytes:
    """Encode a reply: a message, an ``ActorRef`` or msgpack-native data."""
    spec = _BY_CLASS.get(type(value))
    if spec is not None:
        try:
            return _pack_exact([_MESSAGE, spec.to_wire(value)])
        except _NOT_FAST:
            pass
        try:
            return _pack((_MESSAGE, spec.to_wire_checked(value)))
        except _ENCODE_ERRORS as exc:
            raise CodecError(f"reply cannot be encoded: {type(exc).__name__}: {exc}") from None
    try:
        return _pack_exact([_PLAIN, value])  # exact native data: nothing else to check
    except _NOT_FAST:
        pass
    if hasattr(value, "_wire_address"):
        return _pack((_REF, value._wire_address()))
    try:
        _native_enc(value, "reply")
        return _pack((_PLAIN, value))
    except _ENCODE_ERRORS as exc:
        raise CodecError(
            f"reply of type {type(value).__qualname__} is not msgpack-native data "
            f"({exc}); return a registered message instead"
        ) from None


def decode_value(data: bytes, resolve: Resolver) -> Any:
    """Decode bytes made by ``encode_value``. Raises ``DecodeError`` only."""
    try:
        if len(data) < LARGE_PAYLOAD:
            kind, wire = _unpack(data, strict_map_key=False)
        else:
            kind, wire = _unpackb(data, strict_map_key=False)
        if type(kind) is not int:
            raise DecodeError(f"unknown value kind {kind!r}")
        if kind == _PLAIN:
            return wire
        if kind == _MESSAGE:
            spec = _BY_TAG.get(wire[0]) if type(wire) is list and wire else None
            if spec is None:
                return _message_from_wire(wire, resolve, object)
            return spec.from_wire(wire, resolve)
        if kind == _REF:
            return _ref_from_wire(wire, resolve)
        raise DecodeError(f"unknown value kind {kind!r}")
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"malformed value: {type(exc).__name__}: {exc}") from None


def _message_from_wire(wire: Any, resolve: Resolver, expected: type) -> Any:
    if type(wire) is not list or not wire or type(wire[0]) is not str:
        raise DecodeError("a message must be an array starting with its type tag")
    spec = _BY_TAG.get(wire[0])
    if spec is None:
        raise DecodeError(f"unknown message type tag {wire[0]!r}")
    if expected is not object and not issubclass(spec.cls, expected):
        raise DecodeError(f"expected a {expected.__qualname__} message, got {wire[0]!r}")
    return spec.from_wire(wire, resolve)


def _ref_from_wire(wire: Any, resolve: Resolver) -> Any:
    if (
        type(wire) is not list
        or len(wire) != 2
        or type(wire[0]) is not str
        or type(wire[1]) is not str
    ):
        raise DecodeError("an actor reference must be [system, name]")
    return resolve(wire[0], wire[1])


class _Spec:
    """A registered class, with its encoders and decoder compiled on first use:
    ``to_wire`` (the fast path: leaves Any payloads to ``_pack_exact``),
    ``to_wire_checked`` (the checked path: walks them too) and ``from_wire``."""

    __slots__ = ("cls", "from_wire", "tag", "to_wire", "to_wire_checked")

    def __init__(self, cls: type, tag: str) -> None:
        self.cls = cls
        self.tag = tag
        # Compile lazily: annotations may name classes defined later in the module.
        self.to_wire = self._compile_then_encode
        self.to_wire_checked = self._compile_then_encode_checked
        self.from_wire = self._compile_then_decode

    def _compile(self) -> None:
        try:
            hints = typing.get_type_hints(self.cls)
        except NameError as exc:
            raise CodecError(
                f"cannot resolve the annotations of {self.cls.__qualname__}: {exc}; "
                "define message classes (and the types they name) at module level"
            ) from None
        fields = attrs.fields(self.cls)
        self.to_wire, self.to_wire_checked, self.from_wire = _compile_class(
            self.cls, self.tag, fields, hints
        )

    def _compile_then_encode(self, obj: Any) -> list:
        self._compile()
        return self.to_wire(obj)

    def _compile_then_encode_checked(self, obj: Any) -> list:
        self._compile()
        return self.to_wire_checked(obj)

    def _compile_then_decode(self, wire: list, resolve: Resolver) -> Any:
        self._compile()
        return self.from_wire(wire, resolve)


# --- field converters ------------------------------------------------------------------
#
# A converter says how values of one annotation cross the wire. Three shapes are
# inlined into the compiled class functions, the rest are functions:
#
# - ``check``: for the scalar types, a Python expression template over ``v`` that is
#   True when the value is acceptable; the value crosses unchanged.
# - ``native``: ``Any``; the value crosses unchanged, unchecked but for its map keys
#   (``_pack_exact``, or the walk of ``enc_checked``).
# - ``members``: a message class or a union of them (maybe ``| None``): an instance of
#   exactly one of ``members`` is converted by its class's compiled functions.
#
# Otherwise (and for what the inlined code does not take: a subclass, a wrong type)
# ``enc(v, path)`` converts for ``to_wire`` (the fast path), ``enc_checked(v, path)``
# for ``to_wire_checked`` (the checked path, which raises the error), and
# ``dec(w, resolve, path)`` decodes. The fast ``enc`` of a container may hand the whole
# value to ``enc_checked`` when something in it is unusual.

_SCALAR_CHECKS: dict[Any, str] = {
    int: "type({v}) is int",
    bool: "type({v}) is bool",
    str: "type({v}) is str",
    bytes: "type({v}) is bytes",
    type(None): "{v} is None",
}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__qualname__", None) or repr(tp)


def _bad(path: str, expected: str, value: Any, *, decoding: bool) -> typing.NoReturn:
    err = DecodeError if decoding else CodecError
    raise err(f"{path}: expected {expected}, got {type(value).__qualname__}")


class _Conv:
    __slots__ = (
        "check",
        "dec",
        "enc",
        "enc_checked",
        "enum",
        "members",
        "name",
        "native",
        "nullable",
        "sequence",
    )

    def __init__(
        self, name: str, check: str | None = None, enc=None, dec=None, enc_checked=None
    ) -> None:
        self.name = name
        self.check = check
        self.enc = enc
        self.enc_checked = enc_checked or enc
        self.dec = dec
        # (enum class, the one type of its values, value -> member), when inlinable.
        self.enum: tuple[type, type, dict] | None = None
        self.native = False
        # The message classes of a message (or union of messages) converter.
        self.members: frozenset[type] | None = None
        # Whether it takes None too (as None: the class functions skip it for None).
        self.nullable = False
        # list or tuple, for list[X] and tuple[X, ...]: the class functions handle the
        # empty ones (the usual default) themselves.
        self.sequence: type | None = None


def _converter(tp: Any) -> _Conv:
    if tp in _SCALAR_CHECKS:
        return _Conv(_type_name(tp), check=_SCALAR_CHECKS[tp])
    if tp is Any or tp is object:
        return _native_conv()
    if tp is float:
        return _float_conv()
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum_conv(tp)
    if isinstance(tp, type) and attrs.has(tp):
        return _messages_conv((tp,), nullable=False)
    if isinstance(tp, type) and hasattr(tp, "_wire_address"):
        return _ref_conv(tp)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _union_conv(args)
    if origin is list:
        return _list_conv(_converter(args[0]), list)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _list_conv(_converter(args[0]), tuple)
        return _fixed_tuple_conv([_converter(a) for a in args])
    if tp is dict or tp is list:
        return _native_container_conv(tp)
    if origin is dict:
        k, v = args
        if k not in _SCALAR_KEYS and not (isinstance(k, type) and issubclass(k, enum.Enum)):
            raise CodecError(f"dict keys must be str, int, bytes, float, bool or an enum: {tp!r}")
        return _dict_conv(_converter(k), _converter(v))
    raise CodecError(f"message fields of type {tp!r} are not supported by the codec")


def _functions(c: _Conv) -> tuple[Callable, Callable, Callable]:
    """``enc(v, path)`` of the fast path, ``enc(v, path)`` of the checked path and
    ``dec(w, resolve, path)``, for any converter."""
    if c.check is None:
        return c.enc, c.enc_checked, c.dec
    test = eval("lambda v: " + c.check.format(v="v"))

    def enc(v, path, _t=test, _n=c.name):
        if not _t(v):
            _bad(path, _n, v, decoding=False)
        return v

    def dec(w, resolve, path, _t=test, _n=c.name):
        if not _t(w):
            _bad(path, _n, w, decoding=True)
        return w

    return enc, enc, dec


def _all_pass(check: str) -> Callable[[Any], bool]:
    """A function telling whether every item of a sequence passes a scalar check."""
    ns: dict[str, Any] = {}
    exec(
        "def all_pass(seq):\n"
        "    for v in seq:\n"
        f"        if not ({check.format(v='v')}):\n"
        "            return False\n"
        "    return True\n",
        ns,
    )
    return ns["all_pass"]


_SCALAR_KEYS = (str, int, bytes, float, bool, type(None))


_NESTED = frozenset((dict, list, tuple))
_KEY_TYPES = frozenset(_SCALAR_KEYS)


def _keys_are_scalars(value: Any) -> bool:
    """The fast walk of ``_check_keys``: no paths built, since nearly every value passes
    (a Kubernetes object is a few hundred nested keys)."""
    if type(value) is dict:
        for key, item in value.items():
            if type(key) not in _KEY_TYPES:
                return False
            if type(item) in _NESTED and not _keys_are_scalars(item):
                return False
    else:
        for item in value:
            if type(item) in _NESTED and not _keys_are_scalars(item):
                return False
    return True


def _check_keys(value: Any, path: str) -> None:
    """msgpack would encode a tuple key as an array, which cannot come back as a dict
    key: refuse, at the sender, any map key that is not a scalar (the checked path;
    ``_pack_exact`` does it on the fast one)."""
    if not _keys_are_scalars(value):
        _find_bad_key(value, path)


def _find_bad_key(value: Any, path: str) -> None:
    if type(value) is dict:
        for key, item in value.items():
            if type(key) not in _KEY_TYPES:
                raise CodecError(f"{path}: map keys must be scalars, got {type(key).__qualname__}")
            if type(item) in _NESTED:
                _find_bad_key(item, f"{path}[{key!r}]")
    else:
        for i, item in enumerate(value):
            if type(item) in _NESTED:
                _find_bad_key(item, f"{path}[{i}]")


def _native_enc(v: Any, path: str) -> Any:
    if type(v) in _NESTED:
        _check_keys(v, path)
    return v


def _native_fast(v: Any, path: str) -> Any:
    return v


def _native_dec(w: Any, resolve: Resolver, path: str) -> Any:
    return w


def _native_conv() -> _Conv:
    conv = _Conv("msgpack-native data", enc=_native_fast, enc_checked=_native_enc, dec=_native_dec)
    conv.native = True
    return conv


def _native_container_conv(kind: type) -> _Conv:
    """A bare ``dict`` or ``list`` annotation: msgpack-native data of that shape."""
    name = f"{kind.__name__} of msgpack-native data"

    def enc(v, path):
        if type(v) is not kind:
            _bad(path, name, v, decoding=False)
        return v

    def enc_checked(v, path):
        if type(v) is not kind:
            _bad(path, name, v, decoding=False)
        _check_keys(v, path)
        return v

    def dec(w, resolve, path):
        if type(w) is not kind:
            _bad(path, name, w, decoding=True)
        return w

    return _Conv(name, enc=enc, enc_checked=enc_checked, dec=dec)


def _float_conv() -> _Conv:
    def enc(v, path):
        if type(v) is float:
            return v
        if type(v) is int:
            return float(v)
        _bad(path, "float", v, decoding=False)

    def dec(w, resolve, path):
        if type(w) is float:
            return w
        if type(w) is int:
            return float(w)
        _bad(path, "float", w, decoding=True)

    return _Conv("float", enc=enc, dec=dec)


def _enum_conv(tp: type[enum.Enum]) -> _Conv:
    if not all(type(m.value) in _SCALAR_KEYS for m in tp):
        raise CodecError(f"enum {tp.__qualname__}: member values must be scalars to cross the wire")
    # A table lookup, keyed by (type, value) so that True never passes for 1: calling
    # the enum class is several times slower and this runs for every message.
    members = {(type(m.value), m.value): m for m in tp}

    def enc(v, path):
        if not isinstance(v, tp):
            _bad(path, tp.__qualname__, v, decoding=False)
        return v._value_

    def dec(w, resolve, path):
        try:
            return members[type(w), w]
        except (KeyError, TypeError):
            raise DecodeError(f"{path}: {w!r} is not a {tp.__qualname__}") from None

    conv = _Conv(tp.__qualname__, enc=enc, dec=dec)
    value_types = {type(m.value) for m in tp}
    if len(value_types) == 1:
        # The compiled class functions inline the common case (see _compile_class).
        conv.enum = (tp, value_types.pop(), {m.value: m for m in tp})
    return conv


def _messages_conv(classes: tuple[type, ...], *, nullable: bool) -> _Conv:
    """A message class, or a union of message classes; ``nullable``: or None.

    An instance of exactly one of the classes, or an array tagged as one, is converted
    by that class's compiled functions (inlined into the class functions of the message
    holding the field, see ``_compile_class``); a subclass, by the general checks. The
    tag of an array is compared with the one class's tag (cheaper than hashing the new
    string for a lookup), or looked up for a union."""
    members = frozenset(classes)
    single = classes[0] if len(classes) == 1 else None
    name = " or ".join(c.__qualname__ for c in classes)

    def make_enc(checked: bool) -> Callable:
        def enc(v, path):
            if v is None and nullable:
                return None
            spec = _BY_CLASS.get(type(v))
            if spec is None or not isinstance(v, classes):
                _bad(path, name, v, decoding=False)
            return spec.to_wire_checked(v) if checked else spec.to_wire(v)

        return enc

    def dec(w, resolve, path):
        if w is None and nullable:
            return None
        if single is not None:
            spec = _BY_CLASS.get(single)
            if spec is not None and type(w) is list and w and w[0] == spec.tag:
                return spec.from_wire(w, resolve)
            return _message_from_wire(w, resolve, single)  # a subclass, or an error
        if type(w) is list and w and type(w[0]) is str:
            spec = _BY_TAG.get(w[0])
            if spec is not None and spec.cls in members:
                return spec.from_wire(w, resolve)
        msg = _message_from_wire(w, resolve, object)
        if not isinstance(msg, classes):
            raise DecodeError(f"{path}: expected {name}, got {type(msg).__qualname__}")
        return msg

    conv = _Conv(
        f"{name} or None" if nullable and single is not None else name,
        enc=make_enc(False),
        enc_checked=make_enc(True),
        dec=dec,
    )
    conv.members = members
    conv.nullable = nullable
    return conv


def _ref_conv(tp: type) -> _Conv:
    def enc(v, path):
        if not isinstance(v, tp):
            _bad(path, "ActorRef", v, decoding=False)
        return v._wire_address()

    def dec(w, resolve, path):
        return _ref_from_wire(w, resolve)

    return _Conv("ActorRef", enc=enc, dec=dec)


def _union_conv(args: tuple) -> _Conv:
    nullable = type(None) in args
    rest = [a for a in args if a is not type(None)]
    if all(isinstance(a, type) and attrs.has(a) for a in rest):
        return _messages_conv(tuple(rest), nullable=nullable)
    if len(rest) != 1:
        raise CodecError(f"unions other than X | None must be of message classes: {args!r}")
    inner = _converter(rest[0])
    if inner.check is not None:
        return _Conv(f"{inner.name} or None", check="{v} is None or (" + inner.check + ")")
    if inner.native:
        inner.name = f"{inner.name} or None"  # Any takes None already
        return inner

    def make_enc(ienc: Callable) -> Callable:
        def enc(v, path):
            return None if v is None else ienc(v, path)

        return enc

    idec = inner.dec

    def dec(w, resolve, path):
        return None if w is None else idec(w, resolve, path)

    conv = _Conv(
        f"{inner.name} or None",
        enc=make_enc(inner.enc),
        enc_checked=make_enc(inner.enc_checked),
        dec=dec,
    )
    conv.nullable = True  # the class functions call it for values other than None only
    return conv


def _list_conv(item: _Conv, kind: type) -> _Conv:
    name = f"{kind.__name__} of {item.name}"
    ienc, ienc_checked, idec = _functions(item)

    # The general functions. The items are converted without naming their positions;
    # only when one fails is the list converted again with positions, so that the error
    # says which item.
    def make_enc(item_enc: Callable) -> Callable:
        def enc(v, path):
            if type(v) is not list and type(v) is not tuple:
                _bad(path, name, v, decoding=False)
            if not v:
                return []
            try:
                return [item_enc(x, path) for x in v]
            except CodecError:
                return [item_enc(x, f"{path}[{i}]") for i, x in enumerate(v)]

        return enc

    def dec(w, resolve, path):
        if type(w) is not list:
            _bad(path, name, w, decoding=True)
        if not w:
            return kind()
        try:
            return kind([idec(x, resolve, path) for x in w])
        except DecodeError:
            return kind([idec(x, resolve, f"{path}[{i}]") for i, x in enumerate(w)])

    enc_checked = make_enc(ienc_checked)
    conv = _Conv(name, enc=make_enc(ienc), enc_checked=enc_checked, dec=dec)
    # The common shapes without a call per item: scalars (or Any) are checked in one
    # loop and cross as they are; messages go straight to their class's functions.
    # Anything unusual takes the general functions (the checked one when encoding: the
    # rare case need not be fast).
    if item.check is not None or item.native:
        all_pass = _all_pass(item.check) if item.check is not None else None

        def enc_plain(v, path):
            if (type(v) is list or type(v) is tuple) and (
                not v or all_pass is None or all_pass(v)
            ):
                return v if type(v) is list else list(v)
            return enc_checked(v, path)

        def dec_plain(w, resolve, path):
            if type(w) is list and (not w or all_pass is None or all_pass(w)):
                return w if kind is list else tuple(w)
            return dec(w, resolve, path)

        conv.enc, conv.dec = enc_plain, dec_plain
    elif item.members is not None and not item.nullable:
        members = item.members
        single = next(iter(members)) if len(members) == 1 else None

        def enc_messages(v, path):
            if type(v) is list or type(v) is tuple:
                out = []
                for x in v:
                    spec = _BY_CLASS.get(type(x))
                    if spec is None or type(x) not in members:
                        break
                    out.append(spec.to_wire(x))
                else:
                    return out
            return enc_checked(v, path)

        def dec_messages(w, resolve, path):
            if type(w) is list:
                out = []
                for x in w:
                    if type(x) is not list or not x or type(x[0]) is not str:
                        break
                    spec = _BY_TAG.get(x[0])
                    if spec is None or spec.cls not in members:
                        break
                    out.append(spec.from_wire(x, resolve))
                else:
                    return out if kind is list else tuple(out)
            return dec(w, resolve, path)

        def dec_single(w, resolve, path):  # one class: see _messages_conv
            spec = _BY_CLASS.get(single)
            if type(w) is list and spec is not None:
                tag = spec.tag
                out = []
                for x in w:
                    if type(x) is not list or not x or x[0] != tag:
                        break
                    out.append(spec.from_wire(x, resolve))
                else:
                    return out if kind is list else tuple(out)
            return dec(w, resolve, path)

        conv.enc = enc_messages
        conv.dec = dec_single if single is not None else dec_messages
    conv.sequence = kind
    return conv


def _fixed_tuple_conv(items: list[_Conv]) -> _Conv:
    funcs = [_functions(c) for c in items]
    decs = [f[2] for f in funcs]
    name = f"tuple of {len(items)}"

    def make_enc(encs: list[Callable]) -> Callable:
        def enc(v, path):
            if (type(v) is not tuple and type(v) is not list) or len(v) != len(encs):
                _bad(path, name, v, decoding=False)
            return [f(x, f"{path}[{i}]") for i, (f, x) in enumerate(zip(encs, v, strict=True))]

        return enc

    def dec(w, resolve, path):
        if type(w) is not list or len(w) != len(decs):
            _bad(path, name, w, decoding=True)
        return tuple(
            f(x, resolve, f"{path}[{i}]") for i, (f, x) in enumerate(zip(decs, w, strict=True))
        )

    return _Conv(
        name,
        enc=make_enc([f[0] for f in funcs]),
        enc_checked=make_enc([f[1] for f in funcs]),
        dec=dec,
    )


def _dict_conv(key: _Conv, val: _Conv) -> _Conv:
    name = f"dict of {key.name} to {val.name}"
    kenc, kenc_checked, kdec = _functions(key)
    venc, venc_checked, vdec = _functions(val)

    # As for lists: the paths naming a key are made only when an item fails (and out of
    # the except clause, so that the error raised has no context).
    def make_enc(key_enc: Callable, val_enc: Callable) -> Callable:
        def enc(v, path):
            if type(v) is not dict:
                _bad(path, name, v, decoding=False)
            try:
                return {key_enc(k, path): val_enc(x, path) for k, x in v.items()}
            except CodecError:
                pass
            return {
                key_enc(k, f"{path} key"): val_enc(x, f"{path}[{k!r}]") for k, x in v.items()
            }

        return enc

    def dec(w, resolve, path):
        if type(w) is not dict:
            _bad(path, name, w, decoding=True)
        try:
            return {kdec(k, resolve, path): vdec(x, resolve, path) for k, x in w.items()}
        except DecodeError:
            pass
        return {
            kdec(k, resolve, f"{path} key"): vdec(x, resolve, f"{path}[{k!r}]")
            for k, x in w.items()
        }

    return _Conv(
        name, enc=make_enc(kenc, venc), enc_checked=make_enc(kenc_checked, venc_checked), dec=dec
    )


def _slot_setters(cls: type, fields: tuple, ns: dict) -> bool:
    """Put the slot setters of ``cls`` in ``ns`` as ``_s0, _s1, ...``; False (nothing
    put) unless the class is a plain slotted attrs class whose __init__ only stores."""
    init = getattr(cls.__init__, "__code__", None)
    if init is None or not init.co_filename.startswith("<attrs generated"):
        return False  # a hand-written __init__ must run
    if hasattr(cls, "__attrs_post_init__") or hasattr(cls, "__attrs_pre_init__"):
        return False
    if set(cls.__dict__.get("__slots__", ())) - {"__weakref__"} != {f.name for f in fields}:
        return False  # inherited fields, or attrs' own slots (a cached hash)
    setters = []
    for f in fields:
        descriptor = cls.__dict__.get(f.name)
        if f.converter is not None or f.validator is not None or not f.init or f.alias != f.name:
            return False
        if type(descriptor) is not types.MemberDescriptorType:
            return False
        setters.append(descriptor.__set__)
    ns["_new"] = object.__new__
    for i, setter in enumerate(setters):
        ns[f"_s{i}"] = setter
    return True


def _indent(lines: list[str], prefix: str = "    ") -> list[str]:
    return [prefix + line for line in lines]


def _enc_lines(i: int, conv: _Conv, path: str, *, checked: bool) -> list[str]:
    """The statements that check and convert ``v{i}`` for a to_wire function."""
    v = f"v{i}"
    enc = f"_c{i}" if checked else f"_e{i}"
    if conv.check is not None:
        return [
            f"if not ({conv.check.format(v=v)}):",
            f"    _bad({path!r}, _n{i}, {v}, decoding=False)",
        ]
    if conv.native:
        # The fast path leaves the map keys to _pack_exact.
        return [f"if type({v}) in _NESTED:", f"    _check_keys({v}, {path!r})"] if checked else []
    if conv.enum is not None:
        # An exact member encodes to its value; anything else goes through the
        # converter (which raises the error).
        return [
            f"if type({v}) is _et{i}:",
            f"    {v} = {v}._value_",
            "else:",
            f"    {v} = {enc}({v}, {path!r})",
        ]
    if conv.members is not None:
        exact = f"type({v}) is _mc{i}" if len(conv.members) == 1 else f"type({v}) in _mm{i}"
        lines = [
            f"s = _class_spec(type({v}))",
            f"if s is not None and {exact}:",
            f"    {v} = s.{'to_wire_checked' if checked else 'to_wire'}({v})",
            "else:",
            f"    {v} = {enc}({v}, {path!r})",
        ]
        return [f"if {v} is not None:", *_indent(lines)] if conv.nullable else lines
    if conv.sequence is not None:
        return [
            f"if (type({v}) is tuple or type({v}) is list) and not {v}:",
            f"    {v} = []",
            "else:",
            f"    {v} = {enc}({v}, {path!r})",
        ]
    lines = [f"{v} = {enc}({v}, {path!r})"]
    return [f"if {v} is not None:", *_indent(lines)] if conv.nullable else lines


def _dec_lines(i: int, conv: _Conv, path: str) -> list[str]:
    """The statements that check and convert ``v{i}`` for a from_wire function."""
    v = f"v{i}"
    if conv.check is not None:
        return [
            f"if not ({conv.check.format(v=v)}):",
            f"    _bad({path!r}, _n{i}, {v}, decoding=True)",
        ]
    if conv.native:
        return []
    if conv.enum is not None:
        return [
            f"m = _m{i}.get({v}) if type({v}) is _vt{i} else None",
            f"{v} = m if m is not None else _d{i}({v}, resolve, {path!r})",
        ]
    if conv.members is not None:
        if len(conv.members) == 1:  # see _messages_conv
            test = [
                f"s = _class_spec(_mc{i})",
                f"if s is not None and type({v}) is list and {v} and {v}[0] == s.tag:",
            ]
        else:
            test = [
                f"s = None if type({v}) is not list or not {v} or type({v}[0]) is not str"
                f" else _tag_spec({v}[0])",
                f"if s is not None and s.cls in _mm{i}:",
            ]
        lines = [
            *test,
            f"    {v} = s.from_wire({v}, resolve)",
            "else:",
            f"    {v} = _d{i}({v}, resolve, {path!r})",
        ]
        return [f"if {v} is not None:", *_indent(lines)] if conv.nullable else lines
    if conv.sequence is tuple:
        return [
            f"if type({v}) is list and not {v}:",
            f"    {v} = ()",
            "else:",
            f"    {v} = _d{i}({v}, resolve, {path!r})",
        ]
    if conv.sequence is list:  # an empty one is a fresh list already
        return [f"if type({v}) is not list or {v}:", f"    {v} = _d{i}({v}, resolve, {path!r})"]
    lines = [f"{v} = _d{i}({v}, resolve, {path!r})"]
    return [f"if {v} is not None:", *_indent(lines)] if conv.nullable else lines


def _compile_class(
    cls: type, tag: str, fields: tuple, hints: dict
) -> tuple[Callable, Callable, Callable]:
    """Generate ``to_wire(obj)``, ``to_wire_checked(obj)`` and
    ``from_wire(wire, resolve)`` for one class (see ``_Spec``)."""
    ns: dict[str, Any] = {
        "_bad": _bad,
        "_check_keys": _check_keys,
        "_class_spec": _BY_CLASS.get,
        "_cls": cls,
        "_NESTED": _NESTED,
        "_tag": tag,
        "_tag_spec": _BY_TAG.get,
        "DecodeError": DecodeError,
    }
    n_fields = len(fields)
    n_required = sum(1 for f in fields if f.default is attrs.NOTHING)
    values = [f"v{i}" for i in range(n_fields)]
    enc_lines = {False: ["def to_wire(o):"], True: ["def to_wire_checked(o):"]}
    field_decoders = []
    # The general decoder: an array of any length (fields missing at the end take their
    # defaults, extra ones are ignored).
    other_lines = [
        "def from_other(a, resolve):",
        "    n = len(a)",
        f"    if n < {1 + n_required}:",
        f"        raise DecodeError('{cls.__qualname__}: too few fields')",
    ]
    for i, f in enumerate(fields):
        conv = _converter(hints.get(f.name, Any))
        path = f"{cls.__qualname__}.{f.name}"
        ns[f"_n{i}"] = conv.name
        if conv.check is None:
            ns[f"_e{i}"], ns[f"_c{i}"], ns[f"_d{i}"] = conv.enc, conv.enc_checked, conv.dec
            ns[f"_mm{i}"] = conv.members
            if conv.members is not None and len(conv.members) == 1:
                (ns[f"_mc{i}"],) = conv.members
        if conv.enum is not None:
            ns[f"_et{i}"], ns[f"_vt{i}"], ns[f"_m{i}"] = conv.enum
        for checked, lines in enc_lines.items():
            lines.append(f"    v{i} = o.{f.name}")
            lines += _indent(_enc_lines(i, conv, path, checked=checked))
        decode = _dec_lines(i, conv, path)
        field_decoders += decode
        # Fields past the end of a shorter (older) array take their defaults.
        if f.default is not attrs.NOTHING:
            other_lines.append(f"    if n <= {i + 1}:")
            other_lines.append(f"        return _cls({', '.join(values[:i])})")
        other_lines.append(f"    v{i} = a[{i + 1}]")
        other_lines += _indent(decode)
    for lines in enc_lines.values():
        lines.append(f"    return [_tag{''.join(', ' + v for v in values)}]")
    if _slot_setters(cls, fields, ns):
        # All fields given: fill the slots directly, as attrs' own __init__ would
        # (a frozen class's __init__ calls object.__setattr__ per field, which costs
        # more than the slot descriptors; no converters or validators to run).
        construct = ["o = _new(_cls)", *(f"_s{i}(o, v{i})" for i in range(n_fields)), "return o"]
    else:
        construct = [f"return _cls({', '.join(values)})"]
    other_lines += _indent(construct)
    # The decoder of an array of the current length (nearly all of them): the fields
    # in one unpacking, no length tests between them.
    dec_lines = [
        "def from_wire(a, resolve):",
        f"    if len(a) != {1 + n_fields}:",
        "        return from_other(a, resolve)",
    ]
    if n_fields:
        dec_lines.append(f"    _, {', '.join(values)}, = a")
    dec_lines += _indent(field_decoders + construct)
    source = "\n".join([*enc_lines[False], *enc_lines[True], *other_lines, *dec_lines])
    exec(source + "\n", ns)
    return ns["to_wire"], ns["to_wire_checked"], ns["from_wire"]
