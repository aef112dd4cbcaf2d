"""DefaultPreemption: when no node fits a pod, find lower-priority pods whose eviction
would make room. Pure: it chooses; the scheduler deletes the victims and nominates
the node.

Rules (Kubernetes' defaultpreemption plugin and pkg/scheduler/framework/preemption):

- A pod with ``preemptionPolicy: Never`` never preempts; nor does a pod nominated to
  a node where lower-priority pods are still being deleted (it waits for them).
- Only nodes whose filter failure was ``Unschedulable`` can help (not
  ``UnschedulableAndUnresolvable``: a taint or a missing label stays whatever is
  evicted). From a random offset, nodes are tried until ``max(10% of nodes, 100)``
  candidates are found.
- On a node, every pod of lower priority is removed; if the pod still does not fit,
  the node is no candidate. Then victims are given back (reprieved) one by one, most
  important first (higher priority, then earlier start), those whose eviction would
  break a PodDisruptionBudget first: a pod that can come back without the preemptor
  losing its fit is not a victim. The filters' pre-computed state (topology spread
  counts, inter-pod affinity) follows each removal and return (``remove_pod`` /
  ``add_pod`` of the plugins that keep such state).
- The chosen node has, in order: the fewest PodDisruptionBudget violations, the
  lowest highest-victim priority, the lowest sum of victim priorities, the fewest
  victims, the latest start among its highest-priority victims; then the first found.
- A PodDisruptionBudget covers a pod of its namespace that its (non-empty) selector
  matches; each covered victim uses one of ``status.disruptionsAllowed`` (pods already
  in ``status.disruptedPods`` do not), and a victim beyond that is a violation.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from actorkube.apiserver._selectors import InvalidSelector, Selector

from ._framework import Code, CycleState, Status, filter_verdicts
from ._nodeinfo import NodeInfo
from ._queue import priority

MIN_CANDIDATES_PERCENT = 10
MIN_CANDIDATES = 100
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"
MAX_INT32 = 2**31 - 1
MAX_KNOWN = 50_000
MISSING = object()


@attrs.frozen
class Preemption:
    """The node the preemptor is nominated to, the pods to evict there, and the
    lower-priority pods nominated there whose held room it takes (their nomination
    is cleared, as Kubernetes does; they are not running, so they are no victims)."""

    node: str
    victims: tuple[Mapping[str, Any], ...]
    pdb_violations: int
    displaced: tuple[Mapping[str, Any], ...] = ()


def _start(pod: Mapping[str, Any]) -> str:
    # A pod that has not started (an assumed pod) counts as starting now: last.
    return (pod.get("status") or {}).get("startTime") or "9999"


def _importance(pod: Mapping[str, Any]) -> tuple:
    """Sort key: more important first (higher priority, then earlier start)."""
    return (-priority(pod), _start(pod))


def terminating_by_preemption(pod: Mapping[str, Any]) -> bool:
    """Being deleted because a preemption chose it (Kubernetes' DisruptionTarget
    condition with reason PreemptionByScheduler)."""
    if not (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "DisruptionTarget" and c.get("reason") == "PreemptionByScheduler"
               for c in (pod.get("status") or {}).get("conditions") or ())  # fmt: skip


def ineligible(pod: Mapping[str, Any], nodes_by_name: Mapping[str, NodeInfo],
               statuses: Mapping[str, Status]) -> str:  # fmt: skip
    """Why ``pod`` may not preempt now ("": it may)."""
    spec = pod.get("spec") or {}
    if spec.get("preemptionPolicy") == "Never":
        return "not eligible due to preemptionPolicy=Never"
    nominated = (pod.get("status") or {}).get("nominatedNodeName")
    node = nodes_by_name.get(nominated) if nominated else None
    status = statuses.get(nominated) if nominated else None
    unresolvable = status is not None and status.code is Code.UNRESOLVABLE
    if node is not None and not unresolvable and waits_for_victims(pod, node):
        return "not eligible due to a terminating pod on the nominated node"
    return ""


def waits_for_victims(pod: Mapping[str, Any], node: NodeInfo) -> bool:
    """Whether lower-priority pods on ``node`` are still being deleted by preemption
    (the preemptor waits for them rather than preempting again)."""
    mine = priority(pod)
    return any(priority(p) < mine and terminating_by_preemption(p) for p in node.pods.values())


def split_by_budget(victims: Sequence[Mapping[str, Any]], budgets: Sequence[Mapping[str, Any]]):
    """(violating, not violating), each in the given order."""
    allowed = [int((b.get("status") or {}).get("disruptionsAllowed") or 0) for b in budgets]
    selectors = []
    for b in budgets:
        try:
            selectors.append(Selector.from_label_selector((b.get("spec") or {}).get("selector")))
        except InvalidSelector:
            selectors.append(Selector(selects_nothing=True))
    violating, fine = [], []
    for pod in victims:
        m = pod.get("metadata") or {}
        breaks = False
        for i, b in enumerate(budgets):
            if (b.get("metadata") or {}).get("namespace") != m.get("namespace"):
                continue
            if selectors[i].empty or not selectors[i].matches(m.get("labels") or {}):
                continue  # an empty selector covers nothing here
            if m.get("name") in ((b.get("status") or {}).get("disruptedPods") or {}):
                continue
            allowed[i] -= 1
            if allowed[i] < 0:
                breaks = True
        (violating if breaks else fine).append(pod)
    return violating, fine


def _changes_with_pods(plugin, state: CycleState, pod) -> bool:
    """Whether ``plugin``'s filter verdict on a node can change when its pods do (not
    so for a plugin that reads only the node's labels and spec)."""
    reads = getattr(plugin, "node_labels", None)
    return reads is None or reads(state, pod) is None


