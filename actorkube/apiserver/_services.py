"""Service cluster IPs and node ports: kube-apiserver's allocators, kept in etcd.

Rules of this file:

- One etcd key per allocated value: ``/registry/ipaddresses/<ip>`` (an IPAddress object
  whose parentRef names the Service, as Kubernetes' MultiCIDRServiceAllocator keeps
  them) and ``/registry/servicenodeports/<port>``. A value is claimed by a write that
  succeeds only if the key is absent (``create_revision == 0``), so API servers sharing
  one etcd never hand out one value twice; nothing is remembered in memory, and a
  restarted server knows what is taken from etcd alone.
- A Service write claims what its new spec needs before the write (the values it names,
  fresh ones for what it leaves empty), then writes the Service; after the write it
  releases what the old object held and the new one does not (every release is
  conditional on the key still naming that Service). A write refused for certain (an
  ``ApiError``: conflict, invalid, not found) releases what it claimed. A write whose
  outcome is unknown (etcd failed or the request was cancelled mid-write) releases
  nothing, since the Service may hold its values now: ``repair`` settles it.
- ``repair`` (kube-apiserver's repair controllers): a value found claimed by no Service
  on two passes in a row, unchanged, is released; a value a Service holds whose key is
  missing is claimed for it again.
- What a Service needs (``assign``) is pure. ClusterIP, NodePort and LoadBalancer
  Services get a cluster IP unless headless (``clusterIP: None``); ExternalName
  Services get none. NodePort Services, and LoadBalancer Services unless
  ``allocateLoadBalancerNodePorts`` is false, get a node port per service port number
  (ports of one number share one node port, as TCP and UDP 53 do). An update keeps the
  IP and node ports the old object held where the new one leaves them out, and drops
  them where the type changed to one that holds none and the update left them as they
  were (Kubernetes' patchAllocatedValues and dropTypeDependentFields).
- Fresh values are picked at random from the upper part of the range, then the lower
  band, which Kubernetes keeps for values asked for by name (1/16 of an IP range, from
  16 to 256 addresses; 1/32 of the port range, from 16 to 128 ports; none in a range of
  16 values or fewer). A range with no free value is a 500 ("range is full"); a named
  value out of range or taken is 422 Invalid, in Kubernetes' words.
- A dry run claims nothing: it checks that what a real write would claim is free.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
from collections.abc import Callable
from typing import Any

import attrs
import trio

from actorkube.actor import Actor, handler, message
from actorkube.etcd import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    EtcdClient,
    EtcdError,
    PutRequest,
    prefix_end,
)

from . import _errors as errors
from ._meta import meta
from ._registry import ResourceType
from ._storage import EVENT_TTL, ObjectStore
from ._validation import FieldError, Path

log = logging.getLogger("actorkube.apiserver.services")

DEFAULT_SERVICE_CIDR = "127.96.0.0/12"
DEFAULT_NODE_PORT_RANGE = "30000-32767"
IP_PREFIX = b"/registry/ipaddresses/"
PORT_PREFIX = b"/registry/servicenodeports/"
RANDOM_TRIES = 8  # fresh values tried at random before the range is scanned
REPAIR_INTERVAL = 180.0  # kube-apiserver's repair controllers run every 3 minutes
RELEASE_TIMEOUT = 10.0  # seconds a release may hold up a cancelled request (see _release)
NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


# --- ranges ---------------------------------------------------------------------------------


def _static_band(size: int, step: int, most: int) -> int:
    """Kubernetes' calculateRangeOffset: the lower band kept for values asked for by
    name; none in a range of 16 values or fewer, so fresh values have room."""
    if size <= 16:
        return 0
    return min(max(16, size // step), most)


@attrs.frozen
class IPRange:
    """The service CIDR (``--service-cluster-ip-range``): IPv4, its network and
    broadcast addresses excluded. Index 0 is the first usable address."""

    cidr: ipaddress.IPv4Network

    @classmethod
    def parse(cls, text: str) -> IPRange:
        """``ValueError`` unless ``text`` is an IPv4 CIDR with room for 2 addresses."""
        try:
            cidr = ipaddress.ip_network(text, strict=True)
        except ValueError as e:
            raise ValueError(f"service CIDR {text!r}: {e}") from None
        if not isinstance(cidr, ipaddress.IPv4Network):
            raise ValueError(f"service CIDR {text!r}: only IPv4 service ranges are served")
        if cidr.prefixlen > 30:
            raise ValueError(f"service CIDR {text!r}: too small (at most /30)")
        return cls(cidr)

    @property
    def size(self) -> int:
        return self.cidr.num_addresses - 2

    @property
    def band(self) -> int:
        return _static_band(self.size, 16, 256)

    def index(self, ip: str) -> int | None:
        """The address's index, None if it is not an address of the range."""
        try:
            address = ipaddress.IPv4Address(ip)
        except ValueError:
            return None
        i = int(address) - int(self.cidr.network_address) - 1
        return i if 0 <= i < self.size else None

    def value(self, index: int) -> str:
        return str(self.cidr.network_address + 1 + index)

    def key(self, ip: str) -> bytes:
        return IP_PREFIX + ip.encode()

    def __str__(self) -> str:
        return str(self.cidr)


