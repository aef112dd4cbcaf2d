"""The route controller: a cloud route for every node's pod CIDR, none for nodes gone,
and each node's NetworkUnavailable condition saying whether its routes exist
(k8s.io/cloud-provider's route controller, ``node-route-controller``).

Rules of this file:

- An informer on Nodes; a node added or deleted, or whose pod CIDRs changed, enqueues
  the one key ``ROUTES``, which also comes back every ``route_reconciliation_period``
  seconds (10 s, Kubernetes' route-reconciliation-period) whatever happens.
- A pass lists the cluster's routes (``cluster_name``), plans with ``_route_plan``,
  deletes, then creates, each with at most ``MAX_CONCURRENT_ROUTE_OPERATIONS`` cloud
  calls in flight (Kubernetes' 200). A route that could not be created is an event
  FailedToCreateRoute on its node.
- Then each node the pass speaks for gets its NetworkUnavailable condition (a strategic
  merge patch of nodes/status, as Kubernetes' SetNodeCondition) when it changed.
- A pass where the cloud failed (listing, a creation, a deletion) or a condition could
  not be written is an error: ``ROUTES`` comes back after the work queue's backoff as
  well as at the next period; what succeeded stays done.
"""

from __future__ import annotations

import logging

import trio

from actorkube.actor import ActorRef
from actorkube.apiserver import ApiError
from actorkube.client import InformerFactory
from actorkube.controllers._controller import Controller
from actorkube.controllers._fields import meta

from . import _route_plan as core
from ._provider import Cloud, CloudError, Route

log = logging.getLogger("actorkube.cloud")

CONTROLLER_NAME = "node-route-controller"
ROUTES = ":routes"
MAX_CONCURRENT_ROUTE_OPERATIONS = 200
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


class RouteFailures(Exception):
    """Some of a pass's work failed (the cloud's or the API's); the pass is retried."""


class RouteController(Controller):
    """The route controller (see the module rules). ``cloud`` must offer ``routes()``.
    ``created`` and ``deleted`` count the routes it made and removed."""

    name = CONTROLLER_NAME

    def __init__(self, server: ActorRef, *, token: str, cloud: Cloud,
                 cluster_name: str = "kubernetes",
                 route_reconciliation_period: float = 10.0) -> None:  # fmt: skip
        super().__init__(server, token=token, workers=1)
        routes = cloud.routes()
        if routes is None:
            raise ValueError("cloud provider does not support routes")
        self.routes = routes
        self.cluster_name = cluster_name
        self.route_reconciliation_period = route_reconciliation_period
        self.created = 0
        self.deleted = 0

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.nodes = factory.informer("nodes")
        self.nodes.add_handler(self._changed, self._updated, self._changed)
        self.enqueue(ROUTES)

    def _changed(self, node: dict) -> None:
        self.enqueue(ROUTES)

    def _updated(self, old: dict, new: dict) -> None:
        if core.pod_cidrs(old) != core.pod_cidrs(new):
            self.enqueue(ROUTES)

    def now(self) -> float:
        return self.system.clock.now()

    async def reconcile(self, key: str) -> None:
        try:
            await self._reconcile_routes()
        finally:
            self.requeue_after(ROUTES, self.route_reconciliation_period)

    async def _reconcile_routes(self) -> None:
        try:
            routes = await self.routes.list_routes(self.cluster_name)
        except CloudError as e:
            raise RouteFailures(f"error listing routes: {e}") from e
        nodes = self.nodes.list()
        plan = core.plan(nodes, routes)
        limiter = trio.CapacityLimiter(MAX_CONCURRENT_ROUTE_OPERATIONS)
        failures: list[str] = []
        unrouted: set[str] = set()
        async with trio.open_nursery() as nursery:
            for route in plan.delete:
                nursery.start_soon(self._delete, route, limiter, failures)
        by_name = {meta(n).get("name", ""): n for n in nodes}
        async with trio.open_nursery() as nursery:
            for creation in plan.create:
                nursery.start_soon(self._create, creation, by_name.get(creation.node), limiter,
                                   failures, unrouted)  # fmt: skip
        for name in sorted(plan.nodes):
            node = self.nodes.get(name)
            if node is not None:
                routed = bool(core.pod_cidrs(node)) and name not in unrouted
                await self._set_condition(node, routed, failures)
        if failures:
            raise RouteFailures("; ".join(failures))

    async def _delete(self, route: Route, limiter: trio.CapacityLimiter,
                      failures: list[str]) -> None:  # fmt: skip
        started = trio.current_time()
        async with limiter:
            log.info("%s: deleting route %s %s", self.name, route.name, route.destination_cidr)
            try:
                await self.routes.delete_route(self.cluster_name, route)
            except CloudError as e:
                failures.append(f"could not delete route {route.name} {route.destination_cidr} "
                                f"after {trio.current_time() - started:.3f}s: {e}")  # fmt: skip
                return
        self.deleted += 1

    async def _create(self, creation: core.Creation, node: dict | None,
                      limiter: trio.CapacityLimiter, failures: list[str],
                      unrouted: set[str]) -> None:  # fmt: skip
        started = trio.current_time()
        route = creation.route
        async with limiter:
            log.info("%s: creating route for node %s %s with hint %s", self.name, creation.node,
                     route.destination_cidr, creation.name_hint)  # fmt: skip
            try:
                await self.routes.create_route(self.cluster_name, creation.name_hint, route)
            except CloudError as e:
                message = (f"Could not create route {creation.name_hint} "
                           f"{route.destination_cidr} for node {creation.node} after "
                           f"{trio.current_time() - started:.3f}s: {e}")  # fmt: skip
                failures.append(message)
                unrouted.add(creation.node)
                if node is not None:
                    self.events.event(node, "Warning", "FailedToCreateRoute", message)
                return
        self.created += 1

    async def _set_condition(self, node: dict, routed: bool, failures: list[str]) -> None:
        condition = core.network_condition(node, routed, self.now())
        if condition is None:
            return
        name = meta(node).get("name", "")
        try:
            await self.client.patch("nodes", name, {"status": {"conditions": [condition]}},
                                    subresource="status",
                                    content_type=STRATEGIC_PATCH)  # fmt: skip
        except ApiError as e:
            if e.code != 404:
                failures.append(f"error updating node {name}: {e}")