def _change(hooks, state: CycleState, pod, other, node: NodeInfo, added: bool) -> None:
    """``other`` joins or leaves ``node``; the plugins that keep pod counts in the
    cycle state (``hooks``) learn of it."""
    (node.add_pod if added else node.remove_pod)(other)
    for p in hooks:
        (p.add_pod if added else p.remove_pod)(state, pod, other, node)


@attrs.frozen
class _Trial:
    """What is the same for every node one preemption looks at."""

    state: CycleState
    pod: Mapping[str, Any]
    dynamic: list  # the filters whose verdict can change with the node's pods
    hooks: list  # the plugins whose cycle state counts pods
    budgets: Sequence[Mapping[str, Any]]


def _trial(framework, state: CycleState, pod, budgets) -> tuple[_Trial, list]:
    """The trial, and the filters that read only a node's labels and spec (their
    verdict cannot change by evicting pods: asked once per node)."""
    filters = framework._filters(state)
    static = [p for p in filters if not _changes_with_pods(p, state, pod)]
    dynamic = [p for p in filters if _changes_with_pods(p, state, pod)]
    hooks = [p for p in framework.plugins if hasattr(p, "remove_pod") and p.name in state]
    return _Trial(state, pod, dynamic, hooks, budgets), static


def victims_on(trial: _Trial, node: NodeInfo):
    """(victims, PDB violations, displaced nominated pods) that make the pod fit
    ``node``, or None. The caller has checked the filters that do not depend on pods.
    Lower-priority pods only nominated here are not running: they make room without
    being victims (Kubernetes' filters ignore them for a higher-priority pod)."""
    pod = trial.pod
    mine = priority(pod)
    lower, displaced = [], []
    for key, p in node.pods.items():
        if priority(p) < mine:
            (displaced if key in node.nominated else lower).append(p)
    if not lower and not displaced:
        return None
    state = trial.state.clone()
    hooks, dynamic = trial.hooks, trial.dynamic
    room = node.clone()
    for p in (*displaced, *lower):
        _change(hooks, state, pod, p, room, added=False)

    def fits() -> bool:
        return all(p.filter(state, pod, room).ok for p in dynamic)

    if not fits():
        return None
    lower.sort(key=_importance)
    violating, fine = split_by_budget(lower, trial.budgets)
    victims: list = []
    violations = 0
    for group, counts in ((violating, True), (fine, False)):
        for p in group:
            _change(hooks, state, pod, p, room, added=True)
            if not fits():
                _change(hooks, state, pod, p, room, added=False)
                victims.append(p)
                violations += counts
    return victims, violations, displaced


