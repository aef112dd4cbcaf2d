"""The TTL-after-finished controller: deletes a finished Job (and, in the foreground,
its pods) once ``spec.ttlSecondsAfterFinished`` has passed since it finished
(kube-controller-manager's ttl-after-finished-controller).

Rules of this file:

- An informer on Jobs. A Job not being deleted, finished (Complete or Failed) and with
  a TTL is looked at; one whose TTL is still running comes back when it runs out.
- A Job finished when its Complete or Failed condition turned True
  (``lastTransitionTime``); a finish time in the future (clock skew) only defers the
  cleanup by as much.
- Before deleting, the Job is read live and its TTL checked again (the cached copy may
  be stale: someone may have changed the TTL); the delete is Foreground, with the live
  copy's uid as a precondition, so a Job recreated under the same name is never taken.
- ``now`` (wall-clock seconds) comes from the actor system's clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actorkube.apiserver import ApiError
from actorkube.apiserver._meta import parse_rfc3339
from actorkube.client import InformerFactory, object_key

from . import _jobs as jobs
from ._controller import Controller
from ._fields import meta as _meta
from ._fields import spec as _spec
from ._fields import status as _status

CONTROLLER_NAME = "ttl-after-finished-controller"
GROUP, PLURAL = "batch", "jobs"


def needs_cleanup(job: Mapping[str, Any]) -> bool:
    """A TTL is set, the Job finished and is not being deleted."""
    return (_spec(job).get("ttlSecondsAfterFinished") is not None and jobs.is_finished(job)
            and not _meta(job).get("deletionTimestamp"))  # fmt: skip


def time_left(job: Mapping[str, Any], now: float) -> float:
    """Seconds until the finished Job's TTL runs out (<= 0: it has). Raises
    ``ValueError`` when the finish time cannot be found."""
    status = _status(job)
    for kind in (jobs.COMPLETE, jobs.FAILED):
        c = jobs.condition(status, kind)
        if c is not None and c.get("status") == "True":
            finished = parse_rfc3339(c.get("lastTransitionTime"))
            if finished is None:
                break
            return finished + int(_spec(job)["ttlSecondsAfterFinished"]) - now
    m = _meta(job)
    raise ValueError(f"unable to find the time when the Job {m.get('namespace')}/"
                     f"{m.get('name')} finished")  # fmt: skip


class TTLAfterFinishedController(Controller):
    """The TTL-after-finished controller (see the module rules)."""

    name = CONTROLLER_NAME

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.jobs = factory.informer(PLURAL, group=GROUP)
        self.jobs.add_handler(self._job_changed, lambda old, new: self._job_changed(new))

    def now(self) -> float:
        return self.system.clock.now()

    def _job_changed(self, job: dict) -> None:
        if needs_cleanup(job):
            self.enqueue(object_key(job))

    def _expired(self, job: Mapping[str, Any], key: str) -> bool:
        """Whether ``job``'s TTL ran out; if it runs later, the key comes back then."""
        if not needs_cleanup(job):
            return False
        left = time_left(job, self.now())
        if left > 0:
            self.requeue_after(key, left)
            return False
        return True

    async def reconcile(self, key: str) -> None:
        job = self.jobs.get(key)
        if job is None or not self._expired(job, key):
            return
        m = _meta(job)
        namespace, name = m.get("namespace", ""), m.get("name", "")
        fresh = await self.client.get_if_exists(PLURAL, name, namespace=namespace, group=GROUP)
        if fresh is None or not self._expired(fresh, key):
            return
        try:
            await self.client.delete(PLURAL, name, namespace=namespace, group=GROUP,
                                     uid=_meta(fresh).get("uid", ""),
                                     propagation_policy="Foreground")  # fmt: skip
        except ApiError as e:
            if e.code not in (404, 409):  # gone, or another Job now has the name
                raise
