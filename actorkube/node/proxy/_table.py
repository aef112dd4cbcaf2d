"""kube-proxy's view of the cluster: Services and EndpointSlices in, for each frontend
(IP, port, protocol) the backends to forward to (pure: built and compared without I/O).

Rules of this file:

- A Service port is served on its cluster IP, and for NodePort and LoadBalancer
  Services also on the node's IP at its ``nodePort``. Headless and ExternalName
  Services have no frontend; SCTP ports are not proxied; only IPv4 is.
- A port's endpoints come from the Service's EndpointSlices (label
  ``kubernetes.io/service-name``, same namespace, addressType IPv4): the slice port of
  the same name and protocol gives the backend's port. An endpoint whose ``ready`` is
  absent counts as ready (the EndpointSlice API says so).
- Backends are the ready endpoints; if there are none, the serving and terminating ones
  (Kubernetes' fallback while pods shut down gracefully); if none either, the frontend
  has no backends and connections to it are rejected.
- ``internalTrafficPolicy: Local`` limits the cluster IP's backends to this node's
  endpoints, ``externalTrafficPolicy: Local`` the node port's, with no fallback to
  other nodes (Kubernetes drops the traffic instead).
- ``sessionAffinity: ClientIP`` gives the frontend an affinity timeout
  (``sessionAffinityConfig.clientIP.timeoutSeconds``, default 10800 s).
- Malformed objects contribute what is well-formed in them and never raise.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from actorkube.forwarding import Backend, Entry, Frontend

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
PROTOCOLS = ("TCP", "UDP")
DEFAULT_AFFINITY_TIMEOUT = 10800.0


Table = dict[Frontend, Entry]


@attrs.frozen
class TableDiff:
    """From one table to the next: frontends to open, to close, and to keep with new
    backends or affinity. Only frontends with backends are open (``listening``)."""

    opened: frozenset[Frontend]
    closed: frozenset[Frontend]
    changed: frozenset[Frontend]

    @property
    def empty(self) -> bool:
        return not (self.opened or self.closed or self.changed)


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _ipv4(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return value if isinstance(ipaddress.ip_address(value), ipaddress.IPv4Address) else None
    except ValueError:
        return None


def _port(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536:
        return value
    return None


@attrs.frozen
class _Endpoint:
    backend: Backend
    ready: bool
    serving: bool
    terminating: bool
    node: str


def _slice_endpoints(slices: Iterable[Mapping], name: str, protocol: str) -> list[_Endpoint]:
    """The endpoints of the slices for the service port ``name``/``protocol``."""
    found = []
    for s in slices:
        if s.get("addressType") != "IPv4":
            continue
        number = next((_port(p.get("port")) for p in map(_dict, _list(s.get("ports")))
                       if (p.get("name") or "") == name
                       and p.get("protocol", "TCP") == protocol), None)  # fmt: skip
        if number is None:
            continue
        for ep in map(_dict, _list(s.get("endpoints"))):
            conditions = _dict(ep.get("conditions"))
            ready = conditions.get("ready") is not False
            serving = conditions.get("serving") is not False
            terminating = conditions.get("terminating") is True
            node = ep.get("nodeName") if isinstance(ep.get("nodeName"), str) else ""
            for address in _list(ep.get("addresses"))[:1]:
                ip = _ipv4(address)
                if ip is not None:
                    found.append(_Endpoint(Backend(ip, number), ready, serving, terminating, node))
    return found


def _backends(endpoints: list[_Endpoint], local_only: bool, node: str) -> tuple[Backend, ...]:
    if local_only:
        endpoints = [e for e in endpoints if e.node == node]
    chosen = [e for e in endpoints if e.ready]
    if not chosen:
        chosen = [e for e in endpoints if e.serving and e.terminating]
    return tuple(sorted({e.backend for e in chosen}))


def _affinity(spec: dict) -> float | None:
    if spec.get("sessionAffinity") != "ClientIP":
        return None
    timeout = _dict(_dict(spec.get("sessionAffinityConfig")).get("clientIP")).get("timeoutSeconds")
    if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
        return float(timeout)
    return DEFAULT_AFFINITY_TIMEOUT


def build(services: Iterable[Mapping], slices: Iterable[Mapping], *, node_name: str,
          node_ip: str) -> Table:  # fmt: skip
    """The table of ``services`` and their ``slices`` for the proxy on ``node_name``,
    whose node ports listen on ``node_ip`` (see the module rules)."""
    by_service: dict[tuple[str, str], list[Mapping]] = defaultdict(list)
    for s in slices:
        if not isinstance(s, Mapping):
            continue
        m = _dict(s.get("metadata"))
        service = _dict(m.get("labels")).get(SERVICE_NAME_LABEL)
        if isinstance(service, str):
            by_service[(str(m.get("namespace", "")), service)].append(s)
    table: Table = {}
    for svc in services:
        if not isinstance(svc, Mapping):
            continue
        m, spec = _dict(svc.get("metadata")), _dict(svc.get("spec"))
        cluster_ip = _ipv4(spec.get("clusterIP"))
        if spec.get("type") == "ExternalName" or cluster_ip is None:
            continue
        namespace, name = str(m.get("namespace", "")), str(m.get("name", ""))
        affinity = _affinity(spec)
        internal_local = spec.get("internalTrafficPolicy") == "Local"
        external_local = spec.get("externalTrafficPolicy") == "Local"
        exposed = spec.get("type") in ("NodePort", "LoadBalancer")
        for p in map(_dict, _list(spec.get("ports"))):
            port, protocol = _port(p.get("port")), p.get("protocol", "TCP")
            if port is None or protocol not in PROTOCOLS:
                continue
            port_name = str(p.get("name") or "")
            endpoints = _slice_endpoints(by_service[(namespace, name)], port_name, protocol)
            label = f"{namespace}/{name}:{port_name}" if port_name else f"{namespace}/{name}"
            table[Frontend(cluster_ip, port, protocol)] = Entry(
                label, _backends(endpoints, internal_local, node_name), affinity)
            node_port = _port(p.get("nodePort"))
            if exposed and node_port is not None:
                table[Frontend(node_ip, node_port, protocol)] = Entry(
                    label, _backends(endpoints, external_local, node_name), affinity)
    return table


def listening(table: Table) -> set[Frontend]:
    """The frontends that take connections: those with backends."""
    return {f for f, entry in table.items() if entry.backends}


def diff(old: Table, new: Table) -> TableDiff:
    """What changes from ``old`` to ``new`` among the frontends that listen."""
    before, after = listening(old), listening(new)
    changed = {f for f in before & after if old[f] != new[f]}
    return TableDiff(frozenset(after - before), frozenset(before - after), frozenset(changed))
