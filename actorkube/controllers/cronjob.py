"""The CronJob controller: starts a CronJob's Jobs on its schedule, keeps its history
within limits and its status (kube-controller-manager's cronjob controller, v2; the
schedules and decisions are ``_cron``'s).

Rules of this file:

- Informers on CronJobs and Jobs. A Job's event concerns the CronJob that controls it
  (both of them when the controller reference changed). A CronJob added or changed is
  looked at at once, except that a new schedule or time zone is looked at when it
  next runs.
- ``reconcile(key)`` is sync: if the CronJob controls a Job it does not list as active,
  the cached CronJob may be older than this controller's last status write, so it is
  read live and that copy is used. Then finished Jobs beyond the history limits are
  deleted (SuccessfulDelete), ``observe`` updates the status (SawCompletedJob,
  UnexpectedJob), an active Job the informer lacks is removed only once a live read
  says it is gone (MissingJob), and ``plan`` says whether a run starts: Replace deletes
  the active Jobs first, the Job is created (SuccessfulCreate; AlreadyExists for one
  of ours means the status write after its creation was lost, and it is added now)
  and goes into status.active with lastScheduleTime.
- The status is written once, at the end, whatever was decided before a failure (so a
  Job created is recorded even if a later step fails); the failure then retries the
  key with backoff. Otherwise the key comes back at the next run time (+100 ms).
- Jobs are deleted with Background propagation: the garbage collector takes their pods.
- ``now`` (wall-clock seconds) comes from the actor system's clock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from actorkube.apiserver import ApiError
from actorkube.client import InformerFactory, object_key

from . import _cron as cron
from . import _replicas as replicas
from ._controller import Controller
from ._fields import meta as _meta

log = logging.getLogger("actorkube.controllers")

CONTROLLER_NAME = "cronjob-controller"
GROUP, PLURAL = "batch", "cronjobs"


class CronJobController(Controller):
    """The CronJob controller (see the module rules)."""

    name = CONTROLLER_NAME

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.cronjobs = factory.informer(PLURAL, group=GROUP)
        self.jobs = factory.informer("jobs", group=GROUP)
        self.cronjobs.add_handler(self._cronjob_changed, self._cronjob_updated,
                                  self._cronjob_changed)  # fmt: skip
        self.jobs.add_handler(self._job_changed, self._job_updated, self._job_changed)

    def now(self) -> float:
        return self.system.clock.now()

    # --- events to keys ----------------------------------------------------------------

    def _cronjob_changed(self, cronjob: dict) -> None:
        self.enqueue(object_key(cronjob))

    def _cronjob_updated(self, old: dict, new: dict) -> None:
        before, after = old.get("spec") or {}, new.get("spec") or {}
        moved = (before.get("schedule"), before.get("timeZone")) != (
            after.get("schedule"), after.get("timeZone"))  # fmt: skip
        wait = cron.requeue_delay(new, self.now()) if moved else None
        if wait is None:
            self.enqueue(object_key(new))  # the sync reports a schedule that does not parse
        else:
            self.requeue_after(object_key(new), wait)

    def _enqueue_controller(self, job: Mapping[str, Any], ref: Mapping[str, Any] | None) -> None:
        if ref is not None and ref.get("kind") == cron.KIND:
            self.enqueue(f"{_meta(job).get('namespace', '')}/{ref.get('name', '')}")

    def _job_changed(self, job: dict) -> None:
        self._enqueue_controller(job, replicas.controller_of(job))

    def _job_updated(self, old: dict, new: dict) -> None:
        if _meta(old).get("resourceVersion") == _meta(new).get("resourceVersion"):
            return  # a resync: nothing new
        old_ref, new_ref = replicas.controller_of(old), replicas.controller_of(new)
        if old_ref != new_ref:
            self._enqueue_controller(old, old_ref)
        self._enqueue_controller(new, new_ref)

    # --- the sync ----------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        cronjob = self.cronjobs.get(key)
        if cronjob is None:
            return
        namespace = _meta(cronjob).get("namespace", "")
        jobs = [j for j in self.jobs.by_index("namespace", namespace) if cron.controls(cronjob, j)]
        cronjob = await self._current(cronjob, jobs)
        if cronjob is None:
            return
        work = {**cronjob, "status": dict(cronjob.get("status") or {})}
        error: Exception | None = None
        wait = None
        try:
            wait = await self._sync(work, jobs)
        except Exception as e:  # written below first, as Kubernetes' sync does
            error = e
        if work["status"] != (cronjob.get("status") or {}):
            await self.write_status(PLURAL, GROUP, cronjob, lambda current: work["status"])
        if error is not None:
            raise error
        if wait is not None:
            self.requeue_after(key, wait)

    async def _current(self, cronjob: dict, jobs: Sequence[dict]) -> dict | None:
        """The CronJob, read live when the cache may be older than our own status write
        (it controls a running Job it does not list); None if it is gone."""
        unexpected = cron.observe(cronjob, jobs).unexpected
        if not unexpected:
            return cronjob
        m = _meta(cronjob)
        fresh = await self.client.get_if_exists(PLURAL, m.get("name", ""), group=GROUP,
                                                namespace=m.get("namespace", ""))  # fmt: skip
        if fresh is None:
            return None
        listed = {r.get("uid") for r in (fresh.get("status") or {}).get("active") or ()}
        return fresh if any(_meta(j).get("uid") in listed for j in unexpected) else cronjob

    def _record(self, cronjob: dict, events: Sequence[cron.Event]) -> None:
        for type_, reason, message in events:
            self.events.event(cronjob, type_, reason, message)

    async def _sync(self, work: dict, jobs: list[dict]) -> float | None:
        """syncCronJob on ``work`` (its status changed in place as the sync goes);
        seconds until it should be looked at again."""
        for job in cron.history_to_delete(work, jobs):
            if await self._delete(work, job):
                work["status"] = cron.without_active(work["status"], _meta(job).get("uid", ""))
        seen = cron.observe(work, jobs)
        self._record(work, seen.events)
        work["status"] = seen.status
        for ref in seen.missing:
            if await self._gone(ref):
                self.events.event(work, "Normal", "MissingJob",
                                  f"Active job went missing: {ref.get('name')}")  # fmt: skip
                work["status"] = cron.without_active(work["status"], ref.get("uid", ""))
        now = self.now()
        decision = cron.plan(work, now)
        self._record(work, decision.events)
        if decision.scheduled is None:
            return decision.requeue_after
        for ref in decision.replace:
            job = await self._get_job(work, ref)
            if not await self._delete(work, job):
                raise RuntimeError(f"could not replace job {ref.get('name')}")
            work["status"] = cron.without_active(work["status"], ref.get("uid", ""))
        job = await self._create(work, decision.scheduled)
        if job is not None:
            work["status"] = cron.started(work["status"], job, decision.scheduled)
        return cron.next_run_in(work, now, decision.schedule)

    async def _create(self, work: dict, scheduled: float) -> dict | None:
        """Create the run's Job; the Job to add to status.active (None: nothing to add,
        it is there already or it is not ours)."""
        body = cron.job_for(work, scheduled)
        namespace = _meta(work).get("namespace", "")
        try:
            job = await self.client.create("jobs", body, namespace=namespace, group=GROUP)
        except ApiError as e:
            if e.reason != "AlreadyExists":
                self.events.event(work, "Warning", "FailedCreate", f"Error creating job: {e!s}")
                raise
            job = await self.client.get("jobs", body["metadata"]["name"], namespace=namespace,
                                        group=GROUP)  # fmt: skip
            listed = {r.get("uid") for r in work["status"].get("active") or ()}
            if not cron.controls(work, job) or _meta(job).get("uid") in listed:
                return None
            log.info("%s: job %s/%s already exists", self.name, namespace, _meta(job).get("name"))
            return job
        self.events.event(work, "Normal", "SuccessfulCreate",
                          f"Created job {_meta(job).get('name')}")  # fmt: skip
        return job

    async def _get_job(self, work: dict, ref: Mapping[str, Any]) -> dict:
        try:
            return await self.client.get("jobs", ref.get("name", ""), group=GROUP,
                                         namespace=ref.get("namespace", ""))  # fmt: skip
        except ApiError as e:
            self.events.event(work, "Warning", "FailedGet", f"Get job: {e!s}")
            raise

    async def _gone(self, ref: Mapping[str, Any]) -> bool:
        """Whether a live read says the referenced Job no longer exists."""
        job = await self.client.get_if_exists("jobs", ref.get("name", ""), group=GROUP,
                                              namespace=ref.get("namespace", ""))  # fmt: skip
        return job is None

    async def _delete(self, work: dict, job: Mapping[str, Any]) -> bool:
        """Delete a Job (its pods go with it, in the background); whether it is gone."""
        m = _meta(job)
        try:
            await self.client.delete("jobs", m.get("name", ""), namespace=m.get("namespace", ""),
                                     group=GROUP, propagation_policy="Background")  # fmt: skip
        except ApiError as e:
            if e.code == 404:
                return True  # gone already (a sync that started over deleted it)
            self.events.event(work, "Warning", "FailedDelete", f"Deleted job: {e!s}")
            return False
        self.events.event(work, "Normal", "SuccessfulDelete", f"Deleted job {m.get('name')}")
        return True
