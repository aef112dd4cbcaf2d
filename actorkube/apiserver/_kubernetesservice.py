"""The ``default/kubernetes`` Service and its endpoints: how pods find the API servers
(kube-apiserver's kubernetesservice controller and its lease endpoint reconciler).

Rules of this file:

- Every ``interval`` seconds (10) each API server that advertises an address runs one
  round. First the Service ``kubernetes`` in ``default``: cluster IP the first address
  of the service CIDR, one port ``https`` 443/TCP whose targetPort is the advertised
  port, type ClusterIP, labels ``component=apiserver`` and ``provider=kubernetes``;
  created if missing; its ports and type put back if someone changed them, at the
  server's first round only (Kubernetes corrects them at start only: servers on
  different ports would otherwise rewrite it in turn).
- Then its lease: the key ``/masterleases/<ip>:<port>`` in etcd under an etcd lease of
  ``ttl`` seconds (15), kept alive and written again at each round (a lease etcd lost,
  say after a long pause, is granted again). Kubernetes keys leases by IP alone, since
  its API servers share one port; here several API servers may share 127.0.0.1.
- Then the endpoints, from the leases alive: Endpoints ``kubernetes`` (label
  ``endpointslice.kubernetes.io/skip-mirror=true``), one subset per port with its
  addresses sorted, and one EndpointSlice per subset (label
  ``kubernetes.io/service-name=kubernetes``, no managed-by: the EndpointSlice controller
  leaves it alone), the first named ``kubernetes`` as Kubernetes names its only one, the
  others ``kubernetes-<port>``. Each is written only when it differs; a slice of a port
  no server has any more is deleted. No lease alive (this server's write was lost)
  writes nothing: Kubernetes refuses to erase every endpoint.
- A server that stops (``stopping``) deletes its lease key and reconciles without
  itself, so clients stop being sent to it at once (for at most two intervals, as
  Kubernetes bounds it); a server that dies drops out when its lease expires, within
  ``ttl`` seconds.
- A failed step (etcd or the API unavailable) is logged and the next round tries
  again; the other steps of the round still run (a Service write that fails does not
  keep the lease from being renewed); the rounds never stop the API server.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import trio

from actorkube.actor import Actor, handler, message
from actorkube.etcd import EtcdClient, EtcdError, prefix_end
from actorkube.etcd._mvcc import LEASE_NOT_FOUND

from ._errors import ApiError

if TYPE_CHECKING:  # the client imports the server's messages: no import cycle at run time
    from actorkube.client import ApiClient

log = logging.getLogger("actorkube.apiserver")

NAME = "kubernetes"
NAMESPACE = "default"
PORT_NAME = "https"
SERVICE_PORT = 443
LEASE_PREFIX = b"/masterleases/"
INTERVAL = 10.0  # kube-apiserver's --endpoint-reconciler interval
LEASE_TTL = 15  # its master lease TTL
LOCAL = "127.0.0.1"
SERVICE_LABELS = {"component": "apiserver", "provider": "kubernetes"}
SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
DISCOVERY = "discovery.k8s.io"

Server = tuple[str, int]  # (ip, HTTPS port)


def service(cluster_ip: str, port: int) -> dict[str, Any]:
    """The Service as the API servers keep it."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(SERVICE_LABELS)},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "sessionAffinity": "None",
            "ports": [_service_port(port)],
        },
    }


def _service_port(port: int) -> dict[str, Any]:
    return {"name": PORT_NAME, "protocol": "TCP", "port": SERVICE_PORT, "targetPort": port}


def service_update(current: dict, port: int) -> dict | None:
    """``current`` with its ports and type put back, or None if they are as they should
    be (Kubernetes' getMasterServiceUpdateIfNeeded)."""
    spec = current.get("spec") or {}
    want = _service_port(port)
    ports = spec.get("ports") or []
    same = (
        len(ports) == 1
        and isinstance(ports[0], dict)
        and all(ports[0].get(k) == v for k, v in want.items())
        and spec.get("type") == "ClusterIP"
    )
    if same:
        return None
    return {**current, "spec": {**spec, "type": "ClusterIP", "ports": [want]}}


