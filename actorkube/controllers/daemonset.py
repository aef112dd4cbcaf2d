"""The DaemonSet controller: one pod of each DaemonSet on every node that should run
it, rolled from template to template node by node, with the templates kept as
ControllerRevisions and the DaemonSet's status written (kube-controller-manager's
daemonset controller; every decision is ``_daemons``').

Rules of this file:

- Informers on DaemonSets, ControllerRevisions, Pods and Nodes; handlers only turn
  events into DaemonSet keys, as Kubernetes' do. A pod or revision with a controller
  reference concerns only that DaemonSet (a pod also tells its expectations a creation
  or a deletion was observed; a pod marked for deletion counts as deleted); an orphan
  concerns every DaemonSet whose selector matches it. A node added concerns the
  DaemonSets that should run there; a node whose labels or taints changed, those whose
  placement there changed; a node deleted, every DaemonSet (Kubernetes does not watch
  deletions: here the status follows at once).
- ``reconcile(key)`` is syncDaemonSet: nothing for a DaemonSet selecting everything
  (an Event says why) or being deleted; else claim the namespace's pods and
  ControllerRevisions (adoption after a live read of the DaemonSet), carry out
  ``_daemons.history`` to learn the current hash; if the expectations are met, carry
  out ``_daemons.sync_pods`` and delete the revisions beyond the history limit; then
  write the status (observedGeneration only when the expectations were met). A create
  or delete that failed fails the sync, after the status is written, so the key comes
  back with backoff.
- Creations go in slow-start batches (1, 2, 4, ...): a failed batch ends the sync's
  creations. Expectations (creations and deletions together, one record per
  DaemonSet) are recorded before any write: a sync that does both waits for both.
- A new revision whose name is taken by another template is a hash collision: the
  live DaemonSet's status.collisionCount goes up (unless the cached one was stale) and
  the sync fails, to come back with the new hash.
- The failed-pod backoff entries live here, keyed as ``_daemons`` says, and are
  forgotten once expired.
- Events on the DaemonSet: SuccessfulCreate, FailedCreate, SuccessfulDelete,
  FailedDelete, FailedDaemonPod, SucceededDaemonPod, SelectingAll.
- ``now`` (wall-clock seconds) comes from the actor system's clock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import trio

from actorkube.actor import ActorRef
from actorkube.apiserver import ApiError
from actorkube.client import InformerFactory, object_key

from . import _adoption as adoption
from . import _daemons as daemons
from . import _replicas as replicas
from ._controller import Controller
from ._fields import meta as _meta

log = logging.getLogger("actorkube.controllers")

CONTROLLER_NAME = "daemonset-controller"
GROUP, PLURAL, REVISIONS = "apps", "daemonsets", "controllerrevisions"


class DaemonSetController(Controller):
    """The DaemonSet controller (see the module rules)."""

    name = CONTROLLER_NAME

    def __init__(self, server: ActorRef, *, token: str, workers: int = 5) -> None:
        super().__init__(server, token=token, workers=workers)
        self.backoff: dict[str, daemons.Backoff] = {}

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.sets = factory.informer(PLURAL, group=GROUP)
        self.revisions = factory.informer(REVISIONS, group=GROUP)
        self.pods = factory.informer("pods")
        self.nodes = factory.informer("nodes")
        self.sets.add_handler(self._set_changed, self._set_updated, self._set_deleted)
        self.revisions.add_handler(self._revision_added, self._revision_updated,
                                   self._revision_deleted)  # fmt: skip
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        self.nodes.add_handler(self._node_added, self._node_updated, self._node_deleted)

    def now(self) -> float:
        return self.system.clock.now()

    # --- events to keys ----------------------------------------------------------------

    def _set_changed(self, ds: dict) -> None:
        self.enqueue(object_key(ds))

    def _set_updated(self, old: dict, new: dict) -> None:
        if _meta(old).get("uid") != _meta(new).get("uid"):
            self._forget(object_key(old))  # deleted and made again between two events
        self.enqueue(object_key(new))

    def _set_deleted(self, ds: dict) -> None:
        self._forget(object_key(ds))
        self.enqueue(object_key(ds))

    def _owner(self, obj: Mapping[str, Any], ref: Mapping[str, Any] | None) -> dict | None:
        """The DaemonSet a controller reference names, if it is one we have (same uid)."""
        if ref is None or ref.get("kind") != daemons.KIND:
            return None
        ds = self.sets.get(f"{_meta(obj).get('namespace', '')}/{ref.get('name', '')}")
        return ds if ds is not None and _meta(ds).get("uid") == ref.get("uid") else None

    def _enqueue_selecting(self, obj: Mapping[str, Any]) -> None:
        namespace = _meta(obj).get("namespace", "")
        for ds in daemons.daemon_sets_for(obj, self.sets.by_index("namespace", namespace)):
            self.enqueue(object_key(ds))

    def _child_updated(self, old: dict, new: dict) -> dict | None:
        """A pod or revision changed: enqueue its old and new owners, or the matching
        DaemonSets of an orphan whose labels or owner changed; its owner now, if any."""
        old_ref, new_ref = replicas.controller_of(old), replicas.controller_of(new)
        if old_ref != new_ref and old_ref is not None:
            ds = self._owner(old, old_ref)
            if ds is not None:
                self.enqueue(object_key(ds))
        if new_ref is not None:
            ds = self._owner(new, new_ref)
            if ds is not None:
                self.enqueue(object_key(ds))
            return ds
        if _meta(old).get("labels") != _meta(new).get("labels") or old_ref != new_ref:
            self._enqueue_selecting(new)
        return None

    def _revision_updated(self, old: dict, new: dict) -> None:
        if _meta(old).get("resourceVersion") != _meta(new).get("resourceVersion"):
            self._child_updated(old, new)

    def _revision_added(self, revision: dict) -> None:
        if _meta(revision).get("deletionTimestamp"):
            self._revision_deleted(revision)
        elif replicas.controller_of(revision) is None:
            self._enqueue_selecting(revision)

    def _revision_deleted(self, revision: dict) -> None:
        ds = self._owner(revision, replicas.controller_of(revision))
        if ds is not None:
            self.enqueue(object_key(ds))

    def _pod_added(self, pod: dict) -> None:
        if _meta(pod).get("deletionTimestamp"):
            self._pod_deleted(pod)  # seen for the first time already going
            return
        ref = replicas.controller_of(pod)
        if ref is None:
            self._enqueue_selecting(pod)
            return
        ds = self._owner(pod, ref)
        if ds is not None:
            self.expectations.creation_observed(object_key(ds))
            self.enqueue(object_key(ds))

    def _pod_updated(self, old: dict, new: dict) -> None:
        if _meta(old).get("resourceVersion") == _meta(new).get("resourceVersion"):
            return  # a resync: nothing new
        if _meta(new).get("deletionTimestamp"):
            self._pod_deleted(new)  # a replacement may start now, not after the grace period
            return
        ds = self._child_updated(old, new)
        min_ready = ((ds or {}).get("spec") or {}).get("minReadySeconds") or 0
        if min_ready > 0 and not replicas.is_ready(old) and replicas.is_ready(new):
            # Available only minReadySeconds from now: nothing else will say so.
            self.requeue_after(object_key(ds), min_ready + 1)

    def _pod_deleted(self, pod: dict) -> None:
        ds = self._owner(pod, replicas.controller_of(pod))
        if ds is None:
            return
        key = object_key(ds)
        self.expectations.deletion_observed(key, replicas.pod_key(pod))
        self.enqueue(key)

    def _node_added(self, node: dict) -> None:
        for ds in self.sets.list():
            if daemons.placement(node, ds).should_run:
                self.enqueue(object_key(ds))

    def _node_updated(self, old: dict, new: dict) -> None:
        taints_old = (old.get("spec") or {}).get("taints")
        taints_new = (new.get("spec") or {}).get("taints")
        if _meta(old).get("labels") == _meta(new).get("labels") and taints_old == taints_new:
            return  # placement reads nothing else of a node (shouldIgnoreNodeUpdate)
        for ds in self.sets.list():
            if daemons.placement(old, ds) != daemons.placement(new, ds):
                self.enqueue(object_key(ds))

    def _node_deleted(self, node: dict) -> None:
        for ds in self.sets.list():
            self.enqueue(object_key(ds))

    # --- expectations --------------------------------------------------------------------

    def _expect(self, key: str, creations: int, deletions: list[str]) -> None:
        self.expectations.expect(key, creations, deletions)

    def _satisfied(self, key: str) -> bool:
        return self.expectations.satisfied(key)

    def _forget(self, key: str) -> None:
        self.expectations.forget(key)

    # --- the sync ----------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        ds = self.sets.get(key)
        if ds is None:
            self._forget(key)
            return
        if daemons.selects_everything(ds):
            self.events.event(ds, "Warning", "SelectingAll", "This daemon set is selecting "
                              "all pods. A non-empty selector is required.")  # fmt: skip
            return
        if _meta(ds).get("deletionTimestamp"):
            return  # its history may be going: no status can be trusted
        pods, revisions = await self._claim(ds)
        hash_, old, pods = await self._construct_history(ds, revisions, pods)
        nodes = sorted(self.nodes.list(), key=lambda n: _meta(n).get("name", ""))
        now = self.now()
        counts = daemons.status_counts(ds, nodes, pods, hash_, now)
        if not self._satisfied(key):
            await self._write_status(ds, counts, None)
            # An event that never comes (a pod made and gone between two lists) must
            # not freeze the DaemonSet: look again when the expectations expire.
            self.requeue_after(key, self.expectations.ttl)
            return
        self.backoff = {k: b for k, b in self.backoff.items() if not b.expired(now)}
        step = daemons.sync_pods(ds, nodes, pods, hash_, now, self.backoff)
        self.backoff.update(step.backoff)
        for type_, reason, message in step.events:
            self.events.event(ds, type_, reason, message)
        failure = await self._sync_nodes(key, ds, step, hash_)
        for revision in daemons.revisions_to_clean(ds, old, pods):
            await self._delete(REVISIONS, GROUP, revision)
        await self._write_status(ds, counts, _meta(ds).get("generation", 0))
        if failure is not None:
            raise RuntimeError(failure)  # the queue retries with backoff
        if step.requeue_after is not None:
            self.requeue_after(key, step.requeue_after)
        if daemons.needs_requeue_for_availability(ds, counts):
            self.requeue_after(key, (ds.get("spec") or {}).get("minReadySeconds", 0))

    async def _claim(self, ds: dict) -> tuple[list[dict], list[dict]]:
        """The DaemonSet's pods and revisions, orphans that match adopted and owned
        ones that no longer match released (ClaimPods, ClaimControllerRevisions)."""
        namespace = _meta(ds).get("namespace", "")
        selector = replicas.selector_of(ds)
        pods = replicas.claim(ds, selector, self.pods.by_index("namespace", namespace))
        revisions = replicas.claim(ds, selector, self.revisions.by_index("namespace", namespace))
        adopt = bool(pods.adopt or revisions.adopt)
        adopt = adopt and await adoption.can_adopt(self.client, PLURAL, GROUP, ds)
        return (await self._settle(ds, "pods", "", pods, adopt),
                await self._settle(ds, REVISIONS, GROUP, revisions, adopt))  # fmt: skip

    async def _settle(
        self, ds: dict, resource: str, group: str, claimed: replicas.Claim, adopt: bool
    ) -> list[dict]:
        owned = list(claimed.owned)
        reference = replicas.controller_reference(ds, daemons.API_VERSION, daemons.KIND)
        for child in claimed.adopt if adopt else ():
            adopted = await adoption.adopt(self.client, resource, group, child, reference)
            if adopted is not None:
                owned.append(adopted)
        for child in claimed.release:
            await adoption.release(self.client, resource, group, child, _meta(ds).get("uid", ""))
        return owned

    async def _construct_history(
        self, ds: dict, revisions: list[dict], pods: list[dict]
    ) -> tuple[str, tuple[dict, ...], list[dict]]:
        """Carry out ``_daemons.history``: the current hash, the old revisions, and the
        pods as relabelled (so that this sync already counts them as current)."""
        namespace = _meta(ds).get("namespace", "")
        plan = daemons.history(ds, revisions, pods)
        for revision in plan.updates:
            await self.client.update(REVISIONS, revision, namespace=namespace, group=GROUP)
        hash_ = plan.hash
        if plan.create is not None:
            hash_ = await self._snapshot(ds, plan.create)
        relabelled = {}
        for pod in plan.relabel:
            written = await self.client.patch("pods", _meta(pod).get("name", ""),
                                              {"metadata": {"labels": {daemons.HASH_LABEL: hash_}}},
                                              namespace=namespace)  # fmt: skip
            relabelled[_meta(pod).get("uid")] = written
        for revision in plan.duplicates:
            await self._delete(REVISIONS, GROUP, revision)
        pods = [relabelled.get(_meta(p).get("uid"), p) for p in pods]
        return hash_, plan.old, pods

    async def _snapshot(self, ds: dict, revision: dict) -> str:
        """Create the current revision; its hash. A name taken by another template is a
        collision (see the module rules)."""
        namespace, name = _meta(ds).get("namespace", ""), _meta(revision).get("name", "")
        try:
            await self.client.create(REVISIONS, revision, namespace=namespace, group=GROUP)
            return revision["metadata"]["labels"][daemons.HASH_LABEL]
        except ApiError as e:
            if e.code != 409:
                raise
            taken = e
        existing = await self.client.get(REVISIONS, name, namespace=namespace, group=GROUP)
        if daemons.matches(ds, existing):
            ours = revision["metadata"]["labels"][daemons.HASH_LABEL]
            return (_meta(existing).get("labels") or {}).get(daemons.HASH_LABEL, ours)
        fresh = await self.client.get(PLURAL, _meta(ds).get("name", ""), namespace=namespace,
                                      group=GROUP)  # fmt: skip
        count = (fresh.get("status") or {}).get("collisionCount")
        if count != (ds.get("status") or {}).get("collisionCount"):
            raise RuntimeError(f"stale collisionCount of DaemonSet {name}: will retry")
        status = {**(fresh.get("status") or {}), "collisionCount": (count or 0) + 1}
        await self.client.update_status(PLURAL, {**fresh, "status": status},
                                        namespace=namespace, group=GROUP)  # fmt: skip
        raise taken

    async def _sync_nodes(self, key: str, ds: dict, step: daemons.Step, hash_: str) -> str | None:
        """syncNodes: create and delete as ``step`` says; the first error, if any."""
        self._expect(key, len(step.create_on), [replicas.pod_key(p) for p in step.delete])
        errors: list[str] = []
        done = 0
        for batch in replicas.slow_start_batches(len(step.create_on)):
            async with trio.open_nursery() as nursery:
                for node in step.create_on[done:done + batch]:
                    nursery.start_soon(self._create_pod, key, ds, node, hash_, errors)
            done += batch
            if errors:
                for _ in range(len(step.create_on) - done):  # the batches not tried
                    self.expectations.creation_observed(key)
                break
        async with trio.open_nursery() as nursery:
            for pod in step.delete:
                nursery.start_soon(self._delete_pod, key, ds, pod, errors)
        return errors[0] if errors else None

    async def _create_pod(self, key: str, ds: dict, node: str, hash_: str,
                          errors: list[str]) -> None:  # fmt: skip
        try:
            pod = await self.client.create("pods", daemons.new_pod(ds, node, hash_),
                                           namespace=_meta(ds).get("namespace", ""))  # fmt: skip
        except ApiError as e:
            self.expectations.creation_observed(key)  # never to be seen
            errors.append(str(e))
            self.events.event(ds, "Warning", "FailedCreate", f"Error creating: {e!s}")
            return
        self.events.event(ds, "Normal", "SuccessfulCreate",
                          f"Created pod: {_meta(pod).get('name')}")  # fmt: skip

    async def _delete_pod(self, key: str, ds: dict, pod: dict, errors: list[str]) -> None:
        m = _meta(pod)
        try:
            await self.client.delete("pods", m.get("name", ""), namespace=m.get("namespace", ""))
        except ApiError as e:
            self.expectations.deletion_observed(key, replicas.pod_key(pod))
            if e.code != 404:
                errors.append(str(e))
                self.events.event(ds, "Warning", "FailedDelete", f"Error deleting: {e!s}")
            return
        self.events.event(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {m.get('name')}")

    async def _delete(self, resource: str, group: str, obj: dict) -> None:
        m = _meta(obj)
        try:
            await self.client.delete(resource, m.get("name", ""), group=group,
                                     namespace=m.get("namespace", ""), uid=m.get("uid", ""))
        except ApiError as e:
            if e.code not in (404, 409):
                raise

    async def _write_status(
        self, ds: dict, counts: dict[str, int], observed_generation: int | None
    ) -> None:
        """storeDaemonSetStatus: write ``counts`` (see ``Controller.write_status``)."""
        await self.write_status(PLURAL, GROUP, ds, lambda current: daemons.updated_status(
            current, counts, observed_generation))  # fmt: skip
