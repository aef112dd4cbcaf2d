"""What a PodDisruptionBudget's status says (Kubernetes' disruption controller's sync, as
pure functions): how many of its pods should be healthy, how many are, how many may be
disrupted now.

Rules of this file:

- The budget's pods are those of its namespace its selector matches (``_pdb.selects``).
- ``expected_and_desired``: with an integer ``minAvailable``, the pods expected are the
  pods there are and the desired healthy that number; with a percentage, or with
  ``maxUnavailable``, the pods expected are the sum of the scales of the pods'
  controllers (each counted once; ``scale_of(pod)`` finds a controller's (uid, scale),
  or None), the percentage rounded up. A pod with no controller is unmanaged: left out
  of the sum and reported; a pod whose controller has no scale fails the sync
  (``ExpectedCountError``: the controller then writes the fail-safe status).
- A pod is healthy when it is Ready, not being deleted, and not noted in
  ``disruptedPods`` less than ``DELETION_TIMEOUT`` (2 minutes) ago; a noted pod is
  forgotten once deleted or past that time (and the budget is looked at again then).
- ``disruptionsAllowed`` is healthy minus desired, never below 0, and 0 while no pod is
  expected (a budget whose pods are still coming is safe until they are counted).
- The status is written only when it changed (or its condition or observedGeneration
  lags); the DisruptionAllowed condition follows ``disruptionsAllowed``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from actorkube.apiserver._meta import parse_rfc3339
from actorkube.apiserver._pdb import SYNC_FAILED, conditions_up_to_date, is_ready
from actorkube.apiserver._pdb import with_allowed_condition as _with_condition

from ._replicas import controller_of
from ._rollout import scaled_value

DELETION_TIMEOUT = 120.0  # Kubernetes' DeletionTimeout


class ExpectedCountError(Exception):
    """The pods' expected count cannot be worked out (a controller without a scale)."""


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def needs_scales(pdb: Mapping[str, Any]) -> bool:
    """Whether the budget's numbers need its pods' controllers' scales (a percentage
    or ``maxUnavailable``; an integer ``minAvailable`` counts the pods)."""
    spec = pdb.get("spec") or {}
    if spec.get("maxUnavailable") is not None:
        return True
    return isinstance(spec.get("minAvailable"), str)


def expected_and_desired(
    pdb: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    scale_of: Callable[[Mapping[str, Any], Mapping[str, Any]], tuple[str, int] | None],
) -> tuple[int, int, list[str]]:
    """(expected pods, desired healthy, unmanaged pods' names): see the module rules.
    ``scale_of(pod, controller_ref)``: the controller's uid and scale, None if it has
    none (``ExpectedCountError``). Raises ValueError for a malformed count."""
    spec = pdb.get("spec") or {}
    max_unavailable, min_available = spec.get("maxUnavailable"), spec.get("minAvailable")
    if max_unavailable is not None:
        expected, unmanaged = _expected_scale(pods, scale_of)
        unavailable = scaled_value(max_unavailable, expected, round_up=True)
        return expected, max(expected - unavailable, 0), unmanaged
    if min_available is None:
        return 0, 0, []
    if isinstance(min_available, int) and not isinstance(min_available, bool):
        return len(pods), min_available, []
    expected, unmanaged = _expected_scale(pods, scale_of)
    return expected, scaled_value(min_available, expected, round_up=True), unmanaged


def _expected_scale(pods, scale_of) -> tuple[int, list[str]]:
    scales: dict[str, int] = {}
    unmanaged = []
    for pod in pods:
        ref = controller_of(pod)
        if ref is None:
            unmanaged.append(_meta(pod).get("name", ""))
            continue
        if ref.get("uid") in scales:
            continue
        found = scale_of(pod, ref)
        if found is None:
            name = _meta(pod).get("name", "")
            raise ExpectedCountError(f'found no controllers for pod "{name}"')
        uid, scale = found
        scales[uid] = scale
    return sum(scales.values()), unmanaged


def disrupted_pods(pdb: Mapping[str, Any], pods: Sequence[Mapping[str, Any]],
                   now: float) -> tuple[dict[str, str], float | None, list[str]]:  # fmt: skip
    """buildDisruptedPodMap: the noted pods still awaited (name -> when noted), when to
    look again (the earliest of their timeouts; None: no need), and the pods whose
    timeout passed without their deletion (for a warning)."""
    noted = (pdb.get("status") or {}).get("disruptedPods") or {}
    kept: dict[str, str] = {}
    recheck, overdue = None, []
    if not noted:
        return kept, recheck, overdue
    for pod in pods:
        name = _meta(pod).get("name", "")
        if _meta(pod).get("deletionTimestamp") or name not in noted:
            continue
        at = parse_rfc3339(noted[name])
        due = (at or 0.0) + DELETION_TIMEOUT
        if due <= now:
            overdue.append(name)
            continue
        kept[name] = noted[name]
        recheck = due if recheck is None else min(recheck, due)
    return kept, recheck, overdue


def count_healthy(pods: Sequence[Mapping[str, Any]], disrupted: Mapping[str, str],
                  now: float) -> int:  # fmt: skip
    """countHealthyPods: Ready, not being deleted, not awaited as disrupted."""
    healthy = 0
    for pod in pods:
        m = _meta(pod)
        if m.get("deletionTimestamp"):
            continue
        at = parse_rfc3339(disrupted[m.get("name", "")]) if m.get("name", "") in disrupted else None
        if at is not None and at + DELETION_TIMEOUT > now:
            continue
        healthy += is_ready(pod)
    return healthy


def new_status(pdb: Mapping[str, Any], *, healthy: int, desired: int, expected: int,
               disrupted: Mapping[str, str], now: float) -> dict[str, Any] | None:  # fmt: skip
    """updatePdbStatus: the status to write, or None if the stored one says it all."""
    allowed = healthy - desired
    if expected <= 0 or allowed <= 0:
        allowed = 0
    old = pdb.get("status") or {}
    generation = int(_meta(pdb).get("generation") or 0)
    status = {
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "disruptionsAllowed": allowed,
        "observedGeneration": generation,
    }
    if dict(disrupted):
        status["disruptedPods"] = dict(disrupted)
    if all(int(old.get(k) or 0) == v for k, v in status.items() if k != "disruptedPods") and (
        (old.get("disruptedPods") or {}) == dict(disrupted)
    ) and conditions_up_to_date(old):
        return None
    if old.get("conditions"):
        status["conditions"] = old["conditions"]
    return _with_condition(status, now)


def fail_safe_status(pdb: Mapping[str, Any], message: str, now: float) -> dict[str, Any]:
    """failSafe: no disruption allowed, and the DisruptionAllowed condition says why."""
    status = {**(pdb.get("status") or {}), "disruptionsAllowed": 0}
    return _with_condition(status, now, reason=SYNC_FAILED, message=message)
