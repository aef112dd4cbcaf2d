"""The TCP transport: actor systems in other processes or on other hosts (docs/tcp.md).

Rules of this file:

- A peer system is known by its name. Frames for it wait in one bounded queue per peer
  (``send_buffer`` frames; replies and watch frames may take as many again, so that
  a queue full of TELLs does not lose the answers the peer waits on); exactly one
  connection per peer drains that queue at a time, so frames from one system to
  another arrive in the order they were queued. A connection carries frames both ways
  once its handshake is done.
- Handshake (``Handshake``, sans I/O): both sides send HELLO [magic, version, name,
  incarnation, nonce, realm]. The realm of the connection follows from both HELLOs
  (``CONNECTION_REALM``) and picks the secret both AUTHs prove. The side with the
  larger system name then sends its AUTH at once; the side with the smaller name first
  checks the peer's AUTH, then decides whether it keeps this connection, and only then
  answers with its own AUTH (or closes). So the smaller-named side alone decides which
  connection two systems use, and the larger side learns the decision in-band: it only
  ever completes connections the other side kept. Nothing is sent on a connection
  before its handshake is done.
- Handshake frames are read exactly (never past the AUTH) and limited to
  ``HANDSHAKE_MAX_FRAME`` bytes, so an unauthenticated peer makes us buffer almost
  nothing; the whole handshake is bounded by ``handshake_timeout``.
- Realms (docs/tcp.md): on a member system, what arrives on a guest connection may
  address only the actors of ``guest_exports`` (``ActorSystem._on_frame`` refuses the
  rest). The restriction follows the connection: its realm is fixed at its handshake. A
  guest connection never takes the name of a peer known as a member (else a guest
  could receive what is meant for a member); a peer that comes back as a member after
  being a guest is reset as if it had restarted.
- After the handshake a connection reads frames of up to ``max_frame`` bytes; a peer
  that stops for ``frame_timeout`` seconds in the middle of a frame is cut off (an idle
  connection between frames is fine). A bad frame (``ProtocolError`` from the frame
  reader or from ``ActorSystem._on_frame``) closes that connection only.
- A connection to a peer we can dial (an endpoint from ``add_peer``/``connect``, or a
  name of the form ``host:port``) that drops is redialled with exponential backoff
  while its frames keep queueing; if no connection is back within
  ``unreachable_after``, the peer is declared down (``ActorSystem._peer_down``) and its
  queued TELLs become dead letters. A peer we cannot dial is down as soon as its
  connection drops. A peer seen with a new incarnation is declared down first (its old
  actors are gone) and the frames queued for the old one are dropped.
- Every task runs in the transport's nursery, inside the system's nursery; ``aclose``
  flushes what is queued (for at most ``FLUSH_TIMEOUT`` seconds) and then cancels it.
"""

from __future__ import annotations

import logging
import os
import struct
from collections import deque
from collections.abc import Iterable
from functools import partial

import attrs
import trio
from trio.lowlevel import ParkingLot

from . import _protocol as P
from ._errors import ActorError, AuthenticationError, ProtocolError

log = logging.getLogger("actorkube.actor.tcp")

HANDSHAKE_MAX_FRAME = 4096
NONCE_SIZE = 16
MAX_NAME = 1024
MAX_INCARNATION = 64
FLUSH_TIMEOUT = 1.0

_READ_SIZE = 65536
_WRITE_BATCH = 256 * 1024  # bytes handed to one send_all
_LEN = struct.Struct(">I")


# --- the handshake, sans I/O -----------------------------------------------------------


@attrs.frozen
class Hello:
    """What a peer said about itself in its HELLO."""

    name: str
    incarnation: bytes
    nonce: bytes
    realm: str  # the realm it claims to belong to


# (our realm, the realm of the peer's HELLO) -> the connection's realm; None: refused.
# Guests talk only to members: a guest believes whatever its peers send (they are the
# control plane), and another guest is not the control plane.
CONNECTION_REALM: dict[tuple[str, str], str | None] = {
    (P.MEMBER, P.MEMBER): P.MEMBER,
    (P.MEMBER, P.GUEST): P.GUEST,  # if we hold the guest secret
    (P.GUEST, P.MEMBER): P.GUEST,
    (P.GUEST, P.GUEST): None,
}


