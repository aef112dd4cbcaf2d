"""Which Services have a load balancer, which nodes it goes to, and what the Service's
status says of it: the service controller's decisions, pure (k8s.io/cloud-provider
controllers/service: wantsLoadBalancer, needsCleanup, needsUpdate, the stable node set
predicates, LoadBalancerStatusEqual).

Rules of this file:

- A Service wants a load balancer from this cloud when it is of type LoadBalancer
  without ``spec.loadBalancerClass``: a class names another implementation, and
  Kubernetes' controller leaves such Services to it, finalizer and status included.
- A Service needs cleanup when it holds the finalizer and is being deleted or is no
  longer of type LoadBalancer: its load balancer goes, then the finalizer.
- An update is worth a sync only when something the load balancer is made of changed
  (ports, affinity, the requested IP, external IPs, annotations, uid, traffic policy,
  health check node port, source ranges, the number of IP families) or the Service
  stopped or started wanting one; a status change is not, so writing the status never
  wakes the controller again.
- A load balancer's nodes are every node not being deleted, without the label
  ``node.kubernetes.io/exclude-from-external-load-balancers`` and without the cluster
  autoscaler's ``ToBeDeletedByClusterAutoscaler`` taint (KEP-3458's stable node set:
  readiness is the load balancer's health checks' business, not a reason to rewrite
  it). The set, as the cloud sees it, changes when a node comes or goes or its name,
  provider ID or InternalIP changes.
- Everything here takes the API's dicts and tolerates malformed ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._provider import LoadBalancerStatus

FINALIZER = "service.kubernetes.io/load-balancer-cleanup"
EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
TO_BE_DELETED_TAINT = "ToBeDeletedByClusterAutoscaler"
MAX_NODE_NAMES = 20  # in an event's message (maxNodeNamesToLog)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _dict(obj.get("spec"))


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _dict(obj.get("metadata"))


def wants_load_balancer(service: Mapping[str, Any]) -> bool:
    spec = _spec(service)
    return spec.get("type") == "LoadBalancer" and spec.get("loadBalancerClass") is None


def has_finalizer(service: Mapping[str, Any]) -> bool:
    return FINALIZER in _list(_meta(service).get("finalizers"))


def needs_cleanup(service: Mapping[str, Any]) -> bool:
    if not has_finalizer(service):
        return False
    return bool(_meta(service).get("deletionTimestamp")) or (
        _spec(service).get("type") != "LoadBalancer")


def _ports_for_lb(service: Mapping[str, Any]) -> list[tuple]:
    return [(p.get("name"), p.get("protocol"), p.get("port"), p.get("nodePort"),
             p.get("targetPort"), p.get("appProtocol"))
            for p in map(_dict, _list(_spec(service).get("ports")))]  # fmt: skip


_SPEC_FIELDS = ("loadBalancerSourceRanges", "sessionAffinity", "sessionAffinityConfig",
                "loadBalancerIP", "externalIPs", "externalTrafficPolicy",
                "healthCheckNodePort")  # fmt: skip


def needs_update(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether the change from ``old`` to ``new`` calls for a sync (see the rules)."""
    before, after = wants_load_balancer(old), wants_load_balancer(new)
    if not before and not after:
        return False
    if before != after:
        return True
    old_spec, new_spec = _spec(old), _spec(new)
    families = len(_list(old_spec.get("ipFamilies"))), len(_list(new_spec.get("ipFamilies")))
    return (any(old_spec.get(f) != new_spec.get(f) for f in _SPEC_FIELDS)
            or _ports_for_lb(old) != _ports_for_lb(new)
            or _meta(old).get("annotations") != _meta(new).get("annotations")
            or _meta(old).get("uid") != _meta(new).get("uid")
            or families[0] != families[1])  # fmt: skip


def node_included(node: Mapping[str, Any]) -> bool:
    """Whether ``node`` is among the nodes of load balancers (see the rules)."""
    if _meta(node).get("deletionTimestamp"):
        return False
    if EXCLUDE_LABEL in _dict(_meta(node).get("labels")):
        return False
    return not any(_dict(t).get("key") == TO_BE_DELETED_TAINT
                   for t in _list(_spec(node).get("taints")))  # fmt: skip


def load_balancer_nodes(nodes: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The nodes of load balancers, in name order."""
    chosen = [n for n in nodes if isinstance(n, Mapping) and node_included(n)]
    return sorted(chosen, key=lambda n: str(_meta(n).get("name", "")))


def node_view(node: Mapping[str, Any]) -> tuple:
    """What of a node a load balancer is made of: its name, provider ID, InternalIPs."""
    ips = tuple(a.get("address") for a in map(_dict, _list(_dict(node.get("status"))
                .get("addresses"))) if a.get("type") == "InternalIP")  # fmt: skip
    return (_meta(node).get("name"), _spec(node).get("providerID"), ips)


def node_set(nodes: Iterable[Mapping[str, Any]]) -> frozenset[tuple]:
    return frozenset(node_view(n) for n in nodes)


def should_sync_node(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether a node's update can change any load balancer's nodes."""
    return node_included(old) != node_included(new) or node_view(old) != node_view(new)


def node_names(nodes: Iterable[Mapping[str, Any]]) -> str:
    """The nodes' names for an event, at most ``MAX_NODE_NAMES`` of them."""
    names = sorted(str(_meta(n).get("name", "")) for n in nodes)
    if len(names) > MAX_NODE_NAMES:
        names = [*names[:MAX_NODE_NAMES], f"<{len(names) - MAX_NODE_NAMES} more>"]
    return "[" + " ".join(names) + "]"


def status_dict(status: LoadBalancerStatus | None) -> dict:
    """``status.loadBalancer`` as the API writes it (None or no ingress: ``{}``)."""
    if status is None or not status.ingress:
        return {}
    ingress = []
    for i in status.ingress:
        entry = {}
        if i.ip:
            entry["ip"] = i.ip
        if i.hostname:
            entry["hostname"] = i.hostname
        ingress.append(entry)
    return {"ingress": ingress}


def current_status(service: Mapping[str, Any]) -> dict:
    """The Service's ``status.loadBalancer``, normalized as ``status_dict`` writes it."""
    ingress = [{k: v for k, v in _dict(i).items() if k in ("ip", "hostname") and v}
               for i in _list(_dict(_dict(service.get("status")).get("loadBalancer"))
                              .get("ingress"))]  # fmt: skip
    return {"ingress": ingress} if ingress else {}
