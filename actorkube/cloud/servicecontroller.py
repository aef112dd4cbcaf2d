"""The service controller: Services of type LoadBalancer get a load balancer from the
cloud, kept pointing at the cluster's nodes, and lose it when they go or stop wanting
it (the cloud controller manager's service controller, k8s.io/cloud-provider
controllers/service).

Rules of this file:

- Informers on Services and Nodes. A Service is enqueued when it is added wanting a
  load balancer or needing cleanup, when an update needs a sync (``_servicelb``), and
  when it is deleted while this controller still holds its load balancer. A node that
  comes, goes, or changes in a way a load balancer sees enqueues ``NODE_SYNC``, a key
  no Service can have (Services are namespaced: theirs have a slash).
- ``reconcile(key)`` of a Service: one that wants a load balancer gets the finalizer
  ``service.kubernetes.io/load-balancer-cleanup`` first (so it cannot go before its
  load balancer does), then ``ensure_load_balancer`` with the current nodes, then
  ``status.loadBalancer`` written through the status subresource (only if it
  changed, by a merge patch). One that needs cleanup has its load balancer deleted (if the cloud has
  one), the finalizer removed and the status cleared. A Service gone from the
  informer whose load balancer this controller made (a finalizer removed by hand) has
  it deleted. Each step's events are Kubernetes': EnsuringLoadBalancer,
  EnsuredLoadBalancer, DeletingLoadBalancer, DeletedLoadBalancer, UnAvailableLoadBalancer
  (no nodes); a failure is a Warning SyncLoadBalancerFailed and the key comes back
  after Kubernetes' backoff (5 s doubling to 300 s per Service), never a crash.
- ``NODE_SYNC``: every Service holding a load balancer whose node set differs from the
  one it was last given gets ``update_load_balancer`` (``workers`` at once), then
  UpdatedLoadBalancer, or UnAvailableLoadBalancer if no node is left. A failure is a
  Warning UpdateLoadBalancerFailed (unless the load balancer is gone) and the Service
  is enqueued for a full sync.
- A Service's ensure and its node updates never run at once (a lock per Service), and
  each reads the nodes once it holds the lock: whichever runs last gives the cloud the
  current nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import trio

from actorkube.actor import ActorRef
from actorkube.apiserver import ApiError
from actorkube.client import (
    InformerFactory,
    ItemExponentialFailureRateLimiter,
    RateLimitingQueue,
    object_key,
)
from actorkube.controllers import Controller

from . import _servicelb as lbs
from ._provider import Cloud, LoadBalancers, LoadBalancerStatus

log = logging.getLogger("actorkube.cloud")

CONTROLLER_NAME = "service-controller"
NODE_SYNC = "<nodes>"
MIN_RETRY_DELAY = 5.0  # seconds (minRetryDelay)
MAX_RETRY_DELAY = 300.0  # seconds (maxRetryDelay)
SMP = "application/strategic-merge-patch+json"
_ADD_FINALIZER = {"metadata": {"finalizers": [lbs.FINALIZER]}}
_REMOVE_FINALIZER = {"metadata": {"$deleteFromPrimitiveList/finalizers": [lbs.FINALIZER]}}


class ServiceController(Controller):
    """The service controller (see the module rules) for ``cloud``'s load balancers,
    naming what it makes for ``cluster_name``. ``workers``: Services synced at once
    (node syncs share the queue, so one more than Kubernetes' default of one)."""

    name = CONTROLLER_NAME

    def __init__(self, server: ActorRef, *, token: str, cloud: Cloud,
                 cluster_name: str = "kubernetes", workers: int = 2) -> None:  # fmt: skip
        super().__init__(server, token=token, workers=workers)
        balancer = cloud.load_balancer()
        if balancer is None:
            raise ValueError(f"the {cloud.name} cloud has no load balancers")
        self.cloud = cloud
        self.balancer: LoadBalancers = balancer
        self.cluster_name = cluster_name
        self.queue = RateLimitingQueue(rate_limiter=ItemExponentialFailureRateLimiter(
            MIN_RETRY_DELAY, MAX_RETRY_DELAY))  # fmt: skip
        # Services this controller made a load balancer for, as last synced.
        self.balanced: dict[str, dict] = {}
        # The node set each Service's load balancer was last given.
        self.last_nodes: dict[str, frozenset[tuple]] = {}
        self._locks: dict[str, trio.Lock] = {}

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.services = factory.informer("services")
        self.nodes = factory.informer("nodes")
        self.services.add_handler(self._service_added, self._service_updated,
                                  self._service_deleted)  # fmt: skip
        self.nodes.add_handler(self._node_changed, self._node_updated, self._node_changed)

    def _service_added(self, svc: dict) -> None:
        if lbs.wants_load_balancer(svc) or lbs.needs_cleanup(svc):
            self.enqueue(object_key(svc))

    def _service_updated(self, old: dict, new: dict) -> None:
        if lbs.needs_update(old, new) or lbs.needs_cleanup(new):
            self.enqueue(object_key(new))

    def _service_deleted(self, svc: dict) -> None:
        if object_key(svc) in self.balanced:
            self.enqueue(object_key(svc))

    def _node_changed(self, node: dict) -> None:
        self.enqueue(NODE_SYNC)

    def _node_updated(self, old: dict, new: dict) -> None:
        if lbs.should_sync_node(old, new):
            self.enqueue(NODE_SYNC)

    # --- Services ------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        if key == NODE_SYNC:
            await self._sync_nodes()
            return
        svc = self.services.get(key)
        if svc is None:
            await self._process_deletion(key)
            return
        cached = self.balanced.get(key)
        if cached is not None and _uid(cached) != _uid(svc):
            # Deleted and made again (without our finalizer): the old one's goes first.
            await self._delete_load_balancer(cached)
        if not (lbs.wants_load_balancer(svc) or lbs.has_finalizer(svc) or key in self.balanced):
            return  # nothing of this controller's: not one to sync
        self.balanced[key] = svc
        try:
            deleted = await self._sync(key, svc)
        except Exception as e:
            self.events.event(svc, "Warning", "SyncLoadBalancerFailed",
                              f"Error syncing load balancer: {e}")  # fmt: skip
            raise
        if deleted:
            self._forget(key)

    async def _sync(self, key: str, svc: dict) -> bool:
        """syncLoadBalancerIfNeeded: True if the load balancer was deleted."""
        if not lbs.wants_load_balancer(svc) or lbs.needs_cleanup(svc):
            try:
                exists = await self.balancer.get_load_balancer(self.cluster_name, svc)
            except Exception as e:
                raise _failed("failed to check if load balancer exists before cleanup", e) from e
            if exists is not None:
                self.events.event(svc, "Normal", "DeletingLoadBalancer", "Deleting load balancer")
                try:
                    await self.balancer.ensure_load_balancer_deleted(self.cluster_name, svc)
                except Exception as e:
                    raise _failed("failed to delete load balancer", e) from e
            svc = await self._patch_finalizers(svc, _REMOVE_FINALIZER, "remove")
            self.events.event(svc, "Normal", "DeletedLoadBalancer", "Deleted load balancer")
            await self._write_status(svc, {})
            return True
        self.events.event(svc, "Normal", "EnsuringLoadBalancer", "Ensuring load balancer")
        svc = await self._patch_finalizers(svc, _ADD_FINALIZER, "add")
        try:
            status = await self._ensure(key, svc)
        except Exception as e:
            raise _failed("failed to ensure load balancer", e) from e
        self.events.event(svc, "Normal", "EnsuredLoadBalancer", "Ensured load balancer")
        await self._write_status(svc, lbs.status_dict(status))
        return False

    async def _ensure(self, key: str, svc: dict) -> LoadBalancerStatus:
        async with self._lock(key):
            nodes = lbs.load_balancer_nodes(self.nodes.list())
            if not nodes:
                self.events.event(svc, "Warning", "UnAvailableLoadBalancer",
                                  "There are no available nodes for LoadBalancer")  # fmt: skip
            self.last_nodes[key] = lbs.node_set(nodes)
            return await self.balancer.ensure_load_balancer(self.cluster_name, svc, nodes)

    async def _process_deletion(self, key: str) -> None:
        """processServiceDeletion: a Service gone while its load balancer is ours."""
        cached = self.balanced.get(key)
        if cached is not None:
            await self._delete_load_balancer(cached)
            self._forget(key)

    async def _delete_load_balancer(self, svc: dict) -> None:
        """processLoadBalancerDelete: of a Service the API no longer has."""
        if not lbs.wants_load_balancer(svc):
            return
        self.events.event(svc, "Normal", "DeletingLoadBalancer", "Deleting load balancer")
        try:
            await self.balancer.ensure_load_balancer_deleted(self.cluster_name, svc)
        except Exception as e:
            self.events.event(svc, "Warning", "DeleteLoadBalancerFailed",
                              f"Error deleting load balancer: {e}")  # fmt: skip
            raise
        self.events.event(svc, "Normal", "DeletedLoadBalancer", "Deleted load balancer")

    def _forget(self, key: str) -> None:
        self.balanced.pop(key, None)
        self.last_nodes.pop(key, None)
        lock = self._locks.get(key)
        if lock is not None and not lock.locked():
            del self._locks[key]

    def _lock(self, key: str) -> trio.Lock:
        return self._locks.setdefault(key, trio.Lock())

    async def _patch_finalizers(self, svc: dict, patch: dict, verb: str) -> dict:
        """The Service with the finalizer added or removed (as it was, if it already
        is); a strategic merge patch, so other finalizers are never lost."""
        if lbs.has_finalizer(svc) == (verb == "add"):
            return svc
        m = svc.get("metadata") or {}
        try:
            return await self.client.patch("services", m.get("name", ""), patch,
                                           namespace=m.get("namespace", ""), content_type=SMP)
        except ApiError as e:
            if verb == "remove" and e.code == 404:
                return svc  # gone already: nothing holds it
            raise _failed(f"failed to {verb} load balancer cleanup finalizer", e) from e

    async def _write_status(self, svc: dict, load_balancer: dict) -> None:
        """``status.loadBalancer``, if it differs from what ``svc`` says (a merge patch
        of the status subresource, as Kubernetes patches it: no read, no conflict); a
        Service gone is no error."""
        if lbs.current_status(svc) == load_balancer:
            return
        m = svc.get("metadata") or {}
        patch = {"status": {"loadBalancer": {"ingress": load_balancer.get("ingress")}}}
        try:
            await self.client.patch("services", m.get("name", ""), patch,
                                    namespace=m.get("namespace", ""), subresource="status")
        except ApiError as e:
            if e.code != 404:
                raise _failed("failed to update load balancer status", e) from e

    # --- nodes ---------------------------------------------------------------------------

    async def _sync_nodes(self) -> None:
        """Point every load balancer at the current nodes (syncNodes)."""
        retry: list[str] = []
        limiter = trio.CapacityLimiter(self.workers)
        async with trio.open_nursery() as nursery:
            for key, svc in sorted(self.balanced.items()):
                nursery.start_soon(self._sync_node_set, key, svc, limiter, retry)
        for key in retry:
            self.enqueue(key)

    async def _sync_node_set(self, key: str, svc: dict, limiter: trio.CapacityLimiter,
                             retry: list[str]) -> None:  # fmt: skip
        if not lbs.wants_load_balancer(svc):
            return
        async with limiter, self._lock(key):
            if key not in self.balanced:
                return  # its load balancer went meanwhile
            nodes = lbs.load_balancer_nodes(self.nodes.list())
            now = lbs.node_set(nodes)
            if self.last_nodes.get(key) == now:
                return
            self.last_nodes[key] = now  # a failure is retried by a full sync
            try:
                await self.balancer.update_load_balancer(self.cluster_name, svc, nodes)
            except Exception as e:
                if await self._gone(svc):
                    return
                self.events.event(svc, "Warning", "UpdateLoadBalancerFailed",
                                  f"Error updating load balancer with new hosts "
                                  f"{lbs.node_names(nodes)} [node names limited, total number "
                                  f"of nodes: {len(nodes)}], error: {e}")  # fmt: skip
                log.warning("%s: updating the hosts of %s failed: %s", self.name, key, e)
                retry.append(key)
                return
        if nodes:
            self.events.event(svc, "Normal", "UpdatedLoadBalancer",
                              "Updated load balancer with new hosts")  # fmt: skip
        else:
            self.events.event(svc, "Warning", "UnAvailableLoadBalancer",
                              "There are no available nodes for LoadBalancer")  # fmt: skip

    async def _gone(self, svc: dict) -> bool:
        """Whether the cloud says the Service has no load balancer (it failing to say is
        not taken as gone)."""
        try:
            return await self.balancer.get_load_balancer(self.cluster_name, svc) is None
        except Exception as e:
            log.warning("%s: cannot tell whether %s has a load balancer: %s", self.name,
                        object_key(svc), e)  # fmt: skip
            return False


class SyncError(Exception):
    """A step of a Service's sync failed; says which, and why (the event's message)."""


def _failed(step: str, error: BaseException) -> SyncError:
    return SyncError(f"{step}: {error}")


def _uid(obj: Mapping[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("uid", "")
