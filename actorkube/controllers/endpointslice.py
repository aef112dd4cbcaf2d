"""The EndpointSlice controller: every Service with a selector gets EndpointSlices
(discovery.k8s.io/v1) listing the pods it selects, kept in step as pods come, go and
change readiness (kube-controller-manager's endpointslice controller).

Rules of this file:

- Informers on Services, Pods and the EndpointSlices this controller manages; their
  handlers only turn an event into Service keys (a pod's: every Service in its
  namespace whose selector matches its labels, before or after the change; a slice's:
  its ``kubernetes.io/service-name``) and enqueue them.
- ``reconcile(key)`` reads the Service and pods from the informers, and the Service's
  managed slices from the API (a live list, so a slice this controller wrote a moment
  ago is never written twice because the informer has not seen it yet); then it writes
  what ``_slices.plan`` says. A Service gone has its managed slices deleted. A Service
  without a selector, or of type ExternalName, is left alone (its slices, if any, are
  someone else's), as Kubernetes leaves it.
- Which pods and what each contributes: ``_pod_endpoints`` (terminating pods included,
  with their conditions).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actorkube.apiserver import ApiError
from actorkube.client import InformerFactory, object_key

from . import _slices as slices
from ._controller import Controller
from ._pod_endpoints import (
    labels_of,
    pod_endpoints,
    selects,
    service_selector,
)

CONTROLLER_NAME = "endpointslice-controller"


def pod_view(pod: Mapping[str, Any]) -> tuple:
    """What of a pod can change its endpoint: a change elsewhere enqueues nothing."""
    m, spec, status = (pod.get(k) or {} for k in ("metadata", "spec", "status"))
    return (m.get("labels"), m.get("deletionTimestamp"), m.get("uid"), spec.get("nodeName"),
            spec.get("hostname"), spec.get("subdomain"), spec.get("containers"),
            status.get("phase"), status.get("podIP"), status.get("podIPs"),
            status.get("conditions"))  # fmt: skip


class ServiceKeys:
    """Turns pod events into the keys of the Services that select the pod."""

    def __init__(self, services: Any, enqueue: Any) -> None:
        self.services = services
        self.enqueue = enqueue

    def of(self, pod: Mapping[str, Any]) -> set[str]:
        namespace = (pod.get("metadata") or {}).get("namespace", "")
        return {object_key(svc) for svc in self.services.by_index("namespace", namespace)
                if selects(svc, pod)}  # fmt: skip

    def pod_came_or_went(self, pod: dict) -> None:
        for key in self.of(pod):
            self.enqueue(key)

    def pod_updated(self, old: dict, new: dict) -> None:
        if pod_view(old) != pod_view(new):
            for key in self.of(old) | self.of(new):
                self.enqueue(key)

    def service_changed(self, *objects: dict) -> None:
        self.enqueue(object_key(objects[-1]))


class EndpointSliceController(Controller):
    """The EndpointSlice controller (see the module rules)."""

    name = CONTROLLER_NAME

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.services = factory.informer("services")
        self.pods = factory.informer("pods")
        managed = factory.informer("endpointslices", group=slices.DISCOVERY,
                                   label_selector=f"{slices.MANAGED_BY_LABEL}="
                                                  f"{slices.MANAGED_BY}")  # fmt: skip
        keys = ServiceKeys(self.services, self.enqueue)
        self.services.add_handler(keys.service_changed, keys.service_changed,
                                  keys.service_changed)  # fmt: skip
        self.pods.add_handler(keys.pod_came_or_went, keys.pod_updated, keys.pod_came_or_went)
        managed.add_handler(self._slice_changed, lambda old, new: self._slice_changed(new),
                            self._slice_changed)  # fmt: skip

    def _slice_changed(self, endpoint_slice: dict) -> None:
        m = endpoint_slice.get("metadata") or {}
        service = labels_of(endpoint_slice).get(slices.SERVICE_NAME_LABEL)
        if service:
            self.enqueue(f"{m.get('namespace', '')}/{service}")

    async def reconcile(self, key: str) -> None:
        namespace, _, name = key.partition("/")
        svc = self.services.get(key)
        if svc is not None and service_selector(svc) is None:
            return
        selector = (f"{slices.SERVICE_NAME_LABEL}={name},"
                    f"{slices.MANAGED_BY_LABEL}={slices.MANAGED_BY}")  # fmt: skip
        listed = await self.client.list("endpointslices", group=slices.DISCOVERY,
                                        namespace=namespace, label_selector=selector)  # fmt: skip
        existing = listed["items"]
        if svc is None:
            for gone in existing:
                await self._delete(gone)
            return
        pods = self.pods.by_index("namespace", namespace)
        endpoints = pod_endpoints(svc, pods, include_terminating=True)
        todo = slices.plan(svc, endpoints, existing)
        for new in todo.create:
            await self.client.create("endpointslices", new, namespace=namespace,
                                     group=slices.DISCOVERY)  # fmt: skip
        for changed in todo.update:
            await self.client.update("endpointslices", changed, namespace=namespace,
                                     group=slices.DISCOVERY)  # fmt: skip
        for gone in todo.delete:
            await self._delete(gone)

    async def _delete(self, endpoint_slice: dict) -> None:
        m = endpoint_slice.get("metadata") or {}
        try:
            await self.client.delete("endpointslices", m.get("name", ""), group=slices.DISCOVERY,
                                     namespace=m.get("namespace", ""), uid=m.get("uid", ""))
        except ApiError as e:
            if e.code != 404:  # gone already: what was wanted
                raise
