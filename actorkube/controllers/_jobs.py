"""The pure core of the Job controller: what a Job's pods say, what to create or delete,
when the Job has failed or succeeded, and its status (kube-controller-manager's
pkg/controller/job, as Kubernetes 1.31 and 1.32 behave with their default feature
gates: pod replacement policy, success criteria, delayed terminal conditions).

Rules of this file:

- Objects are Kubernetes JSON as dicts, never modified; times are seconds since the
  epoch, given, never read from a clock.
- A sync (syncJob) is these steps, the actor doing the I/O between them:
  ``assess`` (the pods, the counts, the start time, the pod-failure backoff, and whether
  the Job fails now: a FailureTarget already recorded, more failed pods than
  backoffLimit, as many container restarts as backoffLimit under OnFailure, or
  activeDeadlineSeconds passed), then either deleting the active pods of a Job that
  fails or ``manage`` (the pods to create or delete), then ``has_succeeded`` and
  ``track`` (the status to write, the finalizers to remove), then ``settle`` (the
  counters and the terminal condition once the finalizers are gone).
- A pod is counted once, through the ``batch.kubernetes.io/job-tracking`` finalizer
  every pod of a Job is created with: a pod that finished (Succeeded; Failed, or being
  deleted unless only failed pods are replaced) and still has the finalizer goes into
  ``status.uncountedTerminatedPods`` (``track``; written before anything else), then
  its finalizer is removed, then it moves from there to ``succeeded`` or ``failed``
  (``settle``). A pod whose finalizer removal is awaited is counted already.
- A Job that fails or succeeds first gets the interim condition (FailureTarget with
  the reason, or SuccessCriteriaMet/CompletionsReached) and its active pods deleted;
  the terminal condition (Failed or Complete with the same reason and message, and
  completionTime for Complete) comes once no pod is uncounted or terminating.
- Failed pods hold new pods back: 10 s after the last failure, doubling with each
  failure since the last success, at most 10 minutes (the backoff record).
- The pod failure policy's rules (exit codes, pod conditions) are matched in order: a
  FailJob rule fails the Job (reason PodFailurePolicy), an Ignore rule's pod is not
  counted. Per-index backoff (backoffLimitPerIndex, FailIndex) and successPolicy are
  not implemented: such Jobs run as if they had neither.
- Indexed Jobs: each pod has a completion index (annotation and label
  ``batch.kubernetes.io/job-completion-index``, hostname ``<job>-<index>``, name
  ``<job>-<index>-xxxxx``, env ``JOB_COMPLETION_INDEX``); the lowest indexes neither
  succeeded nor running are started first; a pod whose index is out of range, unknown
  or taken by another pod is deleted; ``completedIndexes`` lists the succeeded ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from actorkube.apiserver._meta import parse_rfc3339, rfc3339

from . import _replicas as replicas
from ._fields import meta as _meta
from ._fields import spec as _spec
from ._fields import status as _status

API_VERSION, KIND = "batch/v1", "Job"
TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
INDEX_ENV = "JOB_COMPLETION_INDEX"
JOB_CONTROLLER = "kubernetes.io/job-controller"  # managedBy's value for this controller
POD_FAILURE_BACKOFF = 10.0  # DefaultJobPodFailureBackOff
MAX_POD_FAILURE_BACKOFF = 600.0  # MaxJobPodFailureBackOff
MAX_UNCOUNTED_PODS = 500
MAX_PODS_PER_SYNC = 500  # MaxPodCreateDeletePerSync

COMPLETE, FAILED, SUSPENDED = "Complete", "Failed", "Suspended"
FAILURE_TARGET, SUCCESS_CRITERIA_MET = "FailureTarget", "SuccessCriteriaMet"
BACKOFF_LIMIT_EXCEEDED = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")
COMPLETIONS_REACHED = ("CompletionsReached", "Reached expected number of succeeded pods")
POD_FAILURE_POLICY = "PodFailurePolicy"


# --- the job --------------------------------------------------------------------------------


def condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for c in status.get("conditions") or ():
        if c.get("type") == kind:
            return c
    return None


def condition_true(status: Mapping[str, Any], kind: str) -> bool:
    c = condition(status, kind)
    return c is not None and c.get("status") == "True"


def is_finished(job: Mapping[str, Any]) -> bool:
    """Complete or Failed: nothing more is done for the Job."""
    return condition_true(_status(job), COMPLETE) or condition_true(_status(job), FAILED)


def is_suspended(job: Mapping[str, Any]) -> bool:
    return _spec(job).get("suspend") is True


def is_indexed(job: Mapping[str, Any]) -> bool:
    return _spec(job).get("completionMode") == "Indexed"


def managed_elsewhere(job: Mapping[str, Any]) -> bool:
    """spec.managedBy names another controller: this one leaves the Job alone."""
    managed_by = _spec(job).get("managedBy")
    return managed_by is not None and managed_by != JOB_CONTROLLER


def only_replace_failed(job: Mapping[str, Any]) -> bool:
    """Replacements wait for a pod to be Failed, not just being deleted."""
    spec = _spec(job)
    return spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None


def new_condition(kind: str, reason: str, message: str, now: float, status: str = "True") -> dict:
    stamp = rfc3339(now)
    return {"type": kind, "status": status, "lastProbeTime": stamp,
            "lastTransitionTime": stamp, "reason": reason, "message": message}  # fmt: skip


def ensure_condition(conditions: Sequence[dict], kind: str, status: str, reason: str,
                     message: str, now: float) -> tuple[list[dict], bool]:  # fmt: skip
    """ensureJobConditionStatus: the conditions with ``kind`` at ``status`` (a False
    condition is never added, only set), and whether they changed."""
    out = [dict(c) for c in conditions]
    for i, c in enumerate(out):
        if c.get("type") == kind:
            if (c.get("status"), c.get("reason"), c.get("message")) == (status, reason, message):
                return out, False
            out[i] = new_condition(kind, reason, message, now, status)
            return out, True
    if status == "False":
        return out, False
    return [*out, new_condition(kind, reason, message, now, status)], True


# --- pods -----------------------------------------------------------------------------------


def has_finalizer(pod: Mapping[str, Any]) -> bool:
    return TRACKING_FINALIZER in (_meta(pod).get("finalizers") or ())


def uid(pod: Mapping[str, Any]) -> str:
    return str(_meta(pod).get("uid", ""))


def phase(pod: Mapping[str, Any]) -> str:
    return str(_status(pod).get("phase", ""))


def is_terminating(pod: Mapping[str, Any]) -> bool:
    """Being deleted and not yet Succeeded or Failed (IsPodTerminating)."""
    return bool(_meta(pod).get("deletionTimestamp")) and phase(pod) not in ("Succeeded", "Failed")


def is_failed(pod: Mapping[str, Any], job: Mapping[str, Any]) -> bool:
    """isPodFailed: Failed, or being deleted without having succeeded (it may never get
    to report a phase) unless only failed pods are replaced."""
    if phase(pod) == "Failed":
        return True
    if only_replace_failed(job):
        return False
    return bool(_meta(pod).get("deletionTimestamp")) and phase(pod) != "Succeeded"


def completion_index(pod: Mapping[str, Any]) -> int | None:
    """The pod's completion index (its annotation), None if it has none or it is not a
    number."""
    raw = (_meta(pod).get("annotations") or {}).get(COMPLETION_INDEX)
    if raw is None or not raw.isdigit():
        return None
    return int(raw)


def finished_at(pod: Mapping[str, Any], now: float) -> float:
    """getFinishedTime: the last container's finishedAt (all must have finished), else
    when it stopped being Ready, else its deletion less its grace period, else now."""
    latest = None
    for c in _status(pod).get("containerStatuses") or ():
        ended = parse_rfc3339(((c.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        if ended is None:
            latest = None
            break
        latest = ended if latest is None else max(latest, ended)
    if latest is not None:
        return latest
    for c in _status(pod).get("conditions") or ():
        if c.get("type") == "Ready" and c.get("status") == "False":
            since = parse_rfc3339(c.get("lastTransitionTime"))
            if since is not None:
                return since
    deleted = parse_rfc3339(_meta(pod).get("deletionTimestamp"))
    if deleted is not None:
        return deleted - (_meta(pod).get("deletionGracePeriodSeconds") or 0)
    return now


def _restarts(pod: Mapping[str, Any]) -> int:
    status = _status(pod)
    return sum(c.get("restartCount", 0) for field in ("initContainerStatuses", "containerStatuses")
               for c in status.get(field) or ())  # fmt: skip


def past_backoff_limit_on_failure(job: Mapping[str, Any], pods: Iterable[dict]) -> bool:
    """Under restartPolicy OnFailure failed containers restart in their pod: the
    restarts of the Pending and Running pods count against backoffLimit (reached when
    they are as many; any restart with a limit of 0)."""
    template = (_spec(job).get("template") or {}).get("spec") or {}
    if template.get("restartPolicy") != "OnFailure":
        return False
    restarts = sum(_restarts(p) for p in pods if phase(p) in ("Pending", "Running"))
    limit = _spec(job).get("backoffLimit", 6)
    return restarts > 0 if limit == 0 else restarts >= limit


def _newest_first(moment: float | None) -> float:
    """A time as a sort key that puts a missing one first, then the newest."""
    return float("-inf") if moment is None else -moment


def _rank(pod: Mapping[str, Any]) -> tuple:
    """controller.ActivePods as a sort key, first to delete first: unscheduled; Pending,
    Unknown, Running; not ready; ready for less time; more restarts of a container;
    newer."""
    ready = replicas.is_ready(pod)
    restarts = max((c.get("restartCount", 0) for c in _status(pod).get("containerStatuses") or ()),
                   default=0)  # fmt: skip
    return (bool(_spec(pod).get("nodeName")), {"Unknown": 1, "Running": 2}.get(phase(pod), 0),
            ready, _newest_first(replicas.ready_since(pod)) if ready else 0.0, -restarts,
            _newest_first(parse_rfc3339(_meta(pod).get("creationTimestamp"))))  # fmt: skip


# --- the pod-failure backoff ----------------------------------------------------------------


@attrs.frozen
class BackoffRecord:
    """How many pods failed since the last success (and when the last one did):
    Kubernetes' backoffRecord, kept by the controller per Job."""

    failures: int = 0
    last_failure: float | None = None

    def after(self, succeeded: Sequence[dict], failed: Sequence[dict], now: float) -> BackoffRecord:
        """newBackoffRecord: with the newly finished pods counted (a success starts the
        count again from the failures after it)."""
        if not failed and not succeeded:
            return self
        if not succeeded:
            last = max(finished_at(p, now) for p in failed)
            return BackoffRecord(self.failures + len(failed), last)
        last_success = max(finished_at(p, now) for p in succeeded)
        later = [t for t in (finished_at(p, now) for p in failed) if t > last_success]
        return BackoffRecord(len(later), max(later) if later else None)

    def remaining(self, now: float) -> float:
        """Seconds before a new pod may be created (0: now)."""
        if self.failures == 0 or self.last_failure is None:
            return 0.0
        delay = min(POD_FAILURE_BACKOFF * 2 ** (self.failures - 1), MAX_POD_FAILURE_BACKOFF)
        return max(0.0, delay - (now - self.last_failure))


