"""The node lifecycle controller: notices nodes that stopped proving they are alive,
marks them Unknown, taints nodes after their conditions (NoSchedule at once, NoExecute
at each zone's pace) and marks the pods of a node that is no longer Ready not ready
(kube-controller-manager's nodelifecycle controller; the NoExecute taints are what the
taint eviction controller, ``tainteviction``, acts on).

Rules of this file:

- Informers on Nodes, the Leases in kube-node-lease, and Pods (indexed by node).
  Decisions are ``_node_health``'s; this actor reads informers, keeps what the core
  needs between passes (each node's ``Health``, the zones' states and ``Tainter``s,
  the nodes whose pods must be marked again), and writes.
- Three kinds of keys share the work queue. A node's name: a node added or changed
  gets its NoSchedule taints brought in line with its conditions. A pod's
  ``namespace/name``: a pod newly bound to a node that is not Ready is marked not
  ready. And two of the controller's own, which cannot be object names:
  ``MONITOR`` (monitorNodeHealth), every ``node_monitor_period`` seconds whatever
  happens, and ``TAINT`` (doNoExecuteTaintingPass), whenever a zone's queue may have a
  node to taint, at the time its token bucket allows (Kubernetes polls every 100 ms).
- A monitor pass, node by node: assess its health and write the Unknown conditions
  (nodes/status, optimistic concurrency; a conflict is retried on a fresh read); then,
  from Ready as observed *before* that write, swap, queue or clear its NoExecute taint;
  when Ready just left True, an event NodeNotReady and its pods' Ready False
  (pods/status), retried the next pass if a write failed. Then the zones: states,
  rates, and the all-zones-down mode. A node that cannot be written is skipped this
  pass, never the pass.
- Taints are written with a JSON merge patch of spec.taints carrying the resourceVersion
  they were computed from (409 if the node moved on: read it again, compute again).
- ``now`` (wall-clock seconds, for timestamps and probes alike) comes from the actor
  system's clock; the kubelet's timestamps are never compared with it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import attrs

from actorkube.actor import ActorRef
from actorkube.apiserver import ApiError
from actorkube.client import InformerFactory, object_key

from . import _node_health as node_health
from ._controller import Controller
from ._fields import meta as _meta
from ._node_health import TRUE
from ._node_health import NodeLifecycleConfig as NodeLifecycleConfig

log = logging.getLogger("actorkube.controllers")

CONTROLLER_NAME = "node-controller"
MONITOR = ":monitor"  # node names never hold a colon
TAINT = ":taint"
RETRIES = 5  # Kubernetes' NodeStatusUpdateRetry
RETRY_NO_READY = 0.05  # a queued node with no Ready condition: look again this soon


def _node_name(pod: Mapping[str, Any]) -> list[str]:
    name = (pod.get("spec") or {}).get("nodeName")
    return [name] if name else []


class NodeLifecycleController(Controller):
    """The node lifecycle controller (see the module rules). ``health``, ``zone_states``
    and ``evictions`` (NoExecute taints added, per zone: Kubernetes'
    node_collector_evictions_total) are there to look at."""

    name = CONTROLLER_NAME

    def __init__(self, server: ActorRef, *, token: str,
                 config: NodeLifecycleConfig | None = None, workers: int = 5) -> None:  # fmt: skip
        super().__init__(server, token=token, workers=workers)
        self.config = config or NodeLifecycleConfig()
        self.health: dict[str, node_health.Health] = {}
        self.zone_states: dict[str, str] = {}
        self.tainters: dict[str, node_health.Tainter] = {}
        self.evictions: dict[str, int] = {}
        self.known: dict[str, str] = {}  # node name -> uid, for Registered/Removing events
        self.retry_pods: set[str] = set()  # nodes whose pods must be marked not ready again

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.nodes = factory.informer("nodes")
        self.leases = factory.informer("leases", group="coordination.k8s.io",
                                       namespace=node_health.LEASE_NAMESPACE)  # fmt: skip
        self.pods = factory.informer("pods", indexers={"nodeName": _node_name})
        self.nodes.add_handler(self._node_changed, lambda old, new: self._node_changed(new))
        self.pods.add_handler(lambda pod: self._pod_bound(None, pod), self._pod_bound)
        self.enqueue(MONITOR)

    def now(self) -> float:
        return self.system.clock.now()

    def _node_changed(self, node: dict) -> None:
        self.enqueue(object_key(node))

    def _pod_bound(self, old: dict | None, new: dict) -> None:
        name = (new.get("spec") or {}).get("nodeName")
        if name and (old is None or (old.get("spec") or {}).get("nodeName") != name):
            self.enqueue(object_key(new))

    async def reconcile(self, key: str) -> None:
        if key == MONITOR:
            try:
                await self._monitor()
            finally:
                self.requeue_after(MONITOR, self.config.node_monitor_period)
        elif key == TAINT:
            await self._taint_pass()
        elif "/" in key:
            await self._pod(key)
        else:
            await self._no_schedule(key)

    # --- NoSchedule taints and pods bound late -----------------------------------------------

    async def _no_schedule(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is None:
            return
        add, remove = node_health.no_schedule_diff(node)
        if (add or remove) and not await self._swap_taints(node, add, remove):
            raise RuntimeError(f"could not swap the NoSchedule taints of node {name}")

    async def _pod(self, key: str) -> None:
        """A pod newly on a node: marked not ready if the node is not Ready (processPod)."""
        pod = self.pods.get(key)
        if pod is None:
            return
        node_name = (pod.get("spec") or {}).get("nodeName", "")
        node = self.nodes.get(node_name)
        if node_name not in self.health or node is None:
            return  # not looked at yet: the next monitor pass marks its pods if need be
        ready = node_health.ready_status(node)
        if ready not in (None, TRUE) and not await self._mark_pods_not_ready(
            node_name, [pod]
        ):
            raise RuntimeError(f"could not mark pod {key} not ready")

    # --- the monitor pass ------------------------------------------------------------------

    async def _monitor(self) -> None:
        nodes = sorted(self.nodes.list(), key=lambda n: _meta(n).get("name", ""))
        self._registered(nodes)
        ready_by_zone: dict[str, list[str | None]] = {}
        for node in nodes:
            zone = node_health.zone_key(node)
            self._tainter(zone)
            try:
                seen = await self._update_health(node)
            except ApiError as e:
                log.warning("%s: node %s health not updated (%s); no pods will be evicted",
                            self.name, _meta(node).get("name"), e)  # fmt: skip
                continue
            if seen is None:
                continue  # deleted under us
            node, assessment = seen
            if not node_health.excluded_from_disruption(node):
                ready_by_zone.setdefault(zone, []).append(assessment.current)
            if assessment.current is None:
                continue
            try:
                await self._after_assessment(node, assessment)
            except ApiError as e:
                log.warning("%s: node %s: %s; next pass", self.name, _meta(node).get("name"), e)
        await self._handle_disruption(nodes, ready_by_zone)

    def _registered(self, nodes: list[dict]) -> None:
        """Events for nodes seen for the first time and nodes gone; forget the gone."""
        names = {_meta(n).get("name") for n in nodes}
        for node in nodes:
            m = _meta(node)
            if m.get("name") not in self.known:
                self.known[m.get("name")] = m.get("uid", "")
                self.events.event(node, "Normal", "RegisteredNode",
                                  f"Registered Node {m.get('name')} in Controller")  # fmt: skip
        for name in [n for n in self.known if n not in names]:
            ref = {"kind": "Node", "apiVersion": "v1",
                   "metadata": {"name": name, "uid": self.known.pop(name)}}  # fmt: skip
            self.events.event(ref, "Normal", "RemovingNode",
                              f"Removing Node {name} from Controller")  # fmt: skip
            self.health.pop(name, None)
            self.retry_pods.discard(name)
            for zone, tainter in self.tainters.items():
                self.tainters[zone] = tainter.remove(name)

    def _tainter(self, zone: str) -> node_health.Tainter:
        if zone not in self.tainters:
            self.evictions.setdefault(zone, 0)
            rate = self.config.node_eviction_rate
            self.tainters[zone] = node_health.Tainter.at_rate(rate, self.now())
        return self.tainters[zone]

    async def _update_health(self, node: dict) -> tuple[dict, node_health.Assessment] | None:
        """Assess ``node`` and write what the assessment says; (the node as it is now,
        the assessment), or None if the node is gone."""
        name = _meta(node).get("name", "")
        conflicts = 0
        while True:
            lease = self.leases.get(f"{node_health.LEASE_NAMESPACE}/{name}")
            assessment = node_health.assess(self.health.get(name), node, lease, self.now(),
                                       self.config)  # fmt: skip
            if assessment.conditions is None:
                break
            status = {**(node.get("status") or {}), "conditions": list(assessment.conditions)}
            try:
                node = await self.client.update_status("nodes", {**node, "status": status})
                break
            except ApiError as e:
                if e.code == 404:
                    return None
                conflicts += 1
                if e.code != 409 or conflicts == RETRIES:
                    raise
            node = await self.client.get_if_exists("nodes", name)
            if node is None:
                return None
        self.health[name] = assessment.health
        return node, assessment

    async def _after_assessment(self, node: dict, assessment: node_health.Assessment) -> None:
        name = _meta(node).get("name", "")
        step = node_health.no_execute_step(assessment.observed, node_health.taints_of(node))
        zone = node_health.zone_key(node)
        now = self.now()
        if step.swap is not None:
            add, remove = step.swap
            if not await self._swap_taints(node, [add], [remove]):
                log.warning("%s: could not swap the NoExecute taint of node %s; next pass",
                            self.name, name)  # fmt: skip
        elif step.queue:
            tainter = self._tainter(zone)
            if step.fresh:
                tainter = tainter.remove(name)
            self.tainters[zone] = tainter.add(name, _meta(node).get("uid", ""), now)
            self.enqueue(TAINT)
        elif step.clear:
            await self._mark_reachable(node)
        left_ready = assessment.observed == TRUE and assessment.current != TRUE
        if left_ready:
            self.events.event(node, "Normal", "NodeNotReady",
                              f"Node {name} status is now: NodeNotReady")  # fmt: skip
        if left_ready or (name in self.retry_pods and assessment.observed != TRUE):
            pods = self.pods.by_index("nodeName", name)
            if not await self._mark_pods_not_ready(name, pods):
                self.retry_pods.add(name)
                return
        self.retry_pods.discard(name)

    async def _mark_pods_not_ready(self, node_name: str, pods: list[dict]) -> bool:
        """Ready False on each of ``pods`` (MarkPodsNotReady); False if a write failed
        (the caller tries again later)."""
        ok = True
        for pod in pods:
            if (pod.get("spec") or {}).get("nodeName") != node_name:
                continue
            status = node_health.pod_not_ready(pod, self.now())
            if status is None:
                continue
            m = _meta(pod)
            try:
                await self.client.update_status("pods", {**pod, "status": status},
                                                namespace=m.get("namespace", ""))  # fmt: skip
            except ApiError as e:
                if e.code != 404:  # gone: nothing left to mark
                    log.info("%s: pod %s/%s not marked not ready: %s", self.name,
                             m.get("namespace"), m.get("name"), e)  # fmt: skip
                    ok = False
                continue
            self.events.event(pod, "Warning", "NodeNotReady", "Node is not ready")
        return ok

    async def _mark_reachable(self, node: dict) -> None:
        """No NoExecute taint of ours, and out of the tainting queue (markNodeAsReachable)."""
        name = _meta(node).get("name", "")
        remove = [node_health.UNREACHABLE_NO_EXECUTE, node_health.NOT_READY_NO_EXECUTE]
        tainted = any(node_health.has_taint(node_health.taints_of(node), t) for t in remove)
        if tainted and not await self._swap_taints(node, [], remove):
            log.warning("%s: could not remove the NoExecute taints of node %s; next pass",
                        self.name, name)  # fmt: skip
            return
        zone = node_health.zone_key(node)
        self.tainters[zone] = self._tainter(zone).remove(name)

    async def _handle_disruption(self, nodes: list[dict], ready_by_zone: dict) -> None:
        decision = node_health.handle_disruption(self.zone_states, ready_by_zone, self.config)
        now = self.now()
        if decision.mode == node_health.ENTER_MASTER_DISRUPTION:
            log.warning("%s: every node is not Ready: no NoExecute taints until one is back",
                        self.name)  # fmt: skip
            for node in nodes:
                # The cache as it is now: a taint added during this pass must go too.
                current = self.nodes.get(_meta(node).get("name", "")) or node
                try:
                    await self._mark_reachable(current)
                except ApiError as e:
                    log.warning("%s: node %s keeps its NoExecute taint: %s", self.name,
                                _meta(node).get("name"), e)  # fmt: skip
        elif decision.mode == node_health.EXIT_MASTER_DISRUPTION:
            log.info("%s: some nodes are Ready again: leaving master disruption mode", self.name)
            self.health = {n: attrs.evolve(h, probe=now) for n, h in self.health.items()}
        for zone, rate in decision.rates.items():
            self.tainters[zone] = self._tainter(zone).with_rate(rate, now)
        for zone, state in decision.states.items():
            if self.zone_states.get(zone, node_health.INITIAL) not in (state, node_health.INITIAL):
                log.info("%s: zone %r is now %s", self.name, zone, state)
        self.zone_states = dict(decision.states)
        zones = {node_health.zone_key(n) for n in nodes}
        for zone in [z for z in self.tainters if z not in zones]:
            del self.tainters[zone]  # no node there any more
        if decision.rates:
            self.enqueue(TAINT)

    # --- the NoExecute tainting pass ---------------------------------------------------------

    async def _taint_pass(self) -> None:
        """Taint the nodes whose turn it is, zone by zone; come back when the next may be."""
        for zone in sorted(self.tainters):
            while zone in self.tainters:
                tainter, due = self.tainters[zone].take(self.now())
                self.tainters[zone] = tainter
                if due is None:
                    break
                await self._taint_one(zone, due)
        now = self.now()
        attempts = [t.next_attempt(now) for t in self.tainters.values()]
        attempts = [a for a in attempts if a is not None]
        if attempts:
            self.requeue_after(TAINT, max(min(attempts) - now, 0.0))

    async def _taint_one(self, zone: str, due: node_health.Queued) -> None:
        node = self.nodes.get(due.name)
        ready = None if node is None else node_health.ready_status(node)
        if node is None or ready == TRUE:
            self._finish(zone, due.name)  # gone, or Ready again: nothing to taint
            return
        if ready is None:
            self._retry(zone, due.name, self.now() + RETRY_NO_READY)
            return
        add, remove = node_health.no_execute_taints_for(ready)
        try:
            swapped = await self._swap_taints(node, [add], [remove])
        except ApiError as e:
            log.warning("%s: tainting node %s: %s; retrying", self.name, due.name, e)
            swapped = False
        if swapped:
            self.evictions[zone] = self.evictions.get(zone, 0) + 1
            self._finish(zone, due.name)
        else:
            self._retry(zone, due.name, self.now())

    # The tainter may have changed during the write (a monitor pass runs beside this
    # one): each change applies to the tainter as it is now.
    def _finish(self, zone: str, name: str) -> None:
        if zone in self.tainters:
            self.tainters[zone] = self.tainters[zone].done(name)

    def _retry(self, zone: str, name: str, at: float) -> None:
        if zone in self.tainters:
            self.tainters[zone] = self.tainters[zone].retry(name, at)

    # --- writing taints ----------------------------------------------------------------------

    async def _swap_taints(self, node: dict, add: list[dict], remove: list[dict]) -> bool:
        """Add ``add`` and remove ``remove`` on the node (see the module rules); False if
        the node is gone or kept moving under every attempt."""
        name = _meta(node).get("name", "")
        for attempt in range(RETRIES):
            taints = node_health.taints_of(node)
            wanted = node_health.swap_taints(taints, add, remove, self.now())
            if wanted == taints:
                return True
            patch = {"metadata": {"resourceVersion": _meta(node).get("resourceVersion")},
                     "spec": {"taints": wanted or None}}  # fmt: skip
            try:
                await self.client.patch("nodes", name, patch)
                return True
            except ApiError as e:
                if e.code == 404 or (e.code == 409 and attempt == RETRIES - 1):
                    return False
                if e.code != 409:
                    raise
            node = await self.client.get_if_exists("nodes", name)
            if node is None:
                return False
        return False
