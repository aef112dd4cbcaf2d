"""The disruption controller: keeps each PodDisruptionBudget's status (expected,
desired and current healthy pods, the disruptions allowed now, the pods an eviction is
awaited for) in step with its pods, so that the eviction subresource and the
scheduler's preemption can ask it (kube-controller-manager's disruption controller).

Rules of this file:

- Informers on PodDisruptionBudgets, Pods, ReplicaSets and Deployments. A budget
  changed is looked at; a pod added, changed or deleted has every budget that covers it
  looked at (its old labels' budgets too).
- ``reconcile(key)`` is Kubernetes' sync (``_disruption`` computes): the budget's pods,
  their expected count and the desired healthy (controllers' scales only for a
  percentage or ``maxUnavailable``: a ReplicaSet's from the informers, or its
  Deployment's if one controls it; any other kind's through the API's ``scale``
  subresource, found by discovery), the pods noted as disrupted still awaited, the
  healthy ones; the status is written if it changed, and only onto the budget as this
  sync read it: one that changed meanwhile (an eviction took a disruption) is synced
  again from the start. A budget noted with pods not yet deleted is looked at again
  when the first of them times out.
- A count that cannot be worked out (a controller without a scale) makes the fail-safe
  status: no disruption allowed, DisruptionAllowed False with reason SyncFailed and the
  error (CalculateExpectedPodCountFailed event). Unmanaged pods under a percentage are
  left out, with an UnmanagedPods warning; a budget with no pods gets a NoPods event.
- A pod marked DisruptionTarget (by an eviction or a preemption, not its kubelet) that
  is still not being deleted two minutes later gets the condition set False (its
  eviction's delete failed), as Kubernetes' stale pod disruption cleanup.
- ``now`` (wall-clock seconds) comes from the actor system's clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actorkube.apiserver import ApiError
from actorkube.apiserver._meta import parse_rfc3339, rfc3339
from actorkube.apiserver._pdb import selects
from actorkube.client import InformerFactory, object_key

from . import _disruption as disruption
from ._controller import Controller
from ._fields import meta as _meta
from ._fields import spec as _spec
from ._namespace_content import served_resources
from ._replicas import controller_of
from .namespace import discover

CONTROLLER_NAME = "disruption-controller"
STALE = "stale-pod:"  # the queue's keys of pods whose DisruptionTarget may be stale
STALE_DISRUPTION_TIMEOUT = 120.0  # Kubernetes' stalePodDisruptionTimeout
DISRUPTION_TARGET = "DisruptionTarget"
GROUP, PLURAL = "policy", "poddisruptionbudgets"
APPS = ("apps", "extensions")
UNMANAGED = ("Pods selected by this PodDisruptionBudget (selector: {}) were found to be "
             "unmanaged. As a result, the status of the PDB cannot be calculated correctly, "
             "which may result in undefined behavior. To account for these pods please set "
             '".spec.minAvailable" field of the PDB to an integer value.')  # fmt: skip


def stale_since(pod: Mapping[str, Any]) -> float | None:
    """When a pod not being deleted, and not finished, was marked a disruption target by
    anything but its kubelet (None: it is not, or it is going as marked)."""
    m, status = _meta(pod), pod.get("status") or {}
    if m.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    for c in status.get("conditions") or ():
        if (c.get("type") == DISRUPTION_TARGET and c.get("status") == "True"
                and c.get("reason") != "TerminationByKubelet"):  # fmt: skip
            return parse_rfc3339(c.get("lastTransitionTime")) or 0.0
    return None


def _group_of(ref: Mapping[str, Any]) -> str:
    return str(ref.get("apiVersion") or "").rpartition("/")[0]


class DisruptionController(Controller):
    """The disruption controller (see the module rules)."""

    name = CONTROLLER_NAME

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.budgets = factory.informer(PLURAL, group=GROUP)
        self.pods = factory.informer("pods")
        self.sets = factory.informer("replicasets", group="apps")
        self.deployments = factory.informer("deployments", group="apps")
        self.budgets.add_handler(self._budget_changed,
                                 lambda old, new: self._budget_changed(new))  # fmt: skip
        self.pods.add_handler(self._pod_changed, self._pod_updated, self._pod_changed)
        # (group, kind) -> (resource, whether it has a scale subresource)
        self._resources: dict[tuple[str, str], tuple[str, bool]] = {}

    def now(self) -> float:
        return self.system.clock.now()

    def _budget_changed(self, pdb: dict) -> None:
        self.enqueue(object_key(pdb))

    def _pod_changed(self, pod: dict) -> None:
        self._check_stale(pod)
        namespace = _meta(pod).get("namespace", "")
        for pdb in self.budgets.by_index("namespace", namespace):
            if selects(pdb, pod):
                self.enqueue(object_key(pdb))

    def _pod_updated(self, old: dict, new: dict) -> None:
        self._pod_changed(new)
        if (_meta(old).get("labels") or {}) != (_meta(new).get("labels") or {}):
            self._pod_changed(old)

    async def reconcile(self, key: str) -> None:
        if key.startswith(STALE):
            await self._clear_stale_condition(key)
            return
        pdb = self.budgets.get(key)
        if pdb is None:
            return
        namespace = _meta(pdb).get("namespace", "")
        pods = [p for p in self.pods.by_index("namespace", namespace) if selects(pdb, p)]
        if not pods:
            self.events.event(pdb, "Normal", "NoPods", "No matching pods found")
        now = self.now()
        failure = ""
        try:
            scales = await self._scales(pods) if disruption.needs_scales(pdb) else {}
            expected, desired, unmanaged = disruption.expected_and_desired(
                pdb, pods, lambda pod, ref: scales.get(ref.get("uid")))  # fmt: skip
        except (disruption.ExpectedCountError, ValueError) as e:
            failure = str(e)
        if failure:
            self.events.event(pdb, "Warning", "CalculateExpectedPodCountFailed",
                              f"Failed to calculate the number of expected pods: {failure}")
            await self._write(key, pdb, lambda b: disruption.fail_safe_status(b, failure, now))
            return
        if unmanaged:
            self.events.event(pdb, "Warning", "UnmanagedPods",
                              UNMANAGED.format(_spec(pdb).get("selector")))  # fmt: skip
        disrupted, recheck, overdue = disruption.disrupted_pods(pdb, pods, now)
        for name in overdue:
            pod = self.pods.get(f"{namespace}/{name}")
            if pod is not None:
                self.events.event(pod, "Warning", "NotDeleted", "Pod was expected by PDB "
                                  f"{namespace}/{_meta(pdb).get('name', '')} to be deleted "
                                  "but it wasn't")  # fmt: skip
        healthy = disruption.count_healthy(pods, disrupted, now)
        await self._write(key, pdb, lambda b: disruption.new_status(
            b, healthy=healthy, desired=desired, expected=expected, disrupted=disrupted,
            now=now))  # fmt: skip
        if recheck is not None:
            self.requeue_after(key, recheck - now)

    async def _write(self, key: str, pdb: dict, status_of) -> None:
        """Write the status worked out from ``pdb`` as this sync saw it. A budget that
        changed meanwhile (an eviction took a disruption) is not written over with
        these numbers: it is synced again from the start, as Kubernetes requeues on a
        conflict."""
        seen = _meta(pdb).get("resourceVersion")

        def status_for(current: dict) -> dict | None:
            if _meta(current).get("resourceVersion") != seen:
                self.enqueue(key)
                return None
            return status_of(current)

        await self.write_status(PLURAL, GROUP, pdb, status_for)

    # --- stale DisruptionTarget conditions -----------------------------------------------

    def _check_stale(self, pod: dict) -> None:
        """A pod marked as a disruption target that is not going after all (its
        eviction's delete failed) gets the condition cleared after
        ``STALE_DISRUPTION_TIMEOUT`` (Kubernetes' stale pod disruption cleanup)."""
        since = stale_since(pod)
        if since is not None:
            left = since + STALE_DISRUPTION_TIMEOUT - self.now()
            self.requeue_after(STALE + object_key(pod), max(left, 0.0))

    async def _clear_stale_condition(self, key: str) -> None:
        pod = self.pods.get(key[len(STALE):])
        since = stale_since(pod) if pod is not None else None
        if since is None:
            return
        left = since + STALE_DISRUPTION_TIMEOUT - self.now()
        if left > 0:
            self.requeue_after(key, left)
            return
        status = pod.get("status") or {}
        conditions = [{**c, "status": "False", "lastTransitionTime": rfc3339(self.now())}
                      if c.get("type") == DISRUPTION_TARGET else c
                      for c in status.get("conditions") or ()]  # fmt: skip
        m = _meta(pod)
        try:
            await self.client.update_status("pods", {**pod, "status": {**status,
                                                                        "conditions": conditions}},
                                            namespace=m.get("namespace", ""))  # fmt: skip
        except ApiError as e:
            if e.code not in (404, 409):  # gone, or changed: the informer brings it back
                raise

    async def _scales(self, pods: list[dict]) -> dict[str, tuple[str, int] | None]:
        """The scale of each controller of ``pods`` by its uid as the pods name it: (the
        uid the scale belongs to, its replicas), or None where the controller is not
        there. Raises ExpectedCountError for a kind without a scale."""
        found: dict[str, tuple[str, int] | None] = {}
        for pod in pods:
            ref = controller_of(pod)
            if ref is None or ref.get("uid") in found:
                continue
            namespace = _meta(pod).get("namespace", "")
            if ref.get("kind") == "ReplicaSet" and _group_of(ref) in APPS:
                found[ref.get("uid")] = self._replica_set_scale(namespace, ref)
            else:
                found[ref.get("uid")] = await self._scale_subresource(namespace, ref)
        return found

    def _replica_set_scale(self, namespace: str, ref: Mapping[str, Any]) -> tuple[str, int] | None:
        """A ReplicaSet's scale, or its Deployment's if one controls it (a ReplicaSet
        whose controller is something else, or gone, counts as itself)."""
        rs = self.sets.get(f"{namespace}/{ref.get('name', '')}")
        if rs is None or _meta(rs).get("uid") != ref.get("uid"):
            return None
        owner = controller_of(rs)
        if owner is not None and owner.get("kind") == "Deployment" and _group_of(owner) in APPS:
            deployment = self.deployments.get(f"{namespace}/{owner.get('name', '')}")
            if deployment is not None and _meta(deployment).get("uid") == owner.get("uid"):
                return (_meta(deployment).get("uid", ""),
                        int(_spec(deployment).get("replicas", 1)))  # fmt: skip
        return _meta(rs).get("uid", ""), int(_spec(rs).get("replicas", 1))

    async def _scale_subresource(self, namespace: str,
                                 ref: Mapping[str, Any]) -> tuple[str, int] | None:  # fmt: skip
        """The scale of a controller of any other kind, through its ``scale``
        subresource (Kubernetes' getScaleController)."""
        group, kind = _group_of(ref), str(ref.get("kind") or "")
        if (group, kind) not in self._resources:
            for r in served_resources(await discover(self.client)).resources:
                self._resources[(r.group, r.kind)] = (r.resource, "scale" in r.subresources)
        resource, scalable = self._resources.get((group, kind), ("", False))
        if not resource:
            return None  # a kind nothing serves: no controller of the pod is there
        if not scalable:
            what = f"{resource}.{group}" if group else resource
            raise disruption.ExpectedCountError(f"{what} does not implement the scale "
                                                "subresource")  # fmt: skip
        try:
            scale = await self.client.request("get", resource, group=group, namespace=namespace,
                                              name=str(ref.get("name") or ""),
                                              subresource="scale")  # fmt: skip
        except ApiError as e:
            if e.code == 404:
                return None  # not there (any more)
            raise
        if _meta(scale).get("uid") not in (None, "", ref.get("uid")):
            return None
        return str(ref.get("uid") or ""), int(_spec(scale).get("replicas") or 0)
