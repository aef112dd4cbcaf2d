"""InterPodAffinity: place pods near (affinity) or away from (anti-affinity) other pods,
per topology domain.

Rules (Kubernetes' interpodaffinity plugin):

- A term selects pods by ``labelSelector`` in ``namespaces`` (none listed and no
  ``namespaceSelector``: the term's own pod's namespace; ``namespaceSelector: {}``:
  every namespace) and names a ``topologyKey``; a nil selector selects nothing. Pods
  being deleted count.
- Filter, in this order:
  1. required affinity: for every term the node has the key and its domain holds a
     pod that matches *all* the terms, else unresolvable ("node(s) didn't match pod
     affinity rules"), except for the first pod of a group that matches its own
     terms, when no such pod exists anywhere;
  2. required anti-affinity: no pod matching a term in the node's domain
     ("node(s) didn't match pod anti-affinity rules");
  3. existing pods' required anti-affinity: no pod whose anti-affinity term selects
     this pod in the node's domain ("node(s) didn't satisfy existing pods
     anti-affinity rules").
- Score: per domain, the weights of the pod's preferred affinity terms for each
  matching pod there, minus those of its preferred anti-affinity terms, plus, for
  each pod there whose own terms select this pod: 1 per required affinity term
  (hardPodAffinityWeight), the weight of its preferred affinity terms, minus that of
  its preferred anti-affinity terms. A node scores the sum over its domains,
  normalized to 100 x (score - min) / (max - min).
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from actorkube.apiserver._selectors import InvalidSelector, Selector

from .._framework import MAX_NODE_SCORE, SKIP, SUCCESS, CycleState, FollowsPods, Status
from .._nodeinfo import NodeInfo
from .._table import pod_terms

AFFINITY_MISMATCH = "node(s) didn't match pod affinity rules"
ANTI_MISMATCH = "node(s) didn't match pod anti-affinity rules"
EXISTING_ANTI_MISMATCH = "node(s) didn't satisfy existing pods anti-affinity rules"
HARD_POD_AFFINITY_WEIGHT = 1
NOTHING = Selector(selects_nothing=True)


@attrs.frozen
class Term:
    namespaces: frozenset[str] | None  # None: every namespace
    namespace_selector: Selector | None  # a non-empty namespaceSelector
    selector: Selector
    key: str


def _selector(raw) -> Selector:
    try:
        return Selector.from_label_selector(raw)
    except InvalidSelector:
        return NOTHING


@functools.lru_cache(maxsize=4096)
def _parsed(text: str, owner_namespace: str) -> Term:
    return parse_term(json.loads(text), owner_namespace)


def parse_term(term: Mapping[str, Any], owner_namespace: str) -> Term:
    names = frozenset(term.get("namespaces") or ())
    selector = _selector(term.get("labelSelector"))
    key = term.get("topologyKey") or ""
    raw = term.get("namespaceSelector")
    if raw is None:
        return Term(names or frozenset((owner_namespace,)), None, selector, key)
    ns_selector = _selector(raw)
    if ns_selector.empty:
        return Term(None, None, selector, key)
    return Term(names, ns_selector, selector, key)


def term_matches(term: Term, pod: Mapping[str, Any], cluster) -> bool:
    m = pod.get("metadata") or {}
    namespace = m.get("namespace", "")
    inside = term.namespaces is None or namespace in term.namespaces
    if not inside and term.namespace_selector is not None:
        inside = term.namespace_selector.matches(cluster.namespace_labels(namespace) or {})
    return inside and term.selector.matches(m.get("labels") or {})


def _namespaces(term: Term, cluster) -> frozenset[str] | None:
    """The namespaces a term looks in, as names (for counting)."""
    if term.namespaces is None or term.namespace_selector is None:
        return term.namespaces
    chosen = {n for n in cluster.namespace_names()
              if term.namespace_selector.matches(cluster.namespace_labels(n) or {})}  # fmt: skip
    return term.namespaces | chosen


def _per_domain(table, key: str, per_node: np.ndarray) -> np.ndarray:
    codes, values = table.label_codes(key)
    has = codes >= 0
    return np.bincount(codes[has], weights=per_node[has], minlength=len(values)).astype(np.int64)


def _at(table, key: str, per_domain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each node's value of ``per_domain`` (0 without the key), and whether it has it."""
    codes = table.label_codes(key)[0]
    has = codes >= 0
    if not len(per_domain):
        return np.zeros(len(codes), dtype=np.int64), has
    return np.where(has, per_domain[np.maximum(codes, 0)], 0), has


