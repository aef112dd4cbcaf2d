"""``start_apiserver``: the API server's actors in an actor system, in one call.

Rules of this file:

- One watch cache per resource, each kept in step with etcd by a feeder actor; RBAC
  reads Roles, ClusterRoles and their bindings from their caches, so a new binding
  takes effect as soon as the cache has it.
- On start the server writes what kube-apiserver's bootstrap writes, if missing: the
  namespaces default, kube-system, kube-public and kube-node-lease, the bootstrap
  ClusterRoles and the bindings that give every authenticated user discovery, the
  bootstrap Roles and RoleBindings (node bootstrap's, see ``_rbac``), and a
  ``default`` service account in each of those namespaces (for other namespaces that
  is the service-account controller's job).
- Beside the handler run the repair of Service allocations and the etcd compactor
  (``_compaction``: every 5 minutes, as kube-apiserver's).
- CertificateSigningRequests' writes are served by ``CsrHandler`` (``_csr_handler``).
- Given a metrics server's address, the server serves metrics.k8s.io from it (as
  kube-apiserver does once metrics-server's APIService is registered); without one that
  API does not exist (see ``_metricsapi``).
"""

from __future__ import annotations

import ipaddress
import random
import secrets
import uuid
from collections.abc import Callable, Iterable

import attrs
import trio

from actorkube.actor import Actor, ActorRef, ActorSystem, Address, handler, message
from actorkube.etcd import EtcdClient, EtcdError

from . import _errors as errors
from ._admission import default_chain
from ._authn import (
    BOOTSTRAP_TOKEN_NAMESPACE,
    Authenticator,
    ServiceAccountTokens,
    new_signing_key,
)
from ._builtin import builtin_registry
from ._compaction import DEFAULT_INTERVAL as DEFAULT_COMPACTION_INTERVAL
from ._compaction import Compactor
from ._csr_handler import CsrHandler
from ._handler import Handler
from ._kubernetesservice import KubernetesService
from ._rbac import (
    ALL_AUTHENTICATED,
    PrivilegedGroups,
    RBACAuthorizer,
    UserInfo,
    default_cluster_role_bindings,
    default_cluster_roles,
    default_role_bindings,
    default_roles,
    union,
)
from ._registry import Registry
from ._server import ApiServer
from ._services import (
    DEFAULT_NODE_PORT_RANGE,
    DEFAULT_SERVICE_CIDR,
    AllocationRepair,
    IPRange,
    PortRange,
    ServiceAllocations,
    ServiceStore,
)
from ._storage import EVENT_TTL, ObjectStore
from ._watchcache import DELETED, RESET, WatchCache, feed

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
LOOPBACK_USER = "system:apiserver"
RBAC_KINDS = ("roles", "clusterroles", "rolebindings", "clusterrolebindings")


@message(tag="apiserver._Feed")
class _Feed:
    pass


class _CacheFeeder(Actor):
    """Runs ``feed`` for one cache, for as long as it lives."""

    def __init__(self, cache: WatchCache, etcd: EtcdClient, bookmark_interval: float) -> None:
        self.cache = cache
        self.etcd = etcd
        self.bookmark_interval = bookmark_interval

    async def started(self) -> None:
        self.ref.tell(_Feed())

    @handler
    async def on_feed(self, msg: _Feed) -> None:
        await feed(self.cache, self.etcd, bookmark_interval=self.bookmark_interval)


@attrs.define
class ApiServerHandle:
    """What ``start_apiserver`` started: ``ref`` takes ``ApiRequest``s; ``store``,
    ``caches`` and ``handler`` are the server's own (for tests and the HTTP front end);
    ``service_accounts`` issues tokens."""

    ref: ActorRef
    registry: Registry
    store: ObjectStore
    caches: dict[tuple[str, str], WatchCache]
    service_accounts: ServiceAccountTokens
    feeders: list[ActorRef]
    handler: Handler
    system: ActorSystem
    name: str
    loopback: str  # the server's own token (see ``start_apiserver``)
    cluster_ip: str  # the ``kubernetes`` Service's
    # The keeper of the ``kubernetes`` Service and this server's endpoint, once
    # ``advertise`` was called.
    kubernetes_service: KubernetesService | None = None
    kubernetes_service_ref: ActorRef | None = None

    def advertise(self, address: str) -> None:
        """From now on keep the ``default/kubernetes`` Service and this server's
        endpoint in it, at ``address`` (``IP:PORT`` where clients reach this server's
        HTTPS; ``ValueError`` if it is not one, or if the server advertises already)."""
        server = _advertised(address)
        if self.kubernetes_service is not None:
            raise ValueError(f"this API server advertises {self.kubernetes_service.advertise}")
        from actorkube.client import ApiClient  # it imports this package's messages

        client = ApiClient(self.system, self.ref, token=self.loopback, timeout=30)
        keeper = KubernetesService(client, self.store.etcd, advertise=server,
                                   cluster_ip=self.cluster_ip)  # fmt: skip
        self.kubernetes_service = keeper
        self.kubernetes_service_ref = self.system.spawn(
            lambda: keeper, name=f"{self.name}-kubernetes-service")

    async def ready(self) -> None:
        """Until every cache has its first list and the RBAC caches hold what the
        bootstrap wrote, so that the first requests meet the bootstrap policy (as
        kube-apiserver waits for its RBAC informers before it serves)."""
        for cache in self.caches.values():
            await cache.ready.wait()
        for plural in RBAC_KINDS:
            cache = self.caches[("rbac.authorization.k8s.io", plural)]
            while True:
                try:
                    current = await self.store.current_revision(cache.rt)
                except errors.ApiError:  # etcd has no leader for now
                    await trio.sleep(0.1)
                    continue
                if await cache.wait_fresh(current):
                    break


