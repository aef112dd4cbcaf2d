"""The scheduling framework: extension points, their Status results, and one pod's
scheduling cycle over a snapshot of nodes. Pure: no I/O, no clock, no actors.

Rules of this file (Kubernetes' pkg/scheduler/framework and schedule_one.go):

- A plugin implements any of ``pre_filter(state, pod)``, ``filter(state, pod, node)``,
  ``pre_score(state, pod, nodes)``, ``score(state, pod, node) -> int`` and
  ``normalize(state, pod, scores)``; the framework calls each in profile order.
  Filters return a ``Status``: success, ``unschedulable`` (another node, or preemption,
  may do) or ``unresolvable`` (nothing on this node will change that); an ``error`` is
  the plugin's own failure.
- Filtering stops at the first failing filter for a node, and scanning stops once
  ``feasible_nodes_to_find`` nodes fit (all nodes below 100; else 50 - nodes/125
  percent, at least 5 percent and at least 100 nodes), starting where the last cycle
  stopped, so that every node gets its turn.
- Scores are 0-100 per plugin after normalizing, weighted and summed; the highest
  total wins, ties broken by the cycle's random source (seeded: the same inputs and
  seed give the same node).
- A pod no node fits gets a ``FitError`` whose message is Kubernetes' ("0/5 nodes are
  available: 3 Insufficient cpu, 2 node(s) were unschedulable.").
"""

from __future__ import annotations

import enum
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ._nodeinfo import NodeInfo

MAX_NODE_SCORE = 100
MIN_FEASIBLE_NODES = 100
MIN_FEASIBLE_PERCENT = 5


class Code(enum.IntEnum):
    SUCCESS = 0
    ERROR = 1
    UNSCHEDULABLE = 2
    UNRESOLVABLE = 3  # UnschedulableAndUnresolvable
    SKIP = 4


@attrs.frozen
class Status:
    """A plugin's verdict: ``code`` and the reasons a person reads."""

    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    @property
    def ok(self) -> bool:
        return self.code is Code.SUCCESS

    @classmethod
    def unschedulable(cls, *reasons: str) -> Status:
        return cls(Code.UNSCHEDULABLE, reasons)

    @classmethod
    def unresolvable(cls, *reasons: str) -> Status:
        return cls(Code.UNRESOLVABLE, reasons)

    @classmethod
    def error(cls, reason: str) -> Status:
        return cls(Code.ERROR, (reason,))


SUCCESS = Status()
SKIP = Status(Code.SKIP)


class CycleState(dict):
    """What plugins note for one pod's cycle (pre_filter's work, read by filter)."""