@attrs.frozen
class PortRange:
    """The node port range (``--service-node-port-range``), both ends included."""

    base: int
    size: int

    @classmethod
    def parse(cls, text: str) -> PortRange:
        """``ValueError`` unless ``text`` is ``first-last`` within 1-65535."""
        first, sep, last = text.partition("-")
        try:
            low, high = int(first), int(last if sep else first)
        except ValueError:
            raise ValueError(f"node port range {text!r}: not first-last") from None
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"node port range {text!r}: ports are 1-65535, first <= last")
        return cls(low, high - low + 1)

    @property
    def band(self) -> int:
        return _static_band(self.size, 32, 128)

    def index(self, port: int) -> int | None:
        i = port - self.base
        return i if 0 <= i < self.size else None

    def value(self, index: int) -> int:
        return self.base + index

    def key(self, port: int) -> bytes:
        return PORT_PREFIX + str(port).encode()

    def __str__(self) -> str:
        return f"{self.base}-{self.base + self.size - 1}"


# --- what a Service needs (pure) ------------------------------------------------------------


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _ports(spec: dict) -> list[dict]:
    ports = spec.get("ports")
    return [p for p in ports if isinstance(p, dict)] if isinstance(ports, list) else []


def needs_cluster_ip(svc: dict) -> bool:
    spec = _dict(svc.get("spec"))
    return spec.get("type", "ClusterIP") != "ExternalName" and spec.get("clusterIP") != "None"


def needs_node_ports(svc: dict) -> bool:
    return _dict(svc.get("spec")).get("type", "ClusterIP") in NODE_PORT_TYPES


def allocates_node_ports(svc: dict) -> bool:
    """Whether ports without a nodePort get one (a LoadBalancer may say no)."""
    spec = _dict(svc.get("spec"))
    if spec.get("type") == "LoadBalancer":
        return spec.get("allocateLoadBalancerNodePorts", True) is not False
    return needs_node_ports(svc)


def held_ips(svc: dict | None) -> set[str]:
    if svc is None:
        return set()
    ip = _dict(svc.get("spec")).get("clusterIP")
    return {ip} if isinstance(ip, str) and ip not in ("", "None") else set()


def held_node_ports(svc: dict | None) -> set[int]:
    if svc is None:
        return set()
    found = set()
    for p in _ports(_dict(svc.get("spec"))):
        port = p.get("nodePort")
        if isinstance(port, int) and not isinstance(port, bool) and port:
            found.add(port)
    return found


@attrs.define
class Claims:
    """What one Service write has claimed so far: values its spec names, and fresh ones
    to fill what it leaves empty (taken in order, so every try assigns the same)."""

    named_ips: set[str] = attrs.field(factory=set)
    named_ports: set[int] = attrs.field(factory=set)
    fresh_ips: list[str] = attrs.field(factory=list)
    fresh_ports: list[int] = attrs.field(factory=list)

    def ips(self) -> set[str]:
        return self.named_ips | set(self.fresh_ips)

    def node_ports(self) -> set[int]:
        return self.named_ports | set(self.fresh_ports)


