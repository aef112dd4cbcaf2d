"""The Job controller: runs a Job's pods until enough of them succeed, or until it fails
(too many failures, its deadline), and keeps the Job's status
(kube-controller-manager's job controller; the decisions are ``_jobs``').

Rules of this file:

- Informers on Jobs and Pods. A pod event concerns the Job that controls the pod
  (telling its expectations a creation or deletion was seen, and its finalizer
  expectations that a tracking finalizer is gone), or for an orphan every Job whose
  selector matches it (which may adopt it). Pod events and status changes look at the
  Job a second later (syncJobBatchPeriod: a burst of pod changes makes one sync); a
  Job added, deleted or whose spec changed is looked at at once.
- ``reconcile(key)`` is syncJob (see ``_jobs``): claim the namespace's pods (an orphan
  is adopted with the tracking finalizer, after a live read of the Job), assess them;
  a Job that fails has its active pods deleted; otherwise, when its expectations are
  met, pods are created (in slow-start batches) or deleted (their finalizer removed
  first: they are not failures), and the Suspended condition follows spec.suspend.
  Then the status is written (with the newly finished pods uncounted), their
  finalizers removed, and the status written again with them counted and, once
  nothing is uncounted or terminating, the terminal condition.
- The pod-failure backoff record of each Job, and the pods whose finalizer removal is
  awaited, are this controller's memory (Kubernetes' backoffStore and
  finalizerExpectations); a Job waiting out its backoff is looked at again then, one
  with activeDeadlineSeconds when the deadline comes.
- A pod holding the tracking finalizer that no Job will count (no controller, its Job
  gone or finished) has it removed (syncOrphanPod; keys ``orphan:<namespace>/<name>``).
- Events as Kubernetes': SuccessfulCreate, FailedCreate, SuccessfulDelete,
  FailedDelete, Suspended, Resumed, Completed, and a failure's reason
  (BackoffLimitExceeded, DeadlineExceeded, PodFailurePolicy) as a Warning.
- ``now`` (wall-clock seconds) comes from the actor system's clock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import trio

from actorkube.apiserver import ApiError
from actorkube.apiserver._meta import parse_rfc3339, rfc3339
from actorkube.client import InformerFactory, object_key

from . import _adoption as adoption
from . import _jobs as jobs
from . import _replicas as replicas
from ._controller import Controller
from ._fields import meta as _meta

log = logging.getLogger("actorkube.controllers")

CONTROLLER_NAME = "job-controller"
GROUP, PLURAL = "batch", "jobs"
BATCH_PERIOD = 1.0  # syncJobBatchPeriod
ORPHAN = "orphan:"
SMP = "application/strategic-merge-patch+json"
_REMOVE_FINALIZER = {"metadata": {"$deleteFromPrimitiveList/finalizers":
                                  [jobs.TRACKING_FINALIZER]}}  # fmt: skip


class JobController(Controller):
    """The Job controller (see the module rules)."""

    name = CONTROLLER_NAME

    def __init__(self, server, *, token: str, workers: int = 5) -> None:
        super().__init__(server, token=token, workers=workers)
        self.backoff: dict[str, jobs.BackoffRecord] = {}
        self.removing: dict[str, set[str]] = {}  # job key -> pod uids losing the finalizer

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.jobs = factory.informer(PLURAL, group=GROUP)
        self.pods = factory.informer("pods")
        self.jobs.add_handler(self._job_added, self._job_updated, self._job_deleted)
        self.pods.add_handler(self._pod_added, self._pod_updated,
                              lambda pod: self._pod_deleted(pod, final=True))  # fmt: skip

    def now(self) -> float:
        return self.system.clock.now()

    # --- events to keys ----------------------------------------------------------------

    def _later(self, key: str) -> None:
        self.requeue_after(key, BATCH_PERIOD)

    def _job_added(self, job: dict) -> None:
        self.enqueue(object_key(job))

    def _job_updated(self, old: dict, new: dict) -> None:
        key = object_key(new)
        if _meta(old).get("generation") == _meta(new).get("generation"):
            self._later(key)
        else:
            self.enqueue(key)
        if jobs.is_finished(new):
            self._release_all(new)  # a backup: the sync that finished it removed them
        start = (new.get("status") or {}).get("startTime")
        deadline = (new.get("spec") or {}).get("activeDeadlineSeconds")
        if start and deadline is not None and deadline != (old.get("spec") or {}).get(
                "activeDeadlineSeconds"):  # fmt: skip
            started = parse_rfc3339(start) or self.now()
            self.requeue_after(key, deadline - (self.now() - started))

    def _job_deleted(self, job: dict) -> None:
        self.enqueue(object_key(job))
        self._release_all(job)

    def _release_all(self, job: Mapping[str, Any]) -> None:
        """cleanupPodFinalizers: the Job's pods that still hold the finalizer."""
        for pod in self.pods.by_index("namespace", _meta(job).get("namespace", "")):
            ref = replicas.controller_of(pod) or {}
            if ref.get("uid") == _meta(job).get("uid") and jobs.has_finalizer(pod):
                self.enqueue(ORPHAN + replicas.pod_key(pod))

    def _owner(self, pod: Mapping[str, Any], ref: Mapping[str, Any] | None) -> dict | None:
        """The Job a controller reference names, if it is one we have (same uid)."""
        if ref is None or ref.get("kind") != jobs.KIND:
            return None
        job = self.jobs.get(f"{_meta(pod).get('namespace', '')}/{ref.get('name', '')}")
        return job if job is not None and _meta(job).get("uid") == ref.get("uid") else None

    def _selecting(self, pod: Mapping[str, Any]) -> list[dict]:
        labels = _meta(pod).get("labels") or {}
        return [j for j in self.jobs.by_index("namespace", _meta(pod).get("namespace", ""))
                if replicas.selector_of(j).matches(labels)]  # fmt: skip

    def _removal_observed(self, key: str, pod: Mapping[str, Any]) -> None:
        self.removing.get(key, set()).discard(jobs.uid(pod))

    def _pod_added(self, pod: dict) -> None:
        if _meta(pod).get("deletionTimestamp"):
            self._pod_deleted(pod, final=False)  # seen for the first time already going
            return
        ref = replicas.controller_of(pod)
        if ref is not None:
            job = self._owner(pod, ref)
            if job is not None:
                self.expectations.creation_observed(object_key(job))
                self._later(object_key(job))
            return
        if jobs.has_finalizer(pod):
            self.enqueue(ORPHAN + replicas.pod_key(pod))
        for job in self._selecting(pod):
            self._later(object_key(job))

    def _pod_updated(self, old: dict, new: dict) -> None:
        if _meta(old).get("resourceVersion") == _meta(new).get("resourceVersion"):
            return  # a resync: nothing new
        if _meta(new).get("deletionTimestamp"):
            self._pod_deleted(new, final=False)
            return
        old_ref, new_ref = replicas.controller_of(old), replicas.controller_of(new)
        for ref in ([old_ref] if old_ref != new_ref and old_ref is not None else []) + [new_ref]:
            job = self._owner(new, ref)
            if job is not None:
                if not jobs.has_finalizer(new):
                    self._removal_observed(object_key(job), new)
                self._later(object_key(job))
        if new_ref is not None:
            return
        if jobs.has_finalizer(new):
            self.enqueue(ORPHAN + replicas.pod_key(new))
        if _meta(old).get("labels") != _meta(new).get("labels") or old_ref is not None:
            for job in self._selecting(new):
                self._later(object_key(job))

    def _pod_deleted(self, pod: dict, *, final: bool) -> None:
        ref = replicas.controller_of(pod)
        job = self._owner(pod, ref)
        if job is None or jobs.is_finished(job):
            if jobs.has_finalizer(pod) and not final:
                self.enqueue(ORPHAN + replicas.pod_key(pod))  # no sync will remove it
            return
        key = object_key(job)
        self.expectations.deletion_observed(key, replicas.pod_key(pod))
        if final or not jobs.has_finalizer(pod):
            self._removal_observed(key, pod)
        self._later(key)

    # --- the sync ----------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        if key.startswith(ORPHAN):
            await self._sync_orphan(key.removeprefix(ORPHAN))
            return
        job = self.jobs.get(key)
        if job is None:
            self.expectations.forget(key)
            self.backoff.pop(key, None)
            self.removing.pop(key, None)
            return
        if jobs.managed_elsewhere(job):
            return
        if jobs.is_finished(job):
            self.backoff.pop(key, None)
            return
        if (job.get("spec") or {}).get("completionMode") not in (None, "NonIndexed", "Indexed"):
            self.events.event(job, "Warning", "UnknownCompletionMode",
                              "Skipped Job sync because completion mode is unknown")  # fmt: skip
            return
        await self._sync(key, job)

    async def _sync(self, key: str, job: dict) -> None:
        satisfied = self.expectations.satisfied(key)
        pods = await self._claim(job)
        removing = frozenset(self.removing.get(key, ()))
        now = self.now()
        view = jobs.assess(job, pods, now=now, removing=removing,
                           backoff=self.backoff.get(key, jobs.BackoffRecord()))  # fmt: skip
        if view.deadline_in is not None:
            self.requeue_after(key, view.deadline_in)
        counts = _Counts(len(view.active), view.ready, view.terminating)
        conditions = list((job.get("status") or {}).get("conditions") or ())
        finish, error = view.finish, None
        if finish is not None:
            removed, removed_ready, error = await self._delete(key, job, view.active,
                                                               release=False)  # fmt: skip
            if removed != len(view.active) or not satisfied:
                finish = None  # not yet: pods remain that the informer has not shown gone
            counts = counts.removed(removed, removed_ready)
        else:
            managed = satisfied and not _meta(job).get("deletionTimestamp")
            if managed:
                counts, error = await self._manage(key, job, view, counts, now)
            if jobs.has_succeeded(job, view, counts.active):
                finish = jobs.new_condition(jobs.SUCCESS_CRITERIA_MET,
                                            *jobs.COMPLETIONS_REACHED, now)  # fmt: skip
            elif managed:
                conditions, resumed = self._suspension(job, conditions, now)
                if resumed:  # the deadline counts from the resume
                    view = attrs.evolve(view, start_time=rfc3339(now))
        tracking = jobs.track(job, view, finish=finish, active=counts.active, ready=counts.ready,
                              terminating=counts.terminating, conditions=conditions, now=now,
                              removing=removing)  # fmt: skip
        await self._track(key, job, view, tracking, counts.terminating, now)
        if error is not None:
            raise error  # the queue retries with backoff

    def _suspension(self, job: dict, conditions: list[dict], now: float) -> tuple[list, bool]:
        """The Suspended condition as spec.suspend says; whether the Job was resumed."""
        if jobs.is_suspended(job):
            conditions, changed = jobs.ensure_condition(
                conditions, jobs.SUSPENDED, "True", "JobSuspended", "Job suspended", now)
            if changed:
                self.events.event(job, "Normal", "Suspended", "Job suspended")
            return conditions, False
        conditions, changed = jobs.ensure_condition(conditions, jobs.SUSPENDED, "False",
                                                    "JobResumed", "Job resumed", now)  # fmt: skip
        if changed:
            self.events.event(job, "Normal", "Resumed", "Job resumed")
        return conditions, changed

    async def _track(self, key: str, job: dict, view: jobs.Assessment,
                     tracking: jobs.Tracking, terminating: int, now: float) -> None:  # fmt: skip
        """Write the status, remove the finalizers, count the pods that let go of them
        and finish the Job when it may be (trackJobStatusAndRemoveFinalizers)."""
        was_finished = jobs.is_finished(job)
        if tracking.write:
            job = await self._write_status(job, tracking.status)
            if job is None:
                return
            self.backoff[key] = view.backoff
        released, error = await self._release(key, tracking.release)
        status, changed = jobs.settle(job.get("status") or {}, tracking.held - released,
                                      tracking.finish, terminating, now)  # fmt: skip
        if changed:
            job = await self._write_status(job, status)
            if job is not None and jobs.is_finished(job) and not was_finished:
                self.events.event(job, *jobs.finished_event(tracking.finish))
        if error is not None:
            raise error

    # --- pods --------------------------------------------------------------------------

    async def _claim(self, job: dict) -> list[dict]:
        """getPodsForJob: the pods the Job owns, orphans it matches adopted (with the
        tracking finalizer), pods that no longer match released."""
        namespace = _meta(job).get("namespace", "")
        claimed = replicas.claim(job, replicas.selector_of(job),
                                 self.pods.by_index("namespace", namespace))  # fmt: skip
        owned = list(claimed.owned)
        if claimed.adopt and await adoption.can_adopt(self.client, PLURAL, GROUP, job):
            reference = replicas.controller_reference(job, jobs.API_VERSION, jobs.KIND)
            for pod in claimed.adopt:
                adopted = await self._patch_pod(pod, {"metadata": {
                    "ownerReferences": [reference], "uid": _meta(pod).get("uid"),
                    "finalizers": [jobs.TRACKING_FINALIZER]}})  # fmt: skip
                if adopted is not None:
                    owned.append(adopted)
        for pod in claimed.release:
            await adoption.release(self.client, "pods", "", pod, _meta(job).get("uid", ""))
        return owned

    async def _manage(self, key: str, job: dict, view: jobs.Assessment, counts: _Counts,
                      now: float) -> tuple[_Counts, Exception | None]:  # fmt: skip
        plan = jobs.manage(job, view, now)
        if plan.delete:
            self.expectations.expect_deletions(key, [replicas.pod_key(p) for p in plan.delete])
            removed, removed_ready, error = await self._delete(key, job, plan.delete, release=True)
            return counts.removed(removed, removed_ready), error
        if plan.wait > 0:
            self.requeue_after(key, max(plan.wait, BATCH_PERIOD))
        if plan.create:
            created, error = await self._create(key, job, plan)
            return attrs.evolve(counts, active=counts.active + created), error
        return counts, None

    async def _create(self, key: str, job: dict,
                      plan: jobs.Management) -> tuple[int, Exception | None]:  # fmt: skip
        """Create the pods of ``plan`` in slow-start batches; how many were made and the
        first error."""
        self.expectations.expect_creations(key, plan.create)
        namespace = _meta(job).get("namespace", "")
        indexes: list[int | None] = list(plan.indexes) or [None] * plan.create
        errors: list[ApiError] = []
        made = 0

        async def create_one(index: int | None) -> None:
            nonlocal made
            try:
                pod = await self.client.create("pods", jobs.pod_for(job, index),
                                               namespace=namespace)  # fmt: skip
            except ApiError as e:
                self.expectations.creation_observed(key)  # never to be seen
                errors.append(e)
                self.events.event(job, "Warning", "FailedCreate", f"Error creating: {e!s}")
                return
            made += 1
            self.events.event(job, "Normal", "SuccessfulCreate",
                              f"Created pod: {_meta(pod).get('name')}")  # fmt: skip

        for batch in replicas.slow_start_batches(plan.create):
            chunk, indexes = indexes[:batch], indexes[batch:]
            async with trio.open_nursery() as nursery:
                for index in chunk:
                    nursery.start_soon(create_one, index)
            if errors:
                for _ in indexes:  # the batches not tried
                    self.expectations.creation_observed(key)
                break
        return made, errors[0] if errors else None

    async def _delete(self, key: str, job: dict, pods: Sequence[dict],
                      *, release: bool) -> tuple[int, int, Exception | None]:  # fmt: skip
        """Delete ``pods`` (``release``: their finalizer removed first, so that they do
        not count as failed: deleteJobPods; otherwise deleteActivePods). How many were
        deleted, how many of them were ready, and the first error."""
        removed = ready = 0
        errors: list[ApiError] = []

        async def delete_one(pod: dict) -> None:
            nonlocal removed, ready
            m = _meta(pod)
            try:
                if release and jobs.has_finalizer(pod):
                    await self._unfinalize(pod)
                await self.client.delete("pods", m.get("name", ""),
                                         namespace=m.get("namespace", ""))  # fmt: skip
            except ApiError as e:
                if release:
                    self.expectations.deletion_observed(key, replicas.pod_key(pod))
                if e.code != 404:
                    errors.append(e)
                    self.events.event(job, "Warning", "FailedDelete", f"Error deleting: {e!s}")
                    return
            removed += 1
            ready += replicas.is_ready(pod)
            self.events.event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {m.get('name')}")

        async with trio.open_nursery() as nursery:
            for pod in pods:
                nursery.start_soon(delete_one, pod)
        return removed, ready, errors[0] if errors else None

    async def _release(self, key: str, pods: Sequence[dict]) -> tuple[frozenset[str], Any]:
        """Remove the tracking finalizer from ``pods``: the uids it is gone from (a pod
        already gone counts) and the first error."""
        awaited = self.removing.setdefault(key, set())
        awaited.update(jobs.uid(p) for p in pods)
        done: set[str] = set()
        errors: list[ApiError] = []

        async def release_one(pod: dict) -> None:
            try:
                await self._unfinalize(pod)
            except ApiError as e:
                awaited.discard(jobs.uid(pod))  # no update will come
                if e.code != 404:
                    errors.append(e)
                    return
            done.add(jobs.uid(pod))

        async with trio.open_nursery() as nursery:
            for pod in pods:
                nursery.start_soon(release_one, pod)
        return frozenset(done), errors[0] if errors else None

    async def _unfinalize(self, pod: Mapping[str, Any]) -> dict:
        """Remove the pod's tracking finalizer (removeTrackingFinalizerPatch)."""
        m = _meta(pod)
        return await self.client.patch("pods", m.get("name", ""), _REMOVE_FINALIZER,
                                       namespace=m.get("namespace", ""), content_type=SMP)

    async def _patch_pod(self, pod: Mapping[str, Any], patch: dict) -> dict | None:
        """A strategic merge patch of a pod; None if it is gone or changed (404, 409,
        422: the next sync looks again)."""
        m = _meta(pod)
        try:
            return await self.client.patch("pods", m.get("name", ""), patch, content_type=SMP,
                                           namespace=m.get("namespace", ""))  # fmt: skip
        except ApiError as e:
            if e.code in (404, 409, 422):
                return None
            raise

    async def _sync_orphan(self, pod_key: str) -> None:
        """syncOrphanPod: remove the finalizer of a pod no Job will count."""
        pod = self.pods.get(pod_key)
        if pod is None or not jobs.has_finalizer(pod):
            return
        ref = replicas.controller_of(pod)
        if ref is not None:
            if ref.get("kind") != jobs.KIND or ref.get("apiVersion") != jobs.API_VERSION:
                return  # not a Job's pod: not ours to touch
            job = self._owner(pod, ref)
            if job is not None and (jobs.managed_elsewhere(job) or not jobs.is_finished(job)):
                return  # its Job counts it
        await self._patch_pod(pod, _REMOVE_FINALIZER)

    async def _write_status(self, job: dict, status: dict) -> dict | None:
        """Write the Job's status (a conflict is an error: the next sync reads the newer
        Job); the Job as written, None if it is gone."""
        m = _meta(job)
        try:
            return await self.client.update_status(PLURAL, {**job, "status": status},
                                                   namespace=m.get("namespace", ""),
                                                   group=GROUP)  # fmt: skip
        except ApiError as e:
            if e.code == 404:
                return None
            raise


@attrs.frozen
class _Counts:
    """The Job's active, ready and terminating pods as this sync leaves them."""

    active: int
    ready: int
    terminating: int

    def removed(self, count: int, ready: int) -> _Counts:
        """``count`` active pods (``ready`` of them ready) deleted: now terminating."""
        return _Counts(self.active - count, self.ready - ready, self.terminating + count)
