"""SPDY/3.1 framing, the server's half, sans I/O: what ``kubectl port-forward`` speaks
inside its WebSocket (subprotocol ``SPDY/3.1+portforward.k8s.io``, the bytes of the
SPDY session carried in binary messages, frames not aligned with messages).

Rules of this file:

- ``SpdyReader.feed`` takes bytes as they come and returns the whole frames in them;
  a frame that breaks the protocol (a version other than 3, a control frame too short
  for its type, a header block that does not inflate or inflates past
  ``MAX_HEADERS``) raises ``SpdyError``, after which the session is over (the header
  compression state is shared by every later frame, so nothing after a bad frame can
  be trusted).
- Header blocks are compressed with zlib and SPDY/3's dictionary, one compression
  stream per direction for the whole session, each block flushed (``Z_SYNC_FLUSH``).
  Names are lowercase on the wire; a value may hold several, separated by NUL.
- Only what a server of port-forward needs is built: SYN_REPLY, DATA (with FIN),
  RST_STREAM, PING (echoed) and GOAWAY. Flow control (WINDOW_UPDATE, SETTINGS) is read
  and ignored, as the Go client that kubectl uses ignores it too.
"""

from __future__ import annotations

import struct
import zlib

import attrs

VERSION = 3
MAX_FRAME = 16 * 1024 * 1024  # the 24-bit length's own limit
MAX_HEADERS = 1024 * 1024  # bytes a header block may inflate to (Go's MaxHeaderBytes)

# Control frame types
SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01

# RST_STREAM status codes
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
CANCEL = 5
INTERNAL_ERROR = 6


_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding "
    "accept-language accept-ranges age allow authorization cache-control connection "
    "content-base content-encoding content-language content-length content-location "
    "content-md5 content-range content-type date etag expect expires from host "
    "if-match if-modified-since if-none-match if-range if-unmodified-since "
    "last-modified location max-forwards pragma proxy-authenticate "
    "proxy-authorization range referer retry-after server te trailer "
    "transfer-encoding upgrade user-agent vary via warning www-authenticate method "
    "get status"
)


def _dictionary() -> bytes:
    """SPDY/3's header compression dictionary (its spec, section 2.6.10.1): words each
    with a 32-bit length, then a run of text. zlib checks its Adler-32: a peer with any
    other dictionary fails at the first header block."""
    words = [*_WORDS.split(" "), "200 OK", "version", "HTTP/1.1", "url", "public",
             "set-cookie", "keep-alive", "origin"]  # fmt: skip
    text = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416"
        "417502504505203 Non-Authoritative Information204 No Content301 Moved "
        "Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 "
        "Internal Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr "
        "May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, "
        "GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,"
        "application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,"
        "deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    return b"".join(struct.pack(">I", len(w)) + w.encode() for w in words) + text.encode()


DICTIONARY = _dictionary()


class SpdyError(Exception):
    """The peer broke the SPDY protocol; the session cannot go on."""


@attrs.frozen
class Control:
    """A control frame. ``stream_id`` for SYN_STREAM, SYN_REPLY, RST_STREAM, HEADERS
    and WINDOW_UPDATE (else 0); ``headers`` for those that carry them; ``value``: a
    PING's id, a RST_STREAM's or GOAWAY's status, a WINDOW_UPDATE's delta."""

    type: int
    flags: int
    stream_id: int = 0
    headers: dict[str, list[str]] = attrs.field(factory=dict)
    value: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@attrs.frozen
class Data:
    stream_id: int
    flags: int
    data: bytes

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


_HEADER = struct.Struct(">HHI")  # control: version|0x8000, type, flags<<24|length
_DATA = struct.Struct(">II")  # data: stream id, flags<<24|length
_U32 = struct.Struct(">I")