class Unclaimed(Exception):
    """``assign`` needs values not claimed yet: the caller claims them and tries again."""

    def __init__(self, ips: list[str], ports: list[tuple[int, int]], fresh_ip: bool,
                 fresh_ports: int) -> None:  # fmt: skip
        super().__init__("values to claim")
        self.ips = ips  # named cluster IPs
        self.ports = ports  # named node ports, as (index in spec.ports, port)
        self.fresh_ip = fresh_ip
        self.fresh_ports = fresh_ports


def _drop_type_dependent(new: dict, old: dict) -> dict:
    """An update to a type that holds no node ports (or no IP) lets go of those the old
    object held, if it left them as they were (Kubernetes' dropTypeDependentFields)."""
    spec, before = dict(_dict(new.get("spec"))), _dict(old.get("spec"))
    ports = held_node_ports(new)
    if needs_node_ports(old) and not needs_node_ports(new) and ports <= held_node_ports(old):
        spec["ports"] = [{k: v for k, v in p.items() if k != "nodePort"}
                         if isinstance(p, dict) else p
                         for p in spec.get("ports") or []]  # fmt: skip
    to_name = spec.get("type") == "ExternalName" and before.get("type") != "ExternalName"
    if to_name and spec.get("clusterIP") == before.get("clusterIP"):
        for name in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            spec.pop(name, None)
    return {**new, "spec": spec}


def _patch_allocated(new: dict, old: dict) -> dict:
    """What an update leaves out of the old object's IP and node ports, it keeps."""
    spec, before = dict(_dict(new.get("spec"))), _dict(old.get("spec"))
    if needs_cluster_ip(old) and needs_cluster_ip(new) and not spec.get("clusterIP"):
        for name in ("clusterIP", "clusterIPs"):
            if name in before:
                spec[name] = before[name]
    if needs_node_ports(old) and needs_node_ports(new):
        used = held_node_ports(old) & held_node_ports(new)
        by_name = {p.get("name", ""): p.get("nodePort") for p in _ports(before)}
        ports = []
        for p in spec.get("ports") or []:
            if isinstance(p, dict) and not p.get("nodePort"):
                kept = by_name.get(p.get("name", ""))
                if isinstance(kept, int) and kept and kept not in used:
                    p = {**p, "nodePort": kept}
            ports.append(p)
        spec["ports"] = ports
    return {**new, "spec": spec}


def _ip_families(spec: dict) -> tuple[dict, list[FieldError]]:
    """The IP family fields of a single-stack IPv4 cluster (initIPFamilyFields), and
    what asks for more than such a cluster has."""
    if spec.get("type") == "ExternalName":
        return spec, []
    spec = dict(spec)
    at = Path("spec")
    headless = spec.get("clusterIP") == "None"
    lone = headless and not spec.get("selector")  # its endpoints may be of any family
    if "ipFamilyPolicy" not in spec:
        spec["ipFamilyPolicy"] = "RequireDualStack" if lone else "SingleStack"
    families = spec.get("ipFamilies") or ["IPv4"]
    problems = []
    ip = spec.get("clusterIP")
    if not headless and isinstance(ip, str) and ":" in ip:
        problems.append(FieldError.invalid(at.child("clusterIPs").index(0), spec.get("clusterIPs"),
                                           "IPv6 is not configured on this cluster"))  # fmt: skip
    if lone:
        if spec["ipFamilyPolicy"] != "SingleStack" and len(families) < 2:
            families = [*families, "IPv6" if families[0] == "IPv4" else "IPv4"]
    else:
        if spec["ipFamilyPolicy"] == "RequireDualStack":
            problems.append(FieldError.invalid(at.child("ipFamilyPolicy"), "RequireDualStack",
                                               "this cluster is not configured for dual-stack "
                                               "services"))  # fmt: skip
        problems += [FieldError.invalid(at.child("ipFamilies").index(i), family,
                                        "not configured on this cluster")
                     for i, family in enumerate(families) if family != "IPv4"]  # fmt: skip
    spec["ipFamilies"] = families
    return spec, problems


