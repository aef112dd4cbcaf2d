"""The Endpoints controller: every Service with a selector gets the legacy core/v1
Endpoints object of its name, for ``kubectl get endpoints`` and older clients
(kube-controller-manager's endpoint controller).

Rules of this file:

- Informers on Services and Pods; handlers only enqueue Service keys (as the
  EndpointSlice controller's, through ``ServiceKeys``).
- ``reconcile(key)`` reads the Service and pods from the informers and the Endpoints
  object from the API (live), and writes only when the subsets or labels differ. A
  Service gone has its Endpoints deleted; one without a selector, or of type
  ExternalName, is left alone.
- Subsets as Kubernetes packs them: one subset per distinct port list, its ready pods
  under ``addresses`` and the others under ``notReadyAddresses`` (every pod counts as
  ready with ``publishNotReadyAddresses``); terminating pods are left out unless
  ``publishNotReadyAddresses``; addresses sorted by IP, then pod name. The Endpoints
  carries the Service's labels (and the headless label).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from actorkube.apiserver import ApiError
from actorkube.client import InformerFactory

from ._controller import Controller
from ._pod_endpoints import PodEndpoint, owned_labels, pod_endpoints, service_selector
from .endpointslice import ServiceKeys

CONTROLLER_NAME = "endpoint-controller"


def _address(ep: PodEndpoint) -> dict[str, Any]:
    out: dict[str, Any] = {"ip": ep.ip}
    if ep.hostname:
        out["hostname"] = ep.hostname
    if ep.node_name:
        out["nodeName"] = ep.node_name
    out["targetRef"] = ep.target_ref()
    return out


def subsets(svc: Mapping[str, Any], endpoints: Sequence[PodEndpoint]) -> list[dict]:
    """Kubernetes' subsets of the Service's endpoints (see the module rules)."""
    spec = svc.get("spec") or {}
    publish = spec.get("publishNotReadyAddresses") is True
    has_ports = bool(spec.get("ports"))
    grouped: dict[tuple, dict[str, list]] = {}
    for ep in endpoints:
        ports = tuple(ep.ports)
        if has_ports and not ports:
            continue  # the pod has none of the Service's target ports
        group = grouped.setdefault(ports, {"addresses": [], "notReadyAddresses": []})
        group["addresses" if publish or ep.ready else "notReadyAddresses"].append(ep)
    out = []
    for ports, group in grouped.items():
        subset: dict[str, Any] = {}
        for field in ("addresses", "notReadyAddresses"):
            eps = sorted(group[field], key=lambda ep: (ipaddress.ip_address(ep.ip), ep.name))
            if eps:
                subset[field] = [_address(ep) for ep in eps]
        if ports:
            subset["ports"] = [{k: v for k, v in p.to_json().items() if k != "name" or v}
                               for p in ports]  # fmt: skip
        out.append(subset)
    return out


class EndpointsController(Controller):
    """The Endpoints controller (see the module rules)."""

    name = CONTROLLER_NAME

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.services = factory.informer("services")
        self.pods = factory.informer("pods")
        keys = ServiceKeys(self.services, self.enqueue)
        self.services.add_handler(keys.service_changed, keys.service_changed,
                                  keys.service_changed)  # fmt: skip
        self.pods.add_handler(keys.pod_came_or_went, keys.pod_updated, keys.pod_came_or_went)

    async def reconcile(self, key: str) -> None:
        namespace, _, name = key.partition("/")
        svc = self.services.get(key)
        if svc is None:
            try:
                await self.client.delete("endpoints", name, namespace=namespace)
            except ApiError as e:
                if e.code != 404:
                    raise
            return
        if service_selector(svc) is None:
            return
        publish = (svc.get("spec") or {}).get("publishNotReadyAddresses") is True
        endpoints = pod_endpoints(svc, self.pods.by_index("namespace", namespace),
                                  include_terminating=publish)  # fmt: skip
        wanted = {"subsets": subsets(svc, endpoints), "labels": owned_labels(svc)}
        try:
            current = await self.client.get("endpoints", name, namespace=namespace)
        except ApiError as e:
            if e.code != 404:
                raise
            body = {"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"name": name, "namespace": namespace,
                                 "labels": wanted["labels"]},
                    "subsets": wanted["subsets"]}  # fmt: skip
            await self.client.create("endpoints", body, namespace=namespace)
            return
        m = current.get("metadata") or {}
        if (current.get("subsets") or []) == wanted["subsets"] and (
            (m.get("labels") or {}) == wanted["labels"]
        ):
            return
        body = {**current, "metadata": {**m, "labels": wanted["labels"]},
                "subsets": wanted["subsets"]}  # fmt: skip
        await self.client.update("endpoints", body, namespace=namespace)
