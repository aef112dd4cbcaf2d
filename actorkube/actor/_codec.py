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
hot path of every ``tell``.
"""

from __future__ import annotations

import enum
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

_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
LARGE_PAYLOAD = 64 * 1024  # bytes from which decoding pauses the cyclic GC


def _unpackb(data: bytes, **options: Any) -> Any:
    """msgpack's unpackb, with the cyclic GC paused for a large payload (see
    ``actorkube.heap.collector_paused``)."""
    if len(data) < LARGE_PAYLOAD:
        return msgpack.unpackb(data, **options)
    with collector_paused():
        return msgpack.unpackb(data, **options)
_ENCODE_ERRORS = (TypeError, ValueError, OverflowError, RecursionError)

# Reply values are tagged so a plain list cannot be mistaken for a message.
_PLAIN, _MESSAGE, _REF = 0, 1, 2


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
        return _pack(spec.to_wire(msg))
    except _ENCODE_ERRORS as exc:
        # Values the annotations let through but msgpack cannot carry: a set in an Any
        # field, an int beyond 64 bits, a lone surrogate in a str, a cycle.
        raise CodecError(
            f"{type(msg).__qualname__} cannot be encoded: {type(exc).__name__}: {exc}"
        ) from None


def decode_message(data: bytes, resolve: Resolver) -> Any:
    """Decode bytes made by ``encode_message``. Raises ``DecodeError`` only."""
    try:
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


def encode_value(value: object) -> bytes:
    """Encode a reply: a message, an ``ActorRef`` or msgpack-native data."""
    spec = _BY_CLASS.get(type(value))
    if spec is not None:
        try:
            return _pack((_MESSAGE, spec.to_wire(value)))
        except _ENCODE_ERRORS as exc:
            raise CodecError(f"reply cannot be encoded: {type(exc).__name__}: {exc}") from None
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
        kind, wire = _unpackb(data, raw=False, strict_map_key=False)
        if type(kind) is not int:
            raise DecodeError(f"unknown value kind {kind!r}")
        if kind == _PLAIN:
            return wire
        if kind == _MESSAGE:
            return _message_from_wire(wire, resolve, object)
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
    """A registered class, with its encoder and decoder compiled on first use."""

    __slots__ = ("cls", "from_wire", "tag", "to_wire")

    def __init__(self, cls: type, tag: str) -> None:
        self.cls = cls
        self.tag = tag
        # Compile lazily: annotations may name classes defined later in the module.
        self.to_wire = self._compile_then_encode
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
        self.to_wire, self.from_wire = _compile_class(self.cls, self.tag, fields, hints)

    def _compile_then_encode(self, obj: Any) -> list:
        self._compile()
        return self.to_wire(obj)

    def _compile_then_decode(self, wire: list, resolve: Resolver) -> Any:
        self._compile()
        return self.from_wire(wire, resolve)


# --- field converters ------------------------------------------------------------------
#
# A converter is (check, enc, dec). For the simple scalar types ``check`` is a Python
# expression template over ``v`` that is True when the value is acceptable, inlined into
# the compiled class functions, and enc/dec are None (identity). For everything else
# ``enc(v, path)`` and ``dec(w, resolve, path)`` are functions.

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
    __slots__ = ("check", "dec", "enc", "enum", "name")

    def __init__(self, name: str, check: str | None = None, enc=None, dec=None) -> None:
        self.name = name
        self.check = check
        self.enc = enc
        self.dec = dec
        # (enum class, the one type of its values, value -> member), when inlinable.
        self.enum: tuple[type, type, dict] | None = None


def _converter(tp: Any) -> _Conv:
    if tp in _SCALAR_CHECKS:
        return _Conv(_type_name(tp), check=_SCALAR_CHECKS[tp])
    if tp is Any or tp is object:
        return _Conv("msgpack-native data", enc=_native_enc, dec=_native_dec)
    if tp is float:
        return _float_conv()
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum_conv(tp)
    if isinstance(tp, type) and attrs.has(tp):
        return _message_conv(tp)
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


def _as_functions(c: _Conv) -> tuple[Callable, Callable]:
    """enc(v, path) and dec(w, resolve, path) for any converter, scalar or not."""
    if c.enc is not None:
        return c.enc, c.dec
    test = eval("lambda v: " + c.check.format(v="v"))

    def enc(v, path, _t=test, _n=c.name):
        if not _t(v):
            _bad(path, _n, v, decoding=False)
        return v

    def dec(w, resolve, path, _t=test, _n=c.name):
        if not _t(w):
            _bad(path, _n, w, decoding=True)
        return w

    return enc, dec


_SCALAR_KEYS = (str, int, bytes, float, bool, type(None))


_NESTED = frozenset((dict, list, tuple))
_KEY_TYPES = frozenset(_SCALAR_KEYS)


def _keys_are_scalars(value: Any) -> bool:
    """The fast walk of ``_check_keys``: no paths built, since nearly every value passes
    (a Kubernetes object is a few hundred nested keys, checked at every send)."""
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
    key: refuse, at the sender, any map key that is not a scalar."""
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
    if type(v) in (dict, list, tuple):
        _check_keys(v, path)
    return v