async def start_apiserver(
    system: ActorSystem,
    etcd: EtcdClient,
    *,
    name: str = "apiserver",
    tokens: dict[str, UserInfo] | None = None,
    anonymous: bool = False,
    service_account_key: bytes | None = None,
    client_ca: bytes | None = None,
    audit: Callable[[dict], None] | None = None,
    seed: int | None = None,
    workers: int = 32,
    cache_capacity: int | None = None,
    bookmark_interval: float = 60.0,
    service_cidr: str = DEFAULT_SERVICE_CIDR,
    service_node_port_range: str = DEFAULT_NODE_PORT_RANGE,
    compaction_interval: float = DEFAULT_COMPACTION_INTERVAL,
    metrics_server: str | None = None,
    event_ttl: int = EVENT_TTL,
    advertise: str | None = None,
    disable_admission_plugins: Iterable[str] = (),
) -> ApiServerHandle:
    """Start the API server on ``etcd`` and bootstrap the cluster's defaults (see the
    module rules). ``tokens``: bearer token -> user (a parsed token file);
    ``client_ca``: the PEM CA whose client certificates authenticate users; ``seed``
    makes uids and generated names reproducible. ``service_cidr`` and
    ``service_node_port_range``: where Services' cluster IPs and node ports come from
    (kube-apiserver's --service-cluster-ip-range and --service-node-port-range;
    ``ValueError`` if malformed). ``compaction_interval``: how often etcd's history is
    compacted (--etcd-compaction-interval; 0: never). ``metrics_server``: the address
    of a metrics server (``actorkube.metrics.MetricsServer``) to serve metrics.k8s.io
    from. ``event_ttl``: how long an Event lives after its last write (seconds,
    --event-ttl; 0: for ever). ``advertise``: ``IP:PORT`` where clients reach this
    server's HTTPS (--advertise-address and --secure-port): given, the server keeps the
    ``default/kubernetes`` Service and its endpoints (``_kubernetesservice``; or later,
    ``handle.advertise``, once the HTTPS port is known).
    ``disable_admission_plugins``: names of admission plugins not to run
    (--disable-admission-plugins; ``ValueError`` for a name not in the chain)."""
    if advertise is not None:
        _advertised(advertise)  # a bad address fails before anything starts
    loopback = secrets.token_urlsafe(32)
    # The server's own client, for what it writes through its API (kube-apiserver's
    # loopback client, as system:apiserver in system:masters).
    tokens = {**(tokens or {}),
              loopback: UserInfo(LOOPBACK_USER, str(uuid.uuid4()),
                                 ("system:masters", ALL_AUTHENTICATED))}  # fmt: skip
    registry = builtin_registry()
    clock = system.clock.now
    allocations = ServiceAllocations(etcd, ips=IPRange.parse(service_cidr),
                                     node_ports=PortRange.parse(service_node_port_range),
                                     rng=random.Random(seed))  # fmt: skip
    store = ServiceStore(etcd, clock=clock, rng=random.Random(seed), allocations=allocations,
                         event_ttl=event_ttl)  # fmt: skip
    caches = {(rt.group, rt.plural): WatchCache(rt, capacity=cache_capacity)
              for rt in registry if rt.stored and rt.watch_cached}  # fmt: skip
    rbac = RBACAuthorizer()
    for plural in RBAC_KINDS:
        caches[("rbac.authorization.k8s.io", plural)].listeners.append(_feed_rbac(rbac, plural))
    accounts = ServiceAccountTokens(service_account_key or new_signing_key())

    async def lookup(resource: str, namespace: str, obj_name: str) -> dict | None:
        rt = registry.resource("", resource)
        cached = caches[("", resource)].objects.get(rt.key(namespace, obj_name))
        if cached is not None:
            return cached
        try:
            return await store.get(rt, namespace, obj_name)
        except errors.ApiError:
            return None

    def account_exists(namespace: str, account: str, uid: str) -> bool:
        rt = registry.resource("", "serviceaccounts")
        found = caches[("", "serviceaccounts")].objects.get(rt.key(namespace, account))
        return found is not None and (not uid or found["metadata"].get("uid") == uid)

    def bound_exists(namespace: str, kind: str, name: str, uid: str) -> bool:
        plural = {"pod": "pods", "secret": "secrets", "node": "nodes"}[kind]
        rt = registry.resource("", plural)
        key = rt.key(namespace if rt.namespaced else "", name)
        found = caches[("", plural)].objects.get(key)
        return found is not None and found["metadata"].get("uid") == uid

    def bootstrap_secret(secret_name: str) -> dict | None:
        # From the watch cache, as kube-apiserver's bootstrap authenticator reads its
        # secret lister: a token works once the cache has its Secret.
        rt = registry.resource("", "secrets")
        return caches[("", "secrets")].objects.get(rt.key(BOOTSTRAP_TOKEN_NAMESPACE, secret_name))

    authenticator = Authenticator(
        tokens=tokens,
        bootstrap_secret=bootstrap_secret,
        service_accounts=accounts,
        account_exists=account_exists,
        bound_exists=bound_exists,
        anonymous=anonymous,
        client_ca=client_ca,
        clock=clock,
    )
    handler_ = CsrHandler(
        registry=registry,
        store=store,
        caches=caches,
        authenticator=authenticator,
        authorizer=union([PrivilegedGroups(), rbac]),
        admission=default_chain(lookup, disabled=disable_admission_plugins, rng=store.rng),
        clock=clock,
        audit=audit,
    )
    handler_.kubelets = system.ref  # pods/log: a kubelet's server, by its address
    if metrics_server is not None:
        address = Address.parse(metrics_server)  # a malformed one is the caller's ValueError
        handler_.resource_metrics = lambda: system.ref(address)
    feeders = [
        system.spawn(
            lambda cache=cache: _CacheFeeder(cache, etcd, bookmark_interval),
            name=f"{name}-cache-{cache.rt.group or 'core'}-{cache.rt.plural}",
        )
        for cache in caches.values()
    ]
    services = registry.resource("", "services")
    system.spawn(lambda: AllocationRepair(allocations, services), name=f"{name}-allocation-repair")
    if compaction_interval:
        system.spawn(lambda: Compactor(etcd, compaction_interval), name=f"{name}-compactor")
    ref = system.spawn(lambda: ApiServer(handler_, workers=workers), name=name)
    handle = ApiServerHandle(ref, registry, store, caches, accounts, feeders, handler_, system,
                             name, loopback, allocations.ips.value(0))  # fmt: skip
    await _bootstrap(registry, store)
    if advertise is not None:
        handle.advertise(advertise)
    return handle


