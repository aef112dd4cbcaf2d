"""NodeResourcesFit and NodeResourcesBalancedAllocation.

Rules (Kubernetes' noderesources plugins):

- Fit filters: one more pod than ``pods`` allocatable is "Too many pods"; any resource
  the pod requests beyond what is left of the node's allocatable is "Insufficient
  <resource>" (every such resource is named).
- Fit scores with a strategy over CPU and memory (weight 1 each): LeastAllocated (the
  default: the share left free, so pods spread), MostAllocated (the share used, so
  they pack) or RequestedToCapacityRatio (a piecewise-linear function of the share
  used). Requests count with the scheduler's non-zero defaults.
- BalancedAllocation scores how evenly the node's CPU and memory would be used:
  100 x (1 - the standard deviation of the used shares), each share at most 1, over
  the resources the node has; with two, Kubernetes' |a - b| / 2. It counts the exact
  requests, without the scoring defaults (Kubernetes' useRequested).
- ``filter_many`` and ``score_many`` give the same answers for many nodes at once
  (``NodeTable`` columns); they return None for what has no column (extended
  resources, RequestedToCapacityRatio), which the framework then asks node by node.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._framework import MAX_NODE_SCORE, SUCCESS, CycleState, Status
from .._nodeinfo import NodeInfo, claims_of
from .._resources import CPU, MEMORY, PODS
from .._table import COLUMNS, NodeTable

SCORED = (CPU, MEMORY)
DEFAULT_RESOURCES = ((CPU, 1), (MEMORY, 1))


def _requests(state: CycleState, pod: Mapping[str, Any], non_zero: bool) -> dict[str, int]:
    """The pod's exact requests, or (``non_zero``) its cpu and memory with the scoring
    defaults: the claims the cache keeps per pod version (assuming the pod reads them
    again), once per cycle."""
    key = ("requests", non_zero)
    if key not in state:
        exact, scored, _ = claims_of(pod)
        state[key] = scored if non_zero else exact
    return state[key]


def _used_shares(
    state: CycleState, pod: Mapping[str, Any], node: NodeInfo, non_zero: bool = True
) -> list[tuple[int, int]]:
    """(used with the pod, allocatable) for cpu and memory; ``non_zero``: counting the
    scoring defaults (NodeResourcesFit), else the exact requests (BalancedAllocation)."""
    asked = _requests(state, pod, non_zero)
    used = node.non_zero if non_zero else node.requested
    return [(used.get(r, 0) + asked.get(r, 0), node.allocatable.get(r, 0)) for r in SCORED]


def _asked_columns(state: CycleState, pod: Mapping[str, Any], non_zero: bool) -> tuple:
    """The pod's requests of the scored resources, in ``SCORED`` order."""
    asked = _requests(state, pod, non_zero)
    return tuple(asked.get(r, 0) for r in SCORED)


def _used_columns(table: NodeTable, rows: np.ndarray, asked: tuple, non_zero: bool):
    """``_used_shares`` for many nodes: (used, capacity), each rows x (cpu, memory)."""
    base = table.non_zero[rows] if non_zero else table.requested[rows, : len(SCORED)]
    return base + np.array(asked, dtype=np.int64), table.allocatable[rows, : len(SCORED)]


def _used_row(table: NodeTable, i: int, asked: tuple, non_zero: bool) -> list[tuple[int, int]]:
    """``_used_shares`` of one row of ``table``."""
    base = table.non_zero if non_zero else table.requested
    return [(int(base[i, c]) + asked[c], int(table.allocatable[i, c]))
            for c in range(len(SCORED))]  # fmt: skip


def _balanced(shares: list[tuple[int, int]]) -> int:
    """BalancedAllocation's score of (used, capacity) pairs whose capacity is positive."""
    fractions = [min(used / capacity, 1.0) for used, capacity in shares]
    if len(fractions) < 2:
        return MAX_NODE_SCORE
    if len(fractions) == 2:
        std = abs((fractions[0] - fractions[1]) / 2)
    else:
        mean = sum(fractions) / len(fractions)
        std = math.sqrt(sum((s - mean) * (s - mean) for s in fractions) / len(fractions))
    return int((1 - std) * MAX_NODE_SCORE)


