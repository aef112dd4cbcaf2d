"""TCP forwarding: accept on a frontend, dial a backend, splice the two connections
(kube-proxy's userspace mode).

Rules of this file:

- A connection is handled in the nursery the caller gives (``connections``), not in the
  listener's: closing a listener (its Service deleted, or left with no backends) stops
  new connections and leaves established ones be, as kube-proxy does.
- The backend is the balancer's pick for the client's IP. A dial that fails or takes
  longer than its timeout (0.25, 0.5, 1 then 2 s: kube-proxy's EndpointDialTimeouts)
  forgets the client's session and tries the next pick. With no backend, or none that
  answers, the client's connection is reset (RST): Kubernetes rejects, never hangs.
- Splicing copies both ways at once. An end-of-file from one side is passed on as a
  half-close (shutdown of writing) to the other, and the other direction goes on until
  it ends too. A reset or error on either side ends both.
"""

from __future__ import annotations

import socket
import struct

import trio

from ._balancer import Balancer
from ._stats import ProxyStats
from ._types import Backend, Frontend

DIAL_TIMEOUTS = (0.25, 0.5, 1.0, 2.0)
BUFFER = 65536
BACKLOG = 128
ACCEPT_PAUSE = 0.05


async def listen(frontend: Frontend, *, shared: bool = True) -> trio.socket.SocketType:
    """A listening socket on ``frontend`` (OSError if the address cannot be bound).
    ``shared``: SO_REUSEPORT lets the proxies of several nodes sharing one host's network
    serve the same cluster IP side by side (the kernel spreads connections among them);
    a frontend that must be its owner's alone (an API load balancer) is not shared, so
    a second one on its port fails instead of silently taking half its connections."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        await sock.bind((frontend.ip, frontend.port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


async def accept(sock: trio.socket.SocketType, name: str, balancer: Balancer,
                 connections: trio.Nursery, stats: ProxyStats) -> None:  # fmt: skip
    """Accept connections on ``sock`` until cancelled, each forwarded in ``connections``."""
    while True:
        try:
            client, address = await sock.accept()
        except OSError:
            # The client went before it was accepted, or no descriptor is left: the
            # pause keeps the latter from spinning.
            stats.tcp_errors += 1
            await trio.sleep(ACCEPT_PAUSE)
            continue
        stats.tcp_accepted += 1
        connections.start_soon(forward, client, address[0], name, balancer, stats)


def reset(sock: trio.socket.SocketType) -> None:
    """Close with an RST, not a FIN: the client learns at once it was refused."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()


async def dial(backend: Backend) -> trio.SocketStream:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        await sock.connect((backend.ip, backend.port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def forward(client: trio.socket.SocketType, client_ip: str, name: str,
                  balancer: Balancer, stats: ProxyStats) -> None:  # fmt: skip
    upstream = None
    for timeout in DIAL_TIMEOUTS:
        backend = balancer.pick(client_ip, trio.current_time())
        if backend is None:
            break
        try:
            with trio.fail_after(timeout):
                upstream = await dial(backend)
            break
        except (OSError, trio.TooSlowError):
            stats.tcp_dial_errors += 1
            balancer.forget(client_ip)
    if upstream is None:
        stats.tcp_rejected += 1
        reset(client)
        return
    stats.tcp_spliced += 1
    stats.connections[name] += 1
    await splice(trio.SocketStream(client), upstream, stats)


async def splice(a: trio.SocketStream, b: trio.SocketStream, stats: ProxyStats) -> None:
    """Copy both ways until both have ended (see the module rules); closes both."""
    try:
        async with trio.open_nursery() as nursery:

            async def pump(src: trio.SocketStream, dst: trio.SocketStream) -> None:
                try:
                    while data := await src.receive_some(BUFFER):
                        await dst.send_all(data)
                        stats.tcp_bytes += len(data)
                    await dst.send_eof()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    stats.tcp_errors += 1
                    nursery.cancel_scope.cancel()

            nursery.start_soon(pump, a, b)
            nursery.start_soon(pump, b, a)
    finally:
        with trio.CancelScope(shield=True):
            await a.aclose()
            await b.aclose()
