"""NodeAffinity: ``spec.nodeSelector`` and required node affinity filter; preferred
node affinity scores.

Rules (v1 NodeSelector): the required terms are ORed, a term's match expressions (on
labels) and match fields (``metadata.name`` only) ANDed; a term with neither matches
nothing. Operators: In, NotIn, Exists, DoesNotExist, Gt, Lt (integers). A preferred
term adds its weight when it matches; scores are normalized to 0-100.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actorkube.apiserver._selectors import Operator, Requirement

from .._framework import SKIP, SUCCESS, CycleState, Status, normalize_to_max
from .._nodeinfo import NodeInfo

_OPERATORS = {"In": Operator.IN, "NotIn": Operator.NOT_IN, "Exists": Operator.EXISTS,
              "DoesNotExist": Operator.DOES_NOT_EXIST, "Gt": Operator.GREATER_THAN,
              "Lt": Operator.LESS_THAN}  # fmt: skip
MISMATCH = "node(s) didn't match Pod's node affinity/selector"


def _requirement(expr: Mapping[str, Any]) -> Requirement | None:
    operator = _OPERATORS.get(expr.get("operator", ""))
    if operator is None:
        return None
    return Requirement(expr.get("key", ""), operator, tuple(expr.get("values") or ()))


def term_matches(term: Mapping[str, Any], node: NodeInfo) -> bool:
    expressions = term.get("matchExpressions") or ()
    fields = term.get("matchFields") or ()
    if not expressions and not fields:
        return False
    labels = node.labels
    for expr in expressions:
        req = _requirement(expr)
        if req is None or not req.matches(labels):
            return False
    for expr in fields:
        req = _requirement(expr)
        if req is None or expr.get("key") != "metadata.name":
            return False
        if not req.matches({"metadata.name": node.name}):
            return False
    return True


def _affinity(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}


class NodeAffinity:
    name = "NodeAffinity"
    row_local = True  # the pod's selector and node affinity, the node's labels and name

    def filter(self, state: CycleState, pod: Mapping[str, Any], node: NodeInfo) -> Status:
        selector = (pod.get("spec") or {}).get("nodeSelector") or {}
        labels = node.labels
        if any(labels.get(k) != v for k, v in selector.items()):
            return Status.unresolvable(MISMATCH)
        required = _affinity(pod).get("requiredDuringSchedulingIgnoredDuringExecution")
        if required is not None:
            terms = required.get("nodeSelectorTerms") or ()
            if not any(term_matches(t, node) for t in terms):
                return Status.unresolvable(MISMATCH)
        return SUCCESS

    def pre_score(self, state: CycleState, pod: Mapping[str, Any], table, rows) -> Status:
        # As Kubernetes': a pod without preferred terms scores 0 everywhere.
        preferred = _affinity(pod).get("preferredDuringSchedulingIgnoredDuringExecution")
        return SUCCESS if preferred else SKIP

    def score(self, state: CycleState, pod: Mapping[str, Any], node: NodeInfo) -> int:
        preferred = _affinity(pod).get("preferredDuringSchedulingIgnoredDuringExecution") or ()
        return sum(p.get("weight", 0) for p in preferred
                   if term_matches(p.get("preference") or {}, node))  # fmt: skip

    def normalize(self, state: CycleState, pod: Mapping[str, Any], scores):
        return normalize_to_max(scores)

    def node_labels(self, state: CycleState, pod: Mapping[str, Any]) -> tuple[str, ...] | None:
        """The labels it reads; None when a term matches on the node's name."""
        spec = pod.get("spec") or {}
        keys = set(spec.get("nodeSelector") or ())
        affinity = _affinity(pod)
        required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
        terms = list(required.get("nodeSelectorTerms") or ())
        for p in affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or ():
            terms.append(p.get("preference") or {})
        for term in terms:
            if term.get("matchFields"):
                return None
            keys.update(e.get("key", "") for e in term.get("matchExpressions") or ())
        return tuple(sorted(keys))
