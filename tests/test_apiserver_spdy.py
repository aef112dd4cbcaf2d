"""The SPDY/3.1 codec of port-forward: frames found however the bytes are split, header
blocks inflated across a session, what the server writes, and frames that break the
protocol (``SpdyError``). kubectl itself is the check of the dictionary and the wire
format (tests/test_kubectl_portforward.py)."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorkube.apiserver import _spdy as spdy
from actorkube.apiserver._spdy import Control, Data, SpdyError, SpdyReader, SpdyWriter


class Client:
    """The client's half: SYN_STREAMs with one compression stream, DATA, PING, ..."""

    def __init__(self) -> None:
        self.deflate = zlib.compressobj(zdict=spdy.DICTIONARY)

    def block(self, headers: dict[str, str]) -> bytes:
        raw = struct.pack(">I", len(headers)) + b"".join(
            struct.pack(">I", len(p)) + p
            for name, value in headers.items() for p in (name.encode(), value.encode())
        )  # fmt: skip
        return self.deflate.compress(raw) + self.deflate.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def control(kind: int, body: bytes, flags: int = 0, version: int = 3) -> bytes:
        return struct.pack(">HHI", 0x8000 | version, kind, flags << 24 | len(body)) + body

    def syn_stream(self, stream_id: int, headers: dict[str, str]) -> bytes:
        body = struct.pack(">IIBB", stream_id, 0, 0, 0) + self.block(headers)
        return self.control(spdy.SYN_STREAM, body)


def session() -> bytes:
    client = Client()
    return b"".join([
        client.syn_stream(1, {"streamtype": "error", "port": "80", "requestid": "0"}),
        client.syn_stream(3, {"streamType": "data", "port": "80", "requestid": "0",
                              "x-many": "a\0b"}),
        Client.control(spdy.SETTINGS, struct.pack(">II", 1, 0x01000004) + bytes(4)),
        SpdyWriter.data(3, b"GET / HTTP/1.0\r\n\r\n"),
        SpdyWriter.data(3, b"", fin=True),
        Client.control(spdy.PING, struct.pack(">I", 1)),
        Client.control(spdy.WINDOW_UPDATE, struct.pack(">II", 3, 65536)),
        Client.control(spdy.RST_STREAM, struct.pack(">II", 3, spdy.CANCEL)),
        Client.control(spdy.GOAWAY, struct.pack(">II", 3, 0)),
    ])  # fmt: skip


EXPECTED = [
    Control(spdy.SYN_STREAM, 0, 1, {"streamtype": ["error"], "port": ["80"],
                                    "requestid": ["0"]}),
    Control(spdy.SYN_STREAM, 0, 3, {"streamtype": ["data"], "port": ["80"], "requestid": ["0"],
                                    "x-many": ["a", "b"]}),
    Control(spdy.SETTINGS, 0),
    Data(3, 0, b"GET / HTTP/1.0\r\n\r\n"),
    Data(3, spdy.FLAG_FIN, b""),
    Control(spdy.PING, 0, value=1),
    Control(spdy.WINDOW_UPDATE, 0, 3, value=65536),
    Control(spdy.RST_STREAM, 0, 3, value=spdy.CANCEL),
    Control(spdy.GOAWAY, 0, value=0),
]  # fmt: skip


def test_the_dictionary_is_spdy3s():
    # Its size and Adler-32 (what zlib puts in the stream and checks) per the spec.
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2


def test_a_session_read_whole():
    frames = SpdyReader().feed(session())
    assert frames == EXPECTED
    assert frames[4].fin and not frames[3].fin


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=400), max_size=20))
def test_frames_are_found_however_the_bytes_are_split(cuts):
    wire = session()
    points = sorted({min(c, len(wire)) for c in cuts})
    reader = SpdyReader()
    frames = []
    for start, end in zip([0, *points], [*points, len(wire)], strict=True):
        frames += reader.feed(wire[start:end])
    assert frames == EXPECTED


def test_what_the_server_writes():
    writer = SpdyWriter()
    wire = writer.syn_reply(1) + writer.syn_reply(3, {"Port": "80"}, fin=True)
    wire += writer.ping(7) + writer.rst_stream(5, spdy.REFUSED_STREAM) + writer.goaway(3)
    wire += SpdyWriter.data(3, b"abc", fin=True)
    # read back with a reader's inflater: the same session format both ways
    assert SpdyReader().feed(wire) == [
        Control(spdy.SYN_REPLY, 0, 1, {}),
        Control(spdy.SYN_REPLY, spdy.FLAG_FIN, 3, {"port": ["80"]}),
        Control(spdy.PING, 0, value=7),
        Control(spdy.RST_STREAM, 0, 5, value=spdy.REFUSED_STREAM),
        Control(spdy.GOAWAY, 0, value=0),
        Data(3, spdy.FLAG_FIN, b"abc"),
    ]


def test_data_above_the_largest_frame_is_split(monkeypatch):
    monkeypatch.setattr(spdy, "MAX_FRAME", 5)
    frames = SpdyReader().feed(SpdyWriter.data(1, b"abcdefghij", fin=True))
    assert [(f.data, f.fin) for f in frames] == [(b"abcd", False), (b"efgh", False),
                                                 (b"ij", True)]  # fmt: skip


@pytest.mark.parametrize("wire, match", [
    (Client.control(spdy.PING, b"\0\0\0\1", version=2), "version 2"),
    (Client.control(spdy.RST_STREAM, b"\0\0\0\1"), "needs 8 bytes"),
    (Client.control(spdy.SYN_STREAM, bytes(10) + b"not zlib"), "does not inflate"),
    (Client.control(spdy.SYN_STREAM, bytes(10) + Client().block({"a": "b"})[:-6]
                    + zlib.compress(b"")), "does not inflate|malformed"),
])  # fmt: skip
def test_frames_that_break_the_protocol(wire, match):
    with pytest.raises(SpdyError, match=match):
        SpdyReader().feed(wire)


def test_a_header_block_that_inflates_too_far_is_refused_without_inflating_it():
    deflate = zlib.compressobj(zdict=spdy.DICTIONARY)
    # 64 MiB of zeros compress to ~64 KB; only MAX_HEADERS + 1 bytes are ever made
    block = deflate.compress(bytes(64 << 20)) + deflate.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(SpdyError, match="inflates to more than"):
        SpdyReader().feed(Client.control(spdy.SYN_STREAM, bytes(10) + block))


def test_a_header_block_that_lies_about_its_size():
    deflate = zlib.compressobj(zdict=spdy.DICTIONARY)
    raw = struct.pack(">II", 1, 100) + b"short"
    block = deflate.compress(raw) + deflate.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(SpdyError, match=r"ends inside a header|malformed"):
        SpdyReader().feed(Client.control(spdy.SYN_STREAM, bytes(10) + block))
