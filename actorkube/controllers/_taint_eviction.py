"""The pure core of taint-based eviction: when a pod on a node with NoExecute taints
must go (kube-controller-manager's pkg/controller/tainteviction, as Kubernetes 1.30+
behaves).

Rules of this file:

- Only NoExecute taints count. A taint is tolerated by the first of the pod's
  tolerations that matches it (GetMatchingTolerations; matching is the scheduler's
  ToleratesTaint: same effect or none, same key or an empty key with Exists, then
  Exists any value, Equal the same value).
- A pod with a taint it does not tolerate goes now. A pod that tolerates every taint
  gets a countdown of the shortest ``tolerationSeconds`` among the tolerations used
  (0 or less: at once), started when the controller first finds it so (Kubernetes'
  processPodOnNode: ``now``, not the taint's ``timeAdded``, so a pod bound to a node
  tainted long ago still gets its whole toleration). Tolerated for ever, or no
  NoExecute taint: the pod stays and any countdown is cancelled.
- A countdown already running is kept as it is, whatever the taints do meanwhile
  (``scheduled``: its start and end, which the caller keeps between calls): a new
  taint or the not-ready/unreachable swap of a node whose Ready flaps neither restarts
  it nor shortens it, as Kubernetes keeps a scheduled eviction (otherwise the pods of
  a flapping node would never go). Only a countdown started at this very instant is
  worked out again.
- Time is given (``now``, seconds since the epoch); nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from actorkube.apiserver._meta import rfc3339
from actorkube.scheduler.plugins.taints import toleration_matches

NO_EXECUTE = "NoExecute"
DISRUPTION_TARGET = "DisruptionTarget"


def no_execute_taints(node: Mapping[str, Any] | None) -> list[dict]:
    """The node's NoExecute taints ([] for a node that is gone)."""
    if node is None:
        return []
    return [t for t in (node.get("spec") or {}).get("taints") or ()
            if t.get("effect") == NO_EXECUTE]  # fmt: skip


def matching_tolerations(
    taints: Sequence[Mapping[str, Any]], tolerations: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]] | None:
    """For each taint, the first toleration that tolerates it; None if one is not
    tolerated."""
    used = []
    for taint in taints:
        match = next((t for t in tolerations if toleration_matches(t, taint)), None)
        if match is None:
            return None
        used.append(match)
    return used


def toleration_seconds(toleration: Mapping[str, Any]) -> float | None:
    """How long ``toleration`` tolerates its taint: None for ever, 0 for a
    tolerationSeconds of 0 or less (getMinTolerationTime)."""
    seconds = toleration.get("tolerationSeconds")
    if seconds is None:
        return None
    return max(float(seconds), 0.0)


def min_toleration_seconds(tolerations: Sequence[Mapping[str, Any]]) -> float | None:
    """The shortest tolerationSeconds of ``tolerations``; None if all tolerate for ever."""
    finite = [s for s in map(toleration_seconds, tolerations) if s is not None]
    return min(finite) if finite else None


@attrs.frozen
class Eviction:
    """What becomes of a pod: deleted ``at`` (now or later), or never (``at`` None).
    ``since``: when its countdown started, for the caller to hand back next time (None
    when there is no countdown)."""

    at: float | None
    since: float | None = None

    @property
    def scheduled(self) -> bool:
        return self.at is not None


NEVER = Eviction(None)


def eviction(
    pod: Mapping[str, Any],
    taints: Sequence[Mapping[str, Any]],
    now: float,
    scheduled: tuple[float, float] | None = None,
) -> Eviction:
    """When ``pod``, on a node with the NoExecute ``taints``, is to be deleted (see the
    module rules). ``scheduled``: (start, end) of the countdown the last call gave, if
    any."""
    if not taints:
        return NEVER
    tolerations = (pod.get("spec") or {}).get("tolerations") or ()
    used = matching_tolerations(taints, tolerations)
    if used is None:
        return Eviction(now, now)
    shortest = min_toleration_seconds(used)
    if shortest is None:
        return NEVER
    if scheduled is not None and scheduled[0] < now:
        start, end = scheduled
        return Eviction(end, start)
    start = scheduled[0] if scheduled is not None else now
    return Eviction(start + shortest, start)


def disruption_condition(now: float) -> dict:
    """The condition a pod gets before the taint manager deletes it."""
    return {"type": DISRUPTION_TARGET, "status": "True", "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": rfc3339(now)}  # fmt: skip
