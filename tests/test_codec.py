"""The message codec: round trips, type checks both ways, evolution, hostile bytes."""

from __future__ import annotations

import contextlib
import enum
from typing import Any

import attrs
import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actorkube.actor import (
    ActorRef,
    Address,
    CodecError,
    DecodeError,
    decode_message,
    encode_message,
    message,
    message_tag,
    registered_tags,
)
from actorkube.actor._codec import decode_value, encode_value, wire_tag
from actorkube.actor._messages import Terminated


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@message(tag="test.codec.Inner")
class Inner:
    name: str
    weight: float = 1.0


@message(tag="test.codec.Other")
class Other:
    flag: bool


@message(tag="test.codec.Everything")
class Everything:
    i: int
    f: float
    b: bool
    s: str
    raw: bytes
    nothing: None
    maybe: int | None
    anything: Any
    ints: list[int]
    names: tuple[str, ...]
    pair: tuple[int, str]
    table: dict[str, int]
    inner: Inner
    inners: list[Inner]
    either: Inner | Other
    color: Color
    ref: ActorRef
    optional_inner: Inner | None = None


class FakeSystem:
    """What the codec needs to resolve references: (system, name) -> ActorRef."""

    def resolve(self, system: str, name: str) -> ActorRef:
        return ActorRef(Address(system, name), self)


RESOLVE = FakeSystem().resolve

msgpack_native = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=10,
)
inners = st.builds(Inner, st.text(), st.floats(allow_nan=False))
everything = st.builds(
    Everything,
    i=st.integers(-(2**63), 2**64 - 1),
    f=st.floats(allow_nan=False),
    b=st.booleans(),
    s=st.text(),
    raw=st.binary(),
    nothing=st.none(),
    maybe=st.none() | st.integers(-1000, 1000),
    anything=msgpack_native,
    ints=st.lists(st.integers(-1000, 1000)),
    names=st.lists(st.text(max_size=5)).map(tuple),
    pair=st.tuples(st.integers(0, 9), st.text(max_size=3)),
    table=st.dictionaries(st.text(max_size=5), st.integers(0, 9)),
    inner=inners,
    inners=st.lists(inners, max_size=3),
    either=inners | st.builds(Other, st.booleans()),
    color=st.sampled_from(Color),
    ref=st.builds(lambda s, n: RESOLVE(s, n), st.text(min_size=1), st.text(min_size=1)),
    optional_inner=st.none() | inners,
)


@given(everything)
def test_round_trip(msg: Everything) -> None:
    data = encode_message(msg)
    assert isinstance(data, bytes)
    assert decode_message(data, RESOLVE) == msg


@given(msgpack_native)
def test_plain_reply_values_round_trip(value: Any) -> None:
    assert decode_value(encode_value(value), RESOLVE) == value


def test_replies_carry_messages_and_refs() -> None:
    ref = RESOLVE("sys", "a")
    assert decode_value(encode_value(Inner("x")), RESOLVE) == Inner("x")
    assert decode_value(encode_value(ref), RESOLVE) == ref
    # A list that looks like a message stays a list.
    assert decode_value(encode_value(["test.codec.Other", True]), RESOLVE) == [
        "test.codec.Other",
        True,
    ]
    with pytest.raises(CodecError, match="not msgpack-native"):
        encode_value(object())


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("i", "1", "expected int"),
        ("i", True, "expected int"),
        ("s", b"x", "expected str"),
        ("ints", [1, "2"], r"ints\[1\]: expected int"),
        ("inner", Other(True), "expected Inner"),
        ("either", 3, "expected Inner or Other"),
        ("color", "red", "expected Color"),
        ("ref", "ak://x/y", "expected ActorRef"),
        ("pair", (1, 2), r"pair\[1\]: expected str"),
        ("table", {1: 1}, "table key: expected str"),
    ],
)
def test_wrong_field_types_are_refused_on_encode(field: str, value: Any, expected: str) -> None:
    good = Everything(
        1,
        1.0,
        True,
        "s",
        b"",
        None,
        None,
        None,
        [],
        (),
        (1, "a"),
        {},
        Inner("i"),
        [],
        Inner("e"),
        Color.RED,
        RESOLVE("s", "n"),
    )
    encode_message(good)
    with pytest.raises(CodecError, match=expected):
        encode_message(attrs.evolve(good, **{field: value}))


def test_float_fields_accept_ints() -> None:
    assert decode_message(encode_message(Inner("x", 2)), RESOLVE).weight == 2.0


