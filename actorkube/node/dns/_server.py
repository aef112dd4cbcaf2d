"""The cluster DNS server: an actor that answers the cluster's names over UDP and TCP
(what CoreDNS is to a Kubernetes cluster).

Rules of this file:

- Informers on Services and EndpointSlices keep a ``ClusterZone`` current; each
  datagram (or each length-prefixed message on a TCP connection) is one query,
  answered from it. Names outside the zone are forwarded to the upstream nameservers
  (by default the host's, from /etc/resolv.conf; none: the answer is SERVFAIL), with a
  2 s timeout each, at most ``MAX_FORWARDS`` at once (then SERVFAIL at once), as
  CoreDNS's forward plugin caps them. A CNAME of ours (an ExternalName Service) comes
  with its target's records, looked up in the zone or upstream, since stub resolvers
  do not chase CNAMEs themselves.
- Nothing a client sends stops the server: a message that is not a query is dropped
  (a response, QR set) or answered FORMERR (a readable header); any error while
  answering is SERVFAIL for that query alone.
- A UDP answer fits the client's EDNS payload size (512 bytes without EDNS): whole
  record sets while they fit, else as many records as fit and the TC flag, and the
  client asks again over TCP, where answers are whole.
- ``ready`` is set once the informers have listed and both sockets listen, and
  ``wait_until(predicate)`` returns once the zone satisfies it, so tests and callers
  wait for a state, not for a delay. ``queries`` and ``forwarded`` count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import dns.asyncbackend
import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import trio

from actorkube.actor import Actor, ActorRef, handler, message
from actorkube.client import ApiClient, InformerFactory

from ._zone import ClusterZone

log = logging.getLogger("actorkube.dns")

UPSTREAM_TIMEOUT = 2.0
UDP_LIMIT = 512  # without EDNS
MAX_FORWARDS = 100  # queries forwarded at once


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
        self._forwards = trio.Semaphore(MAX_FORWARDS)
        self._changed = trio.lowlevel.ParkingLot()

    async def started(self) -> None:
        self.ref.tell(_Serve())

    @handler
    async def on_serve(self, msg: _Serve) -> None:
        client = ApiClient(self.system, self.server, token=self.token)
        factory = InformerFactory(client)
        services = factory.informer("services")
        slices = factory.informer("endpointslices", group="discovery.k8s.io")
        z, told = self.zone, self._told
        services.add_handler(told(z.set_service), told(lambda old, new: z.set_service(new)),
                             told(z.remove_service))  # fmt: skip
        slices.add_handler(told(z.set_slice), told(z.update_slice), told(z.remove_slice))
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with sock:
            await sock.bind((self.ip, self.port))
            self.bound_port = sock.getsockname()[1]
            async with trio.open_nursery() as nursery:
                await factory.start(nursery)
                listeners = await trio.open_tcp_listeners(self.bound_port, host=self.ip)
                nursery.start_soon(trio.serve_listeners, self._serve_tcp, listeners)
                self.ready.set()
                while True:
                    data, peer = await sock.recvfrom(65535)
                    nursery.start_soon(self._reply, sock, data, peer)

    def _told(self, change: Callable[..., None]) -> Callable[..., None]:
        """``change`` of the zone, then everyone in ``wait_until`` looks again."""

        def changed(*objects: dict) -> None:
            change(*objects)
            self._changed.unpark_all()

        return changed

    async def wait_until(self, predicate: Callable[[ClusterZone], bool]) -> None:
        """Return once ``predicate(zone)`` holds (checked after every change)."""
        while not predicate(self.zone):
            await self._changed.park()

    async def _reply(self, sock, data: bytes, peer) -> None:
        self.queries += 1
        response = await self.respond(data, udp=True)
        if response is not None:
            try:
                await sock.sendto(response, peer)
            except OSError as e:  # the client went away: its loss only
                log.debug("dns: reply to %s: %s", peer, e)

    async def _serve_tcp(self, stream: trio.SocketStream) -> None:
        """Queries on one TCP connection, each with its two-byte length, in turn."""
        buffer = b""
        try:
            async with stream:
                while True:
                    while len(buffer) < 2 or len(buffer) < 2 + int.from_bytes(buffer[:2], "big"):
                        chunk = await stream.receive_some(65536)
                        if not chunk:
                            return
                        buffer += chunk
                    size = int.from_bytes(buffer[:2], "big")
                    data, buffer = buffer[2 : 2 + size], buffer[2 + size :]
                    self.queries += 1
                    response = await self.respond(data, udp=False)
                    if response is None:
                        return
                    await stream.send_all(len(response).to_bytes(2, "big") + response)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # the client went away

    async def respond(self, data: bytes, *, udp: bool = True) -> bytes | None:
        """The wire answer to one query (None: drop it). Never raises."""
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return _formerr(data)
        if query.flags & dns.flags.QR:
            return None  # a response, not a query: nothing to answer (CoreDNS drops it)
        try:
            response = self.zone.answer(query)
            if response is None:
                response = await self._forward(query)
            else:
                await self._chase(query, response)
            limit = max(UDP_LIMIT, query.payload) if query.edns >= 0 else UDP_LIMIT
            return _wire(response, min(limit, 65535) if udp else 65535)
        except Exception:  # that query's failure alone, never the server's
            log.exception("dns: answering %s", query.question)
            failed = dns.message.make_response(query)
            failed.set_rcode(dns.rcode.SERVFAIL)
            return failed.to_wire()

    async def _chase(self, query: dns.message.Message, response: dns.message.Message) -> None:
        """Add the records a CNAME of ours points at (an ExternalName's target)."""
        question = query.question[0]
        if question.rdtype == dns.rdatatype.CNAME:
            return
        for rrset in list(response.answer):
            if rrset.rdtype != dns.rdatatype.CNAME:
                continue
            target = next(iter(rrset)).target
            follow = dns.message.make_query(target, question.rdtype)
            found = self.zone.answer(follow)
            if found is None:
                found = await self._forward(follow)
            response.answer.extend(r for r in found.answer if r not in response.answer)

    async def _forward(self, query: dns.message.Message) -> dns.message.Message:
        failed = dns.message.make_response(query)
        failed.set_rcode(dns.rcode.SERVFAIL)
        if self._forwards.value == 0:
            return failed  # too many forwarded queries wait already: fail fast
        backend = dns.asyncbackend.get_backend("trio")
        async with self._forwards:
            for upstream in self.upstream:
                host, port = _host_port(upstream)
                try:
                    self.forwarded += 1
                    return await dns.asyncquery.udp(
                        query, host, port=port, timeout=UPSTREAM_TIMEOUT, backend=backend
                    )
                except (dns.exception.DNSException, OSError, ValueError) as e:
                    log.debug("dns: upstream %s: %s", upstream, e)
        return failed


def _host_port(upstream: str) -> tuple[str, int]:
    """``ip``, ``ip:port``, ``v6`` or ``[v6]:port`` as (host, port)."""
    if upstream.startswith("["):
        host, _, rest = upstream[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 53
    if upstream.count(":") == 1:
        host, _, port = upstream.partition(":")
        return host, int(port)
    return upstream, 53


def _wire(response: dns.message.Message, limit: int) -> bytes:
    """``response`` in at most ``limit`` bytes: whole if it fits; else, with the TC flag,
    as many answer records as fit (found by bisection: a few renderings, not one per
    record); at worst the header and the question alone."""
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        pass
    records = [(rrset, rdata) for rrset in response.answer for rdata in rrset]

    def render(keep: int) -> bytes | None:
        trimmed = dns.message.make_response(_query_of(response))
        trimmed.flags = response.flags | dns.flags.TC
        trimmed.set_rcode(response.rcode())
        for rrset, rdata in records[:keep]:
            trimmed.find_rrset(trimmed.answer, rrset.name, rrset.rdclass, rrset.rdtype,
                               create=True).add(rdata, rrset.ttl)  # fmt: skip
        try:
            return trimmed.to_wire(max_size=limit)
        except dns.exception.TooBig:
            return None

    low, high = 0, len(records)  # render(low) fits (no answers always does)
    while low < high:
        middle = (low + high + 1) // 2
        if render(middle) is None:
            high = middle - 1
        else:
            low = middle
    return render(low) or b""


def _query_of(response: dns.message.Message) -> dns.message.Message:
    question = response.question[0]
    query = dns.message.make_query(question.name, question.rdtype)
    query.id = response.id
    return query


def _formerr(data: bytes) -> bytes | None:
    """FORMERR for a datagram whose 12-byte header at least can be read (its id and
    opcode echoed), else nothing."""
    if len(data) < 12:
        return None
    flags = 0x8000 | (data[2] & 0x78) << 8 | dns.rcode.FORMERR  # QR, the opcode, FORMERR
    return data[:2] + flags.to_bytes(2, "big") + b"\0" * 8
