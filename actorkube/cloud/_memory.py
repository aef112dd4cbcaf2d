"""A cloud that lives in memory: instances, routes and load balancers, with controls
that make its calls fail or take time (for tests and the simulation).

Rules of this file:

- Instances have ids ``i-00000001``, ``i-00000002``... in creation order and provider
  IDs ``inmemory://<id>``. A node's instance is the one its ``spec.providerID`` names
  when set (an ID of another provider is a ``CloudError``), else the one named as the
  node, as real providers find it. A terminated instance is gone for good: its name
  may be taken by a new instance, with a new id. A shut down instance exists and is
  stopped until it is started again.
- Every provider call is recorded in ``calls``, then waits ``latency`` seconds
  (``trio.sleep``: virtual time under a MockClock), then fails if ``fail`` asked for it,
  in that order: a failing call takes its time too. Injected failures are used up in
  the order calls arrive, so a seeded simulation fails the same calls every run.
- Load balancers: one per cluster and service (named as Kubernetes names them by
  default: ``a`` and the service's uid without dashes, 32 characters at most). Each
  holds an address of ``load_balancer_network`` (the lowest free one, or the service's
  ``spec.loadBalancerIP`` if it asks for a free one of them) from its creation to its
  deletion. Its frontends are the service's TCP and UDP ports on that address, and a
  frontend's backends are the port's ``nodePort`` on each node's InternalIP (nodes in
  name order; a node without one is left out). A port without a node port, or of
  another protocol, cannot be balanced: the call fails and changes nothing.
- With ``real_load_balancers`` each frontend is a listener forwarding real traffic
  (see ``_lb``), served while ``run`` runs; without, the cloud keeps the same records
  and opens no socket (the deterministic simulation).
- Routes are kept per cluster by name (``<cluster>-<name hint>``); a route whose
  target node has no instance lists as a blackhole.
- The controls (``create_instance``, ``terminate``, ``fail``, ``latency``...) are the
  test's or the simulation's hand on the cloud, not provider calls: they are not
  recorded, delayed or failed.
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from actorkube.forwarding import Backend, Entry, Frontend, ProxyStats

from ._lb import Listeners
from ._provider import (
    CloudError,
    InstanceMetadata,
    InstanceNotFound,
    LoadBalancerIngress,
    LoadBalancerStatus,
    Node,
    NodeAddress,
    Route,
    Service,
)

PROVIDER = "inmemory"
PREFIX = f"{PROVIDER}://"
FOREVER = math.inf
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
DEFAULT_LB_NETWORK = "127.200.0.0/16"
LB_UDP_IDLE = 30.0  # seconds: cloud load balancers keep UDP flows far longer than kube-proxy
PROVIDER_CALLS = frozenset({
    "instance_exists", "instance_shutdown", "instance_metadata", "get_load_balancer",
    "ensure_load_balancer", "update_load_balancer", "ensure_load_balancer_deleted",
    "list_routes", "create_route", "delete_route",
})  # fmt: skip
PROTOCOLS = ("TCP", "UDP")


@attrs.frozen
class Instance:
    """A machine of the cloud; ``running`` is False while it is shut down."""

    id: str
    name: str
    instance_type: str = ""
    zone: str = ""
    region: str = ""
    addresses: tuple[NodeAddress, ...] = ()
    running: bool = True

    @property
    def provider_id(self) -> str:
        return f"{PREFIX}{self.id}"

    def metadata(self) -> InstanceMetadata:
        return InstanceMetadata(self.provider_id, self.instance_type, self.zone, self.region,
                                self.addresses)  # fmt: skip


@attrs.frozen
class LoadBalancerPort:
    """A service port as balanced: ``port`` on the load balancer's address forwards to
    ``node_port`` on each node."""

    name: str
    port: int
    protocol: str
    node_port: int


@attrs.frozen
class LoadBalancer:
    """One load balancer: its cluster, service (``namespace/name``), address, ports,
    nodes (names) and their InternalIPs (``hosts``, in the same order, nodes without one
    left out)."""

    name: str
    cluster: str
    service: str
    ip: str
    ports: tuple[LoadBalancerPort, ...]
    nodes: tuple[str, ...]
    hosts: tuple[str, ...]

    def frontends(self) -> dict[Frontend, Entry]:
        """Each frontend and its entry: the node port on every host."""
        entries = {}
        for p in self.ports:
            label = f"{self.service}:{p.name}" if p.name else self.service
            backends = tuple(Backend(host, p.node_port) for host in self.hosts)
            entries[Frontend(self.ip, p.port, p.protocol)] = Entry(label, backends)
        return entries

    def status(self) -> LoadBalancerStatus:
        return LoadBalancerStatus((LoadBalancerIngress(ip=self.ip),))


@attrs.frozen
class Call:
    """A provider call as the cloud saw it: the method, what it was about (a node, a
    ``namespace/name`` service, a route or cluster), and whether it was made to fail."""

    method: str
    subject: str
    failed: bool = False


@attrs.define
class _Failure:
    times: float
    error: Exception


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, Mapping) else {}


def _service_key(service: Service) -> str:
    m = _meta(service)
    return f"{m.get('namespace', '')}/{m.get('name', '')}"


def _internal_ip(node: Node) -> str | None:
    status = node.get("status")
    addresses = status.get("addresses") if isinstance(status, Mapping) else None
    for a in addresses if isinstance(addresses, list) else ():
        if isinstance(a, Mapping) and a.get("type") == "InternalIP" and a.get("address"):
            return str(a["address"])
    return None


def _ports(service: Service) -> tuple[LoadBalancerPort, ...]:
    """The service's ports as balanced; ``CloudError`` for one that cannot be."""
    spec = service.get("spec")
    ports = spec.get("ports") if isinstance(spec, Mapping) else None
    balanced = []
    for p in ports if isinstance(ports, list) else ():
        if not isinstance(p, Mapping):
            continue
        port, protocol, node_port = p.get("port"), p.get("protocol", "TCP"), p.get("nodePort")
        if protocol not in PROTOCOLS:
            raise CloudError(f"port {port}/{protocol}: the {PROVIDER} cloud's load balancers "
                             f"forward TCP and UDP only")  # fmt: skip
        if not isinstance(node_port, int) or not isinstance(port, int):
            raise CloudError(f"port {port}/{protocol} has no nodePort: the {PROVIDER} cloud's "
                             f"load balancers forward to node ports")  # fmt: skip
        balanced.append(LoadBalancerPort(str(p.get("name") or ""), port, protocol, node_port))
    return tuple(balanced)