def _advertised(text: str) -> tuple[str, int]:
    """``IP:PORT`` as (IPv4, port); ``ValueError`` if it is not one."""
    ip, sep, port = text.rpartition(":")
    try:
        address = ipaddress.IPv4Address(ip)
        number = int(port)
    except ValueError:
        raise ValueError(f"advertise address {text!r}: want IPv4:PORT") from None
    if not sep or not 0 < number < 65536 or address.is_unspecified:
        raise ValueError(f"advertise address {text!r}: want IPv4:PORT, a port in 1-65535")
    return str(address), number


def _feed_rbac(rbac: RBACAuthorizer, plural: str):
    kind = {
        "roles": "Role",
        "clusterroles": "ClusterRole",
        "rolebindings": "RoleBinding",
        "clusterrolebindings": "ClusterRoleBinding",
    }[plural]
    known: set[tuple[str, str]] = set()

    def listener(event: str, obj: dict | None) -> None:
        if event == RESET:
            for namespace, obj_name in known:
                rbac.delete(kind, namespace, obj_name)
            known.clear()
            return
        m = obj["metadata"]
        key = (m.get("namespace", ""), m["name"])
        if event == DELETED:
            rbac.delete(kind, *key)
            known.discard(key)
        else:
            rbac.upsert({**obj, "kind": kind})
            known.add(key)

    return listener


async def _bootstrap(registry: Registry, store: ObjectStore) -> None:
    async def ensure(rt, obj: dict) -> None:
        # As kube-apiserver's post-start hooks: retry until etcd takes the write.
        backoff = 0.1
        while True:
            try:
                await store.create(rt, obj)
                return
            except errors.ApiError as e:
                if e.reason != "AlreadyExists":
                    raise
                return
            except EtcdError:
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    namespaces = registry.resource("", "namespaces")
    for ns in SYSTEM_NAMESPACES:
        await ensure(
            namespaces,
            namespaces.default({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
    accounts = registry.resource("", "serviceaccounts")
    for ns in SYSTEM_NAMESPACES:
        await ensure(
            accounts,
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": ns},
            },
        )
    cluster_roles = registry.resource("rbac.authorization.k8s.io", "clusterroles")
    for role in default_cluster_roles():
        await ensure(cluster_roles, role)
    bindings = registry.resource("rbac.authorization.k8s.io", "clusterrolebindings")
    for binding in default_cluster_role_bindings():
        await ensure(bindings, binding)
    roles = registry.resource("rbac.authorization.k8s.io", "roles")
    for role in default_roles():
        await ensure(roles, role)
    role_bindings = registry.resource("rbac.authorization.k8s.io", "rolebindings")
    for binding in default_role_bindings():
        await ensure(role_bindings, binding)
