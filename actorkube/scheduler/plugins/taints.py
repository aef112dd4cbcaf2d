"""TaintToleration: a node's NoSchedule and NoExecute taints keep out the pods that do
not tolerate them; its PreferNoSchedule taints only lower its score.

Rules (v1.Toleration.ToleratesTaint): a toleration matches a taint when its effect is
empty or the same, and its key is empty with operator Exists (every key) or the same
key; then operator Exists matches any value and Equal (the default) the same value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .._framework import SKIP, SUCCESS, CycleState, Status, normalize_to_max
from .._nodeinfo import NodeInfo


def toleration_matches(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if not key:
        return operator == "Exists"
    if key != taint.get("key"):
        return False
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    return any(toleration_matches(t, taint) for t in tolerations)


def _tolerations(pod: Mapping[str, Any]) -> list:
    return list((pod.get("spec") or {}).get("tolerations") or ())


class TaintToleration:
    name = "TaintToleration"
    row_local = True  # the pod's tolerations, the node's taints

    def __init__(self) -> None:
        # The grouping last asked whether any node has a PreferNoSchedule taint, and
        # the answer (see pre_score).
        self._soft: tuple[object, bool] = (None, False)

    def filter(self, state: CycleState, pod: Mapping[str, Any], node: NodeInfo) -> Status:
        tolerations = _tolerations(pod)
        for taint in node.spec.get("taints") or ():
            if taint.get("effect") not in ("NoSchedule", "NoExecute"):
                continue
            if not tolerates(tolerations, taint):
                key, value = taint.get("key", ""), taint.get("value", "")
                return Status.unresolvable(f"node(s) had untolerated taint {{{key}: {value}}}")
        return SUCCESS

    def pre_score(self, state: CycleState, pod: Mapping[str, Any], table, rows) -> Status:
        # No node with a PreferNoSchedule taint: every node would score the same (100
        # once normalized), which changes no node's rank. Asked once per grouping of
        # the nodes by spec (the table keeps one until a Node's spec changes; with
        # specs that differ per node, podCIDR or providerID, it has a group per node).
        groups = table.grouping(())
        if self._soft[0] is not groups:
            soft = any(t.get("effect") == "PreferNoSchedule"
                       for node in groups[1] for t in node.spec.get("taints") or ())  # fmt: skip
            self._soft = (groups, soft)
        return SUCCESS if self._soft[1] else SKIP

    def score(self, state: CycleState, pod: Mapping[str, Any], node: NodeInfo) -> int:
        # Only tolerations that could tolerate PreferNoSchedule count here.
        tolerations = [t for t in _tolerations(pod)
                       if (t.get("effect") or "") in ("", "PreferNoSchedule")]  # fmt: skip
        return sum(
            1
            for taint in node.spec.get("taints") or ()
            if taint.get("effect") == "PreferNoSchedule" and not tolerates(tolerations, taint)
        )

    def normalize(self, state: CycleState, pod: Mapping[str, Any], scores):
        return normalize_to_max(scores, reverse=True)

    def node_labels(self, state: CycleState, pod: Mapping[str, Any]) -> tuple[str, ...]:
        return ()  # it reads the node's taints only