def assign(new: dict, old: dict | None, claims: Claims) -> dict:
    """``new`` with its cluster IP and node ports filled in from what ``old`` held and
    from ``claims``; ``Unclaimed`` if it needs values not claimed yet."""
    if old is not None:
        new = _patch_allocated(_drop_type_dependent(new, old), old)
    spec = dict(_dict(new.get("spec")))
    named_ips: list[str] = []
    fresh_ip = False
    if needs_cluster_ip(new):
        ip = spec.get("clusterIP")
        if not ip:
            fresh_ip = not claims.fresh_ips
            ip = claims.fresh_ips[0] if claims.fresh_ips else ""
        elif ip not in held_ips(old) and ip not in claims.named_ips:
            named_ips.append(ip)
        if ip:
            spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
    elif spec.get("clusterIP") == "None":
        spec["clusterIPs"] = ["None"]
    spec, problems = _ip_families(spec)
    if problems:
        raise errors.invalid("Service", "", meta(new).get("name", ""), problems)
    named_ports: list[tuple[int, int]] = []
    fresh_ports = 0
    if needs_node_ports(new):
        spec["ports"], named_ports, fresh_ports = _assign_node_ports(new, old, claims)
    if named_ips or named_ports or fresh_ip or fresh_ports:
        raise Unclaimed(named_ips, named_ports, fresh_ip, fresh_ports)
    return {**new, "spec": spec}


def _assign_node_ports(svc: dict, old: dict | None, claims: Claims):
    """Kubernetes' initNodePorts: one node port per service port number, the one a port
    of that number names if any. Returns (ports, named to claim, fresh ones missing)."""
    spec = _dict(svc.get("spec"))
    held = held_node_ports(old) | claims.node_ports()
    fresh = iter(claims.fresh_ports)
    allocate = allocates_node_ports(svc)
    by_number: dict[Any, int] = {}
    ports: list[Any] = []
    named: list[tuple[int, int]] = []
    missing: set[Any] = set()  # port numbers still without a node port
    for i, p in enumerate(spec.get("ports") or []):
        if not isinstance(p, dict) or (not p.get("nodePort") and not allocate):
            ports.append(p)
            continue
        number = p.get("port")
        chosen = p.get("nodePort") or by_number.get(number)
        if not chosen:
            chosen = next((q["nodePort"] for q in _ports(spec)
                           if q.get("port") == number and q.get("nodePort")), 0)  # fmt: skip
        if not chosen and number not in missing:
            chosen = next(fresh, 0)
        if not chosen:
            missing.add(number)
        elif chosen not in held and all(port != chosen for _, port in named):
            named.append((i, chosen))
        if chosen:
            by_number.setdefault(number, chosen)
            p = {**p, "nodePort": chosen}
        ports.append(p)
    return ports, named, len(missing)


# --- the allocator --------------------------------------------------------------------------


def _owner(svc: dict) -> tuple[str, str]:
    m = meta(svc)
    return m.get("namespace", ""), m.get("name", "")


def _record(ip: bool, value: Any, owner: tuple[str, str]) -> bytes:
    """What a claimed key holds: the Service it is claimed for."""
    parent = {"group": "", "resource": "services", "namespace": owner[0], "name": owner[1]}
    if ip:
        obj = {"apiVersion": "networking.k8s.io/v1", "kind": "IPAddress",
               "metadata": {"name": value, "labels": {
                   "ipaddress.kubernetes.io/ip-family": "IPv4",
                   "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io"}},
               "spec": {"parentRef": parent}}  # fmt: skip
    else:
        obj = {"nodePort": value, "spec": {"parentRef": parent}}
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def _record_owner(value: bytes) -> tuple[str, str] | None:
    try:
        parent = json.loads(value)["spec"]["parentRef"]
        return str(parent["namespace"]), str(parent["name"])
    except (ValueError, KeyError, TypeError):
        return None


