"""The in-memory cloud's load balancers on real sockets: each frontend (a load
balancer's address, a service port, its protocol) is a listener that forwards to the
backends of its entry (the service's node port on each node), with kube-proxy's
forwarding (``actorkube.forwarding``).

Rules of this file:

- ``program(ip, entries)`` makes the listeners on ``ip`` (one load balancer's address)
  exactly ``entries``: a frontend that is no longer there is closed, a new one is bound
  and served, and one that stays gets its new backends in place, so connections
  established through it are untouched and new ones go to the new backends.
- A listener stays open without backends: its TCP connections are reset and its UDP
  datagrams dropped, as a cloud load balancer without hosts refuses traffic.
- TCP connections run in the nursery of ``run``, not in their listener's: closing a
  listener (its load balancer deleted, or the port gone) stops new connections and
  lets established ones drain. UDP sessions belong to their listener and end with it.
- A frontend that cannot be bound is a ``CloudError`` (raised once the call's other
  frontends are programmed): the caller's next call tries it again. A listener whose
  serving fails with an error nobody expected is logged, counted and dropped; the next
  ``program`` of its address opens it again.
- Listeners exist only while ``run`` runs: ``program`` before it is a programming
  error, and when it ends every listener is closed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import trio

from actorkube.forwarding import Entry, Frontend, Listener, ProxyStats

from ._provider import CloudError

log = logging.getLogger("actorkube.cloud")


class Listeners:
    """The listening sockets of every load balancer of one cloud (see the module
    rules). ``udp_idle_timeout``: seconds a UDP session lasts without traffic."""

    def __init__(self, *, udp_idle_timeout: float) -> None:
        self.udp_idle_timeout = udp_idle_timeout
        self.stats = ProxyStats()
        self.listeners: dict[Frontend, Listener] = {}
        self._nursery: trio.Nursery | None = None

    @property
    def running(self) -> bool:
        return self._nursery is not None

    def programmed(self, ip: str) -> dict[Frontend, Entry]:
        """The open frontends on ``ip`` and their entries."""
        return {f: listener.entry for f, listener in self.listeners.items() if f.ip == ip}

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve the listeners until cancelled; then close them all."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for frontend in list(self.listeners):
                self._close(frontend)

    async def program(self, ip: str, entries: Mapping[Frontend, Entry]) -> None:
        """Make the listeners on ``ip`` exactly ``entries`` (see the module rules)."""
        if self._nursery is None:
            raise RuntimeError("the cloud's load balancers are not running: open the cloud "
                               "with `async with InMemoryCloud.open()` or start `cloud.run`")
        for frontend in [f for f in self.listeners if f.ip == ip and f not in entries]:
            self._close(frontend)
        failed = []
        for frontend, entry in sorted(entries.items()):
            listener = self.listeners.get(frontend)
            if listener is not None:
                listener.entry = entry
                listener.balancer.update(entry.backends, entry.affinity)
                continue
            try:
                await self._open(frontend, entry)
            except OSError as e:
                self.stats.bind_errors += 1
                failed.append(f"{frontend}: {e.strerror or e}")
        if failed:
            raise CloudError(f"cannot listen on {', '.join(failed)}")

    def close(self, ip: str) -> None:
        """Close every listener on ``ip``."""
        for frontend in [f for f in self.listeners if f.ip == ip]:
            self._close(frontend)

    async def _open(self, frontend: Frontend, entry: Entry) -> None:
        listener = await Listener.open(frontend, entry)
        self.listeners[frontend] = listener
        self._nursery.start_soon(self._serve, listener)

    def _close(self, frontend: Frontend) -> None:
        self.listeners.pop(frontend).close()

    async def _serve(self, listener: Listener) -> None:
        served = await listener.serve(self._nursery, self.stats, self.udp_idle_timeout,
                                      "load balancer")  # fmt: skip
        if not served and self.listeners.get(listener.frontend) is listener:
            del self.listeners[listener.frontend]  # the next program opens it again