class Handshake:
    """One side of the handshake of one connection, without I/O.

    Send ``hello()`` first. Feed the peer's first frame to ``receive_hello``; then, if
    ``speaks_first``, send ``auth()`` and feed the peer's next frame to
    ``receive_auth``; otherwise feed ``receive_auth`` first and send ``auth()`` only if
    the connection is kept. ``receive_*`` raise ``ProtocolError`` (or its subclass
    ``AuthenticationError`` for a wrong proof, or a guest we take no guests from) and
    never anything else.

    ``token`` is the secret of our own ``realm``; a member that takes guests also holds
    ``guest_token``. Once the peer's HELLO is in, ``realm`` is the connection's.
    """

    def __init__(
        self,
        token: bytes,
        name: str,
        incarnation: bytes,
        nonce: bytes,
        *,
        realm: str = P.MEMBER,
        guest_token: bytes | None = None,
    ) -> None:
        if realm not in P.REALMS:
            raise ValueError(f"a realm is 'member' or 'guest', not {realm!r}")
        if realm == P.GUEST and guest_token is not None:
            raise ValueError("a guest holds only the guest secret (pass it as token)")
        self.name = name
        self.incarnation = incarnation
        self.nonce = nonce
        self.own_realm = realm
        self.realm: str | None = None  # the connection's, once the peer's HELLO is in
        self.peer: Hello | None = None
        self._secrets = {realm: token}
        if guest_token is not None:
            self._secrets[P.GUEST] = guest_token
        self.done = False

    def hello(self) -> bytes:
        return P.pack_frame(
            P.HELLO,
            P.MAGIC,
            P.WIRE_VERSION,
            self.name,
            self.incarnation,
            self.nonce,
            self.own_realm,
        )

    def receive_hello(self, payload: bytes) -> Hello:
        if self.peer is not None:
            raise ProtocolError("a second HELLO")
        try:
            frame = P.parse_frame(payload)
        except ProtocolError:
            version = P.hello_version(payload)
            if version is not None and version != P.WIRE_VERSION:
                raise ProtocolError(self._other_version(version)) from None
            raise
        if frame[0] != P.HELLO:
            raise ProtocolError(f"expected HELLO, got frame kind {frame[0]}")
        _, magic, version, name, incarnation, nonce, realm = frame
        if magic != P.MAGIC:
            raise ProtocolError(f"not an actorkube peer (magic {magic[:40]!r})")
        if version != P.WIRE_VERSION:
            raise ProtocolError(self._other_version(version))
        if not 0 < len(name) <= MAX_NAME:
            raise ProtocolError("a system name must have 1 to 1024 characters")
        if name == self.name:
            # Also what a reflection attack (our own HELLO sent back) looks like.
            raise ProtocolError(f"peer claims our own name {name!r}")
        if not 0 < len(incarnation) <= MAX_INCARNATION:
            raise ProtocolError("an incarnation must have 1 to 64 bytes")
        if len(nonce) != NONCE_SIZE or nonce == self.nonce:
            raise ProtocolError("bad handshake nonce")
        if realm not in P.REALMS:
            raise ProtocolError(f"unknown realm {realm[:40]!r}")
        self.realm = self._connection_realm(name, realm)
        self.peer = Hello(name, incarnation, nonce, realm)
        return self.peer

    def _connection_realm(self, name: str, realm: str) -> str:
        connection = CONNECTION_REALM[self.own_realm, realm]
        if connection is None:
            raise ProtocolError(f"{name!r} is a guest, like us: guests connect only to members")
        if connection not in self._secrets:
            raise AuthenticationError(
                f"{name!r} connects as a guest, and this system takes no guests (no guest_token)"
            )
        return connection

    @staticmethod
    def _other_version(version: int) -> str:
        return f"peer speaks wire version {version}, we speak {P.WIRE_VERSION}"

    @property
    def speaks_first(self) -> bool:
        """True if this side sends its AUTH before it has checked the peer's."""
        return self.name > self._hello().name

    def auth(self) -> bytes:
        peer = self._hello()
        secret = self._secrets[self.realm]
        return P.pack_frame(
            P.AUTH, P.auth_proof(secret, self.realm, peer.nonce, self.name, peer.name)
        )

    def receive_auth(self, payload: bytes) -> None:
        peer = self._hello()
        frame = P.parse_frame(payload)
        if frame[0] != P.AUTH:
            raise ProtocolError(f"expected AUTH, got frame kind {frame[0]}")
        secret = self._secrets[self.realm]
        if not P.check_proof(secret, self.realm, self.nonce, peer.name, self.name, frame[1]):
            raise AuthenticationError(
                f"{peer.name!r} failed the shared-secret handshake ({self.realm} realm)"
            )
        self.done = True

    def _hello(self) -> Hello:
        if self.peer is None:
            raise ProtocolError("AUTH before HELLO")
        return self.peer


