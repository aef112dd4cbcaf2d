"""kube-proxy as an actor: Services and EndpointSlices in, listeners on cluster IPs and
node ports out, forwarding real TCP connections and UDP datagrams to the backends.

Rules of this file:

- Informers on Services and EndpointSlices; their handlers only mark the table dirty
  and wake the sync loop (a burst of events makes one sync).
- A sync builds the table from the informers (``_table.build``) and compares it with
  what is programmed (``_table.diff``): a frontend whose Service went or that has no
  backend left is closed (its listening socket, and a UDP frontend's sessions), so new
  connections are refused by the kernel as Kubernetes rejects them; a frontend that
  has backends and no listener is opened (bound, then served); the others get their new
  backends and affinity in place, so established connections are untouched.
- A frontend that cannot be bound (its address taken) is counted, logged (once per
  error: the retries do not log the same refusal again), and tried again at the next
  sync, and at least every ``RETRY`` seconds. A frontend whose
  serving fails with an error nobody expected is counted, logged and closed, and opened
  again ``RETRY`` seconds later: one frontend's failure never stops the proxy.
- ``programmed`` is what is applied: each open frontend and its entry (service port,
  backends, affinity). ``wait_until(predicate)`` returns once ``predicate(programmed)``
  is true, checked now and after every sync: callers wait for a state, never a delay.
- Everything belongs to the actor: when it stops, its listeners, UDP sessions and TCP
  connections close with it.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable

import trio

from actorkube.actor import Actor, ActorRef, handler, message
from actorkube.client import ApiClient, InformerFactory
from actorkube.forwarding import Entry, Frontend, Listener, ProxyStats
from actorkube.forwarding import _udp as udp

from ._table import Table, build, diff

log = logging.getLogger("actorkube.node.proxy")

RETRY = 1.0  # seconds between tries of frontends that could not be bound
EXPIRE_EVERY = 60.0  # seconds between sweeps of idle ClientIP sessions


@message(tag="node.proxy._Run")
class _Run:
    pass


class KubeProxy(Actor):
    """The proxy of node ``node_name`` (see the module rules): node ports listen on
    ``node_ip``; ``udp_idle_timeout`` is kube-proxy's ``--udp-timeout``. ``token``: the
    proxy's credentials (Kubernetes' user system:kube-proxy, role system:node-proxier),
    or ``certificate``: its node's (a joined node's proxy acts as the node)."""

    def __init__(self, server: ActorRef, *, token: str = "", certificate: bytes = b"",
                 node_name: str, node_ip: str,
                 udp_idle_timeout: float = udp.DEFAULT_IDLE) -> None:  # fmt: skip
        try:
            ipaddress.IPv4Address(node_ip)
        except ValueError:
            raise ValueError(f"node IP {node_ip!r} is not an IPv4 address") from None
        self.server = server
        self.token = token
        self.certificate = certificate  # a joined node's client certificate (DER)
        self.node_name = node_name
        self.node_ip = node_ip
        self.udp_idle_timeout = udp_idle_timeout
        self.stats = ProxyStats()
        self.desired: Table = {}
        self.listeners: dict[Frontend, Listener] = {}
        # Why each frontend could not be bound, as last logged: the retries (every
        # ``RETRY`` s) log only a change, not the same refusal every second (a port
        # below 1024 without root, as the kubernetes Service's 443, is refused for ever).
        self.bind_failures: dict[Frontend, str] = {}
        self._dirty = trio.Event()
        self._synced = trio.lowlevel.ParkingLot()
        self._connections: trio.Nursery | None = None

    @property
    def programmed(self) -> Table:
        return {frontend: listener.entry for frontend, listener in self.listeners.items()}

    async def wait_until(self, predicate: Callable[[Table], object]) -> None:
        """Return once ``predicate(programmed)`` is true (see the module rules)."""
        while not predicate(self.programmed):
            await self._synced.park()

    async def started(self) -> None:
        self.ref.tell(_Run())

    @handler
    async def on_run(self, msg: _Run) -> None:
        client = ApiClient(self.system, self.server, token=self.token,
                           certificate=self.certificate)  # fmt: skip
        factory = InformerFactory(client)
        services = factory.informer("services")
        slices = factory.informer("endpointslices", group="discovery.k8s.io")
        for informer in (services, slices):
            informer.add_handler(self._changed, self._changed, self._changed)
        try:
            async with trio.open_nursery() as nursery:
                self._connections = nursery
                await factory.start(nursery)
                await self._sync_loop(services, slices)
        finally:
            for listener in self.listeners.values():
                listener.sock.close()
            self.listeners.clear()

    def _changed(self, *objects: dict) -> None:
        self._dirty.set()

    async def _sync_loop(self, services, slices) -> None:
        expired_at = trio.current_time()
        while True:
            self._dirty = trio.Event()  # before reading: a later change wakes the next sync
            self.desired = build(services.list(), slices.list(), node_name=self.node_name,
                                 node_ip=self.node_ip)  # fmt: skip
            await self._apply(self.desired)
            self.stats.syncs += 1
            self._synced.unpark_all()
            now = trio.current_time()
            if now - expired_at >= EXPIRE_EVERY:
                expired_at = now
                for listener in self.listeners.values():
                    listener.balancer.expire(now)
            unbound = any(f not in self.listeners for f, e in self.desired.items() if e.backends)
            with trio.move_on_after(RETRY if unbound else EXPIRE_EVERY):
                await self._dirty.wait()

    async def _apply(self, desired: Table) -> None:
        for frontend in [f for f in self.bind_failures if f not in desired]:
            del self.bind_failures[frontend]
        change = diff(self.programmed, desired)
        for frontend in change.closed:
            self._close(frontend)
        for frontend in change.changed:
            listener, entry = self.listeners[frontend], desired[frontend]
            if listener.entry.name != entry.name:  # another Service took the address
                self._close(frontend)
                await self._open(frontend, entry)
            else:
                listener.entry = entry
                listener.balancer.update(entry.backends, entry.affinity)
        for frontend in sorted(change.opened):
            await self._open(frontend, desired[frontend])

    async def _open(self, frontend: Frontend, entry: Entry) -> None:
        try:
            listener = await Listener.open(frontend, entry)
        except OSError as e:
            self.stats.bind_errors += 1
            if self.bind_failures.get(frontend) != str(e):
                self.bind_failures[frontend] = str(e)
                log.warning("kube-proxy %s: cannot listen on %s for %s: %s (retried every "
                            "%gs, logged again if the error changes)", self.node_name,
                            frontend, entry.name, e, RETRY)  # fmt: skip
            return
        self.bind_failures.pop(frontend, None)
        self.listeners[frontend] = listener
        self._connections.start_soon(self._serve, listener)

    def _close(self, frontend: Frontend) -> None:
        self.listeners.pop(frontend).close()
        self.bind_failures.pop(frontend, None)

    async def _serve(self, listener: Listener) -> None:
        label = f"kube-proxy {self.node_name}"
        if await listener.serve(self._connections, self.stats, self.udp_idle_timeout, label):
            return
        if self.listeners.get(listener.frontend) is listener:
            del self.listeners[listener.frontend]
        await trio.sleep(RETRY)
        self._dirty.set()  # the sync opens it again

