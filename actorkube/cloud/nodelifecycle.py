"""The cloud node lifecycle controller: deletes the Nodes whose instance the cloud no
longer has, and taints those whose instance is shut down (k8s.io/cloud-provider's node
lifecycle controller, ``cloud-node-lifecycle-controller``).

Rules of this file:

- An informer on Nodes, read only by the pass; one key, ``MONITOR``, every
  ``node_monitor_period`` seconds (5 s, Kubernetes' node-monitor-period) whatever
  happens. What a pass does with each node is ``_cloudnodelifecycle``'s; only nodes
  that are not Ready cost a question to the cloud.
- A node whose instance does not exist: an event DeletingNode "Deleting node X because
  it does not exist in the cloud provider", then the Node is deleted (uid precondition:
  a Node registered again under the name since is not the one the cloud answered
  for); a failed delete is an event DeletingNodeFailed. Its pods are the pod garbage
  collector's to clean up.
- A node whose instance is shut down gets the shutdown taint; a Ready node loses it.
  Taints are written with a JSON merge patch of spec.taints carrying the
  resourceVersion they were computed from (409: read it again, compute again).
- A failure (the cloud, the API) is logged and skips that node for this pass, never the
  pass: the next pass, ``node_monitor_period`` later, asks again.
"""

from __future__ import annotations

import logging

from actorkube.actor import ActorRef
from actorkube.apiserver import ApiError
from actorkube.client import InformerFactory
from actorkube.controllers._controller import Controller
from actorkube.controllers._fields import meta

from . import _cloudnodelifecycle as core
from ._provider import Cloud, CloudError, InstanceNotFound

log = logging.getLogger("actorkube.cloud")

CONTROLLER_NAME = "cloud-node-lifecycle-controller"
MONITOR = ":monitor"
RETRIES = 5


class CloudNodeLifecycleController(Controller):
    """The cloud node lifecycle controller (see the module rules). ``cloud`` must offer
    ``instances()``. ``deleted`` counts the Nodes it deleted, ``cloud_errors`` the
    questions the cloud failed to answer."""

    name = CONTROLLER_NAME

    def __init__(self, server: ActorRef, *, token: str, cloud: Cloud,
                 node_monitor_period: float = 5.0) -> None:  # fmt: skip
        super().__init__(server, token=token, workers=1)
        instances = cloud.instances()
        if instances is None:
            raise ValueError("cloud provider does not support instances")
        self.instances = instances
        self.node_monitor_period = node_monitor_period
        self.deleted = 0
        self.cloud_errors = 0

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.nodes = factory.informer("nodes")
        self.enqueue(MONITOR)

    def now(self) -> float:
        return self.system.clock.now()

    async def reconcile(self, key: str) -> None:
        try:
            await self._monitor()
        finally:
            self.requeue_after(MONITOR, self.node_monitor_period)

    async def _monitor(self) -> None:
        for node in sorted(self.nodes.list(), key=lambda n: meta(n).get("name", "")):
            name = meta(node).get("name", "")
            try:
                await self._monitor_node(node)
            except CloudError as e:
                self.cloud_errors += 1
                log.warning("%s: node %s: the cloud failed (%s); next pass", self.name, name, e)
            except ApiError as e:
                log.warning("%s: node %s: %s; next pass", self.name, name, e)

    async def _monitor_node(self, node: dict) -> None:
        step = core.look_at(node, self.now())
        if step == core.READY:
            await self._taint(node, core.without_shutdown_taint)
        if step != core.CHECK:
            return
        try:
            exists = await self.instances.instance_exists(node)
        except InstanceNotFound:
            exists = False
        if not exists:
            await self._delete(node)
        elif await self.instances.instance_shutdown(node):
            await self._taint(node, core.with_shutdown_taint)

    async def _delete(self, node: dict) -> None:
        m = meta(node)
        name = m.get("name", "")
        ref = {"apiVersion": "v1", "kind": "Node",
               "metadata": {"name": name, "uid": m.get("uid", "")}}  # fmt: skip
        log.info("%s: deleting node %s: it is no longer present in the cloud provider",
                 self.name, name)  # fmt: skip
        self.events.event(ref, "Normal", "DeletingNode",
                          f"Deleting node {name} because it does not exist in the cloud provider")
        try:
            await self.client.delete("nodes", name, uid=m.get("uid", ""))
        except ApiError as e:
            if e.code in (404, 409):
                return  # gone, or another Node under the name: not the one asked about
            self.events.event(ref, "Warning", "DeletingNodeFailed",
                              f"Failed deleting node {name}: {e}")  # fmt: skip
            raise
        self.deleted += 1

    async def _taint(self, node: dict, change) -> None:
        """The node's taints as ``change(node)`` gives them (None: as they are)."""
        name = meta(node).get("name", "")
        for attempt in range(RETRIES):
            taints = change(node)
            if taints is None:
                return
            patch = {"metadata": {"resourceVersion": meta(node).get("resourceVersion")},
                     "spec": {"taints": taints or None}}  # fmt: skip
            try:
                await self.client.patch("nodes", name, patch)
                return
            except ApiError as e:
                if e.code == 404:
                    return
                if e.code != 409 or attempt == RETRIES - 1:
                    raise
            node = await self.client.get_if_exists("nodes", name)
            if node is None:
                return