_HEARTBEAT = P.pack_frame(P.HEARTBEAT)
_HEARTBEAT_BYTES = P.with_length(_HEARTBEAT)


def _guest_secret(token: bytes, guest_token: bytes | str | None, realm: str) -> bytes | None:
    if guest_token is None:
        return None
    guest_token = guest_token.encode() if isinstance(guest_token, str) else guest_token
    if realm == P.GUEST:
        raise ValueError("a guest holds only the guest secret: pass it as token")
    if not guest_token or guest_token == token:
        raise ValueError("guest_token must not be empty, nor the same as token")
    return guest_token


def parse_endpoint(name: str) -> tuple[str, int] | None:
    """``("host", port)`` if ``name`` reads ``host:port`` (``[v6]:port``), else None."""
    host, sep, port = name.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()):
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return None
    number = int(port)
    return (host, number) if host and 0 < number < 65536 else None


def format_endpoint(host: str, port: int) -> str:
    """The inverse of ``parse_endpoint``: the recommended name of a system there."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _EndOfStream(ProtocolError):
    """The peer closed the connection in the middle of the handshake."""


class _Refused(ProtocolError):
    """The peer closed the connection after our AUTH: a wrong secret, a realm it does
    not take, or it keeps another connection to us (see the module docstring)."""

    def __init__(self, peer: str) -> None:
        super().__init__(
            f"{peer!r} closed the connection after our AUTH "
            "(wrong secret, a realm it refuses, or it keeps another connection to us)"
        )
        self.peer = peer


async def _receive_exactly(stream: trio.SocketStream, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = await stream.receive_some(size - len(buf))
        if not chunk:
            raise _EndOfStream("connection closed during the handshake")
        buf += chunk
    return bytes(buf)


async def _receive_handshake_frame(stream: trio.SocketStream) -> bytes:
    (size,) = _LEN.unpack(await _receive_exactly(stream, 4))
    if size > HANDSHAKE_MAX_FRAME:
        raise ProtocolError(f"handshake frame of {size} bytes (the limit is {HANDSHAKE_MAX_FRAME})")
    return await _receive_exactly(stream, size)


# --- connections and peers -------------------------------------------------------------


@attrs.define(eq=False)
class _Conn:
    """One TCP connection; ``peer`` and ``incarnation`` are known after the HELLO."""

    stream: trio.SocketStream
    endpoint: tuple[str, int] | None  # where we dialled; None for an accepted connection
    peer: str = ""
    incarnation: bytes = b""
    realm: str = P.MEMBER  # the connection's, fixed by its handshake
    adopted: bool = False  # became its peer's connection (``_adopt``)
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)

    def close(self) -> None:
        self.scope.cancel()

    @property
    def closing(self) -> bool:
        return self.scope.cancel_called


@attrs.define(eq=False)
class _Peer:
    """A system we exchange frames with. Invariant: ``conn`` is None or adopted."""

    name: str
    endpoint: tuple[str, int] | None  # None: we cannot dial it
    queue: deque[bytes] = attrs.field(factory=deque)
    conn: _Conn | None = None
    incarnation: bytes | None = None  # the last one seen
    realm: str | None = None  # of its last adopted connection
    dialling: bool = False  # a _keep_dialling task runs for it
    wake: ParkingLot = attrs.field(factory=ParkingLot)  # the writer waits for frames
    room: ParkingLot = attrs.field(factory=ParkingLot)  # senders wait for queue room
    drained: ParkingLot = attrs.field(factory=ParkingLot)  # aclose waits for a flush


# --- the transport ---------------------------------------------------------------------


class TcpTransport:
    """Carries an ``ActorSystem``'s frames to other systems over TCP.

    ``token`` is the secret of the system's ``realm``; it never crosses the wire. A
    ``"member"`` (the default) holds the cluster's secret. With ``guest_token`` it also
    takes connections of guests, which may address only the actors named in
    ``guest_exports``; it may dial guests too. A ``"guest"`` holds only the guest secret
    (as ``token``) and connects to members that take guests (docs/tcp.md, "Realms").
    Options (seconds for times): ``max_frame`` (bytes, 4 MiB),
    ``handshake_timeout`` (5), ``frame_timeout`` (10: longest stall inside a frame),
    ``send_buffer`` (frames queued per peer, 10,000), ``reconnect_min`` (0.1) doubling
    up to ``reconnect_max`` (5), ``unreachable_after`` (10: how long a dialable peer
    may stay disconnected before it is declared down), ``silence_timeout`` (10: a
    connection that brings nothing for this long is closed: its peer is hung or cut
    off, though the kernel keeps the socket open; each side sends a HEARTBEAT after a
    quarter of it without other frames, so an idle peer is never silent).

    Use ``serve_tcp`` to start one that listens; a system that only dials out makes a
    ``TcpTransport`` and calls ``await transport.start()`` (it can still receive
    messages and replies over the connections it opened).
    """

    def __init__(
        self,
        system,
        *,
        token: bytes | str,
        guest_token: bytes | str | None = None,
        guest_exports: Iterable[str] = (),
        realm: str = P.MEMBER,
        max_frame: int = 4 * 1024 * 1024,
        handshake_timeout: float = 5.0,
        frame_timeout: float = 10.0,
        send_buffer: int = 10_000,
        reconnect_min: float = 0.1,
        reconnect_max: float = 5.0,
        unreachable_after: float = 10.0,
        silence_timeout: float = 10.0,
    ) -> None:
        token = token.encode() if isinstance(token, str) else token
        if not token:
            raise ValueError("the token must not be empty")
        if realm not in P.REALMS:
            raise ValueError(f"realm is 'member' or 'guest', not {realm!r}")
        if max_frame < HANDSHAKE_MAX_FRAME or send_buffer < 1:
            raise ValueError(f"max_frame must be >= {HANDSHAKE_MAX_FRAME}, send_buffer >= 1")
        times = (handshake_timeout, frame_timeout, reconnect_min, reconnect_max, unreachable_after,
                 silence_timeout)  # fmt: skip
        if min(times) <= 0 or reconnect_max < reconnect_min:
            raise ValueError("times must be positive and reconnect_max >= reconnect_min")
        self.realm = realm
        self._guest_token = _guest_secret(token, guest_token, realm)
        if isinstance(guest_exports, str):
            raise TypeError("guest_exports is a collection of actor names, not one name")
        self.guest_exports = frozenset(guest_exports)
        if self.guest_exports and self._guest_token is None:
            raise ValueError("guest_exports apply only to a member that takes guests (guest_token)")
        self.system = system
        self._token = token
        self.max_frame = max_frame
        self.handshake_timeout = handshake_timeout
        self.frame_timeout = frame_timeout
        self.send_buffer = send_buffer
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.unreachable_after = unreachable_after
        self.silence_timeout = silence_timeout
        self.host: str | None = None
        self.port: int | None = None
        self._peers: dict[str, _Peer] = {}
        self._endpoints: dict[str, tuple[str, int]] = {}
        self._adoptions = ParkingLot()  # woken whenever a connection is adopted
        self._nursery: trio.Nursery | None = None
        self._stopped = trio.Event()
        self._closed = False

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` where this transport listens: the recommended system name."""
        if self.port is None:
            raise ActorError("the transport is not listening")
        return format_endpoint(self.host, self.port)

    async def start(self) -> None:
        """Install as ``system.transport`` and start the transport's task nursery inside
        the system's. The system must be running (``async with``)."""
        if self.system._nursery is None:
            raise ActorError("the ActorSystem is not running (use `async with`)")
        if self._nursery is not None:
            raise ActorError("the transport is already started")
        self.system.transport = self
        await self.system._nursery.start(self._run)

    async def _run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._stopped.set()

    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Accept connections on ``host:port`` (0: any free port, see ``.port``)."""
        self._running()
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.host, self.port = host, listeners[0].socket.getsockname()[1]
        await self._nursery.start(
            partial(trio.serve_listeners, self._accept, listeners, handler_nursery=self._nursery)
        )

    async def aclose(self) -> None:
        """Flush queued frames (at most ``FLUSH_TIMEOUT`` s), then close every listener,
        connection and dial task. Called by the system's graceful shutdown."""
        if self._closed:
            return
        self._closed = True
        if self._nursery is None:
            return
        with trio.move_on_after(FLUSH_TIMEOUT):
            for peer in list(self._peers.values()):
                # Drained: the writer is parked (``wake``) with nothing left to send.
                while peer.conn is not None and (peer.queue or not peer.wake):
                    await peer.drained.park()
        self._nursery.cancel_scope.cancel()
        await self._stopped.wait()

    def _running(self) -> None:
        if self._nursery is None or self._closed:
            raise ActorError("the transport is not running (call start, or serve_tcp)")

    # --- peers ---------------------------------------------------------------------------

    def add_peer(self, name: str, host: str, port: int) -> None:
        """Dial ``host:port`` to reach the system called ``name``."""
        self._endpoints[name] = (host, port)
        peer = self._peers.get(name)
        if peer is not None:
            peer.endpoint = (host, port)

    async def connect(self, host: str, port: int) -> str:
        """Dial ``host:port`` now and return the name of the system there; later
        reconnects use the same endpoint. Raises ``OSError`` (``TimeoutError`` after
        ``handshake_timeout``) if nothing answers, ``ProtocolError`` (or
        ``AuthenticationError``) if the handshake fails."""
        self._running()
        return await self._open((host, port), None)

    def connected_peers(self) -> list[str]:
        """The names of the systems with a connection now, sorted."""
        return sorted(name for name, peer in self._peers.items() if peer.conn is not None)

    def peer_realm(self, name: str) -> str | None:
        """The realm of the connection to ``name`` now (``"guest"`` if either side is a
        guest), or None without one."""
        peer = self._peers.get(name)
        return None if peer is None or peer.conn is None else peer.conn.realm

    def _endpoint_of(self, name: str) -> tuple[str, int] | None:
        return self._endpoints.get(name) or parse_endpoint(name)

    def _peer_for(self, name: str) -> _Peer | None:
        """The peer called ``name``; a new dialable one starts dialling. None if we have
        no connection to it and no way to dial it."""
        peer = self._peers.get(name)
        if peer is None and not self._closed and self._nursery is not None:
            endpoint = self._endpoint_of(name)
            if endpoint is not None:
                peer = self._peers[name] = _Peer(name, endpoint)
                self._redial(peer)
        return peer

    # --- sending (the Transport protocol) --------------------------------------------------

    def send_frame(self, system: str, payload: bytes, control: bool = False) -> bool:
        """Queue one frame for ``system``. False if it cannot be routed (no connection and
        no way to dial, the transport is closed) or its queue is full: ``send_buffer``
        frames for a TELL or ASK, twice that for a ``control`` frame (a REPLY, WATCH,
        UNWATCH or TERMINATED answers what the peer did, and dropping it would leave
        the peer waiting; the headroom still bounds what a peer that does not read can
        make us hold)."""
        if self._closed or self._too_large(system, payload):
            return False
        peer = self._peer_for(system)
        if peer is None:
            return False
        if len(peer.queue) >= self.send_buffer:
            if not control:
                return False
            if len(peer.queue) >= 2 * self.send_buffer:
                log.warning(
                    "%s: %d frames wait for %s; a reply or watch frame is lost",
                    self.system.name,
                    len(peer.queue),
                    system,
                )
                return False
        peer.queue.append(payload)
        if peer.wake:
            peer.wake.unpark_all()
        return True

    async def send_frame_wait(self, system: str, payload: bytes) -> bool:
        """Queue one frame, waiting while the peer's queue is full. False if it cannot
        be routed."""
        if self._too_large(system, payload):
            return False
        while True:
            peer = None if self._closed else self._peer_for(system)
            if peer is None:
                return False
            if len(peer.queue) < self.send_buffer:
                peer.queue.append(payload)
                if peer.wake:
                    peer.wake.unpark_all()
                return True
            await peer.room.park()

    def _too_large(self, system: str, payload: bytes) -> bool:
        """A frame above ``max_frame`` would make the peer close the connection (and lose
        what follows it): refuse it here, where only this message is lost."""
        if len(payload) <= self.max_frame:
            return False
        log.warning(
            "%s: a frame of %d bytes for %s exceeds max_frame (%d); not sent",
            self.system.name,
            len(payload),
            system,
            self.max_frame,
        )
        return True

    def _drop_queue(self, peer: _Peer) -> None:
        frames = list(peer.queue)
        peer.queue.clear()
        for payload in frames:
            self.system._frame_lost(peer.name, payload)
        peer.room.unpark_all()

    # --- connection life -------------------------------------------------------------------

    async def _accept(self, stream: trio.SocketStream) -> None:
        await self._connection(stream, None, None)

    async def _open(self, endpoint: tuple[str, int], expect: str | None) -> str:
        """Dial ``endpoint``, handshake, and hand the connection to a task of its own.
        Returns the peer's name. ``expect``: the name the peer must have."""
        try:
            with trio.fail_after(self.handshake_timeout):
                stream = await trio.open_tcp_stream(*endpoint)
        except trio.TooSlowError:
            raise TimeoutError(f"no TCP connection to {format_endpoint(*endpoint)}") from None
        try:
            return await self._nursery.start(self._connection, stream, endpoint, expect)
        except _Refused as exc:
            # In a simultaneous dial the peer keeps its other connection; that one
            # completes here in a moment.
            if await self._wait_connected(exc.peer):
                return exc.peer
            raise

    async def _wait_connected(self, name: str) -> bool:
        with trio.move_on_after(self.handshake_timeout):
            while name not in self._peers or self._peers[name].conn is None:
                await self._adoptions.park()
        return name in self._peers and self._peers[name].conn is not None

    async def _connection(
        self,
        stream: trio.SocketStream,
        endpoint: tuple[str, int] | None,
        expect: str | None,
        task_status=trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The whole life of one connection. A failed handshake of a connection we
        dialled raises (to ``_open``); of one we accepted, it is logged."""
        conn = _Conn(stream, endpoint)
        try:
            try:
                await self._handshake(conn, expect)
            except ProtocolError as exc:
                if endpoint is not None:
                    raise
                # A close mid-handshake is routine (a duplicate in a simultaneous dial).
                quiet = isinstance(exc, (_EndOfStream, _Refused))
                level = logging.INFO if quiet else logging.WARNING
                log.log(level, "%s: refused an incoming connection: %r", self.system.name, exc)
                return
            task_status.started(conn.peer)
            if conn.adopted:
                await self._serve(conn)
        finally:
            if conn.adopted:
                self._conn_lost(conn)
            await trio.aclose_forcefully(stream)

    async def _handshake(self, conn: _Conn, expect: str | None) -> None:
        system = self.system
        shake = Handshake(
            self._token,
            system.name,
            system.incarnation,
            os.urandom(NONCE_SIZE),
            realm=self.realm,
            guest_token=self._guest_token,
        )
        stream = conn.stream
        try:
            with trio.fail_after(self.handshake_timeout):
                await stream.send_all(P.with_length(shake.hello()))
                hello = shake.receive_hello(await _receive_handshake_frame(stream))
                conn.peer, conn.incarnation, conn.realm = hello.name, hello.incarnation, shake.realm
                if expect is not None and hello.name != expect:
                    raise ProtocolError(f"expected to reach {expect!r}, reached {hello.name!r}")
                self._check_name(conn)  # before any AUTH: a refusal the peer cannot miss
                if shake.speaks_first:
                    await stream.send_all(P.with_length(shake.auth()))
                    try:
                        payload = await _receive_handshake_frame(stream)
                    except _EndOfStream:
                        raise _Refused(hello.name) from None
                    shake.receive_auth(payload)
                    conn.adopted = self._adopt(conn)
                else:
                    shake.receive_auth(await _receive_handshake_frame(stream))
                    # Decide before our AUTH goes out: the peer completes only what we keep.
                    conn.adopted = self._adopt(conn)
                    if conn.adopted:
                        await stream.send_all(P.with_length(shake.auth()))
        except trio.TooSlowError:
            raise ProtocolError(f"no handshake within {self.handshake_timeout} s") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise ProtocolError(f"connection lost during the handshake: {exc!r}") from None

    def _adopt(self, conn: _Conn) -> bool:
        """Make ``conn`` its peer's connection, unless we are the deciding (smaller-named)
        side and already keep a live one of the same incarnation and realm. Raises
        ``AuthenticationError`` for a guest connection that claims a member's name."""
        self._check_name(conn)  # again: the member may have connected meanwhile
        name = conn.peer
        peer = self._peers.get(name)
        if peer is None:
            peer = self._peers[name] = _Peer(name, self._endpoint_of(name))
        if conn.endpoint is not None:
            self._endpoints[name] = peer.endpoint = conn.endpoint
        old = peer.conn
        if old is not None and old.closing:
            old = None  # on its way out; _conn_lost will find it replaced
        restarted = peer.incarnation is not None and peer.incarnation != conn.incarnation
        # Only guest -> member gets here (see above); it keeps nothing of its guest days.
        promoted = peer.realm not in (None, conn.realm)
        if restarted:
            log.info("%s: %s restarted (new incarnation)", self.system.name, name)
        elif promoted:
            log.warning("%s: %s was a guest, now connects as a member", self.system.name, name)
        if restarted or promoted:
            peer.conn = None
            if old is not None:
                old.close()
            self.system._peer_down(name)
            self._drop_queue(peer)
        elif old is not None:
            if self.system.name < name:
                log.debug("%s: keeping the connection we have with %s", self.system.name, name)
                return False
            # The peer decides, and it completed this one: it has dropped the old one.
            old.close()
        peer.incarnation = conn.incarnation
        peer.realm = conn.realm
        peer.conn = conn
        peer.wake.unpark_all()  # an old writer sees it is replaced and exits
        self._adoptions.unpark_all()
        # The peer may have declared us down while we were apart (and forgotten our
        # watches of its actors): tell it again what we watch.
        self.system._peer_up(name)
        return True

    def _check_name(self, conn: _Conn) -> None:
        """A guest connection never takes the name of a peer we know as a member: the
        frames for the member would go to whoever holds the guest secret."""
        peer = self._peers.get(conn.peer)
        if peer is not None and peer.realm == P.MEMBER and conn.realm == P.GUEST:
            raise AuthenticationError(f"a guest connection claims the name of member {conn.peer!r}")

    def _conn_lost(self, conn: _Conn) -> None:
        peer = self._peers.get(conn.peer)
        if peer is None or peer.conn is not conn:
            return  # replaced, or its peer was given up already
        peer.conn = None
        peer.drained.unpark_all()
        if self._closed:
            return
        if peer.endpoint is None:
            log.info(
                "%s: connection from %s closed; it cannot be dialled", self.system.name, peer.name
            )
            self._give_up(peer)
        else:
            self._redial(peer)

    def _give_up(self, peer: _Peer) -> None:
        if self._peers.get(peer.name) is peer:
            del self._peers[peer.name]
        log.warning("%s: peer %s unreachable", self.system.name, peer.name)
        self.system._peer_down(peer.name)
        self._drop_queue(peer)

    def _redial(self, peer: _Peer) -> None:
        if not peer.dialling:
            peer.dialling = True
            self._nursery.start_soon(self._keep_dialling, peer, name=f"dial {peer.name}")

    async def _keep_dialling(self, peer: _Peer) -> None:
        delay = self.reconnect_min
        try:
            with trio.move_on_after(self.unreachable_after):
                while peer.conn is None:
                    try:
                        await self._open(peer.endpoint, peer.name)
                    except (OSError, ProtocolError) as exc:
                        log.info("%s: dialling %s failed: %r", self.system.name, peer.name, exc)
                    with trio.move_on_after(delay):
                        while peer.conn is None:
                            await self._adoptions.park()
                    delay = min(delay * 2, self.reconnect_max)
        finally:
            peer.dialling = False
        if peer.conn is None and self._peers.get(peer.name) is peer and not self._closed:
            self._give_up(peer)

    # --- an established connection -----------------------------------------------------------

    async def _serve(self, conn: _Conn) -> None:
        peer = self._peers[conn.peer]
        with conn.scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_loop, conn, peer)
                await self._read_loop(conn)

    async def _read_loop(self, conn: _Conn) -> None:
        """Feed received bytes to a FrameReader and its frames to the system."""
        reader = P.FrameReader(self.max_frame)
        stream = conn.stream
        on_frame = self.system._on_frame
        name = conn.peer
        # On a member, a guest connection has a guest at its other end.
        exports = self.guest_exports if conn.realm == P.GUEST and self.realm == P.MEMBER else None
        try:
            while True:
                # Inside a frame the peer may stall for ``frame_timeout``; between frames
                # it sends at least heartbeats, so a longer silence means it is hung.
                limit = self.frame_timeout if reader.mid_frame else self.silence_timeout
                with trio.move_on_after(limit) as silent:
                    data = await stream.receive_some(_READ_SIZE)
                if silent.cancelled_caught:
                    where = "inside a frame" if reader.mid_frame else "(not even a heartbeat)"
                    raise ProtocolError(f"silent {where} for {limit} s")
                if not data:
                    log.info("%s: %s closed the connection", self.system.name, name)
                    return
                for payload in reader.feed(data):
                    if payload != _HEARTBEAT:
                        on_frame(name, payload, exports)
        except ProtocolError as exc:
            log.warning("%s: closing the connection with %s: %r", self.system.name, name, exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.info("%s: connection with %s lost: %r", self.system.name, name, exc)
        finally:
            conn.close()

    async def _write_loop(self, conn: _Conn, peer: _Peer) -> None:
        """Drain the peer's queue into the connection while it is the peer's connection."""
        queue = peer.queue
        stream = conn.stream
        beat = self.silence_timeout / 4
        try:
            while True:
                while peer.conn is conn and not queue:
                    peer.drained.unpark_all()
                    with trio.move_on_after(beat) as idle:
                        await peer.wake.park()
                    if idle.cancelled_caught and peer.conn is conn and not queue:
                        await stream.send_all(_HEARTBEAT_BYTES)  # nothing else to say
                if peer.conn is not conn:
                    return
                chunks = []
                size = 0
                while queue and size < _WRITE_BATCH:
                    payload = queue.popleft()
                    chunks.append(_LEN.pack(len(payload)))
                    chunks.append(payload)
                    size += 4 + len(payload)
                if peer.room:
                    peer.room.unpark_all()
                await stream.send_all(b"".join(chunks))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.info("%s: connection with %s lost: %r", self.system.name, peer.name, exc)
        finally:
            conn.close()


async def serve_tcp(
    system, *, token: bytes | str, host: str = "127.0.0.1", port: int = 0, **options
) -> TcpTransport:
    """Make a ``TcpTransport`` (``options`` as its keywords: ``guest_token``,
    ``guest_exports``, ``realm`` and the rest), install it as
    ``system.transport``, listen on ``host:port`` and return it; ``.port`` and
    ``.address`` tell where it listens. The system must be running (``async with``).

    Name the system after that address (``ActorSystem(name="10.0.0.5:7400")``) and
    other systems can reach it by name alone; otherwise they need ``add_peer``.
    """
    transport = TcpTransport(system, token=token, **options)
    await transport.start()
    await transport.listen(host, port)
    return transport
