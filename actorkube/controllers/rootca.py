"""The root CA publisher: every namespace has a ConfigMap ``kube-root-ca.crt`` holding
the cluster's CA, which pods' service-account volumes mount to verify the API server
(kube-controller-manager's root-ca-certificate-publisher-controller).

Rules of this file:

- Informers on Namespaces and ConfigMaps; a namespace added or changed, or a
  ``kube-root-ca.crt`` ConfigMap changed or deleted, enqueues its namespace.
- ``reconcile(namespace)``: a namespace gone or terminating is left alone (as Kubernetes
  skips it). A missing ConfigMap is created with ``data: {ca.crt: <root CA>}`` and the
  ``kubernetes.io/description`` annotation; one whose data is not exactly that, or that
  has no description, is updated to it (other annotations, a description someone wrote
  and labels kept; other data keys dropped, as Kubernetes replaces the data).
  AlreadyExists, a conflict or a refusal other than the namespace's terminating is
  retried by the work queue.
"""

from __future__ import annotations

from typing import Any

from actorkube.apiserver import ApiError
from actorkube.apiserver._admission import NAMESPACE_TERMINATING
from actorkube.client import InformerFactory

from ._controller import Controller, namespace_active

CONTROLLER_NAME = "root-ca-certificate-publisher-controller"
CONFIGMAP = "kube-root-ca.crt"
KEY = "ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using "
    "internal endpoints such as the internal service IP or kubernetes.default.svc. "
    "No other usage is guaranteed across distributions of Kubernetes clusters."
)


def published(current: dict[str, Any] | None, root_ca: str) -> dict[str, Any] | None:
    """The ConfigMap to write so that it publishes ``root_ca`` (``current`` changed, or a
    new one if None), or None if ``current`` does already."""
    if current is None:
        return {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": CONFIGMAP,
                             "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}},
                "data": {KEY: root_ca}}  # fmt: skip
    m = current.get("metadata") or {}
    annotations = m.get("annotations") or {}
    # Any description serves (Kubernetes writes its own only where there is none).
    described = bool(annotations.get(DESCRIPTION_ANNOTATION))
    if current.get("data") == {KEY: root_ca} and described:
        return None
    return {**current, "data": {KEY: root_ca},
            "metadata": {**m, "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION,
                                              **annotations}}}  # fmt: skip


class RootCACertPublisher(Controller):
    """The root CA publisher (see the module rules); ``root_ca``: the cluster CA's PEM
    (kube-controller-manager's --root-ca-file)."""

    name = CONTROLLER_NAME

    def __init__(self, *args: Any, root_ca: bytes | str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.root_ca = root_ca.decode() if isinstance(root_ca, bytes) else root_ca

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.namespaces = factory.informer("namespaces")
        self.configmaps = factory.informer("configmaps")
        self.namespaces.add_handler(self._namespace, lambda old, new: self._namespace(new), None)
        self.configmaps.add_handler(None, lambda old, new: self._configmap(new), self._configmap)

    def _namespace(self, namespace: dict) -> None:
        self.enqueue(namespace["metadata"]["name"])

    def _configmap(self, configmap: dict) -> None:
        m = configmap["metadata"]
        if m.get("name") == CONFIGMAP:
            self.enqueue(m.get("namespace", ""))

    async def reconcile(self, key: str) -> None:
        if not namespace_active(self.namespaces.get(key)):
            return
        current = self.configmaps.get(f"{key}/{CONFIGMAP}")
        body = published(current, self.root_ca)
        if body is None:
            return
        try:
            if current is None:
                await self.client.create("configmaps", body, namespace=key)
            else:
                await self.client.update("configmaps", body, namespace=key)
        except ApiError as e:
            # A namespace that started terminating since the cache saw it refuses new
            # objects: nothing to publish there. Anything else (RBAC's 403 too) is
            # retried.
            causes = (e.status.get("details") or {}).get("causes") or ()
            if not any(c.get("reason") == NAMESPACE_TERMINATING for c in causes):
                raise