# --- indexes --------------------------------------------------------------------------------


def parse_indexes(text: str | None, completions: int) -> list[int]:
    """The indexes of a ``completedIndexes`` text ("1,3-5,7"), below ``completions``,
    in order; what does not parse is skipped."""
    out: set[int] = set()
    for part in (text or "").split(","):
        first, _, last = part.partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            continue
        out.update(range(int(first), min(int(last or first), completions - 1) + 1))
    return sorted(i for i in out if i < completions)


def format_indexes(indexes: Iterable[int]) -> str:
    """Sorted indexes as Kubernetes writes them: runs of three or more as "a-b"."""
    runs: list[list[int]] = []
    for i in sorted(set(indexes)):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    parts = []
    for first, last in runs:
        if last == first:
            parts.append(str(first))
        else:
            parts.append(f"{first}{',' if last == first + 1 else '-'}{last}")
    return ",".join(parts)


def _index_surplus(pods: Sequence[dict], completions: int) -> list[dict]:
    """Active pods of an Indexed Job that must go: no index or one out of range, and
    all but the last (in ActivePods order) of pods sharing an index."""
    by_index: dict[int | None, list[dict]] = {}
    for p in pods:
        ix = completion_index(p)
        by_index.setdefault(ix if ix is not None and ix < completions else None, []).append(p)
    surplus = list(by_index.pop(None, []))
    for same in by_index.values():
        surplus += sorted(same, key=_rank)[:-1]
    return surplus


