"""UDP forwarding: datagrams from each client go to one backend, replies come back to
the client from the frontend's address (kube-proxy's userspace mode).

Rules of this file:

- A client (IP and port) has a session: a socket connected to the backend the balancer
  picked for it, so the backend's replies can be told apart and sent back to that
  client from the frontend's socket. Its next datagrams go the same way.
- A session that carries nothing either way for ``idle`` seconds ends (kube-proxy's
  ``--udp-timeout``, 250 ms by default); the client's next datagram starts a new one.
  A backend that refuses (ICMP port unreachable) ends the session too, and so does a
  backend that is no longer among the frontend's backends, at the client's next
  datagram (kube-proxy clears the conntrack entries of removed UDP endpoints).
- With no backend a datagram is dropped, and counted: UDP has nothing else to say. So
  is the datagram of a new client when the frontend already has ``MAX_SESSIONS``
  sessions, or when no socket can be had for its session (the process is out of file
  descriptors): a flood of clients costs their datagrams, never the frontend.
- A datagram forwarded renews its session's idle time before it is sent, so the
  session cannot end between the datagram and the backend's reply.
- Sessions live in the listener's nursery: closing a frontend ends its sessions.
"""

from __future__ import annotations

import socket

import attrs
import trio

from ._balancer import Balancer
from ._stats import ProxyStats
from ._types import Backend, Frontend

DATAGRAM = 65535
DEFAULT_IDLE = 0.25
MAX_SESSIONS = 1024  # per frontend: each holds a socket


async def bind(frontend: Frontend) -> trio.socket.SocketType:
    """A UDP socket bound to ``frontend`` (OSError if the address cannot be bound)."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        await sock.bind((frontend.ip, frontend.port))
    except OSError:
        sock.close()
        raise
    return sock


@attrs.define
class _Session:
    backend: Backend
    upstream: trio.socket.SocketType
    deadline: float
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)


async def serve(sock: trio.socket.SocketType, name: str, balancer: Balancer, stats: ProxyStats,
                idle: float = DEFAULT_IDLE) -> None:  # fmt: skip
    """Forward datagrams arriving on ``sock`` until cancelled (see the module rules)."""
    sessions: dict[tuple[str, int], _Session] = {}
    async with trio.open_nursery() as nursery:
        while True:
            try:
                data, client = await sock.recvfrom(DATAGRAM)
            except OSError:
                stats.udp_dropped += 1
                continue
            session = sessions.get(client)
            if session is not None and session.backend not in balancer.backends:
                session.scope.cancel()  # its backend is gone: start over elsewhere
                del sessions[client]
                session = None
            if session is None:
                if len(sessions) >= MAX_SESSIONS:
                    stats.udp_dropped += 1
                    continue
                session = await _open(client, name, balancer, stats, idle)
                if session is None:
                    continue
                sessions[client] = session
                nursery.start_soon(_replies, sock, client, session, sessions, stats, idle)
            stats.udp_forwarded += 1
            session.deadline = trio.current_time() + idle
            try:
                await session.upstream.send(data)
            except (OSError, trio.ClosedResourceError):
                stats.udp_dropped += 1  # the session ended meanwhile


async def _open(client: tuple[str, int], name: str, balancer: Balancer, stats: ProxyStats,
                idle: float) -> _Session | None:  # fmt: skip
    backend = balancer.pick(client[0], trio.current_time())
    if backend is None:
        stats.udp_dropped += 1
        return None
    try:
        upstream = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:  # no file descriptor left (see the module rules)
        stats.udp_dropped += 1
        return None
    try:
        await upstream.connect((backend.ip, backend.port))
    except OSError:
        upstream.close()
        stats.udp_dropped += 1
        balancer.forget(client[0])
        return None
    stats.udp_sessions += 1
    stats.connections[name] += 1
    return _Session(backend, upstream, trio.current_time() + idle)


async def _replies(sock: trio.socket.SocketType, client: tuple[str, int], session: _Session,
                   sessions: dict, stats: ProxyStats, idle: float) -> None:  # fmt: skip
    """Send the backend's replies back to ``client`` until the session is idle, refused,
    or cancelled (its backend went)."""
    try:
        with session.scope:
            while trio.current_time() < session.deadline:
                with trio.move_on_at(session.deadline):
                    try:
                        reply = await session.upstream.recv(DATAGRAM)
                    except OSError:
                        return  # the backend refused: the next datagram starts afresh
                    stats.udp_replies += 1
                    try:
                        await sock.sendto(reply, client)
                    except OSError:
                        stats.udp_dropped += 1
                    session.deadline = trio.current_time() + idle
    finally:
        if sessions.get(client) is session:
            del sessions[client]
        session.upstream.close()
