"""What a Service's pods contribute as endpoints: which pods, their addresses,
conditions and ports, as Kubernetes' endpoint utilities compute them (pure).

Rules of this file:

- A Service selects pods by ``spec.selector``, a plain label map. A Service without a
  selector (or with an empty one) and an ExternalName Service are not the
  controllers': their endpoints, if any, are written by hand.
- A pod is an endpoint when it has an IPv4 ``status.podIP`` and is not terminal
  (Succeeded or Failed). A terminating pod (``deletionTimestamp`` set) is one only
  where terminating endpoints are wanted (EndpointSlices always; Endpoints only with
  ``publishNotReadyAddresses``).
- Conditions: ``serving`` is the pod's Ready condition; ``ready`` is serving, or true
  for every endpoint with ``publishNotReadyAddresses``, but never true for a
  terminating pod without it; ``terminating`` is ``deletionTimestamp`` being set.
- A service port's ``targetPort`` is a number, or the name of a container port of the
  same protocol: a pod with no such port has no endpoint port for it (and lands in a
  slice with the ports it does have).
- Malformed objects (wrong types anywhere) yield no endpoint, never an exception.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from actorkube.apiserver import Selector

HEADLESS_LABEL = "service.kubernetes.io/headless"


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    labels = _dict(_dict(obj.get("metadata")).get("labels"))
    return {k: v for k, v in labels.items() if isinstance(v, str)}


def service_selector(svc: Mapping[str, Any]) -> Selector | None:
    """The Service's selector, None when the controllers leave the Service alone."""
    spec = _dict(svc.get("spec"))
    selector = spec.get("selector")
    if spec.get("type") == "ExternalName" or not isinstance(selector, dict) or not selector:
        return None
    return Selector.from_set({str(k): str(v) for k, v in selector.items()})


def selects(svc: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    selector = service_selector(svc)
    return selector is not None and selector.matches(labels_of(pod))


def is_ready(pod: Mapping[str, Any]) -> bool:
    conditions = _list(_dict(pod.get("status")).get("conditions"))
    return any(isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True"
               for c in conditions)  # fmt: skip


def is_terminating(pod: Mapping[str, Any]) -> bool:
    return bool(_dict(pod.get("metadata")).get("deletionTimestamp"))


def pod_ip(pod: Mapping[str, Any]) -> str | None:
    """The pod's IPv4 address (podIP, else the first IPv4 of podIPs), if it has one."""
    status = _dict(pod.get("status"))
    candidates = [status.get("podIP")]
    candidates += [_dict(p).get("ip") for p in _list(status.get("podIPs"))]
    for ip in candidates:
        if isinstance(ip, str) and ip:
            try:
                if isinstance(ipaddress.ip_address(ip), ipaddress.IPv4Address):
                    return ip
            except ValueError:
                continue
    return None


def should_be_endpoint(pod: Mapping[str, Any], include_terminating: bool) -> bool:
    """Kubernetes' ShouldPodBeInEndpoints."""
    if _dict(pod.get("status")).get("phase") in ("Succeeded", "Failed"):
        return False
    if pod_ip(pod) is None:
        return False
    return include_terminating or not is_terminating(pod)


def find_port(pod: Mapping[str, Any], service_port: Mapping[str, Any]) -> int | None:
    """The pod's port for ``service_port`` (Kubernetes' FindPort), None if it has none."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, bool):
        return None
    if isinstance(target, int):
        return target if 0 < target < 65536 else None
    if not isinstance(target, str) or not target:
        return None
    if target.isdigit():  # an IntOrString given as a numeric string
        return int(target) if 0 < int(target) < 65536 else None
    protocol = service_port.get("protocol", "TCP")
    for container in _list(_dict(pod.get("spec")).get("containers")):
        for port in _list(_dict(container).get("ports")):
            port = _dict(port)
            if port.get("name") == target and port.get("protocol", "TCP") == protocol:
                number = port.get("containerPort")
                if isinstance(number, int) and not isinstance(number, bool):
                    return number
    return None


@attrs.frozen
class EndpointPort:
    """One port of an endpoint: the service port's name and protocol, the pod's number."""

    name: str
    port: int
    protocol: str
    app_protocol: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "port": self.port, "protocol": self.protocol}
        if self.app_protocol is not None:
            out["appProtocol"] = self.app_protocol
        return out


def endpoint_ports(svc: Mapping[str, Any], pod: Mapping[str, Any]) -> tuple[EndpointPort, ...]:
    """The pod's ports for the Service's ports, in the Service's order (those it has)."""
    ports = []
    for service_port in _list(_dict(svc.get("spec")).get("ports")):
        if not isinstance(service_port, dict):
            continue
        number = find_port(pod, service_port)
        if number is None:
            continue
        app = service_port.get("appProtocol")
        ports.append(EndpointPort(str(service_port.get("name") or ""), number,
                                  str(service_port.get("protocol", "TCP")),
                                  app if isinstance(app, str) else None))  # fmt: skip
    return tuple(ports)


@attrs.frozen
class PodEndpoint:
    """One pod as an endpoint of one Service (see the module rules)."""

    ip: str
    namespace: str
    name: str
    uid: str
    node_name: str
    hostname: str
    ready: bool
    serving: bool
    terminating: bool
    ports: tuple[EndpointPort, ...]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def target_ref(self) -> dict[str, str]:
        ref = {"kind": "Pod", "namespace": self.namespace, "name": self.name}
        if self.uid:
            ref["uid"] = self.uid
        return ref


def pod_endpoint(svc: Mapping[str, Any], pod: Mapping[str, Any]) -> PodEndpoint:
    """``pod`` as an endpoint of ``svc`` (the caller checked ``should_be_endpoint``)."""
    m, spec = _dict(pod.get("metadata")), _dict(pod.get("spec"))
    svc_meta, svc_spec = _dict(svc.get("metadata")), _dict(svc.get("spec"))
    publish = svc_spec.get("publishNotReadyAddresses") is True
    serving = is_ready(pod)
    terminating = is_terminating(pod)
    ready = publish or (serving and not terminating)
    # The pod's own hostname counts when it names this Service as its subdomain.
    hostname = spec.get("hostname")
    named = (isinstance(hostname, str) and spec.get("subdomain") == svc_meta.get("name")
             and m.get("namespace") == svc_meta.get("namespace"))  # fmt: skip
    node = spec.get("nodeName")
    return PodEndpoint(
        ip=pod_ip(pod) or "",
        namespace=str(m.get("namespace", "")),
        name=str(m.get("name", "")),
        uid=str(m.get("uid", "")),
        node_name=node if isinstance(node, str) else "",
        hostname=hostname if named else "",
        ready=ready,
        serving=serving,
        terminating=terminating,
        ports=endpoint_ports(svc, pod),
    )


def pod_endpoints(svc: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], *,
                  include_terminating: bool) -> list[PodEndpoint]:  # fmt: skip
    """The endpoints of the pods ``svc`` selects, ordered by pod name."""
    found = [pod_endpoint(svc, pod) for pod in pods
             if isinstance(pod, dict) and selects(svc, pod)
             and should_be_endpoint(pod, include_terminating)]  # fmt: skip
    return sorted(found, key=lambda ep: ep.key)


def owned_labels(svc: Mapping[str, Any]) -> dict[str, str]:
    """The Service's labels, which its Endpoints and EndpointSlices carry too, with the
    headless label for a headless Service."""
    labels = labels_of(svc)
    if _dict(svc.get("spec")).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    return labels