@attrs.define
class _FilterState:
    affinity: list[tuple[Term, np.ndarray]]  # per term: matching pods per domain
    any_affinity_pod: bool
    matches_itself: bool
    anti: list[tuple[Term, np.ndarray]]
    # topology key -> {domain: pods there whose anti-affinity keeps this pod out}
    blocked: dict[str, dict[str, int]]
    table: Any
    pod: Mapping[str, Any]
    cluster: Any

    def clone(self) -> _FilterState:
        return attrs.evolve(
            self,
            affinity=[(t, c.copy()) for t, c in self.affinity],
            anti=[(t, c.copy()) for t, c in self.anti],
            blocked={k: dict(v) for k, v in self.blocked.items()},
        )

    def update(self, other: Mapping[str, Any], node: NodeInfo, delta: int) -> None:
        """``other`` joins (1) or leaves (-1) ``node``: the counts follow."""
        labels = node.labels

        def bump(key: str, per_domain: np.ndarray) -> None:
            code = self.table.label_index(key).get(labels.get(key)) if key in labels else None
            if code is not None:
                per_domain[code] += delta

        if self.affinity and all(term_matches(t, other, self.cluster) for t, _ in self.affinity):
            for t, per_domain in self.affinity:
                bump(t.key, per_domain)
            self.any_affinity_pod = any(int(c.sum()) > 0 for _, c in self.affinity)
        for t, per_domain in self.anti:
            if term_matches(t, other, self.cluster):
                bump(t.key, per_domain)
        owner = (other.get("metadata") or {}).get("namespace", "")
        for kind, _, raw in pod_terms(other):
            t = parse_term(raw, owner)
            value = labels.get(t.key)
            if kind != "anti" or value is None or not term_matches(t, self.pod, self.cluster):
                continue
            domains = self.blocked.setdefault(t.key, {})
            domains[value] = domains.get(value, 0) + delta
            if domains[value] <= 0:
                del domains[value]


def _combined(terms: list[Term], cluster) -> tuple[frozenset[str] | None, Selector]:
    """Namespaces and selector of the pods that match every term."""
    namespaces: frozenset[str] | None = None
    requirements = []
    for t in terms:
        if t.selector.selects_nothing:
            return frozenset(), NOTHING
        requirements += t.selector.requirements
        mine = _namespaces(t, cluster)
        if mine is not None:
            namespaces = mine if namespaces is None else namespaces & mine
    return namespaces, Selector(requirements)


