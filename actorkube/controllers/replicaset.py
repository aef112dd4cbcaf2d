"""The ReplicaSet controller: keeps the number of active pods a ReplicaSet selects and
owns at spec.replicas, adopts and releases pods, and writes the ReplicaSet's status
(kube-controller-manager's replicaset controller).

Rules of this file:

- Informers on ReplicaSets and Pods; handlers turn events into ReplicaSet keys as
  Kubernetes' addPod/updatePod/deletePod do: a pod with a controller reference
  concerns only that ReplicaSet (and tells its expectations a creation or deletion was
  observed; a pod marked for deletion counts as deleted, so a replacement starts at
  once rather than after the grace period); an orphan concerns every ReplicaSet whose
  selector matches it, which may adopt it.
- ``reconcile(key)`` is syncReplicaSet: claim the namespace's active pods
  (``_replicas.claim``), adopting orphans only after a live read of the ReplicaSet
  shows it is the same one and not being deleted; then, if its expectations are met,
  create the missing pods in slow-start batches or delete the surplus, ranked; then
  write the status if it changed. A create or delete that failed is in the status's
  ReplicaFailure condition and the key is retried with backoff.
- Each create and delete is an Event on the ReplicaSet (SuccessfulCreate,
  SuccessfulDelete, FailedCreate, FailedDelete), as ``kubectl describe rs`` shows.
- ``now`` (wall-clock seconds) comes from the actor system's clock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import trio

from actorkube.apiserver import ApiError
from actorkube.client import InformerFactory, object_key

from . import _adoption as adoption
from . import _replicas as replicas
from ._controller import Controller
from ._fields import meta as _meta

log = logging.getLogger("actorkube.controllers")

CONTROLLER_NAME = "replicaset-controller"
GROUP, API_VERSION, KIND, PLURAL = "apps", "apps/v1", "ReplicaSet", "replicasets"


class ReplicaSetController(Controller):
    """The ReplicaSet controller (see the module rules)."""

    name = CONTROLLER_NAME

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.sets = factory.informer(PLURAL, group=GROUP)
        self.pods = factory.informer("pods")
        self.sets.add_handler(self._set_changed, lambda old, new: self._set_changed(new),
                              self._set_deleted)  # fmt: skip
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    def now(self) -> float:
        return self.system.clock.now()

    # --- events to keys ----------------------------------------------------------------

    def _set_changed(self, rs: dict) -> None:
        self.enqueue(object_key(rs))

    def _set_deleted(self, rs: dict) -> None:
        key = object_key(rs)
        self.expectations.forget(key)
        self.enqueue(key)

    def _owner(self, pod: Mapping[str, Any], ref: Mapping[str, Any] | None) -> dict | None:
        """The ReplicaSet a controller reference names, if it is one we have (same uid)."""
        if ref is None or ref.get("kind") != KIND:
            return None
        if ref.get("apiVersion", "").split("/")[0] != GROUP:
            return None
        rs = self.sets.get(f"{_meta(pod).get('namespace', '')}/{ref.get('name', '')}")
        return rs if rs is not None and _meta(rs).get("uid") == ref.get("uid") else None

    def _selecting(self, pod: Mapping[str, Any]) -> list[dict]:
        labels = _meta(pod).get("labels") or {}
        return [rs for rs in self.sets.by_index("namespace", _meta(pod).get("namespace", ""))
                if replicas.selector_of(rs).matches(labels)]  # fmt: skip

    def _pod_added(self, pod: dict) -> None:
        if _meta(pod).get("deletionTimestamp"):
            self._pod_deleted(pod)  # seen for the first time already going
            return
        ref = replicas.controller_of(pod)
        if ref is not None:
            rs = self._owner(pod, ref)
            if rs is not None:
                self.expectations.creation_observed(object_key(rs))
                self.enqueue(object_key(rs))
            return
        for rs in self._selecting(pod):
            self.enqueue(object_key(rs))

    def _pod_updated(self, old: dict, new: dict) -> None:
        if _meta(old).get("resourceVersion") == _meta(new).get("resourceVersion"):
            return  # a resync: nothing new
        labels_changed = _meta(old).get("labels") != _meta(new).get("labels")
        if _meta(new).get("deletionTimestamp"):
            self._pod_deleted(new)
            if labels_changed:
                self._pod_deleted(old)
            return
        old_ref, new_ref = replicas.controller_of(old), replicas.controller_of(new)
        if old_ref != new_ref and old_ref is not None:
            rs = self._owner(old, old_ref)
            if rs is not None:
                self.enqueue(object_key(rs))
        if new_ref is not None:
            rs = self._owner(new, new_ref)
            if rs is None:
                return
            self.enqueue(object_key(rs))
            min_ready = (rs.get("spec") or {}).get("minReadySeconds") or 0
            if min_ready > 0 and not replicas.is_ready(old) and replicas.is_ready(new):
                # Available only minReadySeconds from now: nothing else will say so.
                self.requeue_after(object_key(rs), min_ready + 1)
            return
        if labels_changed or old_ref != new_ref:
            for rs in self._selecting(new):
                self.enqueue(object_key(rs))

    def _pod_deleted(self, pod: dict) -> None:
        rs = self._owner(pod, replicas.controller_of(pod))
        if rs is None:
            return
        key = object_key(rs)
        self.expectations.deletion_observed(key, replicas.pod_key(pod))
        self.enqueue(key)

    # --- the sync ----------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        rs = self.sets.get(key)
        if rs is None:
            self.expectations.forget(key)
            return
        namespace = _meta(rs).get("namespace", "")
        act = self.expectations.satisfied(key) and not _meta(rs).get("deletionTimestamp")
        selector = replicas.selector_of(rs)
        active = [p for p in self.pods.by_index("namespace", namespace) if replicas.is_active(p)]
        claimed = replicas.claim(rs, selector, active)
        owned = list(claimed.owned)
        if claimed.adopt and await adoption.can_adopt(self.client, PLURAL, GROUP, rs):
            reference = replicas.controller_reference(rs, API_VERSION, KIND)
            for pod in claimed.adopt:
                adopted = await adoption.adopt(self.client, "pods", "", pod, reference)
                if adopted is not None:
                    owned.append(adopted)
        for pod in claimed.release:
            await adoption.release(self.client, "pods", "", pod, _meta(rs).get("uid", ""))
        failure = await self._manage(key, rs, owned) if act else None
        now = self.now()
        status = replicas.replica_set_status(rs, owned, now, failure)
        if status != (rs.get("status") or {}):
            await self.write_status(PLURAL, GROUP, rs, lambda current: status)
        if failure is not None:
            raise RuntimeError(failure[1])  # the queue retries with backoff
        if replicas.needs_requeue_for_availability(rs, status):
            self.requeue_after(key, (rs.get("spec") or {}).get("minReadySeconds", 0))

    async def _manage(self, key: str, rs: dict, owned: list[dict]) -> tuple[str, str] | None:
        """Create or delete pods towards spec.replicas; (reason, message) of a failure."""
        want = (rs.get("spec") or {}).get("replicas", 1)
        diff = len(owned) - want
        if diff < 0:
            return await self._create(key, rs, min(-diff, replicas.BURST_REPLICAS))
        if diff > 0:
            return await self._delete(key, rs, owned, min(diff, replicas.BURST_REPLICAS))
        return None

    async def _create(self, key: str, rs: dict, count: int) -> tuple[str, str] | None:
        self.expectations.expect_creations(key, count)
        namespace = _meta(rs).get("namespace", "")
        template = replicas.pod_from_template(rs, API_VERSION, KIND)
        errors: list[str] = []
        done = 0
        for batch in replicas.slow_start_batches(count):

            async def create_one() -> None:
                try:
                    pod = await self.client.create("pods", template, namespace=namespace)
                except ApiError as e:
                    self.expectations.creation_observed(key)  # never to be seen
                    errors.append(str(e))
                    self.events.event(rs, "Warning", "FailedCreate", f"Error creating: {e!s}")
                    return
                self.events.event(rs, "Normal", "SuccessfulCreate",
                                  f"Created pod: {_meta(pod).get('name')}")  # fmt: skip

            async with trio.open_nursery() as nursery:
                for _ in range(batch):
                    nursery.start_soon(create_one)
            done += batch
            if errors:
                for _ in range(count - done):  # the batches not tried
                    self.expectations.creation_observed(key)
                return "FailedCreate", errors[0]
        return None

    async def _delete(
        self, key: str, rs: dict, owned: list[dict], count: int
    ) -> tuple[str, str] | None:
        victims = replicas.pods_to_delete(owned, self._related(rs, owned), count, self.now())
        self.expectations.expect_deletions(key, [replicas.pod_key(p) for p in victims])
        errors: list[str] = []

        async def delete_one(pod: dict) -> None:
            m = _meta(pod)
            try:
                await self.client.delete("pods", m.get("name", ""),
                                         namespace=m.get("namespace", ""))  # fmt: skip
            except ApiError as e:
                self.expectations.deletion_observed(key, replicas.pod_key(pod))
                if e.code != 404:
                    errors.append(str(e))
                    self.events.event(rs, "Warning", "FailedDelete", f"Error deleting: {e!s}")
                return
            self.events.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {m.get('name')}")

        async with trio.open_nursery() as nursery:
            for pod in victims:
                nursery.start_soon(delete_one, pod)
        return ("FailedDelete", errors[0]) if errors else None

    def _related(self, rs: dict, owned: list[dict]) -> list[dict]:
        """The active pods of every ReplicaSet with the same controller as ``rs`` (a
        Deployment's old and new ones), or ``rs``'s own if it has none."""
        owner = replicas.controller_of(rs)
        if owner is None:
            return owned
        namespace = _meta(rs).get("namespace", "")
        uid = owner.get("uid")
        siblings = {_meta(s).get("uid") for s in self.sets.by_index("namespace", namespace)
                    if (replicas.controller_of(s) or {}).get("uid") == uid}  # fmt: skip
        return [p for p in self.pods.by_index("namespace", namespace)
                if replicas.is_active(p)
                and (replicas.controller_of(p) or {}).get("uid") in siblings]  # fmt: skip