def pods_to_remove(job: Mapping[str, Any], active: Sequence[dict], count: int) -> list[dict]:
    """activePodsForRemoval: an Indexed Job's surplus first, then, while fewer than
    ``count``, the pods ranked first by ActivePods."""
    surplus = _index_surplus(active, _spec(job).get("completions") or 0) if is_indexed(job) else []
    gone = {uid(p) for p in surplus}
    left = sorted((p for p in active if uid(p) not in gone), key=_rank)
    return surplus + left[: max(0, count - len(surplus))]


# --- assess ---------------------------------------------------------------------------------


@attrs.frozen
class Assessment:
    """What the pods of a Job say (syncJobCtx). ``pods``: every pod the Job owns;
    ``active``: those neither finished nor being deleted; ``succeeded``/``failed``: the
    status counters with the new and the uncounted pods; ``finish``: the condition the
    Job is failing or succeeding with (interim FailureTarget/SuccessCriteriaMet, or the
    Failed a recorded FailureTarget leads to); ``deadline_in``: when the active deadline
    comes, to look again then."""

    pods: tuple[dict, ...]
    active: tuple[dict, ...]
    ready: int
    terminating: int
    new_succeeded: tuple[dict, ...]
    new_failed: tuple[dict, ...]
    succeeded: int
    failed: int
    start_time: str | None
    backoff: BackoffRecord
    finish: dict | None = None
    deadline_in: float | None = None
    completed_indexes: tuple[int, ...] = ()


