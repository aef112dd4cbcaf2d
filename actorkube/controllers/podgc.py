"""The pod garbage collector: removes pods nobody else will (kube-controller-manager's
podgc controller, Kubernetes 1.30).

Rules of this file:

- Every ``period`` (20 s) one pass over the informers' pods and nodes, as ``gc``:
  - **Orphaned**: a pod bound to a node that does not exist. Seen missing from the
    cache, the node is checked again after ``quarantine`` (40 s) with a live read; if
    it is really gone, the pod is marked Failed with the DisruptionTarget condition
    (DeletionByPodGC) unless it already finished, then deleted at once (grace period
    0): no kubelet will ever confirm its end.
  - **Unscheduled and terminating**: a pod marked for deletion that was never bound
    has no kubelet to wait for: marked Failed (no condition) and deleted at once.
  - **Out of service**: a terminating pod on a node that is not Ready and carries the
    ``node.kubernetes.io/out-of-service`` taint (an operator's word that the node is
    down for good) is marked and deleted at once.
  - **Terminated, above the threshold**: when more than ``terminated_threshold``
    (12,500) pods have finished, the oldest beyond it are deleted.
- Deletions carry the pod's uid as a precondition, so a pod made again under the same
  name is never the one deleted. A pod already gone is not an error; one that cannot
  be collected fails the pass only after every other pod had its turn.
- The decisions are the pure ``plan``; the actor reads informers, checks quarantined
  nodes and writes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from actorkube.apiserver import ApiError
from actorkube.apiserver._meta import parse_rfc3339, rfc3339
from actorkube.client import InformerFactory

from . import _replicas as replicas
from ._controller import Controller
from ._fields import meta as _meta

log = logging.getLogger("actorkube.controllers")

CONTROLLER_NAME = "pod-garbage-collector"
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
KEY = "gc"  # the one key: the whole pass


@attrs.frozen
class PodGCConfig:
    """kube-controller-manager's flags: gcCheckPeriod, the quarantine of a missing node,
    --terminated-pod-gc-threshold (0 or less: never)."""

    period: float = 20.0
    quarantine: float = 40.0
    terminated_threshold: int = 12500


@attrs.frozen
class Plan:
    """One pass: pods to delete now (those in ``fail`` marked Failed first, with that
    message on their DisruptionTarget condition, or none for ""), and the nodes to
    check with a live read before their pods are deleted."""

    delete: tuple[dict, ...]
    fail: dict[str, str]  # pod key -> why
    check_nodes: frozenset[str]


def _terminated(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _ready(node: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or ())  # fmt: skip


def _out_of_service(node: Mapping[str, Any]) -> bool:
    return any(t.get("key") == OUT_OF_SERVICE for t in (node.get("spec") or {}).get("taints") or ())


def plan(pods: Iterable[dict], nodes: Mapping[str, dict], gone: Iterable[str],
         config: PodGCConfig) -> Plan:  # fmt: skip
    """The pass over ``pods`` given the cached ``nodes`` by name and the node names a
    live read confirmed ``gone`` (see the module rules)."""
    gone = set(gone)
    delete: dict[str, dict] = {}
    fail: dict[str, str] = {}
    check: set[str] = set()
    finished = []
    for pod in pods:
        key = replicas.pod_key(pod)
        node_name = (pod.get("spec") or {}).get("nodeName") or ""
        deleting = bool(_meta(pod).get("deletionTimestamp"))
        if _terminated(pod):
            finished.append(pod)
        if node_name and node_name not in nodes:
            if node_name in gone:
                delete[key] = pod
                if not _terminated(pod):
                    fail[key] = "PodGC: node no longer exists"
            else:
                check.add(node_name)
        elif deleting and not node_name:
            delete[key] = pod
            if not _terminated(pod):
                fail[key] = ""  # Failed, with no condition (Kubernetes' own)
        elif deleting and node_name:
            node = nodes[node_name]
            if not _ready(node) and _out_of_service(node):
                delete[key] = pod
                if not _terminated(pod):
                    fail[key] = "PodGC: node is out of service"
    excess = len(finished) - config.terminated_threshold
    if config.terminated_threshold > 0 and excess > 0:
        finished.sort(key=lambda p: (parse_rfc3339(_meta(p).get("creationTimestamp")) or 0.0,
                                     _meta(p).get("name", "")))  # fmt: skip
        for pod in finished[:excess]:
            delete.setdefault(replicas.pod_key(pod), pod)
    return Plan(tuple(delete.values()), fail, frozenset(check))


class PodGCController(Controller):
    """The pod garbage collector (see the module rules)."""

    name = CONTROLLER_NAME

    def __init__(self, server: Any, *, token: str, config: PodGCConfig | None = None,
                 workers: int = 1) -> None:  # fmt: skip
        super().__init__(server, token=token, workers=workers)
        self.config = config or PodGCConfig()
        self._missing_since: dict[str, float] = {}  # node name -> first seen missing
        self.deleted = 0

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.pods = factory.informer("pods")
        self.nodes = factory.informer("nodes")
        self.enqueue(KEY)

    async def reconcile(self, key: str) -> None:
        try:
            await self._pass()
        finally:
            self.requeue_after(KEY, self.config.period)

    async def _pass(self) -> None:
        nodes = {_meta(n).get("name", ""): n for n in self.nodes.list()}
        pods = self.pods.list()
        first = self.plan_of(pods, nodes, ())
        gone = await self._confirm_gone(first.check_nodes)
        decided = self.plan_of(pods, nodes, gone)
        failed = []
        for pod in decided.delete:
            # One pod that cannot be collected must not stop the pass for the others.
            try:
                await self._delete(pod, decided.fail.get(replicas.pod_key(pod)))
            except ApiError as e:
                failed.append(f"{replicas.pod_key(pod)}: {e}")
        if failed:
            raise RuntimeError(f"{len(failed)} pods not collected, first {failed[0]}")

    def plan_of(self, pods, nodes, gone) -> Plan:
        return plan(pods, nodes, gone, self.config)

    async def _confirm_gone(self, names: Iterable[str]) -> set[str]:
        """The nodes missing from the cache for the quarantine that a live read says
        are gone; the others' clocks start (or go on)."""
        now = self.system.clock.now()
        names = set(names)
        for name in list(self._missing_since):
            if name not in names:
                del self._missing_since[name]  # back, or its pods are gone
        gone = set()
        for name in names:
            since = self._missing_since.setdefault(name, now)
            if now - since < self.config.quarantine:
                continue
            try:
                await self.client.get("nodes", name)
            except ApiError as e:
                if e.code != 404:
                    raise
                gone.add(name)
            else:
                del self._missing_since[name]  # there after all: the cache was behind
        return gone

    async def _delete(self, pod: dict, why: str | None) -> None:
        m = _meta(pod)
        name, namespace, uid = m.get("name", ""), m.get("namespace", ""), m.get("uid", "")
        try:
            if why is not None:
                await self._mark_failed(pod, why)
            await self.client.delete("pods", name, namespace=namespace, uid=uid,
                                     grace_period=0)  # fmt: skip
        except ApiError as e:
            if e.code in (404, 409):
                return  # gone already, or another pod under this name now
            raise
        self.deleted += 1
        log.info("%s: deleted pod %s/%s", self.name, namespace, name)

    async def _mark_failed(self, pod: dict, why: str) -> None:
        status = dict(pod.get("status") or {})
        conditions = [c for c in status.get("conditions") or ()
                      if not why or c.get("type") != "DisruptionTarget"]  # fmt: skip
        if why:
            conditions.append({"type": "DisruptionTarget", "status": "True",
                               "reason": "DeletionByPodGC",
                               "message": why,
                               "lastTransitionTime": rfc3339(self.system.clock.now())})  # fmt: skip
        body = {**pod, "status": {**status, "phase": "Failed", "conditions": conditions}}
        await self.client.update_status("pods", body, namespace=_meta(pod).get("namespace", ""))