def _native_dec(w: Any, resolve: Resolver, path: str) -> Any:
    return w


def _native_container_conv(kind: type) -> _Conv:
    """A bare ``dict`` or ``list`` annotation: msgpack-native data of that shape."""
    name = f"{kind.__name__} of msgpack-native data"

    def enc(v, path):
        if type(v) is not kind:
            _bad(path, name, v, decoding=False)
        _check_keys(v, path)
        return v

    def dec(w, resolve, path):
        if type(w) is not kind:
            _bad(path, name, w, decoding=True)
        return w

    return _Conv(name, enc=enc, dec=dec)


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


def _message_conv(tp: type) -> _Conv:
    def enc(v, path):
        spec = _BY_CLASS.get(type(v))
        if spec is None or not isinstance(v, tp):
            _bad(path, tp.__qualname__, v, decoding=False)
        return spec.to_wire(v)

    def dec(w, resolve, path):
        # The usual case, the annotated class itself, without the general checks.
        spec = _BY_CLASS.get(tp)
        if spec is not None and type(w) is list and w and w[0] == spec.tag:
            return spec.from_wire(w, resolve)
        return _message_from_wire(w, resolve, tp)

    return _Conv(tp.__qualname__, enc=enc, dec=dec)


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
    if len(rest) == 1:
        inner = _converter(rest[0])
        if inner.check is not None:
            return _Conv(f"{inner.name} or None", check="{v} is None or (" + inner.check + ")")
        ienc, idec = inner.enc, inner.dec

        def enc(v, path):
            return None if v is None else ienc(v, path)

        def dec(w, resolve, path):
            return None if w is None else idec(w, resolve, path)

        return _Conv(f"{inner.name} or None", enc=enc, dec=dec)
    if not all(isinstance(a, type) and attrs.has(a) for a in rest):
        raise CodecError(f"unions other than X | None must be of message classes: {args!r}")
    classes = tuple(rest)
    name = " or ".join(c.__qualname__ for c in classes)

    def uenc(v, path):
        if v is None and nullable:
            return None
        spec = _BY_CLASS.get(type(v))
        if spec is None or not isinstance(v, classes):
            _bad(path, name, v, decoding=False)
        return spec.to_wire(v)

    def udec(w, resolve, path):
        if w is None and nullable:
            return None
        msg = _message_from_wire(w, resolve, object)
        if not isinstance(msg, classes):
            raise DecodeError(f"{path}: expected {name}, got {type(msg).__qualname__}")
        return msg

    return _Conv(name, enc=uenc, dec=udec)


def _list_conv(item: _Conv, kind: type) -> _Conv:
    name = f"{kind.__name__} of {item.name}"
    ienc, idec = _as_functions(item)
    native = item.check is not None

    # The items are converted without naming their positions; only when one fails is
    # the list converted again with positions, so that the error says which item.
    def enc(v, path):
        if type(v) is not list and type(v) is not tuple:
            _bad(path, name, v, decoding=False)
        if not v:
            return []
        try:
            out = [ienc(x, path) for x in v]
        except CodecError:
            out = [ienc(x, f"{path}[{i}]") for i, x in enumerate(v)]
        return v if native else out

    def dec(w, resolve, path):
        if type(w) is not list:
            _bad(path, name, w, decoding=True)
        if not w:
            return kind()
        try:
            return kind([idec(x, resolve, path) for x in w])
        except DecodeError:
            return kind([idec(x, resolve, f"{path}[{i}]") for i, x in enumerate(w)])

    return _Conv(name, enc=enc, dec=dec)


def _fixed_tuple_conv(items: list[_Conv]) -> _Conv:
    funcs = [_as_functions(c) for c in items]
    name = f"tuple of {len(items)}"

    def enc(v, path):
        if (type(v) is not tuple and type(v) is not list) or len(v) != len(funcs):
            _bad(path, name, v, decoding=False)
        return [f[0](x, f"{path}[{i}]") for i, (f, x) in enumerate(zip(funcs, v, strict=True))]

    def dec(w, resolve, path):
        if type(w) is not list or len(w) != len(funcs):
            _bad(path, name, w, decoding=True)
        return tuple(
            f[1](x, resolve, f"{path}[{i}]") for i, (f, x) in enumerate(zip(funcs, w, strict=True))
        )

    return _Conv(name, enc=enc, dec=dec)