class InMemoryCloud:
    """The in-memory cloud (see the module rules). ``real_load_balancers``: listen and
    forward for real (then run the cloud: ``async with InMemoryCloud.open()`` or
    ``await nursery.start(cloud.run)``); ``load_balancer_network``: where load balancer
    addresses come from (inside 127.0.0.0/8 for real ones: Linux routes all of it to the
    loopback device, so they are bound without network setup);
    ``udp_idle_timeout``: seconds a load balancer's UDP session lasts idle."""

    name = PROVIDER

    def __init__(self, *, real_load_balancers: bool = True,
                 load_balancer_network: str = DEFAULT_LB_NETWORK,
                 udp_idle_timeout: float = LB_UDP_IDLE) -> None:  # fmt: skip
        network = ipaddress.IPv4Network(load_balancer_network)
        if real_load_balancers and not network.subnet_of(LOOPBACK):
            raise ValueError(f"load balancer network {network} is not inside 127.0.0.0/8: "
                             "only loopback addresses can be bound without network setup")
        self.real_load_balancers = real_load_balancers
        self.network = network
        self.instances_by_id: dict[str, Instance] = {}
        self.load_balancers: dict[tuple[str, str], LoadBalancer] = {}  # (cluster, name) ->
        self.routes_by_cluster: dict[str, dict[str, Route]] = {}
        self.calls: list[Call] = []
        self._latency = 0.0
        self._failures: dict[str, _Failure] = {}
        self._next_id = 0
        self._addresses: set[str] = set()
        self._lock = trio.Lock()  # one load balancer change at a time
        self._listeners = Listeners(udp_idle_timeout=udp_idle_timeout)

    # --- running the load balancers -----------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def open(cls, **options: Any) -> AsyncIterator[InMemoryCloud]:
        """A cloud whose load balancers serve inside this block."""
        cloud = cls(**options)
        async with trio.open_nursery() as nursery:
            await nursery.start(cloud.run)
            yield cloud
            nursery.cancel_scope.cancel()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve the load balancers' listeners until cancelled (then they close)."""
        await self._listeners.run(task_status=task_status)

    @property
    def load_balancer_stats(self) -> ProxyStats:
        """What the real load balancers forwarded (kube-proxy's counters)."""
        return self._listeners.stats

    @property
    def addresses(self) -> frozenset[str]:
        """The load balancer addresses in use."""
        return frozenset(self._addresses)

    def listening(self, ip: str) -> dict[Frontend, Entry]:
        """The real listeners open on ``ip`` and what they forward to."""
        return self._listeners.programmed(ip)

    # --- the parts the cloud offers ------------------------------------------------------

    def instances(self) -> InMemoryCloud:
        return self

    def load_balancer(self) -> InMemoryCloud:
        return self

    def routes(self) -> InMemoryCloud:
        return self

    # --- controls ------------------------------------------------------------------------

    def create_instance(self, name: str, *, instance_type: str = "", zone: str = "",
                        region: str = "",
                        addresses: Sequence[NodeAddress] = ()) -> Instance:  # fmt: skip
        """A new running instance; ``ValueError`` if one of that name exists."""
        if self._named(name) is not None:
            raise ValueError(f"an instance named {name!r} exists already")
        self._next_id += 1
        instance = Instance(f"i-{self._next_id:08x}", name, instance_type, zone, region,
                            tuple(addresses))  # fmt: skip
        self.instances_by_id[instance.id] = instance
        return instance

    def instance(self, name: str) -> Instance | None:
        """The instance named ``name``, if any."""
        return self._named(name)

    def terminate(self, name: str) -> None:
        """The instance is gone for good."""
        del self.instances_by_id[self._existing(name).id]

    def shutdown(self, name: str) -> None:
        instance = self._existing(name)
        self.instances_by_id[instance.id] = attrs.evolve(instance, running=False)

    def start(self, name: str) -> None:
        instance = self._existing(name)
        self.instances_by_id[instance.id] = attrs.evolve(instance, running=True)

    def fail(self, method: str, times: float = 1, error: Exception | None = None) -> None:
        """Make the next ``times`` calls of ``method`` (``FOREVER``: all of them, until
        ``heal``) raise ``error`` (a ``CloudError`` by default)."""
        if method not in PROVIDER_CALLS:
            raise ValueError(f"{method!r} is not a provider call; one of {sorted(PROVIDER_CALLS)}")
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        if error is None:
            error = CloudError(f"{PROVIDER}: {method} failed (injected)")
        self._failures[method] = _Failure(times, error)

    def heal(self, method: str | None = None) -> None:
        """Forget the failures asked of ``method`` (of every method: None)."""
        if method is None:
            self._failures.clear()
        else:
            self._failures.pop(method, None)

    def latency(self, seconds: float) -> None:
        """Every provider call from now on takes ``seconds``."""
        if seconds < 0:
            raise ValueError(f"latency must not be negative, not {seconds}")
        self._latency = seconds

    def call_counts(self) -> Counter[str]:
        """How many times each provider method was called."""
        return Counter(c.method for c in self.calls)

    def load_balancer_of(self, service: str,
                         cluster_name: str = "kubernetes") -> LoadBalancer | None:  # fmt: skip
        """The load balancer of the service ``namespace/name`` in ``cluster_name``."""
        return next((lb for (cluster, _), lb in self.load_balancers.items()
                     if cluster == cluster_name and lb.service == service), None)  # fmt: skip

    # --- Instances -----------------------------------------------------------------------

    async def instance_exists(self, node: Node) -> bool:
        await self._call("instance_exists", _meta(node).get("name", ""))
        return self._of(node) is not None

    async def instance_shutdown(self, node: Node) -> bool:
        await self._call("instance_shutdown", _meta(node).get("name", ""))
        instance = self._of(node)
        return instance is not None and not instance.running

    async def instance_metadata(self, node: Node) -> InstanceMetadata:
        name = _meta(node).get("name", "")
        await self._call("instance_metadata", name)
        instance = self._of(node)
        if instance is None:
            raise InstanceNotFound(f"no instance for node {name!r}")
        return instance.metadata()

    # --- LoadBalancers -------------------------------------------------------------------

    def load_balancer_name(self, cluster_name: str, service: Service) -> str:
        uid = str(_meta(service).get("uid") or "").replace("-", "")
        if not uid:  # an object not from the API: name it by what it is called
            return f"a{_service_key(service).replace('/', '-')}"[:32]
        return f"a{uid}"[:32]

    async def get_load_balancer(self, cluster_name: str,
                                service: Service) -> LoadBalancerStatus | None:  # fmt: skip
        await self._call("get_load_balancer", _service_key(service))
        lb = self.load_balancers.get((cluster_name, self.load_balancer_name(cluster_name, service)))
        return lb.status() if lb is not None else None

    async def ensure_load_balancer(self, cluster_name: str, service: Service,
                                   nodes: Sequence[Node]) -> LoadBalancerStatus:  # fmt: skip
        await self._call("ensure_load_balancer", _service_key(service))
        self._check_running()
        async with self._lock:
            key = (cluster_name, self.load_balancer_name(cluster_name, service))
            old = self.load_balancers.get(key)
            ports = _ports(service)
            ip = self._address_for(service, old)
            names, hosts = self._hosts(nodes)
            lb = LoadBalancer(key[1], cluster_name, _service_key(service), ip, ports, names, hosts)
            self.load_balancers[key] = lb
            if old is not None and old.ip != ip:
                self._unprogram(old)
            await self._program(lb)
            return lb.status()

    async def update_load_balancer(self, cluster_name: str, service: Service,
                                   nodes: Sequence[Node]) -> None:  # fmt: skip
        await self._call("update_load_balancer", _service_key(service))
        self._check_running()
        async with self._lock:
            key = (cluster_name, self.load_balancer_name(cluster_name, service))
            old = self.load_balancers.get(key)
            if old is None:
                raise CloudError(f"load balancer {key[1]} of {_service_key(service)} not found")
            names, hosts = self._hosts(nodes)
            lb = self.load_balancers[key] = attrs.evolve(old, nodes=names, hosts=hosts)
            await self._program(lb)

    async def ensure_load_balancer_deleted(self, cluster_name: str, service: Service) -> None:
        await self._call("ensure_load_balancer_deleted", _service_key(service))
        async with self._lock:
            key = (cluster_name, self.load_balancer_name(cluster_name, service))
            lb = self.load_balancers.pop(key, None)
            if lb is not None:
                self._unprogram(lb)

    # --- Routes --------------------------------------------------------------------------

    async def list_routes(self, cluster_name: str) -> list[Route]:
        await self._call("list_routes", cluster_name)
        names = {i.name for i in self.instances_by_id.values()}
        return [attrs.evolve(r, blackhole=r.target_node not in names)
                for r in self.routes_by_cluster.get(cluster_name, {}).values()]  # fmt: skip

    async def create_route(self, cluster_name: str, name_hint: str, route: Route) -> None:
        # The CIDR in the name too: a dual-stack node has two routes with one hint.
        name = f"{cluster_name}-{name_hint}-{route.destination_cidr.replace('/', '-')}"
        await self._call("create_route", name)
        self.routes_by_cluster.setdefault(cluster_name, {})[name] = attrs.evolve(
            route, name=name, blackhole=False)

    async def delete_route(self, cluster_name: str, route: Route) -> None:
        await self._call("delete_route", route.name)
        self.routes_by_cluster.get(cluster_name, {}).pop(route.name, None)

    # --- inside --------------------------------------------------------------------------

    async def _call(self, method: str, subject: str) -> None:
        failure = self._failures.get(method)
        if failure is not None:
            failure.times -= 1
            if failure.times <= 0:
                del self._failures[method]
        self.calls.append(Call(method, subject, failure is not None))
        if self._latency:
            await trio.sleep(self._latency)
        if failure is not None:
            raise failure.error

    def _named(self, name: str) -> Instance | None:
        return next((i for i in self.instances_by_id.values() if i.name == name), None)

    def _existing(self, name: str) -> Instance:
        instance = self._named(name)
        if instance is None:
            raise KeyError(f"no instance named {name!r}")
        return instance

    def _of(self, node: Node) -> Instance | None:
        m = _meta(node)
        spec = node.get("spec")
        provider_id = spec.get("providerID") if isinstance(spec, Mapping) else None
        if not provider_id:
            return self._named(str(m.get("name", "")))
        if not str(provider_id).startswith(PREFIX):
            raise CloudError(f"node {m.get('name')!r} has provider ID {provider_id!r}, "
                             f"not one of the {PROVIDER} cloud's")  # fmt: skip
        return self.instances_by_id.get(str(provider_id)[len(PREFIX):])

    @staticmethod
    def _hosts(nodes: Sequence[Node]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        named = sorted(((str(_meta(n).get("name", "")), _internal_ip(n)) for n in nodes),
                       key=lambda pair: pair[0])
        return tuple(n for n, _ in named), tuple(ip for _, ip in named if ip)

    def _address_for(self, service: Service, old: LoadBalancer | None) -> str:
        """The load balancer's address: the one it has, unless the service asks for
        another (``spec.loadBalancerIP``); else the lowest free one."""
        spec = service.get("spec")
        wanted = spec.get("loadBalancerIP") if isinstance(spec, Mapping) else None
        if wanted and (old is None or old.ip != wanted):
            try:
                requested = ipaddress.IPv4Address(wanted)
            except ValueError:
                raise CloudError(f"loadBalancerIP {wanted!r} is not an IPv4 address") from None
            if requested not in self.network or wanted in self._addresses:
                raise CloudError(f"loadBalancerIP {wanted} is not a free address of "
                                 f"{self.network}")  # fmt: skip
            if old is not None:
                self._addresses.discard(old.ip)
            self._addresses.add(wanted)
            return wanted
        if old is not None:
            return old.ip
        for host in self.network.hosts():
            if str(host) not in self._addresses:
                self._addresses.add(str(host))
                return str(host)
        raise CloudError(f"no load balancer address left in {self.network}")

    def _check_running(self) -> None:
        if self.real_load_balancers and not self._listeners.running:
            raise RuntimeError("the cloud's load balancers are not running: open the cloud "
                               "with `async with InMemoryCloud.open()` or start `cloud.run`")

    async def _program(self, lb: LoadBalancer) -> None:
        if self.real_load_balancers:
            await self._listeners.program(lb.ip, lb.frontends())

    def _unprogram(self, lb: LoadBalancer) -> None:
        self._addresses.discard(lb.ip)
        if self.real_load_balancers:
            self._listeners.close(lb.ip)
