"""PodTopologySpread: spread matching pods evenly over topology domains (zones, hosts).

Rules (Kubernetes' podtopologyspread plugin, v1.32 defaults):

- A constraint (``spec.topologySpreadConstraints``) counts, per value of its
  ``topologyKey`` (a domain), the pods in the pod's namespace that match its
  ``labelSelector`` (plus ``key=value`` for each of its ``matchLabelKeys`` the pod
  has; an empty selector counts nothing), not being deleted, on the nodes that
  count: nodes with every constraint's key, that the pod's nodeSelector / required
  node affinity accepts
  (``nodeAffinityPolicy: Honor``, the default) and, with ``nodeTaintsPolicy: Honor``,
  whose taints it tolerates (the default ``Ignore`` does not look at taints).
- Filter (``whenUnsatisfiable: DoNotSchedule``): a node without the key is
  unresolvable ("missing required label"); otherwise placing the pod there must keep
  ``count(domain) + self - min(count over domains) <= maxSkew`` (``self``: 1 if the
  pod matches the selector itself; the minimum is 0 while fewer than ``minDomains``
  domains exist).
- Score (``ScheduleAnyway``): a node scores the sum over constraints of ``count x
  log(domains + 2) + maxSkew - 1`` (for ``kubernetes.io/hostname`` the count is the
  node's own matching pods and the domains are the feasible nodes), rounded; fewer
  is better: normalized to ``100 x (max + min - score) / max``. With explicit
  constraints a feasible node missing a key scores 0.
- A pod without constraints gets the system defaults (hostname maxSkew 3, zone
  maxSkew 5, both ScheduleAnyway) with the selector of the Services that select it
  and of its controller (ReplicaSet, StatefulSet, ReplicationController); none: no
  constraints.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from actorkube.apiserver._selectors import InvalidSelector, Operator, Requirement, Selector

from .._framework import (
    MAX_NODE_SCORE,
    SKIP,
    SUCCESS,
    CycleState,
    FollowsPods,
    Status,
    filter_mask,
)
from .._nodeinfo import NodeInfo
from .node_affinity import NodeAffinity
from .taints import TaintToleration

HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
MISSING_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"
NOT_MATCH = "node(s) didn't match pod topology spread constraints"
SYSTEM_DEFAULTS = ((HOSTNAME, 3), (ZONE, 5))
CONTROLLERS = {"ReplicaSet": "replicasets", "StatefulSet": "statefulsets",
               "ReplicationController": "replicationcontrollers"}  # fmt: skip
_AFFINITY = NodeAffinity()
_TAINTS = TaintToleration()


@attrs.frozen
class Constraint:
    key: str
    max_skew: int
    selector: Selector
    min_domains: int = 1
    honor_affinity: bool = True
    honor_taints: bool = False


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _constraint(pod: Mapping[str, Any], c: Mapping[str, Any]) -> Constraint:
    try:
        selector = Selector.from_label_selector(c.get("labelSelector"))
    except InvalidSelector:
        selector = Selector(selects_nothing=True)
    labels = _labels(pod)
    extra = [Requirement(k, Operator.IN, (labels[k],)) for k in c.get("matchLabelKeys") or ()
             if k in labels]  # fmt: skip
    if extra and not selector.selects_nothing:
        selector = Selector((*selector.requirements, *extra))
    return Constraint(
        c.get("topologyKey", ""),
        int(c.get("maxSkew") or 1),
        selector,
        int(c.get("minDomains") or 1),
        (c.get("nodeAffinityPolicy") or "Honor") == "Honor",
        (c.get("nodeTaintsPolicy") or "Ignore") == "Honor",
    )


_EVERYTHING = Selector()


def default_selector(pod: Mapping[str, Any], cluster) -> Selector:
    """The selector of the Services selecting ``pod`` and of its controller
    (Kubernetes' DefaultSelector)."""
    m = pod.get("metadata") or {}
    namespace, labels = m.get("namespace", ""), m.get("labels") or {}
    merged: dict[str, str] = {}
    for service in cluster.services(namespace):
        wanted = (service.get("spec") or {}).get("selector") or {}
        if wanted and all(labels.get(k) == v for k, v in wanted.items()):
            merged.update(wanted)
    owner = next((o for o in m.get("ownerReferences") or () if o.get("controller")), None)
    if not merged and owner is None:
        return _EVERYTHING  # a bare pod (every cycle of one pays for this)
    requirements = list(Selector.from_set(merged).requirements)
    if owner is not None:
        resource = CONTROLLERS.get(owner.get("kind", ""))
        found = cluster.get(resource, namespace, owner.get("name", "")) if resource else None
        spec = (found or {}).get("spec") or {}
        if owner.get("kind") == "ReplicationController":
            merged.update(spec.get("selector") or {})
            requirements = list(Selector.from_set(merged).requirements)
        elif spec.get("selector") is not None:
            with contextlib.suppress(InvalidSelector):  # a bad one adds nothing
                requirements += Selector.from_label_selector(spec["selector"]).requirements
    return Selector(requirements)


def constraints_of(
    pod: Mapping[str, Any], cluster, hard: bool, defaults: list[Mapping[str, Any]] | None = None
) -> tuple[list[Constraint], bool]:
    """The pod's constraints of one kind, and whether they are defaults (``defaults``:
    the profile's list; None: the system defaults)."""
    wanted = "DoNotSchedule" if hard else "ScheduleAnyway"
    given = (pod.get("spec") or {}).get("topologySpreadConstraints") or ()
    if given:
        return [_constraint(pod, c) for c in given
                if (c.get("whenUnsatisfiable") or "DoNotSchedule") == wanted], False  # fmt: skip
    if defaults is None:
        defaults = [{"topologyKey": key, "maxSkew": skew, "whenUnsatisfiable": "ScheduleAnyway"}
                    for key, skew in SYSTEM_DEFAULTS]  # fmt: skip
    chosen = [c for c in defaults if (c.get("whenUnsatisfiable") or "DoNotSchedule") == wanted]
    if not chosen:
        return [], True
    selector = default_selector(pod, cluster)
    if selector.empty:
        return [], True
    return [Constraint(c["topologyKey"], int(c.get("maxSkew") or 1), selector)
            for c in chosen], True  # fmt: skip


def _counted_nodes(state: CycleState, pod, table, c: Constraint, keys: list[str]) -> np.ndarray:
    """The nodes whose pods count for ``c`` (see the module rules)."""
    mask = np.ones(len(table), dtype=bool)
    for key in keys:
        mask &= table.label_codes(key)[0] >= 0
    for honored, plugin in ((c.honor_affinity, _AFFINITY), (c.honor_taints, _TAINTS)):
        if honored:
            mask &= filter_mask(plugin, state, pod, table)
    return mask


@attrs.define
class _Domains:
    """One constraint's counts per domain over the counted nodes."""

    constraint: Constraint
    codes: np.ndarray  # each node's domain (-1: no such label)
    index: dict[str, int]  # domain value -> code
    counts: np.ndarray  # per domain code
    present: np.ndarray  # per domain code: some counted node is in it
    counted: np.ndarray  # per node: its pods count


def _matching(table, pod, c: Constraint) -> np.ndarray:
    """Each node's pods that count for ``c``: none for an empty selector (Kubernetes'
    countPodsMatchSelector), though the pod itself still matches it."""
    if c.selector.empty:
        return np.zeros(len(table), dtype=np.int64)
    namespace = (pod.get("metadata") or {}).get("namespace", "")
    return table.matching(frozenset((namespace,)), c.selector)


def _domains(state: CycleState, pod, table, c: Constraint, counted: np.ndarray) -> _Domains:
    codes, values = table.label_codes(c.key)
    per_node = _matching(table, pod, c)
    rows = counted & (codes >= 0)
    counts = np.bincount(codes[rows], weights=per_node[rows], minlength=len(values))
    present = np.bincount(codes[rows], minlength=len(values)) > 0
    index = table.label_index(c.key)
    return _Domains(c, codes, index, counts.astype(np.int64), present, counted)


@attrs.define
class _Check:
    """A hard constraint's counts, its minimum, and whether the pod counts itself."""

    d: _Domains
    own: int
    minimum: int = 0

    def settle(self) -> None:
        d = self.d
        domains = int(d.present.sum())
        if domains == 0:
            self.minimum = 2**31 - 1  # nothing counted: no node makes a skew
        elif domains < d.constraint.min_domains:
            self.minimum = 0
        else:
            self.minimum = int(d.counts[d.present].min())


@attrs.define
class _FilterState:
    checks: list[_Check]
    namespace: str
    table: Any

    def clone(self) -> _FilterState:
        return _FilterState(
            [attrs.evolve(c, d=attrs.evolve(c.d, counts=c.d.counts.copy())) for c in self.checks],
            self.namespace,
            self.table,
        )

    def update(self, other: Mapping[str, Any], node: NodeInfo, delta: int) -> None:
        """``other`` joins (1) or leaves (-1) ``node``: the counts follow."""
        m = other.get("metadata") or {}
        row = self.table.row.get(node.name)
        if m.get("namespace", "") != self.namespace or row is None:
            return
        for c in self.checks:
            code = c.d.codes[row]
            selector = c.d.constraint.selector
            if code < 0 or not c.d.counted[row] or selector.empty:
                continue
            if selector.matches(m.get("labels") or {}):
                c.d.counts[code] += delta
                c.settle()


class PodTopologySpread(FollowsPods):
    name = "PodTopologySpread"

    def __init__(self, defaults: list[Mapping[str, Any]] | None = None) -> None:
        self.defaults = defaults  # None: the system defaults

    # --- filter -------------------------------------------------------------------------

    def pre_filter(self, state: CycleState, pod: Mapping[str, Any], table) -> Status:
        constraints, _ = constraints_of(pod, state.cluster, True, self.defaults)
        if not constraints:
            return SKIP
        keys = [c.key for c in constraints]
        checks = []
        for c in constraints:
            d = _domains(state, pod, table, c, _counted_nodes(state, pod, table, c, keys))
            check = _Check(d, 1 if c.selector.matches(_labels(pod)) else 0)
            check.settle()
            checks.append(check)
        namespace = (pod.get("metadata") or {}).get("namespace", "")
        state[self.name] = _FilterState(checks, namespace, table)
        return SUCCESS

    def filter(self, state: CycleState, pod: Mapping[str, Any], node: NodeInfo) -> Status:
        for check in state[self.name].checks:
            d, minimum, own = check.d, check.minimum, check.own
            value = node.labels.get(d.constraint.key)
            if value is None:
                return Status.unresolvable(MISSING_LABEL)
            code = d.index.get(value)
            count = int(d.counts[code]) if code is not None else 0
            if count + own - minimum > d.constraint.max_skew:
                return Status.unschedulable(NOT_MATCH)
        return SUCCESS

    def filter_many(self, state: CycleState, pod: Mapping[str, Any], table) -> np.ndarray:
        fits = np.ones(len(table), dtype=bool)
        for check in state[self.name].checks:
            d, minimum, own = check.d, check.minimum, check.own
            codes = d.codes
            counts = np.where(codes >= 0, d.counts[np.maximum(codes, 0)] if len(d.counts) else 0,
                              0)  # fmt: skip
            fits &= (codes >= 0) & (counts + own - minimum <= d.constraint.max_skew)
        return fits

    # --- score --------------------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: Mapping[str, Any], table, rows) -> Status:
        constraints, defaulted = constraints_of(pod, state.cluster, False, self.defaults)
        if not constraints:
            return SKIP
        keys = [c.key for c in constraints]
        has_all = np.ones(len(table), dtype=bool)
        for key in keys:
            has_all &= table.label_codes(key)[0] >= 0
        ignored = ~has_all[rows] if not defaulted else np.zeros(len(rows), dtype=bool)
        kept = rows[~ignored]
        scored = []
        for c in constraints:
            per_node = _matching(table, pod, c)
            codes = table.label_codes(c.key)[0]
            if c.key == HOSTNAME:
                size = len(kept)
                d = None
            else:
                counted = _counted_nodes(state, pod, table, c, keys if not defaulted else [])
                d = _domains(state, pod, table, c, counted)
                # A feasible node without the key counts as one more domain (Kubernetes
                # pairs it with the empty value), which only the defaults allow.
                mine = codes[kept]
                size = len(np.unique(mine[mine >= 0])) + int(bool((mine < 0).any()))
            scored.append((c, math.log(size + 2), d, per_node, codes))
        state[self.name + "/score"] = (scored, ignored, {int(r): i for i, r in enumerate(rows)},
                                       table)  # fmt: skip
        return SUCCESS

    def score(self, state: CycleState, pod: Mapping[str, Any], node: NodeInfo) -> int:
        scored, ignored, position, table = state[self.name + "/score"]
        row = table.row[node.name]
        if ignored[position[row]]:
            return 0
        total = 0.0
        for c, weight, d, per_node, codes in scored:
            if codes[row] < 0:
                continue
            count = per_node[row] if d is None else d.counts[codes[row]]
            total += float(count) * weight + float(c.max_skew - 1)
        return math.floor(total + 0.5)  # Go's math.Round, for scores >= 0

    def score_many(self, state: CycleState, pod: Mapping[str, Any], table, rows) -> np.ndarray:
        scored, ignored, _, _ = state[self.name + "/score"]
        total = np.zeros(len(rows), dtype=np.float64)
        for c, weight, d, per_node, codes in scored:
            mine = codes[rows]
            has = mine >= 0
            if d is None:
                count = per_node[rows]
            else:
                count = d.counts[np.maximum(mine, 0)] if len(d.counts) else np.zeros(len(rows))
            total = np.where(has, total + (count.astype(np.float64) * weight
                                           + float(c.max_skew - 1)), total)  # fmt: skip
        return np.where(ignored, 0, np.floor(total + 0.5).astype(np.int64))

    def normalize(self, state: CycleState, pod: Mapping[str, Any], scores: np.ndarray):
        _, ignored, _, _ = state[self.name + "/score"]
        valid = ~ignored
        if not valid.any():
            return np.zeros(len(scores), dtype=np.int64)
        lowest, highest = int(scores[valid].min()), int(scores[valid].max())
        if highest == 0:
            return np.where(valid, MAX_NODE_SCORE, 0)
        return np.where(valid, MAX_NODE_SCORE * (highest + lowest - scores) // highest, 0)