def _dict_conv(key: _Conv, val: _Conv) -> _Conv:
    name = f"dict of {key.name} to {val.name}"
    kenc, kdec = _as_functions(key)
    venc, vdec = _as_functions(val)

    def enc(v, path):
        if type(v) is not dict:
            _bad(path, name, v, decoding=False)
        return {kenc(k, f"{path} key"): venc(x, f"{path}[{k!r}]") for k, x in v.items()}

    def dec(w, resolve, path):
        if type(w) is not dict:
            _bad(path, name, w, decoding=True)
        return {
            kdec(k, resolve, f"{path} key"): vdec(x, resolve, f"{path}[{k!r}]")
            for k, x in w.items()
        }

    return _Conv(name, enc=enc, dec=dec)


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


def _compile_class(cls: type, tag: str, fields: tuple, hints: dict) -> tuple[Callable, Callable]:
    """Generate ``to_wire(obj)`` and ``from_wire(wire, resolve)`` for one class."""
    ns: dict[str, Any] = {"_bad": _bad, "_cls": cls, "_tag": tag, "DecodeError": DecodeError}
    enc_lines = ["def to_wire(o):"]
    dec_lines = [
        "def from_wire(a, resolve):",
        "    n = len(a)",
        f"    if n < {1 + sum(1 for f in fields if f.default is attrs.NOTHING)}:",
        f"        raise DecodeError('{cls.__qualname__}: too few fields')",
    ]
    values = []
    for i, f in enumerate(fields):
        conv = _converter(hints.get(f.name, Any))
        path = f"{cls.__qualname__}.{f.name}"
        ns[f"_n{i}"] = conv.name
        enc_lines.append(f"    v{i} = o.{f.name}")
        if conv.check is not None:
            if conv.check != "True":
                enc_lines.append(f"    if not ({conv.check.format(v=f'v{i}')}):")
                enc_lines.append(f"        _bad({path!r}, _n{i}, v{i}, decoding=False)")
        elif conv.enum is not None:
            # Enums inline: an exact member encodes to its value; anything else takes
            # the converter's checked path (which raises the error).
            ns[f"_e{i}"], ns[f"_d{i}"] = conv.enc, conv.dec
            ns[f"_et{i}"], ns[f"_vt{i}"], ns[f"_m{i}"] = conv.enum
            enc_lines.append(f"    if type(v{i}) is _et{i}:")
            enc_lines.append(f"        v{i} = v{i}._value_")
            enc_lines.append("    else:")
            enc_lines.append(f"        v{i} = _e{i}(v{i}, {path!r})")
        else:
            ns[f"_e{i}"], ns[f"_d{i}"] = conv.enc, conv.dec
            enc_lines.append(f"    v{i} = _e{i}(v{i}, {path!r})")
        values.append(f"v{i}")
        # Fields past the end of a shorter (older) array take their defaults.
        if f.default is not attrs.NOTHING:
            dec_lines.append(f"    if n <= {i + 1}:")
            dec_lines.append(f"        return _cls({', '.join(values[:-1])})")
        dec_lines.append(f"    v{i} = a[{i + 1}]")
        if conv.check is not None:
            if conv.check != "True":
                dec_lines.append(f"    if not ({conv.check.format(v=f'v{i}')}):")
                dec_lines.append(f"        _bad({path!r}, _n{i}, v{i}, decoding=True)")
        elif conv.enum is not None:
            dec_lines.append(f"    m = _m{i}.get(v{i}) if type(v{i}) is _vt{i} else None")
            dec_lines.append(f"    v{i} = m if m is not None else _d{i}(v{i}, resolve, {path!r})")
        else:
            dec_lines.append(f"    v{i} = _d{i}(v{i}, resolve, {path!r})")
    enc_lines.append(f"    return [_tag{''.join(', ' + v for v in values)}]")
    if _slot_setters(cls, fields, ns):
        # All fields given: fill the slots directly, as attrs' own __init__ would
        # (a frozen class's __init__ calls object.__setattr__ per field, which costs
        # more than the slot descriptors; no converters or validators to run).
        dec_lines.append("    o = _new(_cls)")
        dec_lines += [f"    _s{i}(o, v{i})" for i in range(len(fields))]
        dec_lines.append("    return o")
    else:
        dec_lines.append(f"    return _cls({', '.join(values)})")
    exec("\n".join(enc_lines) + "\n" + "\n".join(dec_lines), ns)
    return ns["to_wire"], ns["from_wire"]