class SpdyReader:
    """The server's reading half of one session (see the module rules)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)

    def feed(self, data: bytes) -> list[Control | Data]:
        """The frames completed by ``data``. Raises ``SpdyError``."""
        self._buffer += data
        frames: list[Control | Data] = []
        buffer = self._buffer
        while len(buffer) >= 8:
            first, second = _DATA.unpack_from(buffer)
            length = second & 0xFFFFFF
            if len(buffer) < 8 + length:
                break
            body = bytes(buffer[8 : 8 + length])
            del buffer[: 8 + length]
            flags = second >> 24
            if first & 0x80000000:
                frames.append(self._control(first, flags, body))
            else:
                frames.append(Data(first & 0x7FFFFFFF, flags, body))
        return frames

    def _control(self, first: int, flags: int, body: bytes) -> Control:
        version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise SpdyError(f"SPDY version {version} (only 3 is spoken)")
        need = {SYN_STREAM: 10, SYN_REPLY: 4, RST_STREAM: 8, SETTINGS: 4, PING: 4,
                GOAWAY: 8, HEADERS: 4, WINDOW_UPDATE: 8}.get(kind, 0)  # fmt: skip
        if len(body) < need:
            raise SpdyError(f"a control frame of type {kind} needs {need} bytes, got {len(body)}")
        if kind in (SYN_STREAM, SYN_REPLY, HEADERS):
            stream_id = _U32.unpack_from(body)[0] & 0x7FFFFFFF
            block = body[10:] if kind == SYN_STREAM else body[4:]
            return Control(kind, flags, stream_id, self._headers(block))
        if kind in (RST_STREAM, WINDOW_UPDATE):
            stream_id, value = struct.unpack_from(">II", body)
            return Control(kind, flags, stream_id & 0x7FFFFFFF, value=value & 0x7FFFFFFF)
        if kind == PING:
            return Control(kind, flags, value=_U32.unpack_from(body)[0])
        if kind == GOAWAY:
            return Control(kind, flags, value=_U32.unpack_from(body, 4)[0])
        return Control(kind, flags)  # SETTINGS and types this server has no use for

    def _headers(self, block: bytes) -> dict[str, list[str]]:
        try:
            raw = self._inflate.decompress(block, MAX_HEADERS + 1)
        except zlib.error as e:
            raise SpdyError(f"a header block does not inflate: {e}") from None
        if len(raw) > MAX_HEADERS or self._inflate.unconsumed_tail:
            # (a few bytes inflate to gigabytes: never more than this is made)
            raise SpdyError(f"a header block inflates to more than {MAX_HEADERS} bytes")
        try:
            (count,) = _U32.unpack_from(raw)
            offset = 4
            headers: dict[str, list[str]] = {}
            for _ in range(count):
                (size,) = _U32.unpack_from(raw, offset)
                name = raw[offset + 4 : offset + 4 + size].decode()
                offset += 4 + size
                (size,) = _U32.unpack_from(raw, offset)
                value = raw[offset + 4 : offset + 4 + size].decode()
                offset += 4 + size
                if offset > len(raw):
                    raise SpdyError("a header block ends inside a header")
                headers.setdefault(name.lower(), []).extend(value.split("\0"))
        except (struct.error, UnicodeDecodeError) as e:
            raise SpdyError(f"a malformed header block: {e}") from None
        return headers


class SpdyWriter:
    """The server's writing half of one session: each method returns a frame's bytes."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(zdict=DICTIONARY)

    def _control(self, kind: int, flags: int, body: bytes) -> bytes:
        return _HEADER.pack(0x8000 | VERSION, kind, flags << 24 | len(body)) + body

    def _block(self, headers: dict[str, str]) -> bytes:
        raw = [_U32.pack(len(headers))]
        for name, value in headers.items():
            for part in (name.lower().encode(), value.encode()):
                raw.append(_U32.pack(len(part)))
                raw.append(part)
        return self._deflate.compress(b"".join(raw)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def syn_reply(self, stream_id: int, headers: dict[str, str] | None = None,
                  fin: bool = False) -> bytes:  # fmt: skip
        body = _U32.pack(stream_id) + self._block(headers or {})
        return self._control(SYN_REPLY, FLAG_FIN if fin else 0, body)

    def rst_stream(self, stream_id: int, status: int) -> bytes:
        return self._control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    def ping(self, ping_id: int) -> bytes:
        return self._control(PING, 0, _U32.pack(ping_id))

    def goaway(self, last_stream_id: int, status: int = 0) -> bytes:
        return self._control(GOAWAY, 0, struct.pack(">II", last_stream_id, status))

    @staticmethod
    def data(stream_id: int, data: bytes, fin: bool = False) -> bytes:
        """DATA frames for ``data`` (split at ``MAX_FRAME``); the last has FIN if
        ``fin`` (an empty ``data`` with ``fin`` closes the stream's sending side)."""
        frames = []
        for start in range(0, max(len(data), 1), MAX_FRAME - 1):
            chunk = data[start : start + MAX_FRAME - 1]
            last = start + MAX_FRAME - 1 >= len(data)
            flags = FLAG_FIN if (fin and last) else 0
            frames.append(_DATA.pack(stream_id, flags << 24 | len(chunk)) + chunk)
        return b"".join(frames)
