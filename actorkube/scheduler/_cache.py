"""The scheduler's cache: every node and every pod bound (or about to be bound) to one,
as NodeInfos the framework reads. Pure: the caller says what time it is.

Rules of this file (Kubernetes' pkg/scheduler/internal/cache):

- Nodes and bound pods come from informers (``add_node``, ``add_pod``, ...). A pod bound
  to a node the cache does not know yet is kept and counted on that node once it
  arrives; a node deleted while pods remain on it leaves the node list at once (the
  framework never sees it) and its pods stay until they are deleted.
- ``assume(pod, node)`` counts a pod on its node from the moment the scheduler chose
  it, before the bind is confirmed, so the next cycle sees the room it takes.
  ``forget`` undoes that (the bind failed). ``finish_binding`` starts the assumed pod's
  expiry clock: if the informer never confirms it within ``ttl`` seconds, ``cleanup``
  drops it (the bind was lost). The informer's add of the bound pod confirms it: the
  assumed copy is replaced by the real one, on the node the API server says.
- ``nominate(pod, node)`` holds room on the node a preemption freed for the pod
  (Kubernetes' nominated pods): it counts there like an assumed pod until
  ``unnominate`` (the pod is tried again, bound or deleted). Unlike Kubernetes, the
  room is held against every other pod, not only those of lower priority (see
  DefaultPreemption for how a higher-priority preemptor displaces it). A held pod is
  in ``NodeInfo.nominated``: it is not running, so it is never a victim.
- ``mark_deleting(pod)``: a victim being evicted counts as a pod being deleted by
  preemption (deletionTimestamp and the DisruptionTarget condition) until the informer
  says it is gone, whatever updates arrive meanwhile; ``unmark`` when the eviction
  failed.
- ``nodes()`` lists the schedulable view in a stable order (the order nodes arrived),
  which the framework scans from its rotating start; ``table()`` is the same view as
  a NodeTable, kept up to date row by row as nodes and pods change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ._nodeinfo import NodeInfo, pod_key
from ._table import NodeTable

ASSUMED_POD_TTL = 15 * 60.0  # kube-scheduler's durationToExpireAssumedPod


def node_name_of(pod: Mapping[str, Any]) -> str:
    return (pod.get("spec") or {}).get("nodeName") or ""


def _being_evicted(pod: Mapping[str, Any], when: str) -> Mapping[str, Any]:
    """``pod`` as the scheduler sees a victim of its own preemption."""
    m = pod.get("metadata") or {}
    status = pod.get("status") or {}
    if m.get("deletionTimestamp"):
        return pod
    marked = {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
    conditions = [c for c in status.get("conditions") or () if c.get("type") != "DisruptionTarget"]
    return {**pod, "metadata": {**m, "deletionTimestamp": when},
            "status": {**status, "conditions": [*conditions, marked]}}  # fmt: skip


def _node_stub(name: str) -> dict:
    return {"metadata": {"name": name}}


@attrs.define
class _PodState:
    pod: Mapping[str, Any]
    node: str
    assumed: bool = False
    deadline: float | None = None  # set once binding finished


class SchedulerCache:
    """See the module rules."""

    def __init__(self, *, ttl: float = ASSUMED_POD_TTL) -> None:
        self.ttl = ttl
        # Keys of assumed pods whose binding finished (Kubernetes' assumedPods): what
        # ``cleanup`` looks at each second, not every pod of the cluster. A key whose
        # pod was confirmed or removed meanwhile is dropped there. A dict, for its
        # order: expiries come out the same in every replay of a seed.
        self._bound: dict[str, None] = {}
        self._infos: dict[str, NodeInfo] = {}  # every node with a Node object or pods
        self._real: set[str] = set()  # the names that have a Node object
        self._order: list[NodeInfo] | None = []
        self._pods: dict[str, _PodState] = {}
        self._table: NodeTable | None = None
        self._dirty: set[str] = set()  # nodes changed since the table was last refreshed
        self._nominated: dict[str, tuple[str, Mapping[str, Any]]] = {}
        # pod key -> (when its eviction began, the pod as the API server last said)
        self._evicting: dict[str, tuple[str, Mapping[str, Any]]] = {}

    # --- nodes --------------------------------------------------------------------------

    def add_node(self, node: Mapping[str, Any]) -> NodeInfo:
        """A node arrived or changed."""
        name = node["metadata"]["name"]
        info = self._infos.get(name)
        if info is None:
            info = self._infos[name] = NodeInfo(node)
        else:
            info.set_node(node)
        self._dirty.add(name)
        if name not in self._real:
            self._real.add(name)
            self._order = None
        return info

    update_node = add_node

    def remove_node(self, node: Mapping[str, Any]) -> None:
        name = node["metadata"]["name"]
        if name not in self._real:
            return
        self._real.discard(name)
        self._order = None
        info = self._infos[name]
        if info.pods:
            info.set_node(_node_stub(name))  # its pods stay until they are deleted
        else:
            del self._infos[name]

    def nodes(self) -> list[NodeInfo]:
        """The nodes with a Node object, in arrival order."""
        if self._order is None:
            self._order = [info for name, info in self._infos.items() if name in self._real]
            self._table = None
        return self._order

    def table(self) -> NodeTable:
        """``nodes()`` as a NodeTable (see the module rules)."""
        nodes = self.nodes()
        if self._table is None:
            self._table = NodeTable(nodes)
        else:
            for name in self._dirty:
                info = self._infos.get(name)
                if info is not None:
                    self._table.refresh(info)
        self._dirty.clear()
        return self._table

    def node(self, name: str) -> NodeInfo | None:
        return self._infos.get(name) if name in self._real else None

    # --- pods ---------------------------------------------------------------------------

    def add_pod(self, pod: Mapping[str, Any]) -> None:
        """A pod bound to a node (from the informer); confirms an assumed pod."""
        node = node_name_of(pod)
        if not node:
            return
        key = pod_key(pod)
        evicting = self._evicting.get(key)
        if evicting is not None:
            self._evicting[key] = (evicting[0], pod)
            pod = _being_evicted(pod, evicting[0])
        state = self._pods.get(key)
        if state is not None:
            self._info(state.node).remove_pod(state.pod)
            self._dirty.add(state.node)
        self._pods[key] = _PodState(pod, node)
        self._info(node).add_pod(pod)
        self._dirty.add(node)

    def update_pod(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        self.add_pod(new)

    def remove_pod(self, pod: Mapping[str, Any]) -> None:
        self._evicting.pop(pod_key(pod), None)
        state = self._pods.pop(pod_key(pod), None)
        if state is None:
            return
        info = self._infos.get(state.node)
        if info is None:
            return
        info.remove_pod(state.pod)
        self._dirty.add(state.node)
        if not info.pods and state.node not in self._real:
            del self._infos[state.node]

    def uid_of(self, pod: Mapping[str, Any]) -> str | None:
        """The uid of the pod of this name the cache holds (None: none)."""
        state = self._pods.get(pod_key(pod))
        return None if state is None else (state.pod.get("metadata") or {}).get("uid", "")

    def assume(self, pod: Mapping[str, Any], node: str) -> Mapping[str, Any]:
        """Count ``pod`` on ``node`` now; the assumed copy (``spec.nodeName`` set).
        ValueError if a pod of that name is in the cache already."""
        key = pod_key(pod)
        if key in self._pods:
            raise ValueError(f"pod {key} is already in the cache")
        assumed = {**pod, "spec": {**(pod.get("spec") or {}), "nodeName": node}}
        self._pods[key] = _PodState(assumed, node, assumed=True)
        self._info(node).add_pod(assumed)
        self._dirty.add(node)
        return assumed

    def finish_binding(self, pod: Mapping[str, Any], now: float) -> None:
        state = self._pods.get(pod_key(pod))
        if state is not None and state.assumed:
            state.deadline = now + self.ttl
            self._bound[pod_key(pod)] = None

    def forget(self, pod: Mapping[str, Any]) -> None:
        """An assumed pod whose bind failed: it no longer counts (only that pod: not a
        later one of the same name)."""
        state = self._pods.get(pod_key(pod))
        uid = (pod.get("metadata") or {}).get("uid")
        if state is None or not state.assumed:
            return
        if uid and (state.pod.get("metadata") or {}).get("uid", uid) != uid:
            return
        self.remove_pod(state.pod)

    def is_assumed(self, pod: Mapping[str, Any]) -> bool:
        state = self._pods.get(pod_key(pod))
        return state is not None and state.assumed

    def cleanup(self, now: float) -> list[Mapping[str, Any]]:
        """Drop assumed pods whose binding finished ``ttl`` ago and that no informer
        confirmed; returns them."""
        expired = []
        for key in list(self._bound):
            state = self._pods.get(key)
            if state is None or not state.assumed:
                del self._bound[key]
            elif state.deadline is not None and state.deadline <= now:
                del self._bound[key]
                expired.append(state.pod)
        for pod in expired:
            self.remove_pod(pod)
        return expired

    def nominate(self, pod: Mapping[str, Any], node: str) -> None:
        """Hold room on ``node`` for ``pod`` (nothing if the pod is assumed or bound
        already: it counts where it is)."""
        self.unnominate(pod)
        key = pod_key(pod)
        if key in self._pods:
            return
        held = {**pod, "spec": {**(pod.get("spec") or {}), "nodeName": node}}
        self._nominated[key] = (node, held)
        info = self._info(node)
        info.add_pod(held)
        info.nominated.add(key)
        self._dirty.add(node)

    def unnominate(self, pod: Mapping[str, Any]) -> None:
        entry = self._nominated.pop(pod_key(pod), None)
        if entry is None:
            return
        node, held = entry
        info = self._infos.get(node)
        if info is not None:
            info.remove_pod(held)
            self._dirty.add(node)
            if not info.pods and node not in self._real:
                del self._infos[node]

    def mark_deleting(self, pod: Mapping[str, Any], when: str) -> None:
        """See the module rules."""
        key = pod_key(pod)
        state = self._pods.get(key)
        if state is None or state.assumed or key in self._evicting:
            return
        self._evicting[key] = (when, state.pod)
        self.add_pod(state.pod)

    def unmark(self, pod: Mapping[str, Any]) -> None:
        """The eviction of ``pod`` failed: it counts as it is again."""
        evicting = self._evicting.pop(pod_key(pod), None)
        if evicting is not None and pod_key(pod) in self._pods:
            self.add_pod(evicting[1])

    def nominated(self, pod: Mapping[str, Any]) -> str | None:
        entry = self._nominated.get(pod_key(pod))
        return entry[0] if entry is not None else None

    def pod_count(self) -> int:
        return len(self._pods)

    def _info(self, name: str) -> NodeInfo:
        info = self._infos.get(name)
        if info is None:
            info = self._infos[name] = NodeInfo(_node_stub(name))
        return info
