"""The cluster DNS server: an actor that answers the cluster's names over UDP (what
CoreDNS is to a Kubernetes cluster).

Rules of this file:

- Informers on Services and EndpointSlices keep a ``ClusterZone`` current; each
  datagram is one query, answered from it. Names outside the zone are forwarded to
  the upstream nameservers (by default the host's, from /etc/resolv.conf; none: the
  answer is SERVFAIL), with a 2 s timeout each, as CoreDNS's forward plugin does.
- A datagram that is not a DNS query gets FORMERR if its header can be read, and is
  dropped otherwise; nothing a client sends stops the server. An answer longer than
  512 bytes (a headless Service with many endpoints) is truncated with the TC flag,
  as over UDP without EDNS; there is no TCP listener (clients then get the first
  records only).
- ``ready`` is set once the informers have listed and the socket listens, so tests
  and callers wait for it, not for a delay. ``queries`` and ``forwarded`` count.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import dns.asyncbackend
import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import trio

from actorkube.actor import Actor, ActorRef, handler, message
from actorkube.client import ApiClient, InformerFactory

from ._zone import ClusterZone

log = logging.getLogger("actorkube.dns")

UPSTREAM_TIMEOUT = 2.0
UDP_LIMIT = 512


def host_nameservers(path: str = "/etc/resolv.conf") -> list[str]:
    """The nameservers the host's resolver uses."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    return [line.split()[1] for line in lines
            if line.startswith("nameserver") and len(line.split()) > 1]  # fmt: skip


@message(tag="dns._Serve")
class _Serve:
    pass


class ClusterDNS(Actor):
    """Serves ``zone`` on ``ip``:``port`` (UDP) from the API server ``server``, as the
    user of ``token`` (list and watch of Services and EndpointSlices). ``upstream``:
    nameservers for other names, ``ip`` or ``ip:port`` (default: the host's)."""

    def __init__(self, server: ActorRef, *, token: str, ip: str, port: int = 53,
                 zone: str = "cluster.local",
                 upstream: Sequence[str] | None = None) -> None:  # fmt: skip
        self.server = server
        self.token = token
        self.ip, self.port = ip, port
        self.zone = ClusterZone(zone)
        self.upstream = [u for u in (host_nameservers() if upstream is None else upstream)
                         if u.partition(":")[0] != ip]  # fmt: skip
        self.ready = trio.Event()
        self.queries = 0
        self.forwarded = 0
        self.bound_port = 0

    async def started(self) -> None:
        self.ref.tell(_Serve())

    @handler
    async def on_serve(self, msg: _Serve) -> None:
        client = ApiClient(self.system, self.server, token=self.token)
        factory = InformerFactory(client)
        services = factory.informer("services")
        slices = factory.informer("endpointslices", group="discovery.k8s.io")
        z = self.zone
        services.add_handler(z.set_service, lambda old, new: z.set_service(new), z.remove_service)
        slices.add_handler(z.set_slice, lambda old, new: z.set_slice(new), z.remove_slice)
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with sock:
            await sock.bind((self.ip, self.port))
            self.bound_port = sock.getsockname()[1]
            async with trio.open_nursery() as nursery:
                await factory.start(nursery)
                self.ready.set()
                while True:
                    data, peer = await sock.recvfrom(65535)
                    nursery.start_soon(self._reply, sock, data, peer)

    async def _reply(self, sock, data: bytes, peer) -> None:
        self.queries += 1
        response = await self.respond(data)
        if response is not None:
            try:
                await sock.sendto(response, peer)
            except OSError as e:  # the client went away: its loss only
                log.debug("dns: reply to %s: %s", peer, e)

    async def respond(self, data: bytes) -> bytes | None:
        """The wire answer to one datagram (None: drop it)."""
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return _formerr(data)
        response = self.zone.answer(query)
        if response is None:
            response = await self._forward(query)
        return _wire(response) if response is not None else None

    async def _forward(self, query: dns.message.Message) -> dns.message.Message:
        backend = dns.asyncbackend.get_backend("trio")
        for upstream in self.upstream:
            host, _, port = upstream.partition(":")
            try:
                self.forwarded += 1
                return await dns.asyncquery.udp(
                    query, host, port=int(port or 53), timeout=UPSTREAM_TIMEOUT, backend=backend
                )
            except (dns.exception.DNSException, OSError) as e:
                log.debug("dns: upstream %s: %s", upstream, e)
        failed = dns.message.make_response(query)
        failed.set_rcode(dns.rcode.SERVFAIL)
        return failed


def _wire(response: dns.message.Message) -> bytes:
    """``response`` in at most 512 bytes: whole record sets while they fit, then the TC
    flag (the client may ask again over TCP)."""
    try:
        return response.to_wire(max_size=UDP_LIMIT)
    except dns.exception.TooBig:
        pass
    response.flags |= dns.flags.TC
    for rrset in response.answer:
        while len(rrset) > 1:
            rrset.discard(list(rrset)[-1])
            try:
                return response.to_wire(max_size=UDP_LIMIT)
            except dns.exception.TooBig:
                continue
    response.answer.clear()
    return response.to_wire(max_size=UDP_LIMIT)


def _formerr(data: bytes) -> bytes | None:
    """FORMERR for a datagram whose 12-byte header at least can be read (its id and
    opcode echoed), else nothing."""
    if len(data) < 12:
        return None
    flags = 0x8000 | (data[2] & 0x78) << 8 | dns.rcode.FORMERR  # QR, the opcode, FORMERR
    return data[:2] + flags.to_bytes(2, "big") + b"\0" * 8