def feasible_nodes_to_find(nodes: int, percentage: int = 0) -> int:
    """How many feasible nodes a cycle looks for before it stops filtering
    (``percentageOfNodesToScore``; 0: Kubernetes' adaptive default)."""
    if nodes < MIN_FEASIBLE_NODES or percentage >= 100:
        return nodes
    if percentage <= 0:
        percentage = max(50 - nodes // 125, MIN_FEASIBLE_PERCENT)
    return max(nodes * percentage // 100, MIN_FEASIBLE_NODES)


class FitError(Exception):
    """No node fits. ``statuses`` holds each filtered node's failing Status."""

    def __init__(self, pod: Mapping[str, Any], nodes: int, statuses: dict[str, Status],
                 pre_filter: str = "", post_filter: str = "") -> None:  # fmt: skip
        self.pod = pod
        self.nodes = nodes
        self.statuses = statuses
        self.pre_filter = pre_filter
        self.post_filter = post_filter
        super().__init__(self.message())

    def histogram(self) -> Counter:
        counts: Counter = Counter()
        for status in self.statuses.values():
            counts.update(status.reasons)
        return counts

    def message(self) -> str:
        text = f"0/{self.nodes} nodes are available:"
        if self.pre_filter:
            text += f" {self.pre_filter}."
        else:
            reasons = sorted(f"{n} {reason}" for reason, n in self.histogram().items())
            text += f" {', '.join(reasons)}."
        if self.post_filter:
            text += f" {self.post_filter}."
        return text


@attrs.frozen
class Result:
    node: str
    evaluated: int
    feasible: int


@attrs.define
class Framework:
    """A profile: plugins in order, with score weights (see the module rules)."""

    plugins: Sequence[Any]
    weights: Mapping[str, int] = attrs.field(factory=dict)
    percentage: int = 0
    rng: random.Random = attrs.field(factory=lambda: random.Random(0))
    next_start: int = 0

    def schedule(self, pod: Mapping[str, Any], nodes: Sequence[NodeInfo]) -> Result:
        """The node for ``pod`` among ``nodes``; raises FitError if none fits."""
        if not nodes:
            raise FitError(pod, 0, {}, pre_filter="no nodes available to schedule pods")
        state = CycleState()
        for p in self.plugins:
            pre = getattr(p, "pre_filter", None)
            if pre is not None:
                status = pre(state, pod)
                if status.code is Code.SKIP:
                    state[("skip", p.name)] = True
                elif not status.ok:
                    raise FitError(pod, len(nodes), {}, pre_filter=", ".join(status.reasons))
        feasible, statuses = self._filter(state, pod, nodes)
        if not feasible:
            raise FitError(pod, len(nodes), statuses)
        evaluated = len(feasible) + len(statuses)
        if len(feasible) == 1:
            return Result(feasible[0].name, evaluated, 1)
        totals = self._score(state, pod, feasible)
        best = max(totals.values())
        winners = [n for n, total in totals.items() if total == best]
        return Result(self.rng.choice(sorted(winners)), evaluated, len(feasible))

    def _filters(self, state: CycleState) -> list:
        return [p.filter for p in self.plugins
                if hasattr(p, "filter") and not state.get(("skip", p.name))]  # fmt: skip

    def _filter(self, state: CycleState, pod, nodes: Sequence[NodeInfo]):
        filters = self._filters(state)
        want = feasible_nodes_to_find(len(nodes), self.percentage)
        feasible: list[NodeInfo] = []
        statuses: dict[str, Status] = {}
        start = self.next_start % len(nodes)
        checked = 0
        for i in range(len(nodes)):
            node = nodes[(start + i) % len(nodes)]
            checked += 1
            for f in filters:
                status = f(state, pod, node)
                if not status.ok:
                    statuses[node.name] = status
                    break
            else:
                feasible.append(node)
                if len(feasible) >= want:
                    break
        self.next_start = (start + checked) % len(nodes)
        return feasible, statuses

    def _score(self, state: CycleState, pod, nodes: list[NodeInfo]) -> dict[str, int]:
        totals = {n.name: 0 for n in nodes}
        for p in self.plugins:
            score = getattr(p, "score", None)
            weight = self.weights.get(p.name, 0)
            if score is None or weight == 0:
                continue
            pre = getattr(p, "pre_score", None)
            if pre is not None and pre(state, pod, nodes).code is Code.SKIP:
                continue
            scores = {n.name: score(state, pod, n) for n in nodes}
            normalize = getattr(p, "normalize", None)
            if normalize is not None:
                normalize(state, pod, scores)
            for name, s in scores.items():
                totals[name] += s * weight
        return totals


def normalize_to_max(scores: dict[str, int], reverse: bool = False) -> None:
    """Kubernetes' DefaultNormalizeScore: scale so the highest is 100 (``reverse``:
    then flip, so the lowest raw score is best)."""
    highest = max(scores.values(), default=0)
    if highest == 0:
        if reverse:
            for name in scores:
                scores[name] = MAX_NODE_SCORE
        return
    for name, s in scores.items():
        s = MAX_NODE_SCORE * s // highest
        scores[name] = MAX_NODE_SCORE - s if reverse else s
