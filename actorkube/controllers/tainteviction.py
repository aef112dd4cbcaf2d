"""The taint eviction controller: deletes the pods of a node whose NoExecute taints they
do not tolerate, at once, or once their tolerationSeconds have run out
(kube-controller-manager's taint-eviction-controller, the NoExecuteTaintManager).

Rules of this file:

- Informers on Pods (indexed by node) and Nodes. A node whose NoExecute taints changed
  (or that came or went) enqueues every pod on it; a pod enqueues itself when it is
  bound, moves, changes its tolerations or goes. Keys are pods' ``namespace/name``.
- ``reconcile(key)`` asks ``_taint_eviction.eviction`` about the pod and its node's
  taints: never -> any countdown is cancelled (event "Cancelling deletion of Pod
  ns/name" if one was running); later -> the key comes back then (``requeue_after``),
  and is decided again, so a taint or toleration that changed meanwhile counts; now ->
  the pod is evicted. What a countdown needs between reconciles (when it started) is
  ``since``, per pod (and uid: a pod made again under the name starts afresh), in
  memory; a pod already being deleted needs nothing more.
- An eviction is Kubernetes': the event TaintManagerEviction "Marking for deletion Pod
  ns/name", the pod's DisruptionTarget condition (DeletionByTaintManager, a strategic
  merge patch of pods/status), then a normal delete (the pod's own grace period), both
  with the pod's uid as precondition so a pod made again under the name is never hit.
  A pod gone meanwhile is done; other errors retry with backoff.
- ``now`` (wall-clock seconds, the clock taints' timeAdded are written with) comes from
  the actor system's clock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from actorkube.actor import ActorRef
from actorkube.apiserver import ApiError
from actorkube.client import InformerFactory, object_key

from . import _taint_eviction as eviction
from ._adoption import SMP
from ._controller import Controller
from ._fields import meta as _meta

log = logging.getLogger("actorkube.controllers")

CONTROLLER_NAME = "taint-eviction-controller"
_GONE = (404, 409)  # 409: the uid precondition failed, the pod is another one now


def _node_name(pod: Mapping[str, Any]) -> list[str]:
    name = (pod.get("spec") or {}).get("nodeName")
    return [name] if name else []


def _placement(pod: Mapping[str, Any]) -> tuple:
    spec = pod.get("spec") or {}
    return spec.get("nodeName"), spec.get("tolerations")


class TaintEvictionController(Controller):
    """The taint eviction controller (see the module rules). ``deletions`` counts the
    pods it deleted (Kubernetes' taint_eviction_controller_pod_deletions_total)."""

    name = CONTROLLER_NAME

    def __init__(self, server: ActorRef, *, token: str, workers: int = 5) -> None:
        super().__init__(server, token=token, workers=workers)
        # pod key -> (uid, countdown start, countdown end)
        self.since: dict[str, tuple[str, float, float]] = {}
        self.deletions = 0

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.nodes = factory.informer("nodes")
        self.pods = factory.informer("pods", indexers={"nodeName": _node_name})
        self.nodes.add_handler(self._node_came_or_went, self._node_updated,
                               self._node_came_or_went)  # fmt: skip
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    def now(self) -> float:
        return self.system.clock.now()

    # --- events to keys ----------------------------------------------------------------

    def _node_came_or_went(self, node: dict) -> None:
        for pod in self.pods.by_index("nodeName", _meta(node).get("name", "")):
            self.enqueue(object_key(pod))

    def _node_updated(self, old: dict, new: dict) -> None:
        if eviction.no_execute_taints(old) != eviction.no_execute_taints(new):
            self._node_came_or_went(new)

    def _pod_added(self, pod: dict) -> None:
        if _node_name(pod):
            self.enqueue(object_key(pod))

    def _pod_updated(self, old: dict, new: dict) -> None:
        if _placement(old) != _placement(new):
            self.enqueue(object_key(new))

    def _pod_deleted(self, pod: dict) -> None:
        self.enqueue(object_key(pod))

    # --- the sync ----------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        pod = self.pods.get(key)
        node_name = (pod.get("spec") or {}).get("nodeName") if pod is not None else None
        if pod is None or not node_name or _meta(pod).get("deletionTimestamp"):
            self.since.pop(key, None)  # gone or going: nothing left to count down
            return
        now = self.now()
        uid = _meta(pod).get("uid", "")
        counting = self.since.get(key)
        scheduled = counting[1:] if counting is not None and counting[0] == uid else None
        taints = eviction.no_execute_taints(self.nodes.get(node_name))
        decision = eviction.eviction(pod, taints, now, scheduled)
        if not decision.scheduled:
            if self.since.pop(key, None) is not None:
                self.events.event(pod, "Normal", "TaintManagerEviction",
                                  f"Cancelling deletion of Pod {key}")  # fmt: skip
            return
        if decision.at > now:
            self.since[key] = (uid, decision.since, decision.at)
            self.requeue_after(key, decision.at - now)
            return
        await self._evict(key, pod)
        self.since.pop(key, None)

    async def _evict(self, key: str, pod: dict) -> None:
        m = _meta(pod)
        name, namespace, uid = m.get("name", ""), m.get("namespace", ""), m.get("uid", "")
        self.events.event(pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {key}")
        try:
            if not _has_disruption_target(pod):
                condition = eviction.disruption_condition(self.now())
                patch = {"metadata": {"uid": uid}, "status": {"conditions": [condition]}}
                await self.client.patch("pods", name, patch, namespace=namespace,
                                        content_type=SMP, subresource="status")  # fmt: skip
            await self.client.delete("pods", name, namespace=namespace, uid=uid)
        except ApiError as e:
            if e.code in _GONE:
                return
            raise
        self.deletions += 1
        log.info("%s: deleted pod %s (NoExecute taint)", self.name, key)


def _has_disruption_target(pod: Mapping[str, Any]) -> bool:
    return any(c.get("type") == eviction.DISRUPTION_TARGET and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or ())  # fmt: skip