class InterPodAffinity(FollowsPods):
    name = "InterPodAffinity"

    def __init__(self, hard_pod_affinity_weight: int = HARD_POD_AFFINITY_WEIGHT) -> None:
        self.hard_weight = hard_pod_affinity_weight

    # --- filter -------------------------------------------------------------------------

    def pre_filter(self, state: CycleState, pod: Mapping[str, Any], table) -> Status:
        cluster = state.cluster
        namespace = (pod.get("metadata") or {}).get("namespace", "")
        own = [(kind, parse_term(t, namespace)) for kind, _, t in pod_terms(pod)]
        affinity = [t for kind, t in own if kind == "affinity"]
        anti = [t for kind, t in own if kind == "anti"]
        blocked: dict[str, dict[str, int]] = defaultdict(dict)
        for (kind, _, owner, text, key), counts in table.terms().items():
            if kind == "anti" and term_matches(_parsed(text, owner), pod, cluster):
                domains = blocked[key]
                for value, n in counts.items():
                    domains[value] = domains.get(value, 0) + n
        if not affinity and not anti and not blocked:
            return SKIP
        s = _FilterState([], False, False, [], dict(blocked), table, pod, cluster)
        if affinity:
            namespaces, selector = _combined(affinity, cluster)
            per_node = table.matching(namespaces, selector, deleting=True)
            s.affinity = [(t, _per_domain(table, t.key, per_node)) for t in affinity]
            s.any_affinity_pod = any(int(c.sum()) > 0 for _, c in s.affinity)
            s.matches_itself = all(term_matches(t, pod, cluster) for t in affinity)
        for t in anti:
            per_node = table.matching(_namespaces(t, cluster), t.selector, deleting=True)
            s.anti.append((t, _per_domain(table, t.key, per_node)))
        state[self.name] = s
        return SUCCESS

    def filter(self, state: CycleState, pod: Mapping[str, Any], node: NodeInfo) -> Status:
        s: _FilterState = state[self.name]
        labels = node.labels
        if s.affinity:
            exist = True
            for t, per_domain in s.affinity:
                value = labels.get(t.key)
                if value is None:
                    return Status.unresolvable(AFFINITY_MISMATCH)
                code = s.table.label_index(t.key).get(value)
                if code is None or per_domain[code] <= 0:
                    exist = False
            if not exist and (s.any_affinity_pod or not s.matches_itself):
                return Status.unresolvable(AFFINITY_MISMATCH)
        for t, per_domain in s.anti:
            value = labels.get(t.key)
            code = s.table.label_index(t.key).get(value) if value is not None else None
            if code is not None and per_domain[code] > 0:
                return Status.unschedulable(ANTI_MISMATCH)
        for key, domains in s.blocked.items():
            if labels.get(key) in domains:
                return Status.unschedulable(EXISTING_ANTI_MISMATCH)
        return SUCCESS

    def filter_many(self, state: CycleState, pod: Mapping[str, Any], table) -> np.ndarray:
        s: _FilterState = state[self.name]
        fits = np.ones(len(table), dtype=bool)
        if s.affinity:
            exist = np.ones(len(table), dtype=bool)
            for t, per_domain in s.affinity:
                count, has = _at(table, t.key, per_domain)
                fits &= has
                exist &= count > 0
            if s.any_affinity_pod or not s.matches_itself:
                fits &= exist
        for t, per_domain in s.anti:
            count, _ = _at(table, t.key, per_domain)
            fits &= count <= 0
        for key, domains in s.blocked.items():
            index = table.label_index(key)
            bad = [index[d] for d in domains if d in index]
            if bad:
                fits &= ~np.isin(table.label_codes(key)[0], bad)
        return fits

    # --- score --------------------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: Mapping[str, Any], table, rows) -> Status:
        cluster = state.cluster
        namespace = (pod.get("metadata") or {}).get("namespace", "")
        preferred = [(w if kind == "affinity-preferred" else -w, parse_term(t, namespace))
                     for kind, w, t in pod_terms(pod) if kind.endswith("-preferred")]  # fmt: skip
        existing = [(k, c) for k, c in table.terms().items() if k[0] != "anti"]
        if not preferred and not existing:
            return SKIP
        topology: dict[str, np.ndarray] = {}

        def add(key: str, per_domain: np.ndarray) -> None:
            if key in topology:
                topology[key] = topology[key] + per_domain
            else:
                topology[key] = per_domain

        for weight, t in preferred:
            per_node = table.matching(_namespaces(t, cluster), t.selector, deleting=True)
            add(t.key, _per_domain(table, t.key, per_node) * weight)
        for (kind, w, owner, text, key), counts in existing:
            if not term_matches(_parsed(text, owner), pod, cluster):
                continue
            weight = {"affinity": self.hard_weight, "affinity-preferred": w,
                      "anti-preferred": -w}[kind]  # fmt: skip
            index = table.label_index(key)
            per_domain = np.zeros(len(index), dtype=np.int64)
            for value, n in counts.items():
                per_domain[index[value]] += weight * n
            add(key, per_domain)
        state[self.name + "/score"] = (topology, table)
        return SUCCESS

    def score(self, state: CycleState, pod: Mapping[str, Any], node: NodeInfo) -> int:
        topology, table = state[self.name + "/score"]
        total = 0
        for key, per_domain in topology.items():
            value = node.labels.get(key)
            if value is not None:
                total += int(per_domain[table.label_index(key)[value]])
        return total

    def score_many(self, state: CycleState, pod: Mapping[str, Any], table, rows) -> np.ndarray:
        topology, _ = state[self.name + "/score"]
        total = np.zeros(len(rows), dtype=np.int64)
        for key, per_domain in topology.items():
            total += _at(table, key, per_domain)[0][rows]
        return total

    def normalize(self, state: CycleState, pod: Mapping[str, Any], scores: np.ndarray):
        lowest, highest = int(scores.min()), int(scores.max())
        if highest == lowest:
            return np.zeros(len(scores), dtype=np.int64)
        spread = (scores - lowest) / float(highest - lowest)
        return (float(MAX_NODE_SCORE) * spread).astype(np.int64)
