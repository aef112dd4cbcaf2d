"""The Deployment controller: rolls a Deployment's pods from one template to the next
through ReplicaSets, RollingUpdate or Recreate, keeps their revisions, and writes the
Deployment's status and conditions (kube-controller-manager's deployment controller).

Rules of this file:

- Informers on Deployments, ReplicaSets and Pods. A ReplicaSet event concerns the
  Deployment that controls it (or, for an orphan, every Deployment whose selector
  matches it); a pod event concerns its ReplicaSet's Deployment only when that
  Deployment uses Recreate, which waits for old pods to be gone.
- ``reconcile(key)`` claims the namespace's ReplicaSets as the ReplicaSet controller
  claims pods (adoption after a live read of the Deployment), then carries out one
  step of ``_rollout.plan``: create the new ReplicaSet, scale or annotate ReplicaSets,
  delete those beyond the revision history, write the Deployment's revision annotation
  and its status. Everything the plan decides comes from the informers' state; the
  writes are conditional on the versions read, so a stale cache costs a conflict and a
  retry, never a double scale.
- A new ReplicaSet's name is ``<deployment>-<hash>``: one that exists already with
  another template is a hash collision, which bumps status.collisionCount (and so the
  hash) as Kubernetes does.
- Each ReplicaSet the controller creates or scales is an Event on the Deployment
  (ScalingReplicaSet), as ``kubectl describe deployment`` shows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from actorkube.apiserver import ApiError
from actorkube.apiserver._meta import rfc3339
from actorkube.client import InformerFactory, object_key

from . import _adoption as adoption
from . import _replicas as replicas
from . import _rollout as rollout
from ._controller import Controller
from ._fields import meta as _meta

log = logging.getLogger("actorkube.controllers")

CONTROLLER_NAME = "deployment-controller"
GROUP, API_VERSION, KIND = "apps", "apps/v1", "Deployment"


def _recreate(deployment: Mapping[str, Any]) -> bool:
    strategy = (deployment.get("spec") or {}).get("strategy") or {}
    return strategy.get("type") == "Recreate"


class DeploymentController(Controller):
    """The Deployment controller (see the module rules)."""

    name = CONTROLLER_NAME

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.deployments = factory.informer("deployments", group=GROUP)
        self.sets = factory.informer("replicasets", group=GROUP)
        self.pods = factory.informer("pods")
        self.deployments.add_handler(self._deployment_changed,
                                     lambda old, new: self._deployment_changed(new),
                                     self._deployment_changed)  # fmt: skip
        self.sets.add_handler(self._set_changed, self._set_updated, self._set_changed)
        self.pods.add_handler(self._pod_changed, lambda old, new: self._pod_changed(new),
                              self._pod_changed)  # fmt: skip

    def now(self) -> float:
        return self.system.clock.now()

    # --- events to keys ----------------------------------------------------------------

    def _deployment_changed(self, deployment: dict) -> None:
        self.enqueue(object_key(deployment))

    def _owner(self, obj: Mapping[str, Any]) -> dict | None:
        """The Deployment that controls ``obj`` (a ReplicaSet), if we have it."""
        ref = replicas.controller_of(obj)
        if ref is None or ref.get("kind") != KIND:
            return None
        d = self.deployments.get(f"{_meta(obj).get('namespace', '')}/{ref.get('name', '')}")
        return d if d is not None and _meta(d).get("uid") == ref.get("uid") else None

    def _selecting(self, rs: Mapping[str, Any]) -> list[dict]:
        labels = _meta(rs).get("labels") or {}
        namespace = _meta(rs).get("namespace", "")
        return [d for d in self.deployments.by_index("namespace", namespace)
                if replicas.selector_of(d).matches(labels)]  # fmt: skip

    def _set_changed(self, rs: dict) -> None:
        owner = self._owner(rs)
        if owner is not None:
            self.enqueue(object_key(owner))
        elif replicas.controller_of(rs) is None:
            for d in self._selecting(rs):
                self.enqueue(object_key(d))

    def _set_updated(self, old: dict, new: dict) -> None:
        if _meta(old).get("resourceVersion") == _meta(new).get("resourceVersion"):
            return
        old_owner = self._owner(old)
        if old_owner is not None and replicas.controller_of(old) != replicas.controller_of(new):
            self.enqueue(object_key(old_owner))
        self._set_changed(new)
        if replicas.controller_of(new) is None and _meta(old).get("labels") != _meta(new).get(
            "labels"
        ):
            for d in self._selecting(old):
                self.enqueue(object_key(d))

    def _pod_changed(self, pod: dict) -> None:
        ref = replicas.controller_of(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.sets.get(f"{_meta(pod).get('namespace', '')}/{ref.get('name', '')}")
        if rs is None or _meta(rs).get("uid") != ref.get("uid"):
            return
        owner = self._owner(rs)
        if owner is not None and _recreate(owner):
            self.enqueue(object_key(owner))

    # --- the sync ----------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        d = self.deployments.get(key)
        if d is None:
            return
        namespace = _meta(d).get("namespace", "")
        selector = replicas.selector_of(d)
        candidates = self.sets.by_index("namespace", namespace)
        claimed = replicas.claim(d, selector, candidates)
        owned = list(claimed.owned)
        if claimed.adopt and await adoption.can_adopt(self.client, "deployments", GROUP, d):
            reference = replicas.controller_reference(d, API_VERSION, KIND)
            for rs in claimed.adopt:
                adopted = await adoption.adopt(self.client, "replicasets", GROUP, rs, reference)
                if adopted is not None:
                    owned.append(adopted)
        for rs in claimed.release:
            await adoption.release(self.client, "replicasets", GROUP, rs, _meta(d).get("uid", ""))
        uids = {_meta(rs).get("uid") for rs in owned}
        pods = [p for p in self.pods.by_index("namespace", namespace)
                if (replicas.controller_of(p) or {}).get("uid") in uids]  # fmt: skip
        plan = rollout.plan(d, owned, pods, self.now())
        await self._carry_out(d, plan)
        if plan.requeue_after is not None:
            self.requeue_after(key, plan.requeue_after)

    async def _carry_out(self, d: dict, plan: rollout.Plan) -> None:
        namespace = _meta(d).get("namespace", "")
        status = plan.status
        if plan.create is not None:
            status = await self._create(d, plan.create, status)
        for rs in plan.updates:
            await self._update_set(d, rs)
        for rs in plan.deletes:
            await self._delete_set(rs)
        if plan.deployment_annotations is not None:
            m = {**_meta(d), "annotations": plan.deployment_annotations}
            d = await self.client.update("deployments", {**d, "metadata": m},
                                         namespace=namespace, group=GROUP)  # fmt: skip
        if status != (d.get("status") or {}):
            await self.client.update_status("deployments", {**d, "status": status},
                                            namespace=namespace, group=GROUP)  # fmt: skip

    async def _create(self, d: dict, rs: dict, status: dict) -> dict:
        """Create the new ReplicaSet; the status to write (a collision counted)."""
        namespace = _meta(d).get("namespace", "")
        try:
            created = await self.client.create("replicasets", rs, namespace=namespace,
                                               group=GROUP)  # fmt: skip
        except ApiError as e:
            name = _meta(rs).get("name", "")
            if e.code != 409:
                # Progressing=False, ReplicaSetCreateError (syncRolloutStatus keeps it
                # until a sync creates the ReplicaSet), then the retry with backoff.
                failed = {"type": "Progressing", "status": "False",
                          "reason": "ReplicaSetCreateError",
                          "message": f'Failed to create new replica set "{name}": {e}',
                          "lastUpdateTime": rfc3339(self.now()),
                          "lastTransitionTime": rfc3339(self.now())}  # fmt: skip
                kept = [c for c in status.get("conditions") or () if c.get("type") != "Progressing"]
                self.events.event(d, "Warning", "FailedCreate", failed["message"])
                await self.client.update_status("deployments",
                                                {**d, "status": {**status,
                                                                 "conditions": [*kept, failed]}},
                                                namespace=namespace, group=GROUP)  # fmt: skip
                raise
            existing = await self.client.get("replicasets", name, namespace=namespace, group=GROUP)
            same = rollout.equal_ignore_hash(
                (existing.get("spec") or {}).get("template") or {},
                (d.get("spec") or {}).get("template") or {},
            )
            if same and rollout.is_owned_by(existing, d):
                return status  # ours already: the next sync finds it
            # A hash collision: another template under this name. A new count makes a
            # new hash (Kubernetes' collisionCount).
            count = (d.get("status") or {}).get("collisionCount", 0) + 1
            return {**status, "collisionCount": count}
        replicas_ = (created.get("spec") or {}).get("replicas", 0)
        self.events.event(d, "Normal", "ScalingReplicaSet",
                          f"Scaled up replica set {_meta(created).get('name')} from 0 to "
                          f"{replicas_}")  # fmt: skip
        return status

    async def _update_set(self, d: dict, rs: dict) -> None:
        namespace = _meta(rs).get("namespace", "")
        before = self.sets.get(object_key(rs))
        await self.client.update("replicasets", rs, namespace=namespace, group=GROUP)
        old = ((before or {}).get("spec") or {}).get("replicas")
        new = (rs.get("spec") or {}).get("replicas")
        if old is not None and new is not None and old != new:
            direction = "up" if new > old else "down"
            self.events.event(d, "Normal", "ScalingReplicaSet",
                              f"Scaled {direction} replica set {_meta(rs).get('name')} from "
                              f"{old} to {new}")  # fmt: skip

    async def _delete_set(self, rs: dict) -> None:
        m = _meta(rs)
        try:
            await self.client.delete("replicasets", m.get("name", ""), group=GROUP,
                                     namespace=m.get("namespace", ""), uid=m.get("uid", ""))
        except ApiError as e:
            if e.code != 404:
                raise
