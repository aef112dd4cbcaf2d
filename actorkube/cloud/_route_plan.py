"""What the route controller does in one pass (k8s.io/cloud-provider's route
controller, reconcile), pure: the actor lists the cloud's routes, carries out the plan
and writes the conditions these return.

Rules of this file:

- A node's pod CIDRs are spec.podCIDRs (spec.podCIDR alone if only that is set); a node
  without one has no route and wants none.
- ``plan(nodes, routes)``: a route is kept when it targets a node that has its CIDR and
  is not a blackhole; every other route of the cluster is deleted (its node is gone,
  its CIDR is not the node's any more, or it is a blackhole). A CIDR of a node with no
  kept route to it is created, named after the node's uid (the name hint). Deletions
  come first: a blackhole route is recreated after its deletion, in the same pass.
- ``network_condition(node, routed, now)``: the NetworkUnavailable condition to patch
  onto the node, or None when it says so already: False / RouteCreated "RouteController
  created a route" once every CIDR of the node has its route; True / NoRouteCreated
  "RouteController failed to create a route" when one could not be created, or when
  routes target a node that has no CIDR. A node with neither CIDR nor route is left
  alone (``plan.nodes`` are the nodes a pass speaks for).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from actorkube.apiserver._meta import rfc3339
from actorkube.controllers._fields import meta, spec, status

from ._provider import Route

Node = Mapping[str, Any]
NETWORK_UNAVAILABLE = "NetworkUnavailable"


@attrs.frozen
class Creation:
    """A route to create for node ``node``, ``name_hint`` being the node's uid."""

    node: str
    name_hint: str
    route: Route


@attrs.frozen
class RoutePlan:
    delete: tuple[Route, ...] = ()
    create: tuple[Creation, ...] = ()
    nodes: frozenset[str] = frozenset()  # whose NetworkUnavailable this pass decides


def pod_cidrs(node: Node) -> tuple[str, ...]:
    cidrs = spec(node).get("podCIDRs") or ()
    if not cidrs and spec(node).get("podCIDR"):
        cidrs = (spec(node)["podCIDR"],)
    return tuple(cidrs)


def plan(nodes: Iterable[Node], routes: Iterable[Route]) -> RoutePlan:
    """The pass's deletions and creations (see the module rules)."""
    nodes = sorted(nodes, key=lambda n: meta(n).get("name", ""))
    wanted = {(meta(n).get("name", ""), cidr) for n in nodes for cidr in pod_cidrs(n)}
    routes = list(routes)
    kept = {(r.target_node, r.destination_cidr) for r in routes
            if not r.blackhole and (r.target_node, r.destination_cidr) in wanted}  # fmt: skip
    delete = tuple(r for r in routes
                   if r.blackhole or (r.target_node, r.destination_cidr) not in kept)  # fmt: skip
    create = tuple(
        Creation(meta(n).get("name", ""), meta(n).get("uid", ""),
                 Route(name="", target_node=meta(n).get("name", ""), destination_cidr=cidr))
        for n in nodes for cidr in pod_cidrs(n)
        if (meta(n).get("name", ""), cidr) not in kept
    )  # fmt: skip
    targets = {r.target_node for r in routes}
    speaks_for = frozenset(meta(n).get("name", "") for n in nodes
                           if pod_cidrs(n) or meta(n).get("name", "") in targets)  # fmt: skip
    return RoutePlan(delete, create, speaks_for)


def network_condition(node: Node, routed: bool, now: float) -> dict | None:
    """NetworkUnavailable as the pass found it (``routed``: every CIDR has its route)."""
    current = next((c for c in status(node).get("conditions") or ()
                    if c.get("type") == NETWORK_UNAVAILABLE), None)  # fmt: skip
    wanted = "False" if routed else "True"
    if current is not None and current.get("status") == wanted:
        return None
    if routed:
        reason, message = "RouteCreated", "RouteController created a route"
    else:
        reason, message = "NoRouteCreated", "RouteController failed to create a route"
    stamp = rfc3339(now)
    return {"type": NETWORK_UNAVAILABLE, "status": wanted, "reason": reason,
            "message": message, "lastTransitionTime": stamp,
            "lastHeartbeatTime": stamp}  # fmt: skip