def _shape(pod: Mapping[str, Any], budgets: Sequence[Mapping[str, Any]]) -> str:
    """What victims_on reads of a preemptor (not its name or status) and of the
    budgets."""
    m = pod.get("metadata") or {}
    spec = {k: v for k, v in (pod.get("spec") or {}).items() if k != "nodeName"}
    versions = [((b.get("metadata") or {}).get("uid"), (b.get("metadata") or {}).get(
        "resourceVersion"), b.get("status")) for b in budgets]  # fmt: skip
    return json.dumps([spec, m.get("namespace"), m.get("labels"), versions], sort_keys=True,
                      default=str)  # fmt: skip


def _pick(candidates: list[Preemption]) -> Preemption:
    def rank(c: Preemption) -> tuple:
        if not c.victims:
            return (-1,)
        highest = max(priority(v) for v in c.victims)
        earliest = min(_start(v) for v in c.victims if priority(v) == highest)
        total = sum(priority(v) + MAX_INT32 + 1 for v in c.victims)
        # The latest start wins: negate by sorting on the reversed string order.
        return (c.pdb_violations, highest, total, len(c.victims), _Reversed(earliest))

    return min(candidates, key=rank)  # the first of equals: min is stable


@attrs.frozen(order=False)
class _Reversed:
    text: str

    def __lt__(self, other: _Reversed) -> bool:
        return self.text > other.text


class DefaultPreemption:
    """The PostFilter plugin (see the module rules)."""

    name = "DefaultPreemption"

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random(0)
        # victims_on's answers, by node version and preemptor (see post_filter)
        self._known: dict[tuple, Any] = {}

    def post_filter(self, framework, state: CycleState, pod, table,
                    statuses: Mapping[str, Status]) -> tuple[Preemption | None, str]:  # fmt: skip
        """The preemption to make (None: none helps) and the message part that says
        why not (Kubernetes' "preemption: 0/N nodes are available: ...")."""
        by_name = {info.name: info for info in table.infos}
        n = len(table.infos)
        why_not = ineligible(pod, by_name, statuses)
        if why_not:
            return None, f"preemption: {why_not}"
        unschedulable = {name for name, s in statuses.items() if s.code is Code.UNSCHEDULABLE}
        helpful = [info for info in table.infos if info.name in unschedulable]
        not_helpful = n - len(helpful)
        wanted = max(n * MIN_CANDIDATES_PERCENT // 100, MIN_CANDIDATES)
        budgets = state.cluster.pod_disruption_budgets()  # victims' namespaces vary
        trial, static = _trial(framework, state, pod, budgets)
        passes = np.ones(n, dtype=bool)
        for p in static:
            passes &= filter_verdicts(p, state, pod, table)
        # Without plugin state that counts pods elsewhere, a node's answer depends only on
        # the node (its generation), the preemptor's spec and the budgets: the same
        # preemptor shape meets the same nodes again and again (a Deployment's pods).
        shape = None if trial.hooks else _shape(pod, budgets)
        if len(self._known) > MAX_KNOWN:
            self._known.clear()
        candidates: list[Preemption] = []
        offset = self.rng.randrange(len(helpful)) if helpful else 0
        tried = 0
        for i in range(len(helpful)):
            info = helpful[(offset + i) % len(helpful)]
            tried += 1
            if not passes[table.row[info.name]]:
                continue  # a label or the spec keeps the pod out, whatever is evicted
            if shape is None:
                found = victims_on(trial, info)
            else:
                key = (info.name, info.generation, shape)
                found = self._known.get(key, MISSING)
                if found is MISSING:
                    found = self._known[key] = victims_on(trial, info)
            if found is not None:
                candidates.append(Preemption(info.name, tuple(found[0]), found[1],
                                             tuple(found[2])))  # fmt: skip
                if len(candidates) >= wanted:
                    break
        if candidates:
            return _pick(candidates), ""
        reasons = []
        if not_helpful:
            reasons.append(f"{not_helpful} {NOT_HELPFUL}")
        if tried:
            reasons.append(f"{tried} {NO_VICTIMS}")
        return None, f"preemption: 0/{n} nodes are available: {', '.join(sorted(reasons))}"

