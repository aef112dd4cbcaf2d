"""One open frontend: its socket, the entry it forwards for, its balancer, and the task
that serves it (kube-proxy's listeners and the in-memory cloud's load balancers are
both made of these).

Rules of this file:

- ``open`` binds the frontend (TCP: listening; UDP: bound) and raises ``OSError`` if
  it cannot; the caller decides whether that is logged or an error of its own.
- ``serve`` accepts (TCP; each connection in ``connections``, so closing the listener
  leaves established ones be) or serves datagrams (UDP; sessions end with it) until the
  listener is closed. It returns True when closed, False when serving failed with an
  error nobody expected (logged with ``label``, counted in ``serve_errors``): the
  caller drops the listener and opens it again later. The socket is closed either way.
- ``close`` cancels the serving task and closes the socket; new backends take effect
  through ``balancer.update`` without closing anything.
"""

from __future__ import annotations

import logging

import attrs
import trio

from . import _tcp as tcp
from . import _udp as udp
from ._balancer import Balancer
from ._stats import ProxyStats
from ._types import Entry, Frontend

log = logging.getLogger("actorkube.forwarding")


@attrs.define
class Listener:
    frontend: Frontend
    entry: Entry
    sock: trio.socket.SocketType
    balancer: Balancer
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)

    @classmethod
    async def open(cls, frontend: Frontend, entry: Entry, *, shared: bool = True) -> Listener:
        """``shared``: see ``_tcp.listen`` (TCP only)."""
        if frontend.protocol == "TCP":
            sock = await tcp.listen(frontend, shared=shared)
        else:
            sock = await udp.bind(frontend)
        return cls(frontend, entry, sock, Balancer(entry.backends, entry.affinity))

    def close(self) -> None:
        self.scope.cancel()
        self.sock.close()

    async def serve(self, connections: trio.Nursery, stats: ProxyStats, udp_idle: float,
                    label: str) -> bool:  # fmt: skip
        """Serve until closed (True) or failed (False; see the module rules)."""
        with self.scope:
            try:
                if self.frontend.protocol == "TCP":
                    await tcp.accept(self.sock, self.entry.name, self.balancer, connections,
                                     stats)  # fmt: skip
                else:
                    await udp.serve(self.sock, self.entry.name, self.balancer, stats,
                                    udp_idle)  # fmt: skip
            except trio.ClosedResourceError:
                return True  # closed by close(), which cancelled this scope too
            except Exception:
                stats.serve_errors += 1
                log.exception("%s: serving %s for %s failed", label, self.frontend,
                              self.entry.name)  # fmt: skip
                return False
            finally:
                self.sock.close()
        return True