def test_wrong_field_types_are_refused_on_decode() -> None:
    data = msgpack.packb(["test.codec.Inner", 5, 1.0])
    with pytest.raises(DecodeError, match=r"Inner\.name: expected str, got int"):
        decode_message(data, RESOLVE)


def test_unknown_tags_and_shapes() -> None:
    with pytest.raises(DecodeError, match="unknown message type tag 'nope'"):
        decode_message(msgpack.packb(["nope"]), RESOLVE)
    with pytest.raises(DecodeError, match="array starting with its type tag"):
        decode_message(msgpack.packb({"a": 1}), RESOLVE)
    with pytest.raises(DecodeError, match="too few fields"):
        decode_message(msgpack.packb(["test.codec.Other"]), RESOLVE)


def test_schema_evolution_appending_a_field_with_a_default() -> None:
    # An older peer omits the trailing field that has a default...
    assert decode_message(msgpack.packb(["test.codec.Inner", "x"]), RESOLVE) == Inner("x", 1.0)
    # ...and a newer peer's extra trailing fields are ignored.
    newer = msgpack.packb(["test.codec.Inner", "x", 2.0, "future field"])
    assert decode_message(newer, RESOLVE) == Inner("x", 2.0)


@message(tag="test.codec.Checked")
class Checked:
    """Runs code at construction: decoding must run it too."""

    count: int

    def __attrs_post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("count must not be negative")


@message(tag="test.codec.Hashed")
@attrs.frozen(cache_hash=True)
class Hashed:
    key: str


def test_decoding_builds_objects_as_their_init_would() -> None:
    # The decoder fills the slots of plain classes directly; classes whose construction
    # does more (a post-init hook, a cached hash) still go through __init__.
    msg = decode_message(encode_message(Inner("x", 2.0)), RESOLVE)
    assert msg == Inner("x", 2.0)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        msg.name = "y"
    with pytest.raises(DecodeError, match="count must not be negative"):
        decode_message(msgpack.packb(["test.codec.Checked", -1]), RESOLVE)
    hashed = decode_message(encode_message(Hashed("k")), RESOLVE)
    assert hash(hashed) == hash(Hashed("k"))
    assert {hashed: 1}[Hashed("k")] == 1


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_message(data, RESOLVE)
    with contextlib.suppress(DecodeError):
        decode_value(data, RESOLVE)


@given(st.lists(msgpack_native, max_size=20))
def test_arbitrary_arrays_after_a_valid_tag_raise_only_decode_error(fields: list) -> None:
    for tag in ("test.codec.Everything", "test.codec.Inner", "test.codec.Other"):
        with contextlib.suppress(DecodeError):
            decode_message(msgpack.packb([tag, *fields]), RESOLVE)


def test_deep_nesting_is_refused_cleanly() -> None:
    with pytest.raises(DecodeError):
        decode_message(b"\x91" * 100_000, RESOLVE)


def test_registry() -> None:
    assert message_tag(Inner) == "test.codec.Inner"
    assert registered_tags()["test.codec.Other"] is Other
    with pytest.raises(CodecError, match="already registered"):

        @message(tag="test.codec.Inner")
        class Impostor:
            x: int


def test_default_tag_is_the_qualified_name() -> None:
    @message
    class Local:
        x: int

    assert message_tag(Local).endswith(
        "test_codec.test_default_tag_is_the_qualified_name.<locals>.Local"
    )
    assert decode_message(encode_message(Local(3)), RESOLVE) == Local(3)


def test_unsupported_field_types_are_reported() -> None:
    @message(tag="test.codec.Bad")
    class Bad:
        x: set

    with pytest.raises(CodecError, match="not supported"):
        encode_message(Bad({1}))


@given(tag=st.text(min_size=1, max_size=300), fields=st.integers(min_value=0, max_value=40))
def test_wire_tag_reads_the_tag_of_any_message_array(tag: str, fields: int) -> None:
    # What a full mailbox reads to know a control message (Actor.control_messages).
    data = msgpack.packb([tag, *range(fields)])
    assert wire_tag(data) == tag


def test_wire_tag_of_registered_messages_and_of_garbage() -> None:
    for cls, msg in ((Terminated, Terminated(ActorRef(Address("s", "a"), None), "gone")),):
        assert wire_tag(encode_message(msg)) == message_tag(cls)
    for junk in (b"", b"\x90", b"\x91\x01", b"\x92\xa5ab", b"\xc1", msgpack.packb({"a": 1}),
                 msgpack.packb([b"bytes-tag"]), b"\x91\xa2\xff\xfe"):  # fmt: skip
        assert wire_tag(junk) is None
