"""The wire protocol between actor systems, sans I/O (docs/protocol.md).

Rules of this file:

- A *frame* is one msgpack array; over TCP each frame is preceded by its length as a
  4-byte big-endian unsigned integer. Frames above the configured limit are refused
  before any of their bytes are buffered.
- Message payloads travel inside frames as msgpack ``bin``: the bytes made by
  ``encode_message``, unchanged, so a remote mailbox receives exactly what a local one
  would.
- ``parse_frame`` validates the envelope (kind, arity, field types) and raises
  ``ProtocolError`` for anything else; it never raises another exception.
- The handshake proves that both ends know the secret of the connection's realm
  without sending it: each side sends a HELLO with a random nonce and the realm it
  belongs to, and answers the other's nonce with HMAC-SHA256(secret, msgpack array
  [realm, nonce, its own system name, the other's system name]). The realm is inside the
  MAC, so a proof for one realm never passes for the other, even under one secret.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Any

import msgpack

from ._errors import ActorError, HandlerFailed, ProtocolError, Undeliverable

WIRE_VERSION = 3  # 2: HEARTBEAT frames; 3: realms (HELLO's realm, inside the MAC)
MAGIC = "actorkube"

# Realms (docs/tcp.md): members hold the cluster secret, guests the guest secret.
MEMBER, GUEST = "member", "guest"
REALMS = (MEMBER, GUEST)

TELL, ASK, REPLY, WATCH, UNWATCH, TERMINATED = 1, 2, 3, 4, 5, 6
HEARTBEAT = 7  # nothing to say: the sender is alive (handled by the transport)
HELLO, AUTH = 16, 17

_LEN = struct.Struct(">I")
_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack

# kind -> the types of the fields that follow it
_SHAPES: dict[int, tuple[type, ...]] = {
    TELL: (str, bytes),  # target name, message
    ASK: (str, bytes, int),  # target name, message, correlation id
    REPLY: (int, bool, object),  # correlation id, ok, value bytes | error
    WATCH: (str, str),  # watcher name (on the sender), target name (here)
    UNWATCH: (str, str),
    TERMINATED: (str, str, str),  # watcher name (here), target name (on sender), reason
    HEARTBEAT: (),
    HELLO: (str, int, str, bytes, bytes, str),  # magic, version, name, incarnation, nonce, realm
    AUTH: (bytes,),  # proof
}


def pack_frame(kind: int, *fields: Any) -> bytes:
    """One frame's payload (without the length prefix)."""
    return _pack((kind, *fields))


def with_length(payload: bytes) -> bytes:
    return _LEN.pack(len(payload)) + payload


def parse_frame(payload: bytes) -> list:
    """Decode and validate one frame: ``[kind, *fields]``. Raises ``ProtocolError``."""
    try:
        # An envelope is a short flat array (message bodies are opaque bin): refusing
        # long arrays and any map keeps a frame of empty containers from turning a few
        # MiB of input into hundreds of MiB of Python objects.
        frame = msgpack.unpackb(payload, raw=False, max_array_len=8, max_map_len=0)
    except Exception as exc:
        raise ProtocolError(f"malformed frame: {type(exc).__name__}: {exc}") from None
    if type(frame) is not list or not frame or type(frame[0]) is not int:
        raise ProtocolError("a frame must be an array starting with its kind")
    shape = _SHAPES.get(frame[0])
    if shape is None:
        raise ProtocolError(f"unknown frame kind {frame[0]!r}")
    if len(frame) != len(shape) + 1:
        raise ProtocolError(f"frame kind {frame[0]} needs {len(shape)} fields")
    for value, tp in zip(frame[1:], shape, strict=True):
        if tp is not object and type(value) is not tp:
            raise ProtocolError(
                f"frame kind {frame[0]}: expected {tp.__name__}, got {type(value).__name__}"
            )
    return frame


def error_to_wire(err: ActorError) -> list:
    if isinstance(err, HandlerFailed):
        return ["failed", str(err.actor), err.error_type, err.error, err.traceback]
    if isinstance(err, Undeliverable):
        return ["undeliverable", str(err.target), err.reason, "", ""]
    return ["failed", "?", type(err).__qualname__, str(err), ""]


def error_from_wire(wire: Any) -> ActorError:
    if (
        type(wire) is not list
        or len(wire) != 5
        or not all(type(x) is str for x in wire)
        or wire[0] not in ("failed", "undeliverable")
    ):
        raise ProtocolError("malformed error reply")
    kind, actor, a, b, tb = wire
    if kind == "undeliverable":
        return Undeliverable(actor, a)
    return HandlerFailed(actor, a, b, tb)


class FrameReader:
    """Splits a TCP byte stream into frame payloads, refusing oversized frames."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    @property
    def mid_frame(self) -> bool:
        """True while part of a frame has been received but not all of it."""
        return bool(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the complete payloads. Raises ``ProtocolError``."""
        buf = self._buf
        buf += data
        out = []
        while len(buf) >= 4:
            (size,) = _LEN.unpack_from(buf)
            if size > self.max_frame:
                raise ProtocolError(f"frame of {size} bytes exceeds the limit of {self.max_frame}")
            if len(buf) < 4 + size:
                break
            out.append(bytes(buf[4 : 4 + size]))
            del buf[: 4 + size]
        return out


def hello_version(payload: bytes) -> int | None:
    """The version a HELLO of any wire version announces (its first two fields have
    never changed), or None if ``payload`` is not one: so that a peer of another
    version is told so, not that its HELLO is malformed."""
    try:
        frame = msgpack.unpackb(payload, raw=False, max_array_len=8, max_map_len=0)
    except Exception:
        return None
    if type(frame) is list and len(frame) > 2 and frame[:2] == [HELLO, MAGIC]:
        return frame[2] if type(frame[2]) is int else None
    return None


def auth_proof(secret: bytes, realm: str, nonce: bytes, sender: str, recipient: str) -> bytes:
    """What system ``sender`` answers to ``recipient``'s ``nonce`` on a connection of
    ``realm`` when it knows that realm's ``secret``.

    Both names are inside the MAC, so a proof meant for one system cannot be relayed to
    another; so is the realm, so a proof for one realm is not one for the other. The
    input is a msgpack array, which leaves no doubt where one field ends."""
    return hmac.new(secret, _pack((realm, nonce, sender, recipient)), hashlib.sha256).digest()


def check_proof(
    secret: bytes, realm: str, nonce: bytes, sender: str, recipient: str, proof: bytes
) -> bool:
    return hmac.compare_digest(auth_proof(secret, realm, nonce, sender, recipient), proof)