@attrs.frozen
class RepairReport:
    """One repair pass: keys released (orphaned twice), claimed again (held by a
    Service but missing), and suspected (orphaned once: released next pass if still so)."""

    released: tuple[bytes, ...]
    claimed: tuple[bytes, ...]
    suspected: tuple[bytes, ...]


class ServiceAllocations:
    """The cluster IP and node port allocators over ``etcd`` (see the module rules).
    ``rng`` picks fresh values."""

    def __init__(self, etcd: EtcdClient, *, ips: IPRange, node_ports: PortRange,
                 rng: random.Random) -> None:  # fmt: skip
        self.etcd = etcd
        self.ips = ips
        self.node_ports = node_ports
        self.rng = rng
        self._suspects: dict[bytes, int] = {}  # orphaned key -> its mod_revision then

    # --- claims ---------------------------------------------------------------------------

    async def claim(self, svc: dict, needs: Unclaimed, claims: Claims, *, dry_run: bool) -> None:
        """Claim what ``needs`` lists for ``svc`` into ``claims``; 422 for a named value
        that is out of range or taken, 500 for a full range."""
        owner = _owner(svc)
        for ip in needs.ips:
            await self._claim_named(True, ip, owner, dry_run, Path("spec").child("clusterIPs"))
            claims.named_ips.add(ip)
        for i, port in needs.ports:
            at = Path("spec").child("ports").index(i).child("nodePort")
            await self._claim_named(False, port, owner, dry_run, at)
            claims.named_ports.add(port)
        if needs.fresh_ip:
            claims.fresh_ips.append(await self._claim_fresh(True, owner, dry_run))
        for _ in range(needs.fresh_ports):
            claims.fresh_ports.append(await self._claim_fresh(False, owner, dry_run))

    async def _claim_named(self, ip: bool, value: Any, owner, dry_run: bool, at: Path) -> None:
        space = self.ips if ip else self.node_ports
        if space.index(value) is None:
            if ip:
                why = (f"failed to allocate IP {value}: the provided IP ({value}) is not in "
                       f"the valid range. The range of valid IPs is {space}")  # fmt: skip
            else:
                why = ("provided port is not in the valid range. The range of valid ports "
                       f"is {space}")  # fmt: skip
            raise _invalid(owner, at, [value] if ip else value, why)
        if not await self._try(space.key(value), _record(ip, value, owner), dry_run):
            if ip:
                why = f"failed to allocate IP {value}: provided IP is already allocated"
            else:
                why = "provided port is already allocated"
            raise _invalid(owner, at, [value] if ip else value, why)

    async def _claim_fresh(self, ip: bool, owner, dry_run: bool) -> Any:
        space = self.ips if ip else self.node_ports
        band = space.band
        for _ in range(RANDOM_TRIES):
            value = space.value(self.rng.randrange(band, space.size))
            if await self._try(space.key(value), _record(ip, value, owner), dry_run):
                return value
        # Crowded: scan for a free value, from a random start in the upper part.
        while True:
            taken = await self._taken(ip)
            start = self.rng.randrange(band, space.size)
            order = (range(start, space.size), range(band, start), range(band))
            free = next((i for r in order for i in r if space.value(i) not in taken), None)
            if free is None:
                what = "serviceIP" if ip else "nodePort"
                raise errors.internal(f"failed to allocate a {what}: range is full")
            value = space.value(free)
            if await self._try(space.key(value), _record(ip, value, owner), dry_run):
                return value

    async def _try(self, key: bytes, record: bytes, dry_run: bool) -> bool:
        """Claim ``key`` if nobody holds it (a dry run only looks)."""
        if dry_run:
            return not (await self.etcd.get(key, count_only=True)).count
        absent = Compare(key, CompareTarget.CREATE, CompareResult.EQUAL, create_revision=0)
        return (await self.etcd.txn([absent], [PutRequest(key, record)])).succeeded

    async def _taken(self, ip: bool) -> set:
        prefix = IP_PREFIX if ip else PORT_PREFIX
        got = await self.etcd.get(prefix, prefix_end(prefix), keys_only=True)
        names = (kv.key[len(prefix) :].decode() for kv in got.kvs)
        return set(names) if ip else {int(n) for n in names if n.isdigit()}

    # --- releases -------------------------------------------------------------------------

    async def release(self, owner: tuple[str, str], ips: set[str], ports: set[int]) -> None:
        """Let go of values claimed for ``owner``; each only if still claimed for it. A
        release that fails is logged and left to ``repair``: the write it follows stands."""
        values = [(True, ip, self.ips.key(ip)) for ip in sorted(ips)
                  if self.ips.index(ip) is not None]  # fmt: skip
        values += [(False, port, self.node_ports.key(port)) for port in sorted(ports)]
        for ip, value, key in values:
            mine = Compare(key, CompareTarget.VALUE, CompareResult.EQUAL,
                           value=_record(ip, value, owner))  # fmt: skip
            try:
                await self.etcd.txn([mine], [DeleteRangeRequest(key)])
            except EtcdError as e:
                log.warning("releasing %s for %s/%s failed (%s); repair will", value, *owner, e)

    # --- repair ---------------------------------------------------------------------------

    async def repair(self, services: ResourceType) -> RepairReport:
        """One pass of the repair controllers (see the module rules)."""
        prefix = services.prefix()
        got = await self.etcd.get(prefix, prefix_end(prefix))
        revision = got.header.revision
        holders: dict[bytes, tuple[bool, Any, tuple[str, str]]] = {}
        for kv in got.kvs:
            try:
                svc = json.loads(kv.value)
            except ValueError:
                continue
            for value in held_ips(svc):
                if self.ips.index(value) is not None:
                    holders[self.ips.key(value)] = (True, value, _owner(svc))
            for value in held_node_ports(svc):
                if self.node_ports.index(value) is not None:
                    holders[self.node_ports.key(value)] = (False, value, _owner(svc))
        claimed: dict[bytes, Any] = {}
        for space_prefix in (IP_PREFIX, PORT_PREFIX):
            keys = await self.etcd.get(space_prefix, prefix_end(space_prefix), revision=revision)
            claimed.update((kv.key, kv) for kv in keys.kvs)
        released, suspects = [], {}
        for key, kv in claimed.items():
            holder = holders.get(key)
            if holder is not None and holder[2] == _record_owner(kv.value):
                continue
            if self._suspects.get(key) == kv.mod_revision:
                same = Compare(key, CompareTarget.MOD, CompareResult.EQUAL,
                               mod_revision=kv.mod_revision)  # fmt: skip
                if (await self.etcd.txn([same], [DeleteRangeRequest(key)])).succeeded:
                    released.append(key)
                    log.info("released %s: claimed by no service", key.decode())
            else:
                suspects[key] = kv.mod_revision
        again = []
        for key, (ip, value, owner) in holders.items():
            if key not in claimed and await self._try(key, _record(ip, value, owner), False):
                again.append(key)
                log.info("claimed %s again for %s/%s", key.decode(), *owner)
        self._suspects = suspects
        return RepairReport(tuple(released), tuple(again), tuple(suspects))


