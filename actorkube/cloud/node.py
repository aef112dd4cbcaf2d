"""The cloud node controller: initialises the nodes a kubelet for an external cloud
registered (tainted uninitialized) from the cloud's instance metadata, and keeps the
addresses of every node in step with the cloud (k8s.io/cloud-provider's node
controller, ``cloud-node-controller``).

Rules of this file:

- An informer on Nodes; every node added or changed enqueues its name. Decisions are
  ``_cloudnode``'s; this actor asks the cloud and writes.
- A node with the uninitialized taint: its instance's metadata is asked of the cloud,
  then one update of the node (optimistic concurrency; a conflict is tried again on
  a fresh read) writes spec.providerID, the instance type, zone and region labels,
  and drops the taint; then its addresses are written (a patch of nodes/status) and
  an event Synced "Node synced successfully" is recorded. A cloud that fails or a node
  the cloud's answer cannot initialise is a Warning event FailedToInitializeNode and
  an error: the name comes back after the work queue's backoff, never faster, and the
  node stays tainted (no pod lands on a node the cloud does not know yet).
- A node without the taint: its GA zone, region and instance-type labels follow the
  beta ones (reconcileNodeLabels).
- ``STATUS`` (a key no node can have) every ``node_status_update_frequency`` seconds
  (Kubernetes' node-status-update-frequency, 5 minutes): the addresses of every
  initialised node from the cloud; a node the cloud fails on keeps its addresses until
  the next pass. It has a worker of its own: at most ``workers`` nodes are synced at
  once, whether a pass runs or not.
"""

from __future__ import annotations

import logging

import trio

from actorkube.actor import ActorRef
from actorkube.apiserver import ApiError
from actorkube.client import InformerFactory
from actorkube.controllers._controller import Controller
from actorkube.controllers._fields import meta

from . import _cloudnode as core
from ._provider import Cloud, CloudError

log = logging.getLogger("actorkube.cloud")

CONTROLLER_NAME = "cloud-node-controller"
STATUS = ":status"  # node names never hold a colon
RETRIES = 20  # Kubernetes' UpdateNodeSpecBackoff steps
FAILED = "FailedToInitializeNode"


class CloudNodeController(Controller):
    """The cloud node controller (see the module rules). ``cloud`` must offer
    ``instances()``; ``workers`` nodes are initialised at once (Kubernetes'
    concurrent-node-syncs, 1)."""

    name = CONTROLLER_NAME

    def __init__(self, server: ActorRef, *, token: str, cloud: Cloud,
                 node_status_update_frequency: float = 300.0,
                 workers: int = 1) -> None:  # fmt: skip
        super().__init__(server, token=token, workers=workers + 1)
        instances = cloud.instances()
        if instances is None:
            raise ValueError("cloud provider does not support instances")
        self.instances = instances
        self.node_status_update_frequency = node_status_update_frequency
        self._syncs = trio.Semaphore(workers)  # the worker left over is the pass's
        self.initialized = 0  # nodes this controller initialised

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.nodes = factory.informer("nodes")
        self.nodes.add_handler(self._enqueue, lambda old, new: self._enqueue(new))
        self.enqueue(STATUS)

    def _enqueue(self, node: dict) -> None:
        self.enqueue(meta(node).get("name", ""))

    async def reconcile(self, key: str) -> None:
        if key == STATUS:
            try:
                await self._update_addresses()
            finally:
                self.requeue_after(STATUS, self.node_status_update_frequency)
            return
        async with self._syncs:
            node = self.nodes.get(key)
            if node is None:
                return
            if core.cloud_taint(node) is None:
                await self._reconcile_labels(node)
            else:
                await self._initialize(node)

    async def _initialize(self, node: dict) -> None:
        name = meta(node).get("name", "")
        log.info("%s: initializing node %s with cloud provider", self.name, name)
        try:
            metadata = await self.instances.instance_metadata(node)
        except CloudError as e:
            self._failed(node, f"failed to get instance metadata for node {name}: {e}")
            raise
        for attempt in range(RETRIES):
            try:
                wanted = core.initialized(node, metadata)
            except core.NodeInitError as e:
                self._failed(node, f"failed to get node modifiers from cloud provider: {e}")
                raise
            try:
                node = await self.client.update("nodes", wanted)
                break
            except ApiError as e:
                if e.code == 404:
                    return
                if e.code != 409 or attempt == RETRIES - 1:
                    raise
            node = await self._get(name)
            if node is None:
                return
        addresses = core.addresses(node, metadata)
        if addresses is not None:
            await self._write_addresses(node, addresses)
        self.initialized += 1
        log.info("%s: successfully initialized node %s with cloud provider", self.name, name)
        self.events.event(node, "Normal", "Synced", "Node synced successfully")

    def _failed(self, node: dict, message: str) -> None:
        self.events.event(node, "Warning", FAILED, message)

    async def _get(self, name: str) -> dict | None:
        return await self.client.get_if_exists("nodes", name)

    async def _reconcile_labels(self, node: dict) -> None:
        labels = core.reconciled_labels(meta(node).get("labels") or {})
        if labels:
            try:
                await self.client.patch("nodes", meta(node)["name"],
                                        {"metadata": {"labels": labels}})  # fmt: skip
            except ApiError as e:
                if e.code != 404:
                    raise

    async def _write_addresses(self, node: dict, addresses: list[dict]) -> None:
        """status.addresses replaced by ``addresses``; a failure is logged (the next
        periodic pass writes them), as Kubernetes' updateNodeAddress does."""
        name = meta(node).get("name", "")
        try:
            await self.client.patch("nodes", name, {"status": {"addresses": addresses}},
                                    subresource="status")  # fmt: skip
        except ApiError as e:
            log.warning("%s: node %s: cloud addresses not written: %s", self.name, name, e)

    async def _update_addresses(self) -> None:
        """The periodic pass (UpdateNodeStatus): each initialised node's addresses."""
        for node in sorted(self.nodes.list(), key=lambda n: meta(n).get("name", "")):
            if core.cloud_taint(node) is not None:
                continue  # the initialisation writes them
            try:
                metadata = await self.instances.instance_metadata(node)
            except CloudError as e:
                log.warning("%s: node %s: instance metadata for its addresses: %s",
                            self.name, meta(node).get("name"), e)  # fmt: skip
                continue
            addresses = core.addresses(self.nodes.get(meta(node)["name"]) or node, metadata)
            if addresses is not None:
                await self._write_addresses(node, addresses)