def advertise_address(bind_host: str, url: str, advertise_ip: str = "") -> str:
    """``IP:PORT`` to advertise for a server serving ``url`` bound to ``bind_host``:
    ``advertise_ip`` if given (--advertise-address), else the bind address if it is one
    IPv4 address, else 127.0.0.1 (listening everywhere or on a name)."""
    port = urlsplit(url).port
    ip = advertise_ip
    if not ip:
        try:
            address = ipaddress.IPv4Address(bind_host)
        except ValueError:
            address = None
        ip = str(address) if address is not None and not address.is_unspecified else LOCAL
    return f"{ip}:{port}"


def lease_key(server: Server) -> bytes:
    return LEASE_PREFIX + f"{server[0]}:{server[1]}".encode()


def parse_lease(value: bytes) -> Server | None:
    """A lease's server, None if the value is not one (written by something else)."""
    try:
        data = json.loads(value)
        ip, port = str(ipaddress.IPv4Address(data["ip"])), data["port"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        return None
    return ip, port


def subsets(servers: Iterable[Server]) -> list[dict[str, Any]]:
    """The Endpoints' subsets: one per port, lowest first, addresses sorted as IPs."""
    by_port: dict[int, set[str]] = {}
    for ip, port in servers:
        by_port.setdefault(port, set()).add(ip)
    return [
        {
            "addresses": [{"ip": ip} for ip in sorted(by_port[port], key=ipaddress.IPv4Address)],
            "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}],
        }
        for port in sorted(by_port)
    ]


def endpoint_slices(subset_list: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The EndpointSlices of ``subset_list``, by name (Kubernetes' endpointSliceFromEndpoints,
    one slice per subset)."""
    slices = {}
    for i, subset in enumerate(subset_list):
        port = subset["ports"][0]["port"]
        name = NAME if i == 0 else f"{NAME}-{port}"
        slices[name] = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": NAMESPACE,
                         "labels": {SERVICE_NAME_LABEL: NAME}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [a["ip"]], "conditions": {"ready": True}}
                          for a in subset["addresses"]],
            "ports": [dict(p) for p in subset["ports"]],
        }  # fmt: skip
    return slices


def _differs(current: dict, want: dict, fields: tuple[str, ...]) -> bool:
    labels = (current.get("metadata") or {}).get("labels") or {}
    want_labels = want["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in want_labels.items()):
        return True
    return any(current.get(f) != want.get(f) for f in fields)


@message(tag="apiserver._KubernetesServiceRound")
class _Round:
    pass


class KubernetesService(Actor):
    """Keeps the ``kubernetes`` Service, this server's lease and the endpoints (see the
    module rules). ``client``: the server's own loopback client; ``advertise``: the
    (IPv4, port) clients reach this server's HTTPS at; ``cluster_ip``: the Service's."""

    def __init__(
        self, client: ApiClient, etcd: EtcdClient, *, advertise: Server, cluster_ip: str,
        interval: float = INTERVAL, ttl: int = LEASE_TTL,
    ) -> None:  # fmt: skip
        self.client = client
        self.etcd = etcd
        self.advertise = advertise
        self.cluster_ip = cluster_ip
        self.interval = interval
        self.ttl = ttl
        self.lease = 0
        self.rounds = 0  # rounds run, failed or not
        self.failures = 0
        self.service_checked = False  # its ports and type put back once, at the start
        self._round_done = trio.Event()

    async def started(self) -> None:
        self.ref.tell(_Round())

    @handler
    async def on_round(self, msg: _Round) -> None:
        while True:
            # Each step on its own: a Service write that fails must not keep this
            # server's lease from being renewed (the others would drop it).
            for step in (self.ensure_service, self.renew_lease, self.reconcile):
                try:
                    await step()
                except (ApiError, EtcdError) as e:
                    self.failures += 1
                    log.warning("the kubernetes service and its endpoints: %s (tried again "
                                "in %gs)", e, self.interval)  # fmt: skip
            self.rounds += 1
            self._round_done.set()
            self._round_done = trio.Event()
            await trio.sleep(self.interval)

    async def wait_rounds(self, n: int) -> None:
        """Return once ``n`` rounds have run since the actor started."""
        while self.rounds < n:
            await self._round_done.wait()

    async def ensure_service(self) -> None:
        current = await self.client.get_if_exists("services", NAME, namespace=NAMESPACE)
        port = self.advertise[1]
        if current is None:
            try:
                await self.client.create("services", service(self.cluster_ip, port),
                                         namespace=NAMESPACE)  # fmt: skip
            except ApiError as e:
                if e.code != 409:  # made by another API server since the read
                    raise
            self.service_checked = True
            return
        if self.service_checked:
            return  # put back at this server's start only, as Kubernetes does
        update = service_update(current, port)
        if update is not None:
            await self.client.update("services", update, namespace=NAMESPACE)
        self.service_checked = True

    async def renew_lease(self) -> None:
        if self.lease:
            try:
                alive = (await self.etcd.lease_keepalive(self.lease)).ttl > 0
            except EtcdError as e:
                if e.error != LEASE_NOT_FOUND:
                    raise
                alive = False
            if not alive:
                self.lease = 0
        if not self.lease:
            self.lease = (await self.etcd.lease_grant(self.ttl)).id
        ip, port = self.advertise
        value = json.dumps({"ip": ip, "port": port}).encode()
        await self.etcd.put(lease_key(self.advertise), value, lease=self.lease)

    async def servers(self) -> list[Server]:
        """The servers whose leases are alive."""
        got = await self.etcd.get(LEASE_PREFIX, prefix_end(LEASE_PREFIX))
        return [s for kv in got.kvs if (s := parse_lease(kv.value)) is not None]

    async def reconcile(self) -> None:
        servers = await self.servers()
        if not servers:
            return
        want_subsets = subsets(servers)
        current = await self.client.get_if_exists("endpoints", NAME, namespace=NAMESPACE)
        body = {"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": NAME, "namespace": NAMESPACE,
                             "labels": {SKIP_MIRROR: "true"}},
                "subsets": want_subsets}  # fmt: skip
        await self._ensure("endpoints", current, body, ("subsets",))
        await self._reconcile_slices(endpoint_slices(want_subsets))

    async def _reconcile_slices(self, want: dict[str, dict[str, Any]]) -> None:
        found = await self.client.list(
            "endpointslices", namespace=NAMESPACE, group=DISCOVERY,
            label_selector=f"{SERVICE_NAME_LABEL}={NAME},!{MANAGED_BY_LABEL}")  # fmt: skip
        have = {s["metadata"]["name"]: s for s in found.get("items") or ()}
        for name, body in want.items():
            await self._ensure("endpointslices", have.get(name), body,
                               ("endpoints", "ports", "addressType"), group=DISCOVERY)  # fmt: skip
        for name in have.keys() - want.keys():
            try:
                await self.client.delete("endpointslices", name, namespace=NAMESPACE,
                                         group=DISCOVERY)  # fmt: skip
            except ApiError as e:
                if e.code != 404:
                    raise

    async def _ensure(self, resource: str, current: dict | None, want: dict,
                      fields: tuple[str, ...], group: str = "") -> None:  # fmt: skip
        """``want`` made, or written over ``current`` (its metadata kept, ``want``'s labels
        added) when one of ``fields`` or of those labels differs. A conflict is another
        API server's write that came first: the next round sees it."""
        try:
            if current is None:
                await self.client.create(resource, want, namespace=NAMESPACE, group=group)
            elif _differs(current, want, fields):
                m = current["metadata"]
                labels = {**(m.get("labels") or {}), **want["metadata"]["labels"]}
                await self.client.update(resource, {**want, "metadata": {**m, "labels": labels}},
                                         namespace=NAMESPACE, group=group)  # fmt: skip
        except ApiError as e:
            if e.code != 409:
                raise

    async def remove(self) -> None:
        """This server leaves: its lease key goes, and the endpoints follow."""
        await self.etcd.delete(lease_key(self.advertise))
        if self.lease:
            lease, self.lease = self.lease, 0
            try:
                await self.etcd.lease_revoke(lease)
            except EtcdError as e:
                if e.error != LEASE_NOT_FOUND:
                    raise
        await self.reconcile()

    async def stopping(self) -> None:
        try:
            # Bounded, as Kubernetes bounds it (two intervals): an unreachable etcd must
            # not hold the server's shutdown; the lease then expires by itself.
            with trio.move_on_after(2 * self.interval):
                await self.remove()
        except (ApiError, EtcdError) as e:
            log.warning("could not remove this API server from the kubernetes endpoints "
                        "(its lease expires in %ds): %s", self.ttl, e)  # fmt: skip