def _invalid(owner: tuple[str, str], at: Path, value: Any, why: str) -> errors.ApiError:
    return errors.invalid("Service", "", owner[1], [FieldError.invalid(at, value, why)])


# --- the Service registry ---------------------------------------------------------------------


def _is_services(rt: ResourceType) -> bool:
    return rt.group == "" and rt.plural == "services"


class ServiceStore(ObjectStore):
    """An ``ObjectStore`` whose Service writes claim and release cluster IPs and node
    ports through ``allocations`` (Kubernetes' service REST storage around the generic
    registry store); every other resource is stored as ``ObjectStore`` stores it."""

    def __init__(self, etcd: EtcdClient, *, clock: Callable[[], float], rng: random.Random,
                 allocations: ServiceAllocations, event_ttl: int = EVENT_TTL) -> None:  # fmt: skip
        super().__init__(etcd, clock=clock, rng=rng, event_ttl=event_ttl)
        self.allocations = allocations

    async def create(
        self, rt: ResourceType, obj: dict, *, uid: str = "", dry_run: bool = False
    ) -> dict:
        if not _is_services(rt):
            return await super().create(rt, obj, uid=uid, dry_run=dry_run)
        claims = Claims()
        while True:
            try:
                assigned = assign(obj, None, claims)
                break
            except Unclaimed as needs:
                await self._claim(obj, needs, claims, dry_run)
        try:
            return await super().create(rt, assigned, uid=uid, dry_run=dry_run)
        except errors.ApiError:
            await self._release(obj, claims.ips(), claims.node_ports(), dry_run)
            raise

    async def update(self, rt: ResourceType, namespace: str, name: str,
                     change: Callable[[dict], dict], *, expect: str = "", dry_run: bool = False,
                     guess: dict | None = None) -> dict:  # fmt: skip
        if not _is_services(rt):
            return await super().update(rt, namespace, name, change, expect=expect,
                                        dry_run=dry_run, guess=guess)  # fmt: skip
        claims = Claims()
        seen: list[dict] = []  # the object each try changed; the last one was replaced

        def allocating(current: dict) -> dict:
            seen.append(current)
            return assign(change(current), current, claims)

        while True:
            try:
                result = await super().update(rt, namespace, name, allocating, expect=expect,
                                              dry_run=dry_run, guess=guess)  # fmt: skip
                break
            except Unclaimed as needs:
                guess = None
                await self._claim(seen[-1], needs, claims, dry_run)
            except errors.ApiError:
                owner = seen[-1] if seen else {"metadata": {"namespace": namespace, "name": name}}
                await self._release(owner, claims.ips(), claims.node_ports(), dry_run)
                raise
        m = meta(result)
        kept = None if m.get("deletionTimestamp") and not m.get("finalizers") else result
        old = seen[-1]
        await self._release(old, (held_ips(old) | claims.ips()) - held_ips(kept),
                            (held_node_ports(old) | claims.node_ports()) - held_node_ports(kept),
                            dry_run)  # fmt: skip
        return result

    async def delete(self, rt: ResourceType, namespace: str, name: str, **options: Any):
        obj, gone = await super().delete(rt, namespace, name, **options)
        if _is_services(rt) and gone:
            await self._release(obj, held_ips(obj), held_node_ports(obj),
                                options.get("dry_run", False))  # fmt: skip
        return obj, gone

    async def _claim(self, svc: dict, needs: Unclaimed, claims: Claims, dry_run: bool) -> None:
        try:
            await self.allocations.claim(svc, needs, claims, dry_run=dry_run)
        except errors.ApiError:
            await self._release(svc, claims.ips(), claims.node_ports(), dry_run)
            raise

    async def _release(self, svc: dict, ips: set[str], ports: set[int], dry_run: bool) -> None:
        if dry_run or not (ips or ports):
            return
        # Shielded, so that a cancelled request does not leave a value half released,
        # but bounded: while the process shuts down etcd may never answer (its members
        # and the actor timers are gone), and what is not released the repair pass frees.
        with trio.CancelScope(shield=True, deadline=trio.current_time() + RELEASE_TIMEOUT):
            await self.allocations.release(_owner(svc), ips, ports)


# --- the repair loop ------------------------------------------------------------------------


@message(tag="apiserver._RepairAllocations")
class _Repair:
    pass


class AllocationRepair(Actor):
    """Runs ``ServiceAllocations.repair`` every ``interval`` seconds, for as long as the
    API server lives (kube-apiserver's repair controllers for IPs and node ports)."""

    def __init__(self, allocations: ServiceAllocations, services: ResourceType,
                 interval: float = REPAIR_INTERVAL) -> None:  # fmt: skip
        self.allocations = allocations
        self.services = services
        self.interval = interval

    async def started(self) -> None:
        self.ref.tell(_Repair())

    @handler
    async def on_repair(self, msg: _Repair) -> None:
        while True:
            await trio.sleep(self.interval)
            try:
                await self.allocations.repair(self.services)
            except EtcdError as e:
                log.warning("service allocation repair failed: %s", e)

