"""PodDisruptionBudgets as the eviction subresource reads them (Kubernetes' pod eviction
REST and its PDB helpers); the disruption controller computes their status
(``actorkube.controllers.disruption``).

Rules of this file:

- A budget covers the pods of its namespace that its selector matches (policy/v1: an
  empty selector matches every pod, a missing one none, an invalid one none).
- A pod may be evicted without asking any budget when it is Succeeded, Failed or
  Pending, or already being deleted (``can_ignore``): it disrupts nothing.
- ``take_disruption`` is checkAndDecrement: a budget whose status is older than its
  spec, or that allows no disruption, refuses (429 TooManyRequests with Kubernetes'
  messages); one that allows some gives one up and notes the pod in
  ``status.disruptedPods`` (when, so that the controller stops counting it as healthy
  until it is gone, or two minutes have passed).
- The ``DisruptionAllowed`` condition says whether ``disruptionsAllowed`` is above 0
  (SufficientPods / InsufficientPods; SyncFailed when the controller could not work it
  out), at the status's observedGeneration; its transition time moves only when its
  status changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import _errors as errors
from ._meta import rfc3339
from ._selectors import InvalidSelector, Selector

DISRUPTION_ALLOWED = "DisruptionAllowed"
SUFFICIENT_PODS, INSUFFICIENT_PODS, SYNC_FAILED = "SufficientPods", "InsufficientPods", "SyncFailed"
DISRUPTION_BUDGET_CAUSE = "DisruptionBudget"
MAX_DISRUPTED_PODS = 2000  # Kubernetes' MaxDisruptedPodSize
ALWAYS_ALLOW, IF_HEALTHY_BUDGET = "AlwaysAllow", "IfHealthyBudget"
EVICTION_MESSAGE = "Cannot evict pod as it would violate the pod's disruption budget."


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def selects(pdb: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    """Whether ``pdb`` covers ``pod`` (see the module rules)."""
    if _meta(pdb).get("namespace", "") != _meta(pod).get("namespace", ""):
        return False
    try:
        selector = Selector.from_label_selector((pdb.get("spec") or {}).get("selector"))
    except InvalidSelector:
        return False
    return selector.matches(_meta(pod).get("labels") or {})


def is_ready(pod: Mapping[str, Any]) -> bool:
    """The pod's Ready condition is True (Kubernetes' IsPodReady: a pod's health)."""
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or ())  # fmt: skip


def can_ignore(pod: Mapping[str, Any]) -> bool:
    """canIgnorePDB: evicting this pod disrupts nothing a budget guards."""
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Succeeded", "Failed", "Pending") or bool(_meta(pod).get("deletionTimestamp"))


def with_allowed_condition(status: Mapping[str, Any], now: float, *, reason: str = "",
                           message: str = "") -> dict[str, Any]:  # fmt: skip
    """``status`` with its DisruptionAllowed condition brought up to date (``reason``
    given: False for that reason, as the controller's fail-safe sets it)."""
    allowed = int(status.get("disruptionsAllowed") or 0) > 0 and not reason
    condition = {
        "type": DISRUPTION_ALLOWED,
        "status": "True" if allowed else "False",
        "observedGeneration": int(status.get("observedGeneration") or 0),
        "reason": reason or (SUFFICIENT_PODS if allowed else INSUFFICIENT_PODS),
        "message": message,
    }
    conditions, found = [], False
    for c in status.get("conditions") or ():
        if c.get("type") == DISRUPTION_ALLOWED:
            found = True
            same = c.get("status") == condition["status"] and c.get("lastTransitionTime")
            condition["lastTransitionTime"] = c["lastTransitionTime"] if same else rfc3339(now)
            c = condition
        conditions.append(c)
    if not found:
        conditions.append({**condition, "lastTransitionTime": rfc3339(now)})
    return {**status, "conditions": conditions}


def conditions_up_to_date(status: Mapping[str, Any]) -> bool:
    """ConditionsAreUpToDate: the DisruptionAllowed condition says what the status does."""
    allowed = int(status.get("disruptionsAllowed") or 0) > 0
    generation = int(status.get("observedGeneration") or 0)
    return any(c.get("type") == DISRUPTION_ALLOWED
               and c.get("status") == ("True" if allowed else "False")
               and int(c.get("observedGeneration") or 0) == generation
               for c in status.get("conditions") or ())  # fmt: skip


def too_many_requests(message: str, retry_after: int, cause: str) -> errors.ApiError:
    """Kubernetes' NewTooManyRequests with a DisruptionBudget cause."""
    details = {"causes": [{"reason": DISRUPTION_BUDGET_CAUSE, "message": cause}]}
    if retry_after:
        details["retryAfterSeconds"] = retry_after
    return errors.ApiError(errors.status(429, "TooManyRequests", message, details))


def _forbidden(name: str, why: str) -> errors.ApiError:
    message = f'poddisruptionbudget.policy "{name}" is forbidden: {why}'
    details = {"name": name, "group": "policy", "kind": "poddisruptionbudget"}
    return errors.ApiError(errors.status(403, "Forbidden", message, details))


def still_processing(name: str) -> errors.ApiError:
    """The budget's status does not describe its spec yet: try later."""
    return too_many_requests(EVICTION_MESSAGE, 10,
                             f"The disruption budget {name} is still being processed by the "
                             "server.")  # fmt: skip


def take_disruption(pdb: Mapping[str, Any], pod_name: str, now: float, *,
                    dry_run: bool = False) -> dict[str, Any]:  # fmt: skip
    """checkAndDecrement: ``pdb`` with one disruption taken for ``pod_name`` (the
    status is the caller's to write; a dry run notes no pod). Raises ApiError 429 or
    403 when the budget refuses (see the module rules)."""
    m, status = _meta(pdb), pdb.get("status") or {}
    name = m.get("name", "")
    if int(status.get("observedGeneration") or 0) < int(m.get("generation") or 0):
        raise still_processing(name)
    allowed = int(status.get("disruptionsAllowed") or 0)
    if allowed < 0:
        raise _forbidden(name, "pdb disruptions allowed is negative")
    disrupted = dict(status.get("disruptedPods") or {})
    if len(disrupted) > MAX_DISRUPTED_PODS:
        raise _forbidden(name, "DisruptedPods map too big - too many evictions not confirmed "
                               "by PDB controller")  # fmt: skip
    if allowed == 0:
        raise too_many_requests(EVICTION_MESSAGE, 0,
                                f"The disruption budget {name} needs "
                                f"{int(status.get('desiredHealthy') or 0)} healthy pods and has "
                                f"{int(status.get('currentHealthy') or 0)} currently")  # fmt: skip
    new = {**status, "disruptionsAllowed": allowed - 1}
    if allowed == 1:
        new = with_allowed_condition(new, now)
    if not dry_run:
        disrupted[pod_name] = rfc3339(now)
        new["disruptedPods"] = disrupted
    return {**pdb, "status": new}
