"""The disruption controller: keeps each PodDisruptionBudget's status (expected,
desired and current healthy pods, the disruptions allowed now, the pods an eviction is
awaited for) in step with its pods, so that the eviction subresource and the
scheduler's preemption can ask it (kube-controller-manager's disruption controller).

Rules of this file:

- Informers on PodDisruptionBudgets, Pods, ReplicaSets and Deployments. A budget
  changed is looked at; a pod added, changed or deleted has every budget that covers it
  looked at (its old labels' budgets too).
- ``reconcile(key)`` is Kubernetes' sync (``_disruption`` computes): the budget's pods,
  their expected count and the desired healthy (a pod's controller found through the
  informers for a ReplicaSet, or the Deployment that owns it, and through the API's
  ``scale`` subresource for any other kind), the pods noted as disrupted still
  awaited, the healthy ones; the status is written if it changed. A budget noted with
  pods not yet deleted is looked at again when the first of them times out.
- A count that cannot be worked out (a controller without a scale) makes the fail-safe
  status: no disruption allowed, DisruptionAllowed False with reason SyncFailed and the
  error (CalculateExpectedPodCountFailed event). Unmanaged pods under a percentage are
  left out, with an UnmanagedPods warning; a budget with no pods gets a NoPods event.
- ``now`` (wall-clock seconds) comes from the actor system's clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actorkube.apiserver import ApiError
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
GROUP, PLURAL = "policy", "poddisruptionbudgets"
APPS = ("apps", "extensions")
UNMANAGED = ("Pods selected by this PodDisruptionBudget (selector: {}) were found to be "
             "unmanaged. As a result, the status of the PDB cannot be calculated correctly, "
             "which may result in undefined behavior. To account for these pods please set "
             '".spec.minAvailable" field of the PDB to an integer value.')  # fmt: skip


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
        namespace = _meta(pod).get("namespace", "")
        for pdb in self.budgets.by_index("namespace", namespace):
            if selects(pdb, pod):
                self.enqueue(object_key(pdb))

    def _pod_updated(self, old: dict, new: dict) -> None:
        self._pod_changed(new)
        if (_meta(old).get("labels") or {}) != (_meta(new).get("labels") or {}):
            self._pod_changed(old)

    async def reconcile(self, key: str) -> None:
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
            scales = await self._scales(pods)
            expected, desired, unmanaged = disruption.expected_and_desired(
                pdb, pods, lambda pod, ref: scales.get(ref.get("uid")))  # fmt: skip
        except (disruption.ExpectedCountError, ValueError) as e:
            failure = str(e)
        if failure:
            self.events.event(pdb, "Warning", "CalculateExpectedPodCountFailed",
                              f"Failed to calculate the number of expected pods: {failure}")
            await self.write_status(PLURAL, GROUP, pdb,
                                    lambda b: disruption.fail_safe_status(b, failure, now))
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

        def status_of(current: dict) -> dict | None:
            return disruption.new_status(current, healthy=healthy, desired=desired,
                                         expected=expected, disrupted=disrupted,
                                         now=now)  # fmt: skip

        await self.write_status(PLURAL, GROUP, pdb, status_of)
        if recheck is not None:
            self.requeue_after(key, max(recheck - now, 0.0))

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
        """A ReplicaSet's scale, or its Deployment's if one controls it."""
        rs = self.sets.get(f"{namespace}/{ref.get('name', '')}")
        if rs is None or _meta(rs).get("uid") != ref.get("uid"):
            return None
        owner = controller_of(rs)
        if owner is None:
            return _meta(rs).get("uid", ""), int(_spec(rs).get("replicas", 1))
        if owner.get("kind") != "Deployment" or _group_of(owner) not in APPS:
            return None
        deployment = self.deployments.get(f"{namespace}/{owner.get('name', '')}")
        if deployment is None or _meta(deployment).get("uid") != owner.get("uid"):
            return None
        return _meta(deployment).get("uid", ""), int(_spec(deployment).get("replicas", 1))

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
            raise disruption.ExpectedCountError(f'no matches for kind "{kind}" in group '
                                                f'"{group}"')  # fmt: skip
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