class NodeResourcesFit:
    name = "NodeResourcesFit"
    row_local = True  # the pod's requests, its node's allocatable and pods

    def __init__(self, strategy: str = "LeastAllocated",
                 shape: Sequence[tuple[int, int]] = ((0, 0), (100, 10)),
                 resources: Sequence[tuple[str, int]] = DEFAULT_RESOURCES) -> None:  # fmt: skip
        if strategy not in ("LeastAllocated", "MostAllocated", "RequestedToCapacityRatio"):
            raise ValueError(f"unknown scoring strategy {strategy!r}")
        weights = dict(resources)
        if set(weights) - set(SCORED) or not weights or min(weights.values()) < 1:
            raise ValueError("only cpu and memory are scored, with weights of at least 1")
        self.strategy = strategy
        self.shape = tuple(shape)  # (utilization %, score 0-10) points, for the ratio
        self.weights = [weights.get(r, 0) for r in SCORED]

    def filter(self, state: CycleState, pod: Mapping[str, Any], node: NodeInfo) -> Status:
        reasons = []
        if len(node.pods) + 1 > node.allocatable.get(PODS, 110):
            reasons.append("Too many pods")
        for name, wanted in _requests(state, pod, False).items():
            if wanted <= 0 or name == PODS:
                continue
            free = node.allocatable.get(name, 0) - node.requested.get(name, 0)
            if wanted > free:
                reasons.append(f"Insufficient {name}")
        return Status.unschedulable(*reasons) if reasons else SUCCESS

    def filter_many(self, state: CycleState, pod: Mapping[str, Any], table: NodeTable):
        asked = _requests(state, pod, False)
        if any(v > 0 and name != PODS and name not in COLUMNS for name, v in asked.items()):
            return None
        wanted = [(c, asked[name]) for c, name in enumerate(COLUMNS) if asked.get(name, 0) > 0]

        def many(rows: np.ndarray) -> np.ndarray:
            fits = table.pods[rows] + 1 <= table.allowed_pods[rows]
            for c, amount in wanted:
                fits &= amount <= table.allocatable[rows, c] - table.requested[rows, c]
            return fits

        def one(i: int) -> bool:
            if table.pods[i] + 1 > table.allowed_pods[i]:
                return False
            return all(amount <= table.allocatable[i, c] - table.requested[i, c]
                       for c, amount in wanted)  # fmt: skip

        return table.derived((self.name, "filter", tuple(wanted)), many, one, bool)

    def statuses_many(self, state: CycleState, pod: Mapping[str, Any], table: NodeTable, rows):
        """``filter``'s status for each node of ``rows`` (its reasons in its order)."""
        asked = _requests(state, pod, False)
        if any(v > 0 and name != PODS and name not in COLUMNS for name, v in asked.items()):
            return None
        checks = [("Too many pods", table.pods[rows] + 1 > table.allowed_pods[rows])]
        for name, wanted in asked.items():
            if wanted > 0 and name != PODS:
                c = COLUMNS.index(name)
                free = table.allocatable[rows, c] - table.requested[rows, c]
                checks.append((f"Insufficient {name}", wanted > free))
        # Each row's failing checks as a bit mask; one Status per distinct mask.
        masks = np.zeros(len(rows), dtype=np.int64)
        for bit, (_, failing) in enumerate(checks):
            masks |= failing.astype(np.int64) << bit
        made: dict[int, Status] = {}
        for mask in np.unique(masks).tolist():
            reasons = tuple(reason for bit, (reason, _) in enumerate(checks) if mask >> bit & 1)
            made[mask] = Status.unschedulable(*reasons) if reasons else SUCCESS
        return [made[m] for m in masks.tolist()]

    def score_many(self, state: CycleState, pod: Mapping[str, Any], table: NodeTable, rows):
        if self.strategy == "RequestedToCapacityRatio":
            return None
        asked = _asked_columns(state, pod, non_zero=True)
        weights = np.array(self.weights, dtype=np.int64)

        def many(rows: np.ndarray) -> np.ndarray:
            used, capacity = _used_columns(table, rows, asked, non_zero=True)
            safe = np.maximum(capacity, 1)
            if self.strategy == "LeastAllocated":
                each = np.where(used > capacity, 0, (capacity - used) * MAX_NODE_SCORE // safe)
            else:
                each = np.minimum(used, capacity) * MAX_NODE_SCORE // safe
            each = np.where(capacity <= 0, 0, each)
            return (each * weights).sum(axis=1) // sum(self.weights)

        def one(i: int) -> int:
            total = sum(self._resource_score(used, capacity) * w
                        for (used, capacity), w in zip(_used_row(table, i, asked, True),
                                                       self.weights, strict=True))  # fmt: skip
            return total // sum(self.weights)

        key = (self.name, "score", self.strategy, tuple(self.weights), asked)
        return table.derived(key, many, one, np.int64)[rows]

    def score(self, state: CycleState, pod: Mapping[str, Any], node: NodeInfo) -> int:
        shares = _used_shares(state, pod, node)
        total = sum(self._resource_score(used, capacity) * w
                    for (used, capacity), w in zip(shares, self.weights, strict=True))  # fmt: skip
        return total // sum(self.weights)

    def _resource_score(self, used: int, capacity: int) -> int:
        if capacity <= 0:
            return 0
        if self.strategy == "LeastAllocated":
            return 0 if used > capacity else (capacity - used) * MAX_NODE_SCORE // capacity
        if self.strategy == "MostAllocated":
            return min(used, capacity) * MAX_NODE_SCORE // capacity
        utilization = min(used, capacity) * 100 // capacity
        return _piecewise(self.shape, utilization) * MAX_NODE_SCORE // 10


def _piecewise(shape: Sequence[tuple[int, int]], x: int) -> int:
    """The broken line through ``shape``'s (x, y) points, flat beyond its ends."""
    if x <= shape[0][0]:
        return shape[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(shape):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) // (x1 - x0)
    return shape[-1][1]


class BalancedAllocation:
    name = "NodeResourcesBalancedAllocation"
    row_local = True  # the pod's requests, its node's allocatable and pods

    def score(self, state: CycleState, pod: Mapping[str, Any], node: NodeInfo) -> int:
        return _balanced([(used, capacity)
                          for used, capacity in _used_shares(state, pod, node, non_zero=False)
                          if capacity > 0])  # fmt: skip

    def score_many(self, state: CycleState, pod: Mapping[str, Any], table: NodeTable, rows):
        asked = _asked_columns(state, pod, non_zero=False)

        def many(rows: np.ndarray) -> np.ndarray:
            used, capacity = _used_columns(table, rows, asked, non_zero=False)
            shares = np.minimum(used / np.maximum(capacity, 1), 1.0)
            both = (capacity > 0).all(axis=1)
            std = np.abs((shares[:, 0] - shares[:, 1]) / 2)
            scores = ((1 - std) * MAX_NODE_SCORE).astype(np.int64)
            return np.where(both, scores, MAX_NODE_SCORE)

        def one(i: int) -> int:
            return _balanced([(used, capacity) for used, capacity
                              in _used_row(table, i, asked, False) if capacity > 0])  # fmt: skip

        return table.derived((self.name, "score", asked), many, one, np.int64)[rows]