def _uncounted(job: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    got = _status(job).get("uncountedTerminatedPods") or {}
    return set(got.get("succeeded") or ()), set(got.get("failed") or ())


def _new_finished(job: Mapping[str, Any], pods: Sequence[dict],
                  removing: frozenset[str]) -> tuple[list[dict], list[dict]]:  # fmt: skip
    """getNewFinishedPods: finished pods not yet counted anywhere (with the finalizer,
    not uncounted, not awaiting their finalizer's removal, with a valid index)."""
    uncounted_ok, uncounted_failed = _uncounted(job)
    completions = _spec(job).get("completions") or 0
    succeeded, failed = [], []
    for p in pods:
        if not has_finalizer(p) or uid(p) in removing:
            continue
        if is_indexed(job) and (completion_index(p) is None or completion_index(p) >= completions):
            continue
        if phase(p) == "Succeeded" and uid(p) not in uncounted_ok:
            succeeded.append(p)
        elif is_failed(p, job) and uid(p) not in uncounted_failed:
            failed.append(p)
    return succeeded, failed


def _failure_policy_message(job: Mapping[str, Any], pods: Sequence[dict]) -> str | None:
    """A failed pod matching a FailJob rule of the pod failure policy fails the Job."""
    for p in pods:
        if is_failed(p, job):
            action, message = match_failure_policy(job, p)
            if action == "FailJob":
                return message
    return None


def match_failure_policy(job: Mapping[str, Any], pod: Mapping[str, Any]) -> tuple[str, str]:
    """matchPodFailurePolicy: the action of the first rule the failed ``pod`` matches
    ("" if none) and the FailJob message."""
    name = f"{_meta(pod).get('namespace', '')}/{_meta(pod).get('name', '')}"
    rules = (_spec(job).get("podFailurePolicy") or {}).get("rules") or ()
    for i, rule in enumerate(rules):
        codes = rule.get("onExitCodes")
        if codes is not None:
            container, code = _matching_exit(pod, codes)
            if container is not None:
                return rule.get("action", ""), (
                    f"Container {container} for pod {name} failed with exit code {code} "
                    f"matching {rule.get('action')} rule at index {i}")  # fmt: skip
        for pattern in rule.get("onPodConditions") or ():
            c = condition(_status(pod), pattern.get("type", ""))
            if c is not None and c.get("status") == pattern.get("status", "True"):
                return rule.get("action", ""), (
                    f"Pod {name} has condition {c.get('type')} matching "
                    f"{rule.get('action')} rule at index {i}")  # fmt: skip
    return "", ""


def _matching_exit(pod: Mapping[str, Any], codes: Mapping[str, Any]) -> tuple[str | None, int]:
    values, operator = set(codes.get("values") or ()), codes.get("operator")
    status = _status(pod)
    for c in (*(status.get("initContainerStatuses") or ()),
              *(status.get("containerStatuses") or ())):  # fmt: skip
        if codes.get("containerName") not in (None, c.get("name")):
            continue
        code = ((c.get("state") or {}).get("terminated") or {}).get("exitCode")
        if code in (None, 0):
            continue
        if (operator == "In" and code in values) or (operator == "NotIn" and code not in values):
            return c.get("name"), code
    return None, 0


def _counted_failures(job: Mapping[str, Any], failed: Sequence[dict]) -> int:
    """nonIgnoredFailedPodsCount: failures an Ignore rule lets off are not counted."""
    if _spec(job).get("podFailurePolicy") is None:
        return len(failed)
    return sum(1 for p in failed if match_failure_policy(job, p)[0] != "Ignore")


def assess(job: Mapping[str, Any], pods: Sequence[dict], *, now: float, backoff: BackoffRecord,
           removing: frozenset[str] = frozenset()) -> Assessment:  # fmt: skip
    """The first part of syncJob, up to deciding whether the Job fails (see the module
    rules). ``pods``: every pod the Job owns; ``backoff``: the Job's backoff record;
    ``removing``: uids whose finalizer removal this controller awaits."""
    status = _status(job)
    active = tuple(p for p in pods if replicas.is_active(p))
    new_ok, new_failed = _new_finished(job, pods, removing)
    uncounted_ok, uncounted_failed = _uncounted(job)
    succeeded = status.get("succeeded", 0) + len(new_ok) + len(uncounted_ok)
    failed = status.get("failed", 0) + _counted_failures(job, new_failed) + len(uncounted_failed)
    start = status.get("startTime")
    if start is None and not is_suspended(job):
        start = rfc3339(now)
    finish, deadline_in = _finish(job, pods, failed, parse_rfc3339(start), now)
    indexes: tuple[int, ...] = ()
    if is_indexed(job):
        indexes = tuple(_succeeded_indexes(job, pods))
        succeeded = len(indexes)
    return Assessment(
        pods=tuple(pods), active=active, ready=sum(1 for p in active if replicas.is_ready(p)),
        terminating=sum(1 for p in pods if is_terminating(p)), new_succeeded=tuple(new_ok),
        new_failed=tuple(new_failed), succeeded=succeeded, failed=failed, start_time=start,
        backoff=backoff.after(new_ok, new_failed, now), finish=finish, deadline_in=deadline_in,
        completed_indexes=indexes)  # fmt: skip


def _finish(job: Mapping[str, Any], pods: Sequence[dict], failed: int, started: float | None,
            now: float) -> tuple[dict | None, float | None]:  # fmt: skip
    """Whether the Job is finishing, in syncJob's order: a SuccessCriteriaMet or
    FailureTarget condition it has (the latter leads to Failed), a pod the failure
    policy fails it for, more failures than backoffLimit (or as many restarts under
    OnFailure), its active deadline passed. Also how long until that deadline."""
    spec, status = _spec(job), _status(job)
    met, target = condition(status, SUCCESS_CRITERIA_MET), condition(status, FAILURE_TARGET)
    if met is not None and met.get("status") == "True":
        return dict(met), None
    if target is not None and target.get("status") == "True":
        return new_condition(FAILED, target.get("reason", ""), target.get("message", ""), now), None
    message = _failure_policy_message(job, pods)
    if message is not None:
        return new_condition(FAILURE_TARGET, POD_FAILURE_POLICY, message, now), None
    if failed > spec.get("backoffLimit", 6) or past_backoff_limit_on_failure(job, pods):
        return new_condition(FAILURE_TARGET, *BACKOFF_LIMIT_EXCEEDED, now), None
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is None or is_suspended(job):
        return None, None
    left = deadline - (now - (now if started is None else started))
    if left <= 0:
        return new_condition(FAILURE_TARGET, *DEADLINE_EXCEEDED, now), None
    return None, left


def _succeeded_indexes(job: Mapping[str, Any], pods: Sequence[dict]) -> list[int]:
    """calculateSucceededIndexes: the recorded ones and those of succeeded pods not yet
    counted."""
    completions = _spec(job).get("completions") or 0
    done = set(parse_indexes(_status(job).get("completedIndexes"), completions))
    for p in pods:
        ix = completion_index(p)
        if phase(p) == "Succeeded" and ix is not None and ix < completions and has_finalizer(p):
            done.add(ix)
    return sorted(done)


# --- manage ---------------------------------------------------------------------------------


@attrs.frozen
class Management:
    """What manageJob decides: pods to ``delete``, or ``create`` new ones (an Indexed
    Job's with ``indexes``, one each), or ``wait`` seconds of pod-failure backoff before
    creating."""

    delete: tuple[dict, ...] = ()
    create: int = 0
    indexes: tuple[int, ...] = ()
    wait: float = 0.0


def wanted_active(job: Mapping[str, Any], view: Assessment) -> int:
    """How many pods should run: parallelism, less what is left to complete; a Job
    without completions keeps what runs once one pod succeeded."""
    spec = _spec(job)
    parallelism = spec.get("parallelism", 1)
    if spec.get("completions") is None:
        return len(view.active) if view.succeeded > 0 else parallelism
    return max(0, min(spec["completions"] - view.succeeded, parallelism))


def _pending_indexes(job: Mapping[str, Any], view: Assessment, count: int) -> list[int]:
    """firstPendingIndexes: the lowest indexes neither succeeded nor held by a pod that
    runs (or, when only failed pods are replaced, one still terminating)."""
    completions = _spec(job).get("completions") or 0
    held = set(view.completed_indexes)
    holders = [p for p in view.pods if replicas.is_active(p)
               or (only_replace_failed(job) and is_terminating(p))]  # fmt: skip
    held.update(ix for p in holders if (ix := completion_index(p)) is not None)
    return [i for i in range(completions) if i not in held][:count]


def manage(job: Mapping[str, Any], view: Assessment, now: float) -> Management:
    """manageJob: a suspended Job's pods all go; surplus pods go (ranked); missing ones
    are created, at most 500 a sync, once the pod-failure backoff allows."""
    active = list(view.active)
    if is_suspended(job):
        return Management(delete=tuple(pods_to_remove(job, active, len(active))))
    want = wanted_active(job, view)
    surplus = pods_to_remove(job, active, max(0, len(active) - want))[:MAX_PODS_PER_SYNC]
    if surplus:
        return Management(delete=tuple(surplus))
    terminating = view.terminating if only_replace_failed(job) else 0
    missing = min(want - terminating - len(active), MAX_PODS_PER_SYNC)
    if missing <= 0:
        return Management()
    wait = view.backoff.remaining(now)
    if wait > 0:
        return Management(wait=wait)
    if is_indexed(job):
        indexes = _pending_indexes(job, view, missing)
        return Management(create=len(indexes), indexes=tuple(indexes))
    return Management(create=missing)


def pod_for(job: Mapping[str, Any], index: int | None = None) -> dict:
    """A new pod of the Job: its template, the Job as controller, the tracking
    finalizer, and for an Indexed Job its index (annotation, label, hostname, name,
    environment)."""
    pod = replicas.pod_from_template(job, API_VERSION, KIND)
    m = dict(pod["metadata"])
    m["finalizers"] = [*(f for f in m.get("finalizers") or () if f != TRACKING_FINALIZER),
                       TRACKING_FINALIZER]  # fmt: skip
    spec = dict(pod["spec"])
    if index is not None:
        name = _meta(job).get("name", "")
        m["annotations"] = {**(m.get("annotations") or {}), COMPLETION_INDEX: str(index)}
        m["labels"] = {**(m.get("labels") or {}), COMPLETION_INDEX: str(index)}
        m["generateName"] = f"{name}-{index}-"
        spec["hostname"] = f"{name}-{index}"
        for field in ("initContainers", "containers"):
            if spec.get(field):
                spec[field] = [_with_index_env(c) for c in spec[field]]
    return {**pod, "metadata": m, "spec": spec}


def _with_index_env(container: Mapping[str, Any]) -> dict:
    env = list(container.get("env") or ())
    if any(e.get("name") == INDEX_ENV for e in env):
        return dict(container)
    path = f"metadata.annotations['{COMPLETION_INDEX}']"
    env.append({"name": INDEX_ENV, "valueFrom": {"fieldRef": {"fieldPath": path}}})
    return {**container, "env": env}


def has_succeeded(job: Mapping[str, Any], view: Assessment, active: int) -> bool:
    """Whether the Job met its success criteria: as many successes as completions (a
    Job without completions: one success) and nothing left running."""
    completions = _spec(job).get("completions")
    if completions is None:
        return view.succeeded > 0 and active == 0
    return view.succeeded >= completions and active == 0


# --- track and settle -----------------------------------------------------------------------


@attrs.frozen
class Tracking:
    """What trackJobStatusAndRemoveFinalizers decides: the ``status`` to write first
    (``write``: it changed), the pods whose finalizer to ``release``, the uids of pods
    that hold it (``held``), and the terminal condition to add once nothing is
    uncounted or terminating (``finish``)."""

    status: dict
    write: bool
    release: tuple[dict, ...]
    held: frozenset[str]
    finish: dict | None


def _count_released(status: dict, held: Iterable[str]) -> bool:
    """cleanUncountedPodsWithoutFinalizers: uncounted pods no longer holding the
    finalizer move to the counters. Changes ``status`` (a copy); whether it did."""
    held = set(held)
    uncounted = dict(status.get("uncountedTerminatedPods") or {})
    changed = False
    for field in ("succeeded", "failed"):
        before = list(uncounted.get(field) or ())
        after = [u for u in before if u in held]
        if len(after) != len(before):
            changed = True
            status[field] = status.get(field, 0) + len(before) - len(after)
        if after:
            uncounted[field] = after
        else:
            uncounted.pop(field, None)
    status["uncountedTerminatedPods"] = uncounted
    return changed


def _in_range(job: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    ix = completion_index(pod)
    return not is_indexed(job) or (ix is not None and ix < (_spec(job).get("completions") or 0))


def _release(job: Mapping[str, Any], view: Assessment, status: dict, finish: dict | None,
             removing: frozenset[str]) -> list[dict]:  # fmt: skip
    """The pods whose finalizer may go (canRemoveFinalizer: finished pods, or every pod
    of a Job that finishes or is being deleted), their uids added to the uncounted
    ones of ``status`` (a copy), at most 500 at a time. A pod of a Job that fails
    counts as failed unless it succeeded; one an Ignore rule lets off is not counted."""
    uncounted = status["uncountedTerminatedPods"]
    ok, bad = list(uncounted.get("succeeded") or ()), list(uncounted.get("failed") or ())
    failing = finish is not None and finish["type"] != SUCCESS_CRITERIA_MET
    going = bool(_meta(job).get("deletionTimestamp")) or finish is not None
    release = []
    for p in view.pods:
        if not has_finalizer(p) or uid(p) in removing:
            continue
        failed = is_failed(p, job)
        if not (going or failed or phase(p) == "Succeeded"):
            continue
        release.append(p)
        if phase(p) == "Succeeded":
            if uid(p) not in bad and uid(p) not in ok and not is_indexed(job):
                ok.append(uid(p))
        elif ((failed or failing) and uid(p) not in bad and _in_range(job, p)
              and match_failure_policy(job, p)[0] != "Ignore"):  # fmt: skip
            bad.append(uid(p))
        if len(ok) + len(bad) >= MAX_UNCOUNTED_PODS:
            break
    status["uncountedTerminatedPods"] = {
        k: v for k, v in (("succeeded", ok), ("failed", bad)) if v}  # fmt: skip
    return release


def track(job: Mapping[str, Any], view: Assessment, *, finish: dict | None, active: int,
          ready: int, terminating: int, conditions: Sequence[dict], now: float,
          removing: frozenset[str] = frozenset()) -> Tracking:  # fmt: skip
    """The status after this sync's pod changes (``active``, ``ready``,
    ``terminating``, ``conditions``), with the finished pods added to the uncounted
    ones and the interim condition of ``finish``; which finalizers to remove."""
    old = _status(job)
    status: dict[str, Any] = {**old, "startTime": view.start_time, "active": active,
                              "ready": ready, "terminating": terminating,
                              "conditions": [dict(c) for c in conditions]}  # fmt: skip
    held = frozenset(uid(p) for p in view.pods if has_finalizer(p) and uid(p) not in removing)
    _count_released(status, held)
    release = _release(job, view, status, finish, removing)
    if is_indexed(job):
        completions = _spec(job).get("completions") or 0
        done = set(parse_indexes(old.get("completedIndexes"), completions))
        done.update(ix for p in release if phase(p) == "Succeeded" and _in_range(job, p)
                    and (ix := completion_index(p)) is not None)  # fmt: skip
        status["completedIndexes"] = format_indexes(done)
        status["succeeded"] = len(done)
    terminal = finish
    if finish is not None and finish["type"] == FAILURE_TARGET:
        status["conditions"].append(finish)
        terminal = new_condition(FAILED, finish["reason"], finish["message"], now)
    elif finish is not None and finish["type"] == SUCCESS_CRITERIA_MET:
        if condition(status, SUCCESS_CRITERIA_MET) is None:
            status["conditions"].append(finish)
        terminal = new_condition(COMPLETE, finish["reason"], finish["message"], now)
    status = _tidy(status)
    return Tracking(status, status != _tidy(dict(old)), tuple(release), held, terminal)


def settle(status: Mapping[str, Any], held: Iterable[str], finish: dict | None,
           terminating: int, now: float) -> tuple[dict, bool]:  # fmt: skip
    """After the finalizer removals: the uncounted pods that let go of theirs counted
    (``held``: the uids still holding it), and the terminal condition of ``finish``
    added (with completionTime for Complete) once no pod is uncounted or terminating.
    The status and whether it changed."""
    out = dict(status)
    changed = _count_released(out, held)
    uncounted = out["uncountedTerminatedPods"]
    if finish is not None and not uncounted and terminating == 0:
        conditions, _ = ensure_condition(out.get("conditions") or (), finish["type"],
                                         finish["status"], finish["reason"], finish["message"],
                                         now)  # fmt: skip
        out["conditions"] = conditions
        if finish["type"] == COMPLETE:
            out["completionTime"] = finish["lastTransitionTime"]
        changed = True
    return _tidy(out), changed


def _tidy(status: dict) -> dict:
    """The status as Go writes it: zero counters and empty lists left out (omitempty);
    ready, terminating and uncountedTerminatedPods kept (pointers)."""
    out = {k: v for k, v in status.items() if v not in (None, "", [])}
    for field in ("active", "succeeded", "failed"):
        if out.get(field) == 0:
            out.pop(field)
    out.setdefault("uncountedTerminatedPods", {})
    return out


def finished_event(finish: Mapping[str, Any]) -> tuple[str, str, str]:
    """The Event a Job that finished gets: (type, reason, message)."""
    if finish["type"] == COMPLETE:
        return "Normal", "Completed", "Job completed"
    return "Warning", finish["reason"], finish["message"]
