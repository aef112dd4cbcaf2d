"""The pure core of the ReplicaSet controller: which pods a ReplicaSet owns, which to
adopt or release, which to delete first, what a new one looks like, and the status
(kube-controller-manager's replica_set.go, controller_utils.go and
controller_ref_manager.go, as Kubernetes 1.30 behaves).

Rules of this file:

- Objects are Kubernetes JSON as dicts, never modified; every function returns new ones.
- A pod is *active* unless it is Succeeded, Failed, or marked for deletion
  (IsPodActive); only active pods count towards replicas.
- Ownership is the controller ownerReference: a pod owned by the ReplicaSet's uid is
  kept if the selector still matches it and released otherwise; an orphan that matches
  is adopted unless the ReplicaSet is itself being deleted; a pod another controller
  owns is never touched (ClaimPods).
- Which pods go first when there are too many (getPodsToDelete and ActivePodsWithRanks,
  with the LogarithmicScaleDown and PodDeletionCost rules that are on by default):
  unassigned before assigned; Pending, then Unknown, then Running; not ready before
  ready; lower ``controller.kubernetes.io/pod-deletion-cost`` first; pods doubled up on
  a node (more pods of the same owner there) first; ready for less time first, then
  more container restarts first, then newer first, times compared in powers of two of
  their age, ties broken by uid.
- Creation goes in slow-start batches (1, 2, 4, ...) of at most ``BURST_REPLICAS`` a
  sync, so a template that cannot be created fails once, not 500 times.
- Time is given (seconds since the epoch); nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from actorkube.apiserver._meta import parse_rfc3339, rfc3339
from actorkube.apiserver._selectors import InvalidSelector, Selector

from ._fields import meta as _meta

BURST_REPLICAS = 500  # Kubernetes' BurstReplicas: creations or deletions per sync
SLOW_START_INITIAL_BATCH = 1
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
REPLICA_FAILURE = "ReplicaFailure"
_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}


# --- pods -----------------------------------------------------------------------------------


def pod_key(pod: Mapping[str, Any]) -> str:
    m = _meta(pod)
    return f"{m.get('namespace', '')}/{m.get('name', '')}"


def is_active(pod: Mapping[str, Any]) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not _meta(pod).get("deletionTimestamp")


def _ready_condition(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for c in (pod.get("status") or {}).get("conditions") or ():
        if c.get("type") == "Ready":
            return c
    return None


def is_ready(pod: Mapping[str, Any]) -> bool:
    c = _ready_condition(pod)
    return c is not None and c.get("status") == "True"


def ready_since(pod: Mapping[str, Any]) -> float | None:
    """When a ready pod became ready (its Ready condition's transition); None if not."""
    c = _ready_condition(pod)
    if c is None or c.get("status") != "True":
        return None
    return parse_rfc3339(c.get("lastTransitionTime"))


def is_available(pod: Mapping[str, Any], min_ready_seconds: int, now: float) -> bool:
    """Ready for at least ``min_ready_seconds`` (IsPodAvailable)."""
    if not is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = ready_since(pod)
    return since is not None and since + min_ready_seconds <= now


def controller_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ownerReference with ``controller: true``, if any."""
    for ref in _meta(obj).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref
    return None


def controller_reference(owner: Mapping[str, Any], api_version: str, kind: str) -> dict:
    """The ownerReference a controller puts on what it makes or adopts."""
    m = _meta(owner)
    return {"apiVersion": api_version, "kind": kind, "name": m.get("name", ""),
            "uid": m.get("uid", ""), "controller": True,
            "blockOwnerDeletion": True}  # fmt: skip


def selector_of(obj: Mapping[str, Any]) -> Selector:
    """The object's spec.selector; one that does not parse selects nothing (the API
    server validated it, so only a corrupt object gets here)."""
    try:
        return Selector.from_label_selector((obj.get("spec") or {}).get("selector"))
    except InvalidSelector:
        return Selector(selects_nothing=True)


# --- claiming -------------------------------------------------------------------------------


@attrs.frozen
class Claim:
    """What ClaimPods decides: ``owned`` (ours, adopted ones included), and the pods to
    ``adopt`` and to ``release`` through the API."""

    owned: tuple[dict, ...]
    adopt: tuple[dict, ...]
    release: tuple[dict, ...]


def claim(owner: Mapping[str, Any], selector: Selector, pods: Iterable[dict]) -> Claim:
    """Sort ``pods`` (active pods of the owner's namespace) as the module rules say."""
    uid = _meta(owner).get("uid")
    deleting = bool(_meta(owner).get("deletionTimestamp"))
    owned, adopt, release = [], [], []
    for pod in pods:
        ref = controller_of(pod)
        labels = _meta(pod).get("labels") or {}
        if ref is not None:
            if ref.get("uid") != uid:
                continue  # another controller's
            if selector.matches(labels):
                owned.append(pod)
            elif not deleting:
                release.append(pod)
            continue
        if deleting or _meta(pod).get("deletionTimestamp") or not selector.matches(labels):
            continue
        adopt.append(pod)
    return Claim(tuple(owned), tuple(adopt), tuple(release))


# --- deletion ranking -----------------------------------------------------------------------


def _deletion_cost(pod: Mapping[str, Any]) -> int:
    raw = (_meta(pod).get("annotations") or {}).get(DELETION_COST)
    try:
        cost = int(raw) if raw is not None else 0
    except ValueError:
        return 0
    return cost if -(2**31) <= cost < 2**31 else 0


def _restarts(pod: Mapping[str, Any]) -> tuple[int, int]:
    """The highest restart count of the regular containers, then of the sidecars
    (init containers that always restart)."""
    status = pod.get("status") or {}
    regular = max((c.get("restartCount", 0) for c in status.get("containerStatuses") or ()),
                  default=0)  # fmt: skip
    sidecars = {c.get("name") for c in (pod.get("spec") or {}).get("initContainers") or ()
                if c.get("restartPolicy") == "Always"}  # fmt: skip
    sidecar = max((c.get("restartCount", 0) for c in status.get("initContainerStatuses") or ()
                   if c.get("name") in sidecars), default=0)  # fmt: skip
    return regular, sidecar


def _log_rank(moment: float, now: float) -> int:
    age_ns = (now - moment) * 1e9
    return int(math.log2(age_ns)) if age_ns > 0 else -1


class _Ranked:
    """One pod with what its rank needs, ordered as ActivePodsWithRanks.Less."""

    __slots__ = ("cost", "created", "node", "now", "phase", "pod", "rank", "ready", "ready_at",
                 "restarts", "uid")  # fmt: skip

    def __init__(self, pod: Mapping[str, Any], rank: int, now: float) -> None:
        self.pod = pod
        self.node = (pod.get("spec") or {}).get("nodeName") or ""
        self.phase = _PHASE_ORDER.get((pod.get("status") or {}).get("phase"), 0)
        self.ready = is_ready(pod)
        self.cost = _deletion_cost(pod)
        self.rank = rank
        self.ready_at = ready_since(pod)
        self.restarts = _restarts(pod)
        self.created = parse_rfc3339(_meta(pod).get("creationTimestamp"))
        self.uid = _meta(pod).get("uid", "")
        self.now = now

    def _time_first(self, mine: float | None, theirs: float | None) -> bool | None:
        """Whether my time puts me first: a zero time first, then the newer, by powers
        of two of age; None when they tie."""
        if mine == theirs:
            return None
        if mine is None or theirs is None:
            return mine is None
        diff = _log_rank(mine, self.now) - _log_rank(theirs, self.now)
        if diff == 0:
            return None
        return diff < 0

    def __lt__(self, other: _Ranked) -> bool:
        if self.node != other.node and (not self.node or not other.node):
            return not self.node
        if self.phase != other.phase:
            return self.phase < other.phase
        if self.ready != other.ready:
            return not self.ready
        if self.cost != other.cost:
            return self.cost < other.cost
        if self.rank != other.rank:
            return self.rank > other.rank
        if self.ready and other.ready and self.ready_at != other.ready_at:
            first = self._time_first(self.ready_at, other.ready_at)
            if first is not None:
                return first
            return self.uid < other.uid
        if self.restarts[0] != other.restarts[0]:
            return self.restarts[0] > other.restarts[0]
        if self.restarts[1] != other.restarts[1]:
            return self.restarts[1] > other.restarts[1]
        if self.created != other.created:
            first = self._time_first(self.created, other.created)
            if first is not None:
                return first
            return self.uid < other.uid
        return False


def pods_to_delete(
    pods: Sequence[dict], related: Iterable[dict], count: int, now: float
) -> list[dict]:
    """The ``count`` pods of ``pods`` to delete first (see the module rules).
    ``related``: the active pods of every ReplicaSet with the same owner as this one
    (this one's included), whose placement says which pods are doubled up."""
    if count >= len(pods):
        return list(pods)
    on_node: dict[str, int] = {}
    for pod in related:
        if is_active(pod):
            node = (pod.get("spec") or {}).get("nodeName") or ""
            on_node[node] = on_node.get(node, 0) + 1
    ranked = [_Ranked(p, on_node.get((p.get("spec") or {}).get("nodeName") or "", 0), now)
              for p in pods]  # fmt: skip
    ranked.sort()  # stable, as Go's sort.Sort is not: ties keep their informer order
    return [r.pod for r in ranked[:count]]


# --- creation -------------------------------------------------------------------------------


def slow_start_batches(count: int, initial: int = SLOW_START_INITIAL_BATCH) -> list[int]:
    """Batch sizes for ``count`` creations: ``initial``, then doubling."""
    batches, size = [], initial
    while count > 0:
        batches.append(min(size, count))
        count -= batches[-1]
        size *= 2
    return batches


def pod_from_template(owner: Mapping[str, Any], api_version: str, kind: str) -> dict:
    """A new pod of the owner's spec.template (GetPodFromTemplate): its labels,
    annotations and finalizers, a generated name after the owner's, and the owner as
    its controller."""
    m = _meta(owner)
    template = (owner.get("spec") or {}).get("template") or {}
    tm = template.get("metadata") or {}
    metadata: dict[str, Any] = {
        "generateName": f"{m.get('name', '')}-",
        "namespace": m.get("namespace", ""),
        "ownerReferences": [controller_reference(owner, api_version, kind)],
    }
    for field in ("labels", "annotations", "finalizers"):
        if tm.get(field):
            metadata[field] = tm[field]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": template.get("spec") or {}}  # fmt: skip


# --- status ---------------------------------------------------------------------------------


def replica_set_status(
    rs: Mapping[str, Any], pods: Sequence[dict], now: float,
    failure: tuple[str, str] | None = None,
) -> dict:  # fmt: skip
    """The status of ``rs`` owning the active ``pods`` (calculateStatus). ``failure``:
    (reason, message) of a create or delete that failed in this sync, FailedCreate or
    FailedDelete (the ReplicaFailure condition, cleared when a sync succeeds)."""
    spec = rs.get("spec") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = spec.get("minReadySeconds") or 0
    old = rs.get("status") or {}
    fully = sum(
        1 for p in pods
        if all((_meta(p).get("labels") or {}).get(k) == v for k, v in template_labels.items())
    )  # fmt: skip
    status: dict[str, Any] = {
        "replicas": len(pods),
        "fullyLabeledReplicas": fully,
        "readyReplicas": sum(1 for p in pods if is_ready(p)),
        "availableReplicas": sum(1 for p in pods if is_available(p, min_ready, now)),
        "observedGeneration": _meta(rs).get("generation", 0),
    }
    conditions = [c for c in old.get("conditions") or () if c.get("type") != REPLICA_FAILURE]
    if failure is not None:
        before = next((c for c in old.get("conditions") or ()
                       if c.get("type") == REPLICA_FAILURE), None)  # fmt: skip
        reason, message = failure
        since = before.get("lastTransitionTime") if before else None
        conditions.append({"type": REPLICA_FAILURE, "status": "True",
                           "lastTransitionTime": since or rfc3339(now),
                           "reason": reason, "message": message})  # fmt: skip
    if conditions:
        status["conditions"] = conditions
    return {k: v for k, v in status.items() if v or k in ("replicas", "observedGeneration")}


def needs_requeue_for_availability(rs: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """A ready pod that will become available after minReadySeconds: look again then."""
    min_ready = (rs.get("spec") or {}).get("minReadySeconds") or 0
    return min_ready > 0 and status.get("readyReplicas", 0) != status.get("availableReplicas", 0)
